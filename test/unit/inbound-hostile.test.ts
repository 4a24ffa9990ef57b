// The inbound processor against entries of new/ a hostile local process or a bad day leaves there: links,
// directories, sockets, oversized files, mail for other domains, names that are not text, and an errors/ that
// cannot take files. Real files in a temporary spool; FIFOs are in test/host/inbound-hostile.test.ts, against
// the built daemon (a regression there would block this test process, not fail it).
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { errorsName, InboundProcessor, type InboundProcessorOptions } from "../../runtime/src/inbound/inbound-processor";
import { SinkError, type Handoff, type Sink } from "../../runtime/src/inbound/sink";
import { ContentAddressedStore, readStoreIndex } from "../../runtime/src/store/content-addressed-store";
import { dropMessage, dropMessageText, waitUntil } from "../helpers/inbound-drop";
import { inboundTestOptions, makeInboundSpool, recordingLogger, startInboundProcessor } from "../helpers/inbound-daemon";

let dir: string;
let dropDir: string;
let errorDir: string;
let storeDir: string;
const { logger, logs } = recordingLogger();
const cleanups: (() => Promise<void> | void)[] = [];

beforeEach(() => {
  ({ dir, dropDir, errorDir, storeDir } = makeInboundSpool("bc-inbound-hostile-"));
  logs.length = 0;
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

const startProcessor = (sink: Sink, options: Partial<InboundProcessorOptions> = {}): Promise<InboundProcessor> =>
  startInboundProcessor({ ...inboundTestOptions({ dropDir, errorDir }, sink, logger), ...options }, cleanups);

/** A sink that records what it was handed and accepts it. */
function recordingSink(): Sink & { handed: Handoff[] } {
  const handed: Handoff[] = [];
  return {
    handed,
    async deliver(handoff) {
      handed.push(handoff);
    },
    async close() {},
  };
}

const newDir = () => join(dropDir, "new");
const newIsEmpty = () => readdirSync(newDir()).length === 0;
const reasonOf = (name: string) => readFileSync(join(errorDir, `${name}.reason`), "utf8");
/** Log lines that mention `text`. */
const linesAbout = (text: string) => logs.filter((l) => l.message.includes(text));

describe("InboundProcessor: entries that are not message files", () => {
  it("never follows a symbolic link: a link to a message outside the spool is filed in errors/, not stored", async () => {
    // A readable, well-formed message for a served user, outside the spool: exactly what must not be stored.
    const outside = join(dir, "outside-secret");
    writeFileSync(outside, dropMessageText({ recipient: "alice@brightchain.org", subject: "secret" }));
    symlinkSync(outside, join(newDir(), "link-before"));
    const store = await ContentAddressedStore.open(storeDir);
    await startProcessor(store);
    symlinkSync(outside, join(newDir(), "link-after"));
    symlinkSync(join(dir, "nowhere"), join(newDir(), "dangling"));
    await waitUntil("new/ empty", newIsEmpty);

    expect(await readStoreIndex(storeDir)).toEqual([]);
    for (const name of ["link-before", "link-after", "dangling"]) {
      expect(lstatSync(join(errorDir, name)).isSymbolicLink(), name).toBe(true);
      expect(reasonOf(name)).toContain("a symbolic link to");
      expect(reasonOf(name)).toContain("never followed");
      expect(linesAbout(`${name}: moved to ${errorDir}`), name).toHaveLength(1);
    }
    expect(reasonOf("link-before")).toContain(JSON.stringify(outside));
    expect(readFileSync(outside, "utf8")).toContain("secret");
  });

  it("files a directory and a socket in errors/ with what they are, once each, and keeps delivering mail", async () => {
    mkdirSync(join(newDir(), "a-directory"));
    writeFileSync(join(newDir(), "a-directory", "inside"), "x");
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(join(newDir(), "a-socket"), resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const sink = recordingSink();
    dropMessage(dropDir, "good", dropMessageText({ recipient: "alice@brightchain.org" }));
    await startProcessor(sink);
    await waitUntil("new/ empty", newIsEmpty);

    expect(sink.handed.map((h) => h.recipient)).toEqual(["alice@brightchain.org"]);
    expect(lstatSync(join(errorDir, "a-directory")).isDirectory()).toBe(true);
    expect(readFileSync(join(errorDir, "a-directory", "inside"), "utf8")).toBe("x");
    expect(reasonOf("a-directory")).toBe("a directory, not a message file\n");
    expect(lstatSync(join(errorDir, "a-socket")).isSocket()).toBe(true);
    expect(reasonOf("a-socket")).toMatch(/not a regular file \(open: ENXIO\)|a socket, not a message file/);
    for (const name of ["a-directory", "a-socket"]) expect(linesAbout(name), name).toHaveLength(1);
  });
});

describe("InboundProcessor: size and recipient limits", () => {
  it("files a drop file over GATEWAY_MAX_MESSAGE_SIZE plus the delivery headroom in errors/ without reading it", async () => {
    const sink = recordingSink();
    // 1 GiB, sparse: reading and hashing it would take seconds; refusing it from its size takes none.
    const huge = dropMessage(dropDir, "huge", dropMessageText({ recipient: "alice@brightchain.org", subject: "huge" }));
    truncateSync(huge, 1024 ** 3);
    // Over 1,024 + 1 MiB by a little, so it takes the streaming path if the size check is not made first.
    dropMessage(
      dropDir,
      "just-over",
      dropMessageText({ recipient: "alice@brightchain.org", subject: "over", body: "y".repeat(1024 * 1024 + 2048) }),
    );
    // Within the limit thanks to the headroom for the headers delivery prepends.
    dropMessage(
      dropDir,
      "within",
      dropMessageText({ recipient: "alice@brightchain.org", subject: "within", body: "z".repeat(4096) }),
    );
    // Bytes this process reads through read(2) meanwhile: the processor runs in it.
    const readSoFar = () => Number(/rchar: (\d+)/.exec(readFileSync("/proc/self/io", "utf8"))![1]);
    const before = readSoFar();
    await startProcessor(sink, { maxMessageSize: 1024 });
    await waitUntil("new/ empty", newIsEmpty);

    expect(readSoFar() - before, "refused from its size, not read").toBeLessThan(64 * 1024 * 1024);
    expect(sink.handed.map((h) => h.subject)).toEqual(["within"]);
    expect(reasonOf("huge")).toBe(
      `${1024 ** 3} bytes, over the ${1024 + 1024 * 1024}-byte limit for a drop file (GATEWAY_MAX_MESSAGE_SIZE plus ` +
        `${1024 * 1024} bytes for the headers delivery adds); not read\n`,
    );
    expect(reasonOf("just-over")).toContain(`over the ${1024 + 1024 * 1024}-byte limit`);
    expect(lstatSync(join(errorDir, "huge")).size).toBe(1024 ** 3);
  });

  it("files mail for a recipient outside the served domains in errors/, a subdomain included", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    dropMessage(dropDir, "other", dropMessageText({ recipient: "alice@example.net", subject: "other" }));
    dropMessage(dropDir, "sub", dropMessageText({ recipient: "alice@sub.brightchain.org", subject: "sub" }));
    dropMessage(dropDir, "suffix", dropMessageText({ recipient: "alice@evilbrightchain.org", subject: "suffix" }));
    dropMessage(dropDir, "served", dropMessageText({ recipient: "Alice@BrightChain.ORG", subject: "served" }));
    dropMessage(dropDir, "second", dropMessageText({ recipient: "bob@brightchain.net", subject: "second domain" }));
    await startProcessor(store, { servedDomains: ["brightchain.org", "BrightChain.net"] });
    await waitUntil("new/ empty", newIsEmpty);

    expect((await readStoreIndex(storeDir)).map((e) => e.recipient).sort()).toEqual([
      "alice@brightchain.org",
      "bob@brightchain.net",
    ]);
    expect(reasonOf("other")).toBe(
      'Delivered-To "alice@example.net" is outside the served domains (EMAIL_DOMAIN brightchain.org,brightchain.net)\n',
    );
    expect(reasonOf("sub")).toContain('"alice@sub.brightchain.org" is outside the served domains');
    expect(reasonOf("suffix")).toContain('"alice@evilbrightchain.org" is outside the served domains');
  });
});

describe("InboundProcessor: names", () => {
  it("logs a name holding a newline or an escape sequence as one escaped token: no forged journal line", async () => {
    const forged = "x\nbrightchain-inbound: error: forged line";
    const escape = "y\x1b[2J\r";
    dropMessage(dropDir, forged, dropMessageText({ subject: "no recipient" }));
    dropMessage(dropDir, escape, dropMessageText({ recipient: "alice@example.net" }));
    await startProcessor(recordingSink());
    await waitUntil("new/ empty", newIsEmpty);

    expect(existsSync(join(errorDir, forged))).toBe(true);
    expect(existsSync(join(errorDir, escape))).toBe(true);
    // eslint-disable-next-line no-control-regex
    for (const { message } of logs) expect(message).not.toMatch(/[\x00-\x1f\x7f]/);
    expect(linesAbout('"x\\x0abrightchain-inbound: error: forged line": moved to')).toHaveLength(1);
    expect(linesAbout('"y\\x1b[2J\\x0d": moved to')).toHaveLength(1);
  });

  it("takes a name that is not UTF-8 as the bytes it is: delivered to cur/ or filed in errors/, never left behind", async () => {
    const good = Buffer.from("good-\xff\xfe", "latin1");
    const bad = Buffer.from("bad-\xc3(", "latin1");
    // Written through Buffer paths: the names' bytes exactly.
    const write = (name: Buffer, text: string) => writeFileSync(Buffer.concat([Buffer.from(`${newDir()}/`), name]), text);
    write(good, dropMessageText({ recipient: "alice@brightchain.org", subject: "not utf-8" }));
    write(bad, dropMessageText({ subject: "no recipient" }));
    const store = await ContentAddressedStore.open(storeDir);
    await startProcessor(store);
    await waitUntil("new/ empty", newIsEmpty);

    const names = (path: string) => readdirSync(path, { encoding: "buffer" }).map((n) => n.toString("latin1"));
    expect(names(join(dropDir, "cur"))).toEqual([`${good.toString("latin1")}:2,`]);
    expect(names(errorDir).sort()).toEqual([bad.toString("latin1"), `${bad.toString("latin1")}.reason`]);
    expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["not utf-8"]);
    expect(linesAbout('"bad-\\xc3(": moved to')).toHaveLength(1);
  });

  it("files a refused message whose NAME.reason would be too long for the filesystem under a shortened name", async () => {
    const long = `1764000000.M1P1.${"h".repeat(255 - 16)}`;
    expect(long).toHaveLength(255);
    dropMessage(dropDir, long, dropMessageText({ subject: "no recipient" }));
    await startProcessor(recordingSink());
    await waitUntil("new/ empty", newIsEmpty);

    const short = errorsName(long);
    expect(short.length + ".reason".length).toBe(255);
    expect(readdirSync(errorDir).sort()).toEqual([short, `${short}.reason`]);
    expect(reasonOf(short)).toBe(`no Delivered-To header: the envelope recipient is unknown\noriginal name: ${long}\n`);
    expect(errorsName("short")).toBe("short");
  });

  it("skips dot files in new/, whether there at start or arriving later: they are not Maildir messages", async () => {
    const sink = recordingSink();
    dropMessage(dropDir, ".before", dropMessageText({ recipient: "alice@brightchain.org", subject: "dot before" }));
    dropMessage(dropDir, "plain-before", dropMessageText({ recipient: "alice@brightchain.org", subject: "plain before" }));
    await startProcessor(sink);
    dropMessage(dropDir, ".after", dropMessageText({ recipient: "alice@brightchain.org", subject: "dot after" }));
    dropMessage(dropDir, "plain-after", dropMessageText({ recipient: "alice@brightchain.org", subject: "plain after" }));
    await waitUntil("both plain files delivered", () => sink.handed.filter((h) => h.subject?.startsWith("plain")).length === 2);
    // The dot file's event came first; give any wrongly queued hand-off of it time to show.
    await new Promise((resolve) => setTimeout(resolve, 200));

    expect(sink.handed.map((h) => h.subject).sort()).toEqual(["plain after", "plain before"]);
    expect(readdirSync(newDir()).sort()).toEqual([".after", ".before"]);
    expect(existsSync(errorDir) ? readdirSync(errorDir) : []).toEqual([]);
    expect(linesAbout(".before")).toEqual([]);
    expect(linesAbout(".after")).toEqual([]);
  });
});

describe("InboundProcessor: an errors/ that cannot take files", () => {
  /** errors/ replaced by a regular file: every open below it answers ENOTDIR, for root too. */
  function breakErrors(): void {
    rmSync(errorDir, { recursive: true, force: true });
    writeFileSync(errorDir, "not a directory");
  }
  function repairErrors(): void {
    rmSync(errorDir, { force: true });
    mkdirSync(errorDir);
  }

  it("retries refused files with backoff, keeps taking good mail meanwhile, and files them once errors/ recovers", async () => {
    const sink = recordingSink();
    const processor = await startProcessor(sink, { trackedNamesLimit: 10 });
    breakErrors();
    // More refused files than the intake limit and the parking limit together: on a processor that held each
    // failed move for good, ten of them stopped all intake.
    for (let i = 0; i < 25; i++)
      dropMessage(dropDir, `bad-${String(i).padStart(2, "0")}`, dropMessageText({ subject: `bad ${i}` }));
    await waitUntil("bad files tried", () => linesAbout("could not take it").length >= 10);
    for (let i = 0; i < 5; i++) {
      dropMessage(dropDir, `good-${i}`, dropMessageText({ recipient: "alice@brightchain.org", subject: `good ${i}` }));
    }
    await waitUntil("good mail delivered while errors/ is broken", () => sink.handed.length === 5);
    expect(readdirSync(newDir()).filter((n) => n.startsWith("bad-"))).toHaveLength(25);
    expect(logs.some((l) => l.message.includes("unexpected"))).toBe(false);
    expect(linesAbout("refused, not yet in errors (attempt 2)").length).toBeGreaterThan(0);

    repairErrors();
    await waitUntil("new/ empty once errors/ recovers", newIsEmpty, 20_000);
    for (let i = 0; i < 25; i++) {
      const name = `bad-${String(i).padStart(2, "0")}`;
      expect(reasonOf(name)).toBe("no Delivered-To header: the envelope recipient is unknown\n");
      expect(linesAbout(`${name}: moved to ${errorDir}`), name).toHaveLength(1);
    }
    expect(processor.counts).toMatchObject({ delivered: 5, failed: 25 });
  });

  it("copies a refused file to an errors/ on another filesystem, durably, before deleting it from new/", async () => {
    const shm = mkdtempSync(join("/dev/shm", "bc-errors-"));
    cleanups.push(() => rmSync(shm, { recursive: true, force: true }));
    errorDir = join(shm, "errors");
    const text = dropMessageText({ subject: "no recipient", body: "kept byte for byte" });
    dropMessage(dropDir, "refused", text);
    chmodSync(join(newDir(), "refused"), 0o600);
    symlinkSync(join(dir, "anywhere"), join(newDir(), "link"));
    await startProcessor(recordingSink());
    await waitUntil("refused gone from new/", () => !existsSync(join(newDir(), "refused")));

    expect(readFileSync(join(errorDir, "refused"), "utf8")).toBe(text);
    expect(
      createHash("sha3-512")
        .update(readFileSync(join(errorDir, "refused")))
        .digest("hex"),
    ).toBe(createHash("sha3-512").update(text).digest("hex"));
    expect(lstatSync(join(errorDir, "refused")).mode & 0o777).toBe(0o600);
    expect(reasonOf("refused")).toContain("no Delivered-To header");
    expect(linesAbout(`refused: moved to ${errorDir}`)).toHaveLength(1);
    // A link has no bytes to copy: it stays in new/, said at each retry, and is never deleted.
    await waitUntil("the link retried", () => linesAbout("a symbolic link cannot be moved").length >= 2);
    expect(lstatSync(join(newDir(), "link")).isSymbolicLink()).toBe(true);
  });
});

describe("InboundProcessor: retry timing", () => {
  it("waits 1 s after a first temporary failure, doubling up to the 5-minute cap (docs/runtime.md)", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    const sink: Sink = {
      async deliver() {
        throw new SinkError("node down", false);
      },
      async close() {},
    };
    dropMessage(dropDir, "m", dropMessageText({ recipient: "alice@brightchain.org" }));
    // The processor's own defaults: no retryInitialMs / retryMaxMs.
    await startProcessor(sink, { retryInitialMs: undefined, retryMaxMs: undefined });
    const delays: number[] = [];
    const nextDelay = async (): Promise<number> => {
      for (let spins = 0; spins < 10_000; spins++) {
        const line = logs.filter((l) => l.message.startsWith("m: temporary failure"))[delays.length];
        if (line !== undefined) return Number(/retrying in (\d+) ms/.exec(line.message)![1]);
        await new Promise((resolve) => setImmediate(resolve));
      }
      throw new Error(`no retry line after ${delays.length} delays`);
    };
    for (let attempt = 1; attempt <= 12; attempt++) {
      const delay = await nextDelay();
      delays.push(delay);
      await vi.advanceTimersByTimeAsync(delay);
    }
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000, 300_000]);
  });
});
