// The store's index and layout as a restart finds them (runtime/src/store/content-addressed-store.ts): the
// fan-out directories, index lines that are blank, tampered with or torn beyond one read chunk, an index cut
// short behind the store's back, old lines without receivedAt, the 10-minute slack of the backwards search, and
// close() waiting for hand-offs in flight. test/unit/store.test.ts covers the ordinary paths.
import { createHash } from "node:crypto";
import {
  appendFileSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Handoff } from "../../runtime/src/inbound/sink";
import { ContentAddressedStore, objectPath, readStoreIndex } from "../../runtime/src/store/content-addressed-store";

let dir: string;
let storeDir: string;
let indexFile: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bc-store-index-"));
  storeDir = join(dir, "store");
  indexFile = join(storeDir, "index.jsonl");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function dropFile(name: string): Handoff {
  const rawPath = join(dir, name);
  const bytes = Buffer.from(`Delivered-To: alice@brightchain.org\r\nSubject: ${name}\r\n\r\n${name}\r\n`);
  writeFileSync(rawPath, bytes, { mode: 0o600 });
  return {
    sha3: createHash("sha3-512").update(bytes).digest("hex"),
    size: bytes.length,
    recipient: "alice@brightchain.org",
    folder: "inbox",
    subject: name,
    rawPath,
  };
}

const line = (entry: object) => `${JSON.stringify(entry)}\n`;
const other = (receivedAt?: Date) => ({
  sha3: "0".repeat(128),
  recipient: "x@brightchain.org",
  folder: "inbox",
  size: 1,
  ...(receivedAt === undefined ? {} : { receivedAt }),
});
/** `bytes` of index lines for other hand-offs. */
const filler = (bytes: number, receivedAt?: Date) =>
  line(other(receivedAt)).repeat(Math.ceil(bytes / line(other(receivedAt)).length));
const linesFor = async (handoff: Handoff) => (await readStoreIndex(storeDir)).filter((e) => e.sha3 === handoff.sha3);
/** Descriptors this process holds on the index file. */
const openIndexDescriptors = () =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === indexFile;
    } catch {
      return false;
    }
  });

describe("layout", () => {
  it("creates all 256 fan-out directories, named by two lower-case hex digits", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    await store.close();
    const expected = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
    expect(readdirSync(join(storeDir, "objects")).sort()).toEqual(expected);
  });

  it("refuses an object id that is not exactly 128 lower-case hex digits", () => {
    const hex = "ab".repeat(64);
    expect(objectPath("/s", hex)).toBe(join("/s", "objects", "ab", hex.slice(2)));
    for (const bad of [`${hex}0`, `0${hex}`, hex.slice(1), hex.toUpperCase(), `${hex.slice(1)}g`]) {
      expect(() => objectPath("/s", bad), bad).toThrow(`sha3 ${JSON.stringify(bad)} is not 128 lower-case hex digits`);
    }
  });
});

describe("readStoreIndex", () => {
  it("answers no entries for a store that has no index yet", async () => {
    expect(await readStoreIndex(join(dir, "never-opened"))).toEqual([]);
  });

  it("fails for an index it cannot read, naming why", async () => {
    mkdirSync(indexFile, { recursive: true });
    await expect(readStoreIndex(storeDir)).rejects.toMatchObject({ code: "EISDIR" });
  });

  it("skips blank lines and stops at a complete line that is not JSON", async () => {
    mkdirSync(storeDir);
    const first = { ...other(new Date(0)), subject: "first" };
    const second = { ...other(new Date(0)), subject: "second" };
    const after = { ...other(new Date(0)), subject: "after the tampered line" };
    writeFileSync(indexFile, `${line(first)}\n   \n${line(second)}{"sha3": tampered\n${line(after)}`);
    expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["first", "second"]);
  });
});

describe("reopening", () => {
  it("cuts off a torn last line longer than one 64 KiB read, keeping every complete line", async () => {
    const first = await ContentAddressedStore.open(storeDir);
    const before = dropFile("before");
    await first.deliver(before);
    await first.close();
    appendFileSync(indexFile, `{"sha3":"${"1".repeat(128)}","subject":"${"x".repeat(200 * 1024)}`);

    const reopened = await ContentAddressedStore.open(storeDir);
    const after = dropFile("after");
    await reopened.deliver(after);
    await reopened.close();
    expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["before", "after"]);
    expect(readFileSync(indexFile, "utf8").split("\n")).toHaveLength(3);
  });

  it("fails a redelivery, naming the bytes, when the index was cut short behind the store's back", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    const message = dropFile("cut");
    await store.deliver(message);
    const length = readFileSync(indexFile).length;
    truncateSync(indexFile, 0);
    await expect(store.deliver(message)).rejects.toMatchObject({
      name: "SinkError",
      permanent: false,
      message: `store ${storeDir}: index ended at byte 0, expected ${length}`,
    });
    await store.close();
  });

  it("finds a redelivered hand-off behind 3 MiB of old lines that have no receivedAt", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    await store.close();
    const message = dropFile("old format");
    appendFileSync(indexFile, line({ sha3: message.sha3, recipient: message.recipient, folder: "inbox", size: message.size }));
    appendFileSync(indexFile, filler(3 * 1024 * 1024));
    linkSync(message.rawPath, objectPath(storeDir, message.sha3));

    const reopened = await ContentAddressedStore.open(storeDir);
    await reopened.deliver(message);
    await reopened.close();
    expect(await linesFor(message)).toHaveLength(1);
  });

  it("searches back past lines up to 10 minutes older than the object (a stepped clock, a commit group)", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    await store.close();
    const message = dropFile("slack");
    const objectTime = new Date();
    utimesSync(message.rawPath, objectTime, objectTime);
    const fiveMinutesEarlier = new Date(objectTime.getTime() - 5 * 60_000);
    const earlier = {
      sha3: message.sha3,
      recipient: message.recipient,
      folder: "inbox",
      size: 1,
      receivedAt: fiveMinutesEarlier,
    };
    appendFileSync(indexFile, line(earlier));
    appendFileSync(indexFile, filler(3 * 1024 * 1024, fiveMinutesEarlier));
    linkSync(message.rawPath, objectPath(storeDir, message.sha3));

    const reopened = await ContentAddressedStore.open(storeDir);
    await reopened.deliver(message);
    await reopened.close();
    expect((await linesFor(message)).map((e) => e.size)).toEqual([1]);
  });
});

describe("close()", () => {
  it("waits for hand-offs in flight, then releases the index", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    const messages = ["one", "two", "three"].map(dropFile);
    const deliveries = messages.map((m) => store.deliver(m));
    await store.close();
    const results = await Promise.allSettled(deliveries);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "fulfilled"]);
    expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["one", "two", "three"]);
    expect(openIndexDescriptors()).toEqual([]);
  });
});
