// Watches the drop Maildir's new/ and hands every message to a sink, then moves it to cur/.
//
// Exactly-once under kill -9: a file leaves new/ only after the sink acknowledged it, and the sink's hand-off
// is idempotent per (SHA3-512 of the bytes, recipient). A crash before the rename re-hands-off the same file
// on restart, which the sink answers "already have it". Nothing is lost, nothing is stored twice.
//
// Every entry of new/ ends somewhere, said in one log line: cur/ (handed off), errors/ with a reason (refused for
// good: unparsable, too large, a recipient outside the served domains, or not a message file at all: a FIFO, a
// symbolic link, a directory, a socket, an unreadable file), or it stays in new/ and is retried with backoff
// (the sink or errors/ failed for now). Names are handled as bytes (latin1 strings, one character per byte), so
// a name that is not UTF-8 is still the file it names, and logged escaped, so no name can forge a journal line.
import { closeSync, constants, fsync, openSync, renameSync, watch, type FSWatcher } from "node:fs";
import { mkdir, open, opendir, rename, unlink, type FileHandle } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { SpamEngineName } from "../config";
import { oneLine, printableName } from "./log-text";
import {
  DELIVERY_HEADROOM_BYTES,
  DROP_OPEN_FLAGS,
  entryKind,
  headerFields,
  scanMessageFile,
  summarizeHeaders,
  UnprocessableMessageError,
} from "./message-file";
import { SinkError, type Handoff, type Sink } from "./sink";
import { spamVerdict } from "./spam-verdict";

export interface InboundLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface InboundProcessorOptions {
  mailDropDir: string;
  errorDir: string;
  sink: Sink;
  spamEngine: SpamEngineName;
  spamProbable: number;
  /** EMAIL_DOMAIN: mail whose Delivered-To is in none of these (exactly; not a subdomain) goes to errors/. */
  servedDomains: readonly string[];
  /** GATEWAY_MAX_MESSAGE_SIZE: a drop file over this plus DELIVERY_HEADROOM_BYTES goes to errors/ unread. */
  maxMessageSize: number;
  concurrency: number;
  logger: InboundLogger;
  /** First retry delay after a temporary failure; doubles per attempt up to retryMaxMs. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Names held at once (queued, in flight, waiting for a retry); default TRACKED_NAMES_LIMIT. */
  trackedNamesLimit?: number;
  /** Told how each hand-off ended (inbound-metrics.ts); nothing when absent. */
  observer?: InboundObserver;
}

/**
 * How one attempt at a drop file ended: `stored` and `duplicate` (the sink already held it) went to cur/,
 * `refused` to errors/, `retried` stays in new/ for another attempt (the sink failed for now, or errors/ could not
 * take a refused file).
 */
export type HandOffOutcome = "stored" | "duplicate" | "refused" | "retried";

/** What the processor reports as it works; every call is O(1) and never does I/O. */
export interface InboundObserver {
  handedOff(outcome: HandOffOutcome): void;
  /** A retry's timer fired and the file is taken again. */
  retryStarted(): void;
  /** The sink itself failed (not the file): permanent is a refusal for good, otherwise it is retried. */
  sinkFailed(permanent: boolean): void;
  /** errors/ could not take a refused file (reason file or move failed). */
  errorsDirFailed(): void;
}

type Outcome =
  | "delivered"
  | "failed"
  | "retrying"
  | "gone"
  /** Refused for good, but errors/ could not take it: retried with backoff, outside the intake limit. */
  | "parked"
  /** As parked, with no room left to remember it: left in new/ for a later listing. */
  | "forgotten";

/** Retry delays: 1 s doubling to at most 5 minutes (docs/runtime.md). */
export const RETRY_INITIAL_MS = 1_000;
export const RETRY_MAX_MS = 300_000;

/** A name in errors/ (or name.reason) must fit one path component: NAME_MAX bytes. */
const NAME_MAX = 255;
const REASON_SUFFIX = ".reason";

/** The name's bytes, as a path below `dir`: a string for ASCII names (all of Postfix's), else a Buffer. */
export function entryPath(dir: string, name: string): string | Buffer {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(name) ? `${dir}/${name}` : Buffer.concat([Buffer.from(`${dir}/`), Buffer.from(name, "latin1")]);
}

/**
 * The name a refused file gets in errors/: its own, unless NAME.reason would not fit one path component; then
 * its first bytes, a ~ and a hash of the whole name (the reason file gives the original name).
 */
export function errorsName(name: string): string {
  if (name.length + REASON_SUFFIX.length <= NAME_MAX) return name;
  const hash = createHash("sha256").update(Buffer.from(name, "latin1")).digest("hex").slice(0, 16);
  return `${name.slice(0, NAME_MAX - REASON_SUFFIX.length - hash.length - 1)}~${hash}`;
}

/** A safety net under inotify: a queue overflow drops events, so new/ is also listed this often. */
const RESCAN_INTERVAL_MS = 30_000;

/**
 * At most this many names are held (queued, in flight or waiting for a retry); the rest wait in new/ and a
 * later listing picks them up. A backlog of a million files after a long outage of the node then costs what a
 * thousand do, instead of a heap that cannot hold the listing and a daemon that crashes on every restart.
 */
export const TRACKED_NAMES_LIMIT = 2_000;

export class InboundProcessor {
  private readonly newDir: string;
  private readonly curDir: string;
  /** The largest drop file read: GATEWAY_MAX_MESSAGE_SIZE plus what delivery prepends. */
  private readonly maxFileBytes: number;
  private readonly servedDomains: ReadonlySet<string>;
  /** The options' logger, every message on one line whatever the names and error texts in it hold. */
  private readonly log: InboundLogger;
  private readonly queue: string[] = [];
  /** Names queued, running or waiting for a retry: a second 'add' for any of them is ignored. */
  private readonly known = new Set<string>();
  /**
   * Of `known`, the refused files errors/ could not take yet (unwritable, full, failing), each waiting for its
   * retry. They do not count against the intake limit, so any number of them never stops good mail; they have
   * a limit of their own (the same number), past which a refused file is left in new/ until errors/ takes one.
   */
  private readonly parked = new Set<string>();
  /** Refused files were left in new/ because `parked` was full: list again once errors/ takes a file. */
  private errorsOverflow = false;
  /**
   * Names this daemon moved out of new/ whose inotify event has not come back yet. Without it each of our own
   * renames re-queued its name and cost a failed open (strace: 0.9 extra openat per message). Cleared at each
   * full listing, so a lost event cannot grow it; a stale name only costs that one failed open.
   */
  private readonly movedOut = new Set<string>();
  private readonly attempts = new Map<string, number>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly running = new Set<Promise<void>>();
  private watcher: FSWatcher | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  /** Names were left in new/ because TRACKED_NAMES_LIMIT was reached: list again once there is room. */
  private backlog = false;
  private listing: Promise<void> | undefined;
  private stopping = false;
  readonly counts = { delivered: 0, failed: 0, retried: 0 };

  private readonly trackedNamesLimit: number;

  constructor(private readonly options: InboundProcessorOptions) {
    this.trackedNamesLimit = options.trackedNamesLimit ?? TRACKED_NAMES_LIMIT;
    this.newDir = join(options.mailDropDir, "new");
    this.curDir = join(options.mailDropDir, "cur");
    this.maxFileBytes = options.maxMessageSize + DELIVERY_HEADROOM_BYTES;
    this.servedDomains = new Set(options.servedDomains.map((domain) => domain.toLowerCase()));
    const logger = options.logger;
    this.log = {
      info: (message) => logger.info(oneLine(message)),
      warn: (message) => logger.warn(oneLine(message)),
      error: (message) => logger.error(oneLine(message)),
    };
  }

  /** Drop files being handed off right now. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Names held against the intake limit: queued, in flight, or waiting for the sink. */
  private get held(): number {
    return this.known.size - this.parked.size;
  }

  async start(): Promise<void> {
    for (const dir of [this.newDir, this.curDir, join(this.options.mailDropDir, "tmp"), this.options.errorDir]) {
      await mkdir(dir, { recursive: true, mode: 0o750 });
    }
    // Watch first, then list: a file delivered between the two is seen by one or both, and `known` dedups.
    // fs.watch (inotify), not chokidar: chokidar re-reads the whole directory on every event, which made each
    // rename out of new/ cost O(files waiting) — 200 msgs/s with 2,000 waiting, against 500 without it.
    // Names as latin1: one character per byte, so a name that is not valid UTF-8 still opens its own file.
    this.watcher = watch(this.newDir, { encoding: "latin1" }, (_event, name) => {
      if (name === null) void this.list();
      else if (!this.movedOut.delete(name)) this.enqueue(name);
    });
    this.watcher.on("error", (error) => this.log.error(`watching ${this.newDir}: ${error.message}`));
    await this.list();
    this.rescanTimer = setInterval(() => {
      // Only the periodic listing forgets our own moves: one whose inotify event was lost would stay forever.
      this.movedOut.clear();
      void this.list();
    }, RESCAN_INTERVAL_MS);
    this.rescanTimer.unref();
  }

  /** Lists new/ as a stream, taking names up to the limit; one listing at a time. */
  private list(): Promise<void> {
    this.listing ??= (async () => {
      this.backlog = false;
      try {
        const room = this.trackedNamesLimit - this.held;
        const names: string[] = [];
        // Leaving the loop early closes the directory.
        for await (const entry of await opendir(this.newDir, { bufferSize: 256, encoding: "latin1" })) {
          if (entry.name.startsWith(".") || this.known.has(entry.name)) continue;
          if (names.length >= room) {
            this.backlog = true;
            break;
          }
          names.push(entry.name);
        }
        // Maildir names begin with the delivery time: oldest first, within what this listing took.
        for (const name of names.sort()) this.enqueue(name);
      } catch (error) {
        this.log.error(`listing ${this.newDir}: ${(error as Error).message}`);
      } finally {
        this.listing = undefined;
      }
    })();
    return this.listing;
  }

  /** Stops taking new files, cancels pending retries (the files stay in new/) and finishes in-flight ones. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.queue.length = 0;
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    clearInterval(this.rescanTimer);
    this.watcher?.close();
    await Promise.allSettled([...this.running]);
  }

  /** False when the name was left in new/ for a later listing because the limit is reached. */
  private enqueue(name: string): boolean {
    // Dot files are not Maildir messages (a Maildir reader skips them); inotify also reports each of our own
    // renames out of new/.
    if (this.stopping || name.startsWith(".") || this.known.has(name)) return true;
    if (this.held >= this.trackedNamesLimit) {
      this.backlog = true;
      return false;
    }
    this.known.add(name);
    this.queue.push(name);
    this.pump();
    return true;
  }

  private pump(): void {
    while (!this.stopping && this.running.size < this.options.concurrency && this.queue.length > 0) {
      const name = this.queue.shift()!;
      const task: Promise<void> = this.processFile(name)
        .catch((error: unknown) => {
          // A bug, not a state of the file: let it go, so a later listing takes it again instead of the name
          // holding a place for good.
          this.release(name);
          this.log.error(`${printableName(name)}: unexpected ${(error as Error).stack ?? String(error)}`);
        })
        .finally(() => {
          this.running.delete(task);
          this.pump();
        });
      this.running.add(task);
    }
  }

  private release(name: string): void {
    this.known.delete(name);
    this.parked.delete(name);
    this.attempts.delete(name);
  }

  private async processFile(name: string): Promise<void> {
    const outcome = await this.handOff(name, entryPath(this.newDir, name));
    if (outcome === "retrying") {
      // Waits for the sink again, inside the intake limit, even if it waited for errors/ before.
      this.parked.delete(name);
      return;
    }
    if (outcome === "forgotten") {
      // A listing now would only take it again: the rescan or errors/ taking a file lists it.
      this.release(name);
      return;
    }
    if (outcome !== "parked") this.release(name);
    // Refill at half the limit, so one listing of a large backlog takes many names, not one at a time.
    if (this.backlog && !this.stopping && this.held <= this.trackedNamesLimit / 2) void this.list();
  }

  private async handOff(name: string, path: string | Buffer): Promise<Outcome> {
    const observer = this.options.observer;
    try {
      const handoff = await this.prepare(name, path);
      if (handoff === undefined) return "gone";
      let result;
      try {
        result = await this.options.sink.deliver(handoff);
      } catch (error) {
        observer?.sinkFailed(error instanceof SinkError && error.permanent);
        throw error;
      }
      // Synchronous: a µs-scale rename costs less than the thread-pool round trip of its async form.
      renameSync(path, entryPath(this.curDir, name.includes(":2,") ? name : `${name}:2,`));
      this.movedOut.add(name);
      this.counts.delivered += 1;
      observer?.handedOff(result === "duplicate" ? "duplicate" : "stored");
      return "delivered";
    } catch (error) {
      if (error instanceof UnprocessableMessageError || (error instanceof SinkError && error.permanent)) {
        const outcome = await this.moveToErrors(name, path, error.message);
        observer?.handedOff(outcome === "failed" ? "refused" : "retried");
        return outcome;
      }
      this.scheduleRetry(name, "temporary failure", error instanceof Error ? error.message : String(error));
      observer?.handedOff("retried");
      return "retrying";
    }
  }

  /**
   * Reads and classifies one drop file; undefined when it is already gone (moved by an earlier life of this
   * daemon between its listing and now). Only the small Handoff outlives this call: the header section and its
   * fields are garbage before the hand-off waits on the sink, 64 of them at a time.
   */
  private async prepare(name: string, path: string | Buffer): Promise<Handoff | undefined> {
    let scanned;
    try {
      scanned = await scanMessageFile(path, this.maxFileBytes);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const summary = summarizeHeaders(scanned.headerSection);
    const domain = summary.recipient.slice(summary.recipient.lastIndexOf("@") + 1);
    if (!this.servedDomains.has(domain)) {
      throw new UnprocessableMessageError(
        `Delivered-To ${JSON.stringify(summary.recipient)} is outside the served domains (EMAIL_DOMAIN ${[...this.servedDomains].join(",")})`,
      );
    }
    const verdict = spamVerdict(headerFields(scanned.headerSection), this.options.spamEngine, this.options.spamProbable);
    if (verdict.unscanned) this.log.warn(`${printableName(name)}: ${verdict.reason}; filed in inbox`);
    return {
      sha3: scanned.sha3,
      size: scanned.size,
      recipient: summary.recipient,
      folder: verdict.folder,
      spamScore: verdict.score,
      messageId: summary.messageId,
      from: summary.from,
      subject: summary.subject,
      date: summary.date,
      rawPath: path,
    };
  }

  /**
   * Files a refused entry in errors/ with its reason. When errors/ cannot take it (the reason file or the move
   * fails: EACCES, EPERM, ENOSPC, EIO, …) it stays in new/ and is tried again with backoff, outside the intake
   * limit: the file is never stuck, and no number of them stops good mail.
   */
  private async moveToErrors(name: string, path: string | Buffer, reason: string): Promise<Outcome> {
    const target = errorsName(name);
    try {
      await this.fileInErrors(name, path, target, reason);
    } catch (error) {
      this.options.observer?.errorsDirFailed();
      const failure = `${reason}; ${this.options.errorDir} could not take it: ${(error as Error).message}`;
      if (!this.parked.has(name) && this.parked.size >= this.trackedNamesLimit) {
        if (!this.errorsOverflow) {
          this.log.error(
            `${printableName(name)}: ${failure}; ${this.parked.size} refused files already wait for ${this.options.errorDir}: ` +
              `this one and any later ones stay in new/ until it takes files again`,
          );
        }
        this.errorsOverflow = true;
        return "forgotten";
      }
      this.parked.add(name);
      this.scheduleRetry(name, "refused, not yet in errors", failure);
      return "parked";
    }
    this.counts.failed += 1;
    const renamed = target === name ? "" : ` as ${printableName(target)} (the name was too long)`;
    this.log.error(`${printableName(name)}: moved to ${this.options.errorDir}${renamed}: ${reason}`);
    if (this.errorsOverflow) {
      // errors/ takes files again: the refused files left in new/ while it did not are listed now.
      this.errorsOverflow = false;
      if (!this.stopping) void this.list();
    }
    return "failed";
  }

  private async fileInErrors(name: string, path: string | Buffer, target: string, reason: string): Promise<void> {
    const errorDir = this.options.errorDir;
    const targetPath = entryPath(errorDir, target);
    // The reason is durable before the message moves, so an error file never appears without its why.
    const handle = await open(
      entryPath(errorDir, `${target}${REASON_SUFFIX}`),
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
      0o640,
    );
    try {
      await handle.writeFile(target === name ? `${reason}\n` : `${reason}\noriginal name: ${printableName(name)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(path, targetPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EXDEV") throw error;
      // errors/ on another filesystem: a durable copy, then the original goes. Never the other way round.
      await copyAcrossFilesystems(path, targetPath, errorDir);
      await unlink(path);
    }
    this.movedOut.add(name);
  }

  private scheduleRetry(name: string, what: string, reason: string): void {
    const attempt = (this.attempts.get(name) ?? 0) + 1;
    this.attempts.set(name, attempt);
    const delay = retryDelayMs(attempt, this.options.retryInitialMs, this.options.retryMaxMs);
    this.counts.retried += 1;
    this.log.warn(`${printableName(name)}: ${what} (attempt ${attempt}), retrying in ${delay} ms: ${reason}`);
    if (this.stopping) return;
    const timer = setTimeout(() => {
      this.retryTimers.delete(name);
      if (this.stopping) return;
      this.options.observer?.retryStarted();
      this.queue.push(name);
      this.pump();
    }, delay);
    this.retryTimers.set(name, timer);
  }
}

/** The wait before attempt `attempt + 1`: `initial` doubling per attempt, never more than `max`. */
export function retryDelayMs(attempt: number, initial = RETRY_INITIAL_MS, max = RETRY_MAX_MS): number {
  return Math.min(max, initial * 2 ** Math.min(attempt - 1, 30));
}

/**
 * Copies a refused regular file to `target` on another filesystem and makes the copy durable (data, then its
 * directory entry) before the caller deletes the original. Anything else (a FIFO, a link, a directory) has no
 * bytes to copy and is refused: it stays in new/ and the failure is logged at each retry.
 */
async function copyAcrossFilesystems(path: string | Buffer, target: string | Buffer, targetDir: string): Promise<void> {
  let source: FileHandle;
  try {
    source = await open(path, DROP_OPEN_FLAGS);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ELOOP") {
      throw new Error(`a symbolic link cannot be moved to ${targetDir} on another filesystem; move it by hand`);
    }
    throw error;
  }
  try {
    const stats = await source.stat();
    if (!stats.isFile()) {
      throw new Error(`${entryKind(stats)} cannot be moved to ${targetDir} on another filesystem; move it by hand`);
    }
    const copy = await open(
      target,
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
      stats.mode & 0o777,
    );
    try {
      const buffer = Buffer.allocUnsafe(64 * 1024);
      for (let position = 0; ;) {
        const { bytesRead } = await source.read(buffer, 0, buffer.length, position);
        if (bytesRead === 0) break;
        for (let written = 0; written < bytesRead;) {
          written += (await copy.write(buffer, written, bytesRead - written, position + written)).bytesWritten;
        }
        position += bytesRead;
      }
      await copy.sync();
    } finally {
      await copy.close();
    }
  } finally {
    await source.close();
  }
  await fsyncDirectory(targetDir);
}

function fsyncDirectory(path: string): Promise<void> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
  return new Promise<void>((resolve, reject) =>
    fsync(fd, (error) => {
      closeSync(fd);
      if (error === null) resolve();
      else reject(error);
    }),
  );
}
