// What brightchain-inbound tells Prometheus: how each hand-off ended, retries, sink and errors/ failures (counted
// as they happen, O(1) each), and the state of the spool (files waiting in new/, the age of the oldest, files in
// errors/), read from the directories when Prometheus scrapes, never per message. Each scan is bounded: it reads at
// most SCAN_LIMIT names, one scan per directory at a time, reused by scrapes within SCAN_REUSE_MS.
import { opendir, lstat } from "node:fs/promises";
import { join } from "node:path";
import { Counter, Gauge, type Registry } from "prom-client";
import type { HandOffOutcome, InboundObserver } from "./inbound-processor";

/** Names read per scan: a million-file backlog costs what 10,000 do, and the gauge says it stopped there. */
export const SCAN_LIMIT = 10_000;
/** Names in new/ that carry no Maildir time (`<seconds>.…`) are lstat'ed for their age, at most this many per scan. */
const STAT_LIMIT = 256;
/** Two scrapes (or one scrape's two gauges) this close together share one scan. */
const SCAN_REUSE_MS = 1_000;
const MAILDIR_TIME = /^(\d{9,11})\./;
const REASON_SUFFIX = ".reason";

export interface DirectorySnapshot {
  /** Entries counted, at most SCAN_LIMIT. */
  files: number;
  /** The scan stopped at SCAN_LIMIT: there are more, and `oldestSeconds` is the oldest of those read. */
  truncated: boolean;
  /** Age of the oldest entry read, seconds; 0 when there is none. */
  oldestSeconds: number;
}

/**
 * Counts the entries of `dir` Prometheus should see and the age of the oldest: dot files are not Maildir messages,
 * and in errors/ a `.reason` file belongs to the message beside it. A missing directory counts as empty.
 */
export async function scanDirectory(
  dir: string,
  options: { skipReasons: boolean; now?: number; limit?: number },
): Promise<DirectorySnapshot> {
  const now = options.now ?? Date.now();
  const limit = options.limit ?? SCAN_LIMIT;
  let files = 0;
  let oldestMs = now;
  let stats = 0;
  let truncated = false;
  let handle;
  try {
    handle = await opendir(dir, { bufferSize: 256, encoding: "latin1" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { files: 0, truncated: false, oldestSeconds: 0 };
    throw error;
  }
  // Leaving the loop early closes the directory.
  for await (const entry of handle) {
    const name = entry.name;
    if (name.startsWith(".") || (options.skipReasons && name.endsWith(REASON_SUFFIX))) continue;
    if (files >= limit) {
      truncated = true;
      break;
    }
    files += 1;
    const stamp = MAILDIR_TIME.exec(name);
    if (stamp !== null) {
      oldestMs = Math.min(oldestMs, Number(stamp[1]) * 1000);
    } else if (stats < STAT_LIMIT) {
      stats += 1;
      try {
        // The name's own bytes: one that is not UTF-8 still names its file (names are read as latin1).
        const path = Buffer.concat([Buffer.from(`${dir}/`), Buffer.from(name, "latin1")]);
        oldestMs = Math.min(oldestMs, (await lstat(path)).mtimeMs);
      } catch {
        // Gone between the listing and the lstat: handed off meanwhile.
      }
    }
  }
  return { files, truncated, oldestSeconds: files === 0 ? 0 : Math.max(0, (now - oldestMs) / 1000) };
}

/** One scan at a time, and its result reused for SCAN_REUSE_MS. */
class CachedScan {
  private running: Promise<DirectorySnapshot> | undefined;
  private finishedAt = 0;
  private last: DirectorySnapshot | undefined;

  constructor(private readonly scan: () => Promise<DirectorySnapshot>) {}

  get(): Promise<DirectorySnapshot> {
    if (this.last !== undefined && Date.now() - this.finishedAt < SCAN_REUSE_MS) return Promise.resolve(this.last);
    this.running ??= this.scan()
      .then((snapshot) => {
        this.last = snapshot;
        this.finishedAt = Date.now();
        return snapshot;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }
}

export interface InboundMetricsOptions {
  mailDropDir: string;
  errorDir: string;
  /** Drop files being handed off right now (InboundProcessor.inFlight), read at scrape time. */
  inFlight: () => number;
}

const OUTCOMES: readonly HandOffOutcome[] = ["stored", "duplicate", "refused", "retried"];

export function inboundMetrics(registry: Registry, options: InboundMetricsOptions): InboundObserver {
  const handoffs = new Counter({
    name: "brightchain_inbound_handoffs_total",
    help: "Drop files handled, by outcome: stored, duplicate (the sink already held it), refused (moved to errors/), retried (left in new/ for another attempt)",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  const byOutcome = new Map(OUTCOMES.map((outcome) => [outcome, handoffs.labels(outcome)]));
  for (const child of byOutcome.values()) child.inc(0);
  const retries = new Counter({
    name: "brightchain_inbound_retries_total",
    help: "Attempts made again after a temporary failure (the retry's wait was over)",
    registers: [registry],
  });
  const sinkFailures = new Counter({
    name: "brightchain_inbound_sink_failures_total",
    help: "Hand-offs the sink (embedded store or node API) failed, by kind: temporary (retried) or permanent (refused)",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  const temporary = sinkFailures.labels("temporary");
  const permanent = sinkFailures.labels("permanent");
  temporary.inc(0);
  permanent.inc(0);
  const errorsDirFailures = new Counter({
    name: "brightchain_inbound_errors_dir_failures_total",
    help: "Refused files errors/ could not take (reason file or move failed); each stays in new/ and is retried",
    registers: [registry],
  });

  const newDir = join(options.mailDropDir, "new");
  const waiting = new CachedScan(() => scanDirectory(newDir, { skipReasons: false }));
  const refused = new CachedScan(() => scanDirectory(options.errorDir, { skipReasons: true }));
  new Gauge({
    name: "brightchain_inbound_new_files",
    help: `Files waiting in the drop's new/ (counted up to ${SCAN_LIMIT} when scraped)`,
    registers: [registry],
    async collect() {
      this.set((await waiting.get()).files);
    },
  });
  new Gauge({
    name: "brightchain_inbound_new_oldest_age_seconds",
    help: "Age of the oldest file waiting in new/, from its Maildir name's delivery time; 0 when new/ is empty",
    registers: [registry],
    async collect() {
      this.set((await waiting.get()).oldestSeconds);
    },
  });
  new Gauge({
    name: "brightchain_inbound_errors_files",
    help: `Messages in errors/, each refused for good with a .reason file beside it (counted up to ${SCAN_LIMIT} when scraped)`,
    registers: [registry],
    async collect() {
      this.set((await refused.get()).files);
    },
  });
  new Gauge({
    name: "brightchain_inbound_scan_truncated",
    help: `1 when a directory held more than ${SCAN_LIMIT} entries and its count stopped there`,
    labelNames: ["directory"] as const,
    registers: [registry],
    async collect() {
      const [newSnapshot, errorsSnapshot] = await Promise.all([waiting.get(), refused.get()]);
      this.labels("new").set(newSnapshot.truncated ? 1 : 0);
      this.labels("errors").set(errorsSnapshot.truncated ? 1 : 0);
    },
  });
  new Gauge({
    name: "brightchain_inbound_in_flight",
    help: "Drop files being handed off right now (at most GATEWAY_INBOUND_CONCURRENCY)",
    registers: [registry],
    collect() {
      this.set(options.inFlight());
    },
  });

  return {
    handedOff: (outcome) => byOutcome.get(outcome)!.inc(),
    retryStarted: () => retries.inc(),
    sinkFailed: (isPermanent) => (isPermanent ? permanent : temporary).inc(),
    errorsDirFailed: () => errorsDirFailures.inc(),
  };
}
