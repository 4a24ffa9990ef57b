import { createHash } from "node:crypto";
import { appendFileSync, linkSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Handoff } from "../../runtime/src/inbound/sink";
import { ContentAddressedStore, objectPath, readStoreIndex } from "../../runtime/src/store/content-addressed-store";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bc-store-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function rawMessage(name: string, body: string): Handoff {
  const rawPath = join(dir, name);
  const bytes = Buffer.from(`Delivered-To: alice@brightchain.org\r\nSubject: ${name}\r\n\r\n${body}\r\n`);
  // 0600, as Postfix's virtual(8) writes a Maildir file.
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

/** Index lines of other hand-offs, `bytes` of them, received at `at`. */
function fillerLines(bytes: number, at: Date): string {
  const line = `${JSON.stringify({ sha3: "0".repeat(128), recipient: "x@brightchain.org", folder: "inbox", size: 1, receivedAt: at })}\n`;
  return line.repeat(Math.ceil(bytes / line.length));
}

describe("ContentAddressedStore", () => {
  it("keeps the raw bytes once under their SHA3-512 and indexes each recipient once", async () => {
    const store = await ContentAddressedStore.open(join(dir, "store"));
    const message = rawMessage("m1", "hello");
    await store.deliver(message);
    await store.deliver(message);
    await store.deliver({ ...message, recipient: "bob@brightchain.org" });
    await store.close();

    expect(readFileSync(objectPath(join(dir, "store"), message.sha3))).toEqual(readFileSync(message.rawPath));
    const objects = readdirSync(join(dir, "store", "objects"), { recursive: true, withFileTypes: true }).filter((e) =>
      e.isFile(),
    );
    expect(objects.map((e) => e.name)).toEqual([message.sha3.slice(2)]);
    const index = await readStoreIndex(join(dir, "store"));
    expect(index.map((e) => e.recipient)).toEqual(["alice@brightchain.org", "bob@brightchain.org"]);
    expect(index[0]).toMatchObject({ sha3: message.sha3, folder: "inbox", subject: "m1", size: message.size });
  });

  it("stays idempotent across a reopen (the restart after a crash)", async () => {
    const message = rawMessage("m2", "again");
    const first = await ContentAddressedStore.open(join(dir, "store"));
    await first.deliver(message);
    await first.close();
    const second = await ContentAddressedStore.open(join(dir, "store"));
    await second.deliver(message);
    await second.close();
    expect(await readStoreIndex(join(dir, "store"))).toHaveLength(1);
  });

  it("tolerates a torn last index line on read and cuts it off on open", async () => {
    const storeDir = join(dir, "store");
    const store = await ContentAddressedStore.open(storeDir);
    const message = rawMessage("m3", "torn");
    await store.deliver(message);
    await store.close();
    appendFileSync(join(storeDir, "index.jsonl"), '{"sha3":"abc","recipi');

    expect(await readStoreIndex(storeDir)).toHaveLength(1);
    const reopened = await ContentAddressedStore.open(storeDir);
    const other = rawMessage("m4", "after the tear");
    await reopened.deliver(other);
    await reopened.close();
    const lines = readFileSync(join(storeDir, "index.jsonl"), "utf8").trimEnd().split("\n");
    expect(lines.map((l) => JSON.parse(l).subject)).toEqual(["m3", "m4"]);
  });

  it("shares one index line between concurrent hand-offs of the same message", async () => {
    const store = await ContentAddressedStore.open(join(dir, "store"));
    const message = rawMessage("m5", "twice at once");
    await Promise.all([store.deliver(message), store.deliver(message), store.deliver(message)]);
    await store.close();
    expect(await readStoreIndex(join(dir, "store"))).toHaveLength(1);
  });

  it("keeps the object as a hard link to the drop file: one inode, the drop file's mode", async () => {
    const storeDir = join(dir, "store");
    const store = await ContentAddressedStore.open(storeDir);
    const message = rawMessage("m8", "linked");
    await store.deliver(message);
    await store.close();

    const object = statSync(objectPath(storeDir, message.sha3));
    expect(object.ino).toBe(statSync(message.rawPath).ino);
    expect(object.mode & 0o777).toBe(0o600);
    rmSync(message.rawPath);
    expect(
      createHash("sha3-512")
        .update(readFileSync(objectPath(storeDir, message.sha3)))
        .digest("hex"),
    ).toBe(message.sha3);
  });

  it("copies, fsyncs and renames when the drop is on another filesystem (link(2) answers EXDEV)", async () => {
    const shm = mkdtempSync(join("/dev/shm", "bc-store-"));
    try {
      const storeDir = join(shm, "store");
      const warnings: string[] = [];
      const store = await ContentAddressedStore.open(storeDir, (message) => warnings.push(message));
      const message = rawMessage("m9", "across filesystems");
      await store.deliver(message);
      await store.deliver({ ...message, recipient: "bob@brightchain.org" });
      await store.close();

      expect(statSync(objectPath(storeDir, message.sha3)).ino).not.toBe(statSync(message.rawPath).ino);
      expect(readFileSync(objectPath(storeDir, message.sha3))).toEqual(readFileSync(message.rawPath));
      expect(statSync(objectPath(storeDir, message.sha3)).mode & 0o777).toBe(0o600);
      expect(readdirSync(join(storeDir, "tmp"))).toEqual([]);
      expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["m9", "m9"]);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain("cannot hard-link");
      expect(warnings[0]).toContain("EXDEV");
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });

  it("finds an earlier hand-off far back in a large index, and a new recipient of a stored object is indexed", async () => {
    const storeDir = join(dir, "store");
    const first = await ContentAddressedStore.open(storeDir);
    const message = rawMessage("m10", "old");
    await first.deliver(message);
    await first.close();
    // 3 MiB of later hand-offs: the first line is three scan chunks back from the end.
    appendFileSync(join(storeDir, "index.jsonl"), fillerLines(3 * 1024 * 1024, new Date()));

    const second = await ContentAddressedStore.open(storeDir);
    await second.deliver(message);
    await second.deliver({ ...message, recipient: "carol@brightchain.org" });
    await second.close();
    const index = await readStoreIndex(storeDir);
    expect(index.filter((e) => e.sha3 === message.sha3).map((e) => e.recipient)).toEqual([
      "alice@brightchain.org",
      "carol@brightchain.org",
    ]);
  });

  it("searches back only to lines older than the object: a line from before its file existed is not its hand-off", async () => {
    const storeDir = join(dir, "store");
    const message = rawMessage("m12", "linked, then kill -9 before its index line");
    const store = await ContentAddressedStore.open(storeDir);
    await store.close();
    // A line for this very key, written two days before the drop file existed, then 3 MiB of lines a day old:
    // the search must stop in the last chunks and not reach it (so it appends the line it owes).
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    const stale = { sha3: message.sha3, recipient: message.recipient, folder: "inbox", size: 1, receivedAt: twoDaysAgo };
    appendFileSync(join(storeDir, "index.jsonl"), `${JSON.stringify(stale)}\n`);
    appendFileSync(join(storeDir, "index.jsonl"), fillerLines(3 * 1024 * 1024, new Date(Date.now() - 86_400_000)));
    linkSync(message.rawPath, objectPath(storeDir, message.sha3));

    const reopened = await ContentAddressedStore.open(storeDir);
    await reopened.deliver(message);
    await reopened.close();
    const lines = (await readStoreIndex(storeDir)).filter((e) => e.sha3 === message.sha3);
    expect(lines.map((e) => e.subject)).toEqual([undefined, "m12"]);
  });

  it("reports a missing raw file as a temporary sink failure", async () => {
    const store = await ContentAddressedStore.open(join(dir, "store"));
    const message = { ...rawMessage("m6", "x"), rawPath: join(dir, "gone") };
    await expect(store.deliver(message)).rejects.toMatchObject({ name: "SinkError", permanent: false });
    await store.close();
  });

  it("rejects a malformed object id with the value and what is accepted", () => {
    expect(() => objectPath(dir, "../etc")).toThrow('sha3 "../etc" is not 128 lower-case hex digits');
  });
});
