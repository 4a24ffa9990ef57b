// RecipientLookupService: the Postfix socketmap server (socketmap_table(5)) Postfix asks whether a recipient
// exists, plus the guide's line probe (`echo "virtual alice@brightchain.org" | nc 127.0.0.1 2526`) on the same
// port. Every input is hostile: lengths are capped before buffering, a connection that breaks framing is closed
// alone, and only a failing registry produces TEMP.
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { parseRecipientKey } from "./address";
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
  maxConnections?: number;
  /** Requests received but not yet answered on one connection before it stops reading. */
  maxPipelined?: number;
  /** Idle netstring connections are closed after this; Postfix reconnects by itself. */
  idleTimeoutMs?: number;
  /** Line probes come from people with nc, which may never half-close: they get a short idle time. */
  lineIdleTimeoutMs?: number;
  /** How long a SIGTERM shutdown waits for in-flight answers before dropping connections. */
  shutdownGraceMs?: number;
  log?: (line: string) => void;
}

export type LookupReply =
  { status: "OK"; value: string } | { status: "NOTFOUND" } | { status: "TEMP" | "TIMEOUT" | "PERM"; reason: string };

const NOTFOUND: LookupReply = { status: "NOTFOUND" };
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

  constructor(
    private readonly socket: Socket,
    private readonly service: RecipientLookupService,
  ) {
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
      service.forget(this);
    });
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
    if (consumed < data.length) this.buffered = data.subarray(consumed);
    this.updateReading();
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
        if (cursor - start > maxDigits || length > max) return -1;
      }
      if (cursor === data.length) break;
      if (cursor === start || data[cursor] !== COLON) return -1;
      const payloadStart = cursor + 1;
      const comma = payloadStart + length;
      if (comma >= data.length) break;
      // A lying length prefix shows up here: the byte after the promised payload is not the terminator.
      if (data[comma] !== COMMA) return -1;
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
    return data.length - start > this.service.maxRequestBytes ? -1 : start;
  }

  private request(payload: string, frame: (text: string) => string, text: (reply: LookupReply) => string): void {
    const answer = this.service.answer(payload);
    if (!(answer instanceof Promise)) {
      if (this.owed.length === 0) this.immediate += frame(text(answer));
      else this.owed.push({ text: frame(text(answer)) });
      return;
    }
    const slot: Slot = { text: undefined };
    this.owed.push(slot);
    void answer.then((reply) => {
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

export class RecipientLookupService {
  readonly maxRequestBytes: number;
  readonly maxPipelined: number;
  readonly idleTimeoutMs: number;
  readonly lineIdleTimeoutMs: number;
  private readonly registry: RecipientRegistry;
  private readonly domains: ReadonlySet<string>;
  private readonly mapNames: ReadonlySet<string>;
  private readonly lookupTimeoutMs: number;
  private readonly server: Server;
  private readonly connections = new Set<LookupConnection>();
  private readonly log: (line: string) => void;
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
    this.log = options.log ?? (() => undefined);
    this.server = createServer((socket) => {
      const connection = new LookupConnection(socket, this);
      this.connections.add(connection);
    });
    this.server.maxConnections = options.maxConnections ?? 1024;
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
    const reason = `recipient registry failed: ${(error as Error)?.message ?? String(error)}`.replace(/[\r\n]+/g, " ");
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
    this.connections.delete(connection);
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
