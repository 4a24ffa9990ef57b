// The inbound processor's limits and bookkeeping, in this process (docs/testing.md, "Mutation score"): the
// intake limit for files arriving while the node is slow, the limit on refused files waiting for a broken
// errors/ (said once, and all of them filed once it recovers), the log line a refused file gets, names too long
// for errors/, a stop that leaves no retry behind, the cross-filesystem copy closing what it opened, and the
// processor's own renames costing no second open. open(2) is counted through node:fs for paths in new/.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  entryPath,
  errorsName,
  InboundProcessor,
  type InboundProcessorOptions,
} from "../../runtime/src/inbound/inbound-processor";
import { SinkError, type Handoff, type Sink } from "../../runtime/src/inbound/sink";
import { dropMessage, dropMessageText, waitUntil } from "../helpers/inbound-drop";
import { inboundTestOptions, makeInboundSpool, recordingLogger, startInboundProcessor } from "../helpers/inbound-daemon";

const opens = vi.hoisted(() => new Map<string, number>());
vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>();
  return {
    ...actual,
    openSync: (path: import("node:fs").PathLike, flags: import("node:fs").OpenMode, mode?: import("node:fs").Mode) => {
      const key = String(path);
      if (key.includes("/new/")) opens.set(key, (opens.get(key) ?? 0) + 1);
      return actual.openSync(path, flags, mode);
    },
  };
});

let dir: string;
let dropDir: string;
let errorDir: string;
const { logger, logs } = recordingLogger();
const cleanups: (() => Promise<void> | void)[] = [];

beforeEach(() => {
  ({ dir, dropDir, errorDir } = makeInboundSpool("bc-inbound-limits-"));
  logs.length = 0;
  opens.clear();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

const startProcessor = (sink: Sink, options: Partial<InboundProcessorOptions> = {}): Promise<InboundProcessor> =>
  startInboundProcessor({ ...inboundTestOptions({ dropDir, errorDir }, sink, logger), ...options }, cleanups);

/** A sink that holds every hand-off until released, and counts how many it holds at once. */
function gatedSink(): Sink & { handed: Handoff[]; inFlight: number; maxInFlight: number; open(): void } {
  const waiting: (() => void)[] = [];
  let opened = false;
  const sink = {
    handed: [] as Handoff[],
    inFlight: 0,
    maxInFlight: 0,
    async deliver(handoff: Handoff) {
      sink.inFlight += 1;
      sink.maxInFlight = Math.max(sink.maxInFlight, sink.inFlight);
      if (!opened) await new Promise<void>((resolve) => waiting.push(resolve));
      sink.inFlight -= 1;
      sink.handed.push(handoff);
    },
    open() {
      opened = true;
      for (const release of waiting.splice(0)) release();
    },
    async close() {},
  };
  return sink;
}

const newNames = () => readdirSync(join(dropDir, "new"));
const reasonOf = (name: string) => readFileSync(join(errorDir, `${name}.reason`), "utf8");
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Descriptors of this process open on anything below `prefix` (a deleted file shows as "<path> (deleted)"). */
function descriptorsUnder(prefix: string): string[] {
  const targets: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(prefix)) targets.push(target);
    } catch {
      // The descriptor readdir itself used, closed by now.
    }
  }
  return targets;
}

describe("names in errors/", () => {
  it("keeps a name whose NAME.reason fits 255 bytes; shortens one byte more to its start, ~ and 16 hex of its SHA-256", () => {
    const fits = "f".repeat(255 - ".reason".length);
    expect(errorsName(fits)).toBe(fits);
    const over = `${"é".repeat(100)}${"o".repeat(149)}`;
    expect(over).toHaveLength(249);
    const hash = createHash("sha256").update(Buffer.from(over, "latin1")).digest("hex").slice(0, 16);
    expect(errorsName(over)).toBe(`${over.slice(0, 255 - 7 - 16 - 1)}~${hash}`);
    expect(errorsName(over)).toHaveLength(248);
  });

  it("opens an ASCII name as a string path and any other as its bytes", () => {
    expect(entryPath("/spool/new", "1764000000.M1P1.mail")).toBe("/spool/new/1764000000.M1P1.mail");
    expect(entryPath("/spool/new", "caf\xe9")).toEqual(Buffer.from("/spool/new/caf\xe9", "latin1"));
  });

  it("logs a refused file's move with its reason, and the shortened name when it had to be shortened", async () => {
    const long = `1764000000.M1P1.${"h".repeat(255 - 16)}`;
    dropMessage(dropDir, "short-name", dropMessageText({ subject: "no recipient" }));
    dropMessage(dropDir, long, dropMessageText({ subject: "no recipient" }));
    await startProcessor(gatedSink());
    await waitUntil("new/ empty", () => newNames().length === 0);

    const reason = "no Delivered-To header: the envelope recipient is unknown";
    expect(
      logs
        .filter((l) => l.message.includes("moved to"))
        .map((l) => l.message)
        .sort(),
    ).toEqual(
      [
        `short-name: moved to ${errorDir}: ${reason}`,
        `${long}: moved to ${errorDir} as ${errorsName(long)} (the name was too long): ${reason}`,
      ].sort(),
    );
  });
});

describe("the intake limit", () => {
  it("holds no more than trackedNamesLimit files arriving while the node is slow, then delivers them all", async () => {
    const sink = gatedSink();
    await startProcessor(sink, { trackedNamesLimit: 2 });
    for (let i = 0; i < 6; i++)
      dropMessage(dropDir, `m${i}`, dropMessageText({ recipient: "alice@brightchain.org", subject: `m${i}` }));
    await waitUntil("two hand-offs waiting on the node", () => sink.inFlight === 2);
    await pause(300);
    expect(sink.maxInFlight).toBe(2);

    sink.open();
    await waitUntil("all six delivered", () => newNames().length === 0, 5_000);
    expect(sink.handed.map((h) => h.subject).sort()).toEqual(["m0", "m1", "m2", "m3", "m4", "m5"]);
    expect(readdirSync(join(dropDir, "cur"))).toHaveLength(6);
  });
});

describe("refused files waiting for a broken errors/", () => {
  it("parks at most trackedNamesLimit of them, says once that the rest stay in new/, and files all once errors/ recovers", async () => {
    const processor = await startProcessor(gatedSink(), { trackedNamesLimit: 2 });
    // errors/ replaced by a regular file: every open below it answers ENOTDIR, for root too.
    rmSync(errorDir, { recursive: true, force: true });
    writeFileSync(errorDir, "not a directory");
    for (let i = 0; i < 5; i++) dropMessage(dropDir, `bad-${i}`, dropMessageText({ subject: `bad ${i}` }));
    const overflow = () => logs.filter((l) => l.message.includes("refused files already wait for"));
    await waitUntil("the overflow said", () => overflow().length > 0);
    await pause(300);

    expect(overflow()).toHaveLength(1);
    expect(overflow()[0]!.message).toMatch(
      new RegExp(
        `^bad-\\d: no Delivered-To header: the envelope recipient is unknown; ${errorDir} could not take it: ENOTDIR: .*; ` +
          `2 refused files already wait for ${errorDir}: this one and any later ones stay in new/ until it takes files again$`,
      ),
    );
    expect(newNames()).toHaveLength(5);

    rmSync(errorDir, { force: true });
    mkdirSync(errorDir);
    // Well before the 30 s rescan: the first file errors/ takes lists new/ again.
    await waitUntil("all five filed once errors/ recovers", () => newNames().length === 0, 5_000);
    for (let i = 0; i < 5; i++) expect(reasonOf(`bad-${i}`)).toBe("no Delivered-To header: the envelope recipient is unknown\n");
    expect(processor.counts.failed).toBe(5);
    expect(overflow()).toHaveLength(1);
  });
});

describe("stopping", () => {
  it("leaves no retry timer behind when a hand-off fails while the processor stops", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    let fail: (() => void) | undefined;
    const sink: Sink = {
      deliver: () =>
        new Promise<void>((_resolve, reject) => {
          fail = () => reject(new SinkError("node down", false));
        }),
      async close() {},
    };
    dropMessage(dropDir, "m", dropMessageText({ recipient: "alice@brightchain.org" }));
    const processor = await startProcessor(sink);
    for (let spins = 0; fail === undefined && spins < 10_000; spins++) await new Promise((resolve) => setImmediate(resolve));
    expect(fail).toBeDefined();

    const stopped = processor.stop();
    fail!();
    await stopped;
    expect(logs.filter((l) => l.message.startsWith("m: temporary failure (attempt 1)"))).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
    expect(newNames()).toEqual(["m"]);
  });
});

describe("an errors/ on another filesystem", () => {
  it("says a directory cannot be copied there and leaves it in new/; closes what it opened to copy a file", async () => {
    const shm = mkdtempSync(join("/dev/shm", "bc-errors-"));
    cleanups.push(() => rmSync(shm, { recursive: true, force: true }));
    errorDir = join(shm, "errors");
    mkdirSync(join(dropDir, "new", "a-directory"));
    dropMessage(dropDir, "refused", dropMessageText({ subject: "no recipient" }));
    await startProcessor(gatedSink());
    await waitUntil("refused filed", () => existsSync(join(errorDir, "refused")) && !existsSync(join(dropDir, "new", "refused")));
    const about = (text: string) => logs.filter((l) => l.message.includes(text));
    await waitUntil("the directory's failure said", () => about("a directory cannot be moved").length > 0);

    expect(about("a directory cannot be moved")[0]!.message).toContain(
      `a directory, not a message file; ${errorDir} could not take it: a directory cannot be moved to ${errorDir} on another filesystem; move it by hand`,
    );
    expect(existsSync(join(dropDir, "new", "a-directory"))).toBe(true);
    expect(descriptorsUnder(join(errorDir, "refused"))).toEqual([]);
    expect(descriptorsUnder(join(dropDir, "new", "refused"))).toEqual([]);
  });
});

describe("the processor's own moves", () => {
  it("opens each delivered message once: its own rename out of new/ is not taken for a new file", async () => {
    const sink = gatedSink();
    sink.open();
    await startProcessor(sink);
    for (let i = 0; i < 5; i++) dropMessage(dropDir, `m${i}`, dropMessageText({ recipient: "alice@brightchain.org" }));
    await waitUntil("all delivered", () => sink.handed.length === 5 && newNames().length === 0);
    // The renames' inotify events arrive after the moves: give them time to be (wrongly) taken.
    await pause(300);
    expect([...opens.values()]).toEqual([1, 1, 1, 1, 1]);
  });
});
