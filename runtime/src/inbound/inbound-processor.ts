// Watches the drop Maildir's new/ and hands every message to a sink, then moves it to cur/.
//
// Exactly-once under kill -9: a file leaves new/ only after the sink acknowledged it, and the sink's hand-off
// is idempotent per (SHA3-512 of the bytes, recipient). A crash before the rename re-hands-off the same file
// on restart, which the sink answers "already have it". Nothing is lost, nothing is stored twice.
import { constants, renameSync, watch, type FSWatcher } from "node:fs";
import { copyFile, mkdir, open, opendir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { SpamEngineName } from "../config";
import { headerFields, scanMessageFile, summarizeHeaders, UnprocessableMessageError } from "./message-file";
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
  concurrency: number;
  logger: InboundLogger;
  /** First retry delay after a temporary failure; doubles per attempt up to retryMaxMs. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Names held at once (queued, in flight, waiting for a retry); default TRACKED_NAMES_LIMIT. */
  trackedNamesLimit?: number;
}

type Outcome = "delivered" | "failed" | "retrying" | "gone";

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
  private readonly queue: string[] = [];
  /** Names queued, running or waiting for a retry: a second 'add' for any of them is ignored. */
  private readonly known = new Set<string>();
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
  }

  async start(): Promise<void> {
    for (const dir of [this.newDir, this.curDir, join(this.options.mailDropDir, "tmp"), this.options.errorDir]) {
      await mkdir(dir, { recursive: true, mode: 0o750 });
    }
    // Watch first, then list: a file delivered between the two is seen by one or both, and `known` dedups.
    // fs.watch (inotify), not chokidar: chokidar re-reads the whole directory on every event, which made each
    // rename out of new/ cost O(files waiting) — 200 msgs/s with 2,000 waiting, against 500 without it.
    this.watcher = watch(this.newDir, (_event, name) => {
      if (name === null) void this.list();
      else if (!this.movedOut.delete(name.toString())) this.enqueue(name.toString());
    });
    this.watcher.on("error", (error) => this.options.logger.error(`watching ${this.newDir}: ${error.message}`));
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
        const room = this.trackedNamesLimit - this.known.size;
        const names: string[] = [];
        // Leaving the loop early closes the directory.
        for await (const entry of await opendir(this.newDir, { bufferSize: 256 })) {
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
        this.options.logger.error(`listing ${this.newDir}: ${(error as Error).message}`);
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
    // Dot files are not Maildir messages; inotify also reports each of our own renames out of new/.
    if (this.stopping || name.startsWith(".") || this.known.has(name)) return true;
    if (this.known.size >= this.trackedNamesLimit) {
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
        .catch((error: unknown) => this.options.logger.error(`${name}: unexpected ${(error as Error).stack ?? String(error)}`))
        .finally(() => {
          this.running.delete(task);
          this.pump();
        });
      this.running.add(task);
    }
  }

  private async processFile(name: string): Promise<void> {
    const path = join(this.newDir, name);
    const outcome = await this.handOff(name, path);
    if (outcome !== "retrying") {
      this.known.delete(name);
      this.attempts.delete(name);
      // Refill at half the limit, so one listing of a large backlog takes many names, not one at a time.
      if (this.backlog && !this.stopping && this.known.size <= this.trackedNamesLimit / 2) void this.list();
    }
  }

  private async handOff(name: string, path: string): Promise<Outcome> {
    try {
      const handoff = await this.prepare(name, path);
      if (handoff === undefined) return "gone";
      await this.options.sink.deliver(handoff);
      // Synchronous: a µs-scale rename costs less than the thread-pool round trip of its async form.
      renameSync(path, join(this.curDir, name.includes(":2,") ? name : `${name}:2,`));
      this.movedOut.add(name);
      this.counts.delivered += 1;
      return "delivered";
    } catch (error) {
      if (error instanceof UnprocessableMessageError || (error instanceof SinkError && error.permanent)) {
        await this.moveToErrors(name, path, error.message);
        return "failed";
      }
      this.scheduleRetry(name, error instanceof Error ? error.message : String(error));
      return "retrying";
    }
  }

  /**
   * Reads and classifies one drop file; undefined when it is already gone (moved by an earlier life of this
   * daemon between its listing and now). Only the small Handoff outlives this call: the header section and its
   * fields are garbage before the hand-off waits on the sink, 64 of them at a time.
   */
  private async prepare(name: string, path: string): Promise<Handoff | undefined> {
    let scanned;
    try {
      scanned = await scanMessageFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const summary = summarizeHeaders(scanned.headerSection);
    const verdict = spamVerdict(headerFields(scanned.headerSection), this.options.spamEngine, this.options.spamProbable);
    if (verdict.unscanned) this.options.logger.warn(`${name}: ${verdict.reason}; filed in inbox`);
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

  private async moveToErrors(name: string, path: string, reason: string): Promise<void> {
    const target = join(this.options.errorDir, name);
    // The reason is durable before the message moves, so an error file never appears without its why.
    const handle = await open(`${target}.reason`, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o640);
    try {
      await handle.writeFile(`${reason}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(path, target);
      this.movedOut.add(name);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EXDEV") throw error;
      await copyFile(path, target);
      await unlink(path);
    }
    this.counts.failed += 1;
    this.options.logger.error(`${name}: moved to ${this.options.errorDir}: ${reason}`);
  }

  private scheduleRetry(name: string, reason: string): void {
    const attempt = (this.attempts.get(name) ?? 0) + 1;
    this.attempts.set(name, attempt);
    const initial = this.options.retryInitialMs ?? 1_000;
    const max = this.options.retryMaxMs ?? 300_000;
    const delay = Math.min(max, initial * 2 ** Math.min(attempt - 1, 30));
    this.counts.retried += 1;
    this.options.logger.warn(`${name}: temporary failure (attempt ${attempt}), retrying in ${delay} ms: ${reason}`);
    if (this.stopping) return;
    const timer = setTimeout(() => {
      this.retryTimers.delete(name);
      if (this.stopping) return;
      this.queue.push(name);
      this.pump();
    }, delay);
    this.retryTimers.set(name, timer);
  }
}
