// RecipientLookupService: the Postfix socketmap server (socketmap_table(5)) Postfix asks whether a recipient
// exists, plus the guide's line probe (`echo "virtual alice@brightchain.org" | nc 127.0.0.1 2526`) on the same
// port. Every input is hostile: lengths are capped before buffering, a connection that breaks framing is closed
// alone, and only a failing registry produces TEMP.
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { parseRecipientKey } from "./address";
import type { LookupObserver } from "./lookup-metrics";
import type { RecipientRegistry } from "./registry";

export interface LookupServiceOptions {
  registry: RecipientRegistry;
  /** Served mail domains (EMAIL_DOMAIN); keys in any other domain are NOTFOUND. */
  domains: readonly string[];
  host?: string;
  /** 0 picks a free port (tests, benchmarks). */
  port: number;
  /** Deadline for one registry answer (GATEWAY_LOOKUP_TIMEOUT_MS); slower is TEMP. */
  lookupTimeoutMs: number;
  /** Map names answered; main.cf names the map in socketmap:inet:127.0.0.1:2526:virtual. */
  mapNames?: readonly string[];
  /** Largest request accepted, bytes. Postfix keys are < 1 KB; anything far larger is an attack or a bug. */
  maxRequestBytes?: number;
  /**
   * Connections kept open at once. At the cap a new connection is still served: the longest-idle connection of
   * the peer address holding the most connections is closed to make room (see RecipientLookupService.admit).
   */
  maxConnections?: number;
  /** Requests received but not yet answered on one connection before it stops reading. */
  maxPipelined?: number;
  /** Idle netstring connections are closed after this; Postfix reconnects by itself. */
  idleTimeoutMs?: number;
  /**
   * Time from a request's first byte to its last. Separate from the idle timeout, which any byte restarts: a
   * client dripping one byte every few seconds would otherwise hold its connection for ever.
   */
  requestDeadlineMs?: number;
  /** Line probes come from people with nc, which may never half-close: they get a short idle time. */
  lineIdleTimeoutMs?: number;
  /** How long a SIGTERM shutdown waits for in-flight answers before dropping connections. */
  shutdownGraceMs?: number;
  log?: (line: string) => void;
  /** Told of every answer and of the connection limit's work (lookup-metrics.ts); nothing when absent. */
  observer?: LookupObserver;
}

export type LookupReply =
  { status: "OK"; value: string } | { status: "NOTFOUND" } | { status: "TEMP" | "TIMEOUT" | "PERM"; reason: string };

const NOTFOUND: LookupReply = { status: "NOTFOUND" };
/**
 * Postfix writes a whole request (< 1 KB) in one write on loopback, so 10 s is generous for it and short for a
 * client dripping bytes to hold a slot. A constant, not a GATEWAY_* setting: no deployment needs another value.
 */
const REQUEST_DEADLINE_MS = 10_000;
/** Protocol violations are logged at most this often, with a count of the rest: a flood must not flood the journal. */
const VIOLATION_LOG_INTERVAL_MS = 5_000;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const COLON = 0x3a;
const COMMA = 0x2c;
const NEWLINE = 0x0a;

/** Socketmap reply text, as the payload of a netstring. `NOTFOUND ` keeps its space: the manual's exact form. */
export function socketmapReplyText(reply: LookupReply): string {
  switch (reply.status) {
    case "OK":
      return `OK ${reply.value}`;
    case "NOTFOUND":
      return "NOTFOUND ";
    default:
      return `${reply.status} ${reply.reason}`;
  }
}

export function encodeNetstring(payload: string): string {
  return `${Buffer.byteLength(payload)}:${payload},`;
}

/** The guide's probe documents `NOTFOUND` without a trailing space; lines end in \n. */
function lineReplyText(reply: LookupReply): string {
  return reply.status === "NOTFOUND" ? "NOTFOUND\n" : `${socketmapReplyText(reply)}\n`;
}

/**
 * `text` made safe for one journal line: control characters (C0, DEL, C1) and the line and paragraph separators
 * become \xNN / \uNNNN, so no byte a client or a registry chose can start a new line or drive a terminal.
 */
export function escapeForLog(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what this escapes
  return text.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
  });
}

/**
 * Client bytes in double quotes for a log line: printable ASCII as is (quote and backslash escaped), every other
 * byte as \xNN, so neither a newline nor a multi-byte sequence a terminal might act on reaches the journal.
 */
function quoteForLog(bytes: Buffer): string {
  let quoted = '"';
  for (const byte of bytes) {
    if (byte === 0x22 || byte === 0x5c) quoted += `\\${String.fromCharCode(byte)}`;
    else if (byte >= 0x20 && byte < 0x7f) quoted += String.fromCharCode(byte);
    else quoted += `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return `${quoted}"`;
}

const hex = (byte: number) => `0x${byte.toString(16).padStart(2, "0")}`;

type Framing = "netstring" | "line";

/** One reply owed to the client; `text` is filled when its answer is known, and slots are written in order. */
interface Slot {
  text: string | undefined;
}

class LookupConnection {
  private framing: Framing | undefined;
  private buffered: Buffer | undefined;
  private readonly owed: Slot[] = [];
  private closed = false;
  private draining = false;
  private readingPaused = false;
  /** Replies answered synchronously while parsing one segment, written together when the segment is done. */
  private immediate = "";
  /** Closes the connection when a started request is not complete in time (REQUEST_DEADLINE_MS). */
  private requestTimer: NodeJS.Timeout | undefined;
  /** The peer's address: what the eviction policy counts connections by. */
  readonly peer: string;
  /** When this connection last completed a request (or connected), in the service's activity order. */
  lastActivity: number;

  constructor(
    private readonly socket: Socket,
    private readonly service: RecipientLookupService,
  ) {
    this.peer = socket.remoteAddress ?? "";
    this.lastActivity = service.nextActivity();
    socket.setNoDelay(true);
    socket.setTimeout(service.idleTimeoutMs);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("timeout", () => {
      // An owed answer means the registry is the slow one; its own deadline will answer and flush.
      if (this.owed.length === 0) this.socket.destroy();
    });
    socket.on("end", () => {
      // A line-probe client that half-closes still gets its answers, then the connection ends; `printf` without
      // a newline leaves its only line unterminated, and EOF terminates it.
      if (this.framing === "line" && this.buffered !== undefined && !this.draining) this.onData(Buffer.from("\n"));
      this.draining = true;
      this.endIfIdle();
    });
    socket.on("drain", () => this.updateReading());
    socket.on("error", () => this.socket.destroy());
    socket.on("close", () => {
      this.closed = true;
      clearTimeout(this.requestTimer);
      service.forget(this);
    });
  }

  /**
   * Whether closing this connection loses nothing: no answer is owed on it. A half-received request does not
   * protect it: its sender is the one not keeping up.
   */
  get evictable(): boolean {
    return !this.closed && this.owed.length === 0;
  }

  /** `address:port`, for log lines. */
  get name(): string {
    return `${this.peer}:${this.socket.remotePort ?? "?"}`;
  }

  /** Stop taking requests; answer those already received, then end. */
  drain(): void {
    this.draining = true;
    this.socket.pause();
    this.endIfIdle();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.draining) return;
    const continuesRequest = this.buffered !== undefined;
    const data = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    this.buffered = undefined;
    if (this.framing === undefined) {
      // Postfix always opens with a length digit; a person typing a probe never does.
      this.framing = data[0]! >= DIGIT_0 && data[0]! <= DIGIT_9 ? "netstring" : "line";
      if (this.framing === "line") this.socket.setTimeout(this.service.lineIdleTimeoutMs);
    }
    const consumed = this.framing === "netstring" ? this.parseNetstrings(data) : this.parseLines(data);
    // A segment carrying many pipelined requests is answered with one write, not one per request.
    if (this.immediate !== "") {
      this.socket.write(this.immediate);
      this.immediate = "";
    }
    if (consumed < 0) {
      this.socket.destroy();
      return;
    }
    if (consumed < data.length) {
      this.buffered = data.subarray(consumed);
      // The clock runs from the first byte of the request now buffered, not from its latest byte.
      if (!continuesRequest || consumed > 0) this.startRequestDeadline();
    } else {
      clearTimeout(this.requestTimer);
      this.requestTimer = undefined;
    }
    this.updateReading();
  }

  private startRequestDeadline(): void {
    clearTimeout(this.requestTimer);
    this.requestTimer = setTimeout(() => {
      // Not reading, or an answer still owed: the wait is ours (backpressure, a slow registry), not the client's.
      if (this.readingPaused || this.owed.length > 0) {
        this.startRequestDeadline();
        return;
      }
      const start = this.buffered?.subarray(0, 64) ?? Buffer.alloc(0);
      this.service.violation(
        this,
        `request not complete ${this.service.requestDeadlineMs} ms after its first byte (starts ${quoteForLog(start)})`,
      );
      this.socket.destroy();
    }, this.service.requestDeadlineMs);
  }

  /** Logs why the framing is broken and returns -1: the connection must go. */
  private broken(reason: string): number {
    this.service.violation(this, reason);
    return -1;
  }

  /** Returns the bytes consumed, or -1 when the framing is broken and the connection must go. */
  private parseNetstrings(data: Buffer): number {
    const max = this.service.maxRequestBytes;
    const maxDigits = String(max).length;
    let start = 0;
    while (start < data.length) {
      let length = 0;
      let cursor = start;
      while (cursor < data.length) {
        const byte = data[cursor]!;
        if (byte < DIGIT_0 || byte > DIGIT_9) break;
        length = length * 10 + (byte - DIGIT_0);
        cursor++;
        // Checked while reading digits, so a stream of digits can never grow the buffer.
        if (cursor - start > maxDigits || length > max) return this.broken(`netstring length over ${max} bytes`);
      }
      if (cursor === data.length) break;
      if (cursor === start) return this.broken(`byte ${hex(data[cursor]!)} where a netstring length digit belongs`);
      if (data[cursor] !== COLON) return this.broken(`byte ${hex(data[cursor]!)} where the ":" after a netstring length belongs`);
      const payloadStart = cursor + 1;
      const comma = payloadStart + length;
      if (comma >= data.length) break;
      // A lying length prefix shows up here: the byte after the promised payload is not the terminator.
      if (data[comma] !== COMMA) {
        return this.broken(`byte ${hex(data[comma]!)} where the "," after a ${length}-byte netstring belongs`);
      }
      this.request(data.toString("utf8", payloadStart, comma), encodeNetstring, socketmapReplyText);
      start = comma + 1;
    }
    return start;
  }

  private parseLines(data: Buffer): number {
    let start = 0;
    for (;;) {
      const newline = data.indexOf(NEWLINE, start);
      if (newline < 0) break;
      const line = data.toString("utf8", start, newline).replace(/\r$/, "");
      start = newline + 1;
      if (line.trim() !== "") this.request(line.trim(), (text) => text, lineReplyText);
    }
    if (data.length - start > this.service.maxRequestBytes) {
      return this.broken(`line longer than ${this.service.maxRequestBytes} bytes without a newline`);
    }
    return start;
  }

  private request(payload: string, frame: (text: string) => string, text: (reply: LookupReply) => string): void {
    this.lastActivity = this.service.nextActivity();
    const started = performance.now();
    const answer = this.service.answer(payload);
    if (!(answer instanceof Promise)) {
      this.service.answered(answer, started);
      if (this.owed.length === 0) this.immediate += frame(text(answer));
      else this.owed.push({ text: frame(text(answer)) });
      return;
    }
    const slot: Slot = { text: undefined };
    this.owed.push(slot);
    void answer.then((reply) => {
      this.service.answered(reply, started);
      slot.text = frame(text(reply));
      this.flush();
    });
  }

  private flush(): void {
    if (this.closed) return;
    let out = "";
    while (this.owed.length > 0 && this.owed[0]!.text !== undefined) out += this.owed.shift()!.text;
    if (out !== "") this.socket.write(out);
    this.updateReading();
    this.endIfIdle();
  }

  /** Backpressure both ways: a client that pipelines without reading stops being read. */
  private updateReading(): void {
    if (this.closed || this.draining) return;
    const shouldPause = this.owed.length >= this.service.maxPipelined || this.socket.writableNeedDrain;
    if (shouldPause && !this.readingPaused) this.socket.pause();
    if (!shouldPause && this.readingPaused) this.socket.resume();
    this.readingPaused = shouldPause;
  }

  private endIfIdle(): void {
    // Destroyed once our FIN is out: Postfix keeps idle socketmap connections open without reading, so waiting
    // for its side to close would stall every shutdown until the grace timeout.
    if (this.draining && this.owed.length === 0 && !this.closed) this.socket.end(() => this.socket.destroy());
  }
}

/** Logs at most one line per interval, saying how many were left out since the last one. */
class RateLimitedLog {
  private last = 0;
  private suppressed = 0;

  constructor(private readonly log: (line: string) => void) {}

  note(line: string): void {
    const now = Date.now();
    if (now - this.last < VIOLATION_LOG_INTERVAL_MS) {
      this.suppressed++;
      return;
    }
    this.log(this.suppressed === 0 ? line : `${line} (and ${this.suppressed} more since the last such line)`);
    this.last = now;
    this.suppressed = 0;
  }
}

export class RecipientLookupService {
  readonly maxRequestBytes: number;
  readonly maxPipelined: number;
  readonly idleTimeoutMs: number;
  readonly lineIdleTimeoutMs: number;
  readonly requestDeadlineMs: number;
  readonly maxConnections: number;
  private readonly registry: RecipientRegistry;
  private readonly domains: ReadonlySet<string>;
  private readonly mapNames: ReadonlySet<string>;
  private readonly lookupTimeoutMs: number;
  private readonly server: Server;
  private readonly connections = new Set<LookupConnection>();
  /** Open connections per peer address. */
  private readonly peerConnections = new Map<string, number>();
  private activity = 0;
  private readonly log: (line: string) => void;
  private readonly violations: RateLimitedLog;
  private readonly connectionLimit: RateLimitedLog;
  private lastRegistryErrorLog = 0;

  constructor(private readonly options: LookupServiceOptions) {
    this.registry = options.registry;
    this.domains = new Set(options.domains.map((d) => d.toLowerCase()));
    this.mapNames = new Set(options.mapNames ?? ["virtual"]);
    this.lookupTimeoutMs = options.lookupTimeoutMs;
    this.maxRequestBytes = options.maxRequestBytes ?? 4096;
    this.maxPipelined = options.maxPipelined ?? 256;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 300_000;
    this.lineIdleTimeoutMs = options.lineIdleTimeoutMs ?? 1_000;
    this.requestDeadlineMs = options.requestDeadlineMs ?? REQUEST_DEADLINE_MS;
    this.maxConnections = options.maxConnections ?? 1024;
    this.log = options.log ?? (() => undefined);
    this.violations = new RateLimitedLog(this.log);
    this.connectionLimit = new RateLimitedLog(this.log);
    this.server = createServer((socket) => this.admit(socket));
  }

  /**
   * A new connection is always served while any open one can be closed without losing an answer: a local
   * process holding every slot with idle connections must not turn every recipient into a 451. The one closed is
   * the longest-idle connection of the peer address holding the most connections, so a flood from one address
   * (a remote host, or 127.0.0.2) pays before anyone else; Postfix connects from 127.0.0.1 like any local
   * process, and there the longest-idle goes first: Postfix's connections are busy or recently used, an
   * attacker's are not, and a Postfix connection closed while idle costs it one reconnect.
   */
  private admit(socket: Socket): void {
    if (this.connections.size >= this.maxConnections) {
      const victim = this.evictionVictim();
      const from = socket.remoteAddress ?? "?";
      if (victim === undefined) {
        this.connectionLimit.note(
          `at the connection limit (${this.maxConnections}), every connection awaiting an answer: refused one from ${from}`,
        );
        socket.destroy();
        this.options.observer?.refused();
        return;
      }
      this.connectionLimit.note(
        `at the connection limit (${this.maxConnections}): closed the longest-idle connection of ${victim.peer} for one from ${from}`,
      );
      victim.destroy();
      this.options.observer?.evicted();
      this.forget(victim);
    }
    const connection = new LookupConnection(socket, this);
    this.connections.add(connection);
    this.peerConnections.set(connection.peer, (this.peerConnections.get(connection.peer) ?? 0) + 1);
  }

  private evictionVictim(): LookupConnection | undefined {
    let victim: LookupConnection | undefined;
    let victimPeerConnections = 0;
    for (const connection of this.connections) {
      if (!connection.evictable) continue;
      const peerConnections = this.peerConnections.get(connection.peer) ?? 0;
      if (
        victim === undefined ||
        peerConnections > victimPeerConnections ||
        (peerConnections === victimPeerConnections && connection.lastActivity < victim.lastActivity)
      ) {
        victim = connection;
        victimPeerConnections = peerConnections;
      }
    }
    return victim;
  }

  /** Reports one answer and its time from `started` (performance.now() when the request was complete). */
  answered(reply: LookupReply, started: number): void {
    this.options.observer?.answered(reply.status, (performance.now() - started) / 1000);
  }

  /** A number that grows with every request: orders connections by when they were last used. */
  nextActivity(): number {
    return ++this.activity;
  }

  /** A client broke the protocol and its connection is closed; `reason` carries no unescaped client byte. */
  violation(connection: LookupConnection, reason: string): void {
    this.violations.note(`closed ${connection.name}: ${reason}`);
  }

  /** Resolves with the bound port once listening. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.port, this.options.host ?? "127.0.0.1", () => {
        this.server.off("error", reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** One socketmap request payload (`name key`) to its reply; synchronous when the registry is. */
  answer(request: string): LookupReply | Promise<LookupReply> {
    const space = request.indexOf(" ");
    if (space <= 0) return { status: "PERM", reason: 'request is not "<map name> <key>"' };
    if (!this.isMapName(request, space)) {
      const mapName = request.slice(0, space);
      return {
        status: "PERM",
        reason: `unknown map name ${JSON.stringify(mapName.slice(0, 64))}; this service answers ${[...this.mapNames].join(", ")}`,
      };
    }
    const key = parseRecipientKey(request.slice(space + 1), this.domains);
    if (key === undefined) return NOTFOUND;
    try {
      const found = this.registry.find(key.address);
      if (found instanceof Promise) return this.withDeadline(found.then((value) => this.fallBack(value, key.withoutExtension)));
      return this.fallBack(found, key.withoutExtension);
    } catch (error) {
      return this.temporary(error);
    }
  }

  /** Whether request[0, space) is a map name we answer, compared in place: every lookup pays this. */
  private isMapName(request: string, space: number): boolean {
    for (const name of this.mapNames) if (name.length === space && request.startsWith(name)) return true;
    return false;
  }

  private fallBack(found: string | undefined, withoutExtension: string | undefined): LookupReply | Promise<LookupReply> {
    if (found !== undefined) return { status: "OK", value: found };
    if (withoutExtension === undefined) return NOTFOUND;
    const base = this.registry.find(withoutExtension);
    if (base instanceof Promise) return base.then((value) => (value === undefined ? NOTFOUND : { status: "OK", value }));
    return base === undefined ? NOTFOUND : { status: "OK", value: base };
  }

  private withDeadline(answer: Promise<LookupReply>): Promise<LookupReply> {
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => resolve({ status: "TEMP", reason: `recipient registry did not answer within ${this.lookupTimeoutMs} ms` }),
        this.lookupTimeoutMs,
      );
      answer.then(
        (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        (error: unknown) => {
          clearTimeout(timer);
          resolve(this.temporary(error));
        },
      );
    });
  }

  private temporary(error: unknown): LookupReply {
    const reason = `recipient registry failed: ${escapeForLog((error as Error)?.message ?? String(error))}`;
    // A registry outage fails every lookup; one log line per few seconds says it without flooding the journal.
    const now = Date.now();
    if (now - this.lastRegistryErrorLog > 5_000) {
      this.lastRegistryErrorLog = now;
      this.log(reason);
    }
    return { status: "TEMP", reason };
  }

  /** Connections currently open (Postfix keeps one per smtpd/trivial-rewrite process). */
  get openConnections(): number {
    return this.connections.size;
  }

  forget(connection: LookupConnection): void {
    if (!this.connections.delete(connection)) return;
    const left = (this.peerConnections.get(connection.peer) ?? 1) - 1;
    if (left === 0) this.peerConnections.delete(connection.peer);
    else this.peerConnections.set(connection.peer, left);
  }

  /** Stops accepting, answers what was already asked, then closes. Resolves when every connection is gone. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      const grace = setTimeout(() => {
        for (const connection of this.connections) connection.destroy();
      }, this.options.shutdownGraceMs ?? 5_000);
      this.server.close(() => {
        clearTimeout(grace);
        resolve();
      });
      for (const connection of this.connections) connection.drain();
    });
  }
}
