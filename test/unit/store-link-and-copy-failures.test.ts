// The store when link(2), the copy, its fsync or its rename fail (runtime/src/store/content-addressed-store.ts):
// which failures switch the store to copying, which copy one message, which are the hand-off's error; and what a
// failed copy leaves behind (nothing in tmp/, no object, no index line, no open descriptor). Failures are injected
// for chosen files only; every other call is the real one on real files.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import type * as fsPromises from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Handoff } from "../../runtime/src/inbound/sink";
import { ContentAddressedStore, objectPath, readStoreIndex } from "../../runtime/src/store/content-addressed-store";

/** link(2) of these source paths fails with the code, every time. */
const linkFailures = new Map<string, string>();
/** Copies whose source is one of these paths write half the bytes, then fail with the code. */
const copyFailures = new Map<string, string>();
/** Renames onto these object paths fail with the code. */
const renameFailures = new Map<string, string>();
/** fsync of a descriptor opened on a tmp/ copy of these sources fails with the code. */
const fsyncFailures = new Map<string, string>();
/** Descriptors (see fsyncFailures) whose fsync fails, with the code. */
const failingDescriptors = new Map<number, string>();
/** tmp/ copy path → the source it copies, to find the fsync failure a copy's descriptor has. */
const copySources = new Map<string, string>();

const errno = (code: string, what: string) => Object.assign(new Error(`${code}: injected, ${what}`), { code });
const key = (path: fs.PathLike) => (Buffer.isBuffer(path) ? path.toString("latin1") : String(path));

vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs")>();
  return {
    ...real,
    linkSync: (existing: fs.PathLike, target: fs.PathLike) => {
      const code = linkFailures.get(key(existing));
      if (code !== undefined) throw errno(code, `link '${key(existing)}'`);
      return real.linkSync(existing, target);
    },
    renameSync: (from: fs.PathLike, to: fs.PathLike) => {
      const code = renameFailures.get(String(to));
      if (code !== undefined) throw errno(code, `rename '${String(from)}'`);
      return real.renameSync(from, to);
    },
    openSync: (path: fs.PathLike, flags: fs.OpenMode = "r", mode?: fs.Mode) => {
      const fd = real.openSync(path, flags, mode);
      const code = fsyncFailures.get(copySources.get(String(path)) ?? "");
      if (code !== undefined) failingDescriptors.set(fd, code);
      return fd;
    },
    fstatSync: (fd: number, options?: fs.StatOptions) => {
      const code = fstatFailure;
      fstatFailure = undefined;
      if (code !== undefined) throw errno(code, `fstat ${fd}`);
      return real.fstatSync(fd, options);
    },
    fsync: (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
      const code = failingDescriptors.get(fd);
      if (code === undefined) return real.fsync(fd, callback);
      failingDescriptors.delete(fd);
      setImmediate(() => callback(errno(code, `fsync ${fd}`)));
    },
  };
});

/** When set, the next fstat fails with this code (the store calls it only on the index, when opening). */
let fstatFailure: string | undefined;
/** When set, the index handle's next fdatasync fails with this code. */
let indexSyncFailure: string | undefined;

vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof fsPromises>();
  return {
    ...real,
    open: async (...args: Parameters<typeof fsPromises.open>) => {
      const handle = await real.open(...args);
      const datasync = handle.datasync.bind(handle);
      handle.datasync = async () => {
        const code = indexSyncFailure;
        indexSyncFailure = undefined;
        fstatFailure = undefined;
        if (code !== undefined) throw errno(code, "fdatasync index.jsonl");
        return datasync();
      };
      return handle;
    },
    copyFile: async (source: fs.PathLike, destination: fs.PathLike) => {
      copySources.set(String(destination), key(source));
      const code = copyFailures.get(key(source));
      if (code === undefined) return real.copyFile(source, destination);
      // What a full disk leaves: part of the copy written, then the error.
      const bytes = await real.readFile(source);
      await real.writeFile(destination, bytes.subarray(0, bytes.length >> 1));
      throw errno(code, `copyfile '${key(source)}'`);
    },
  };
});

let dir: string;
let storeDir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bc-store-failures-"));
  storeDir = join(dir, "store");
  for (const map of [linkFailures, copyFailures, renameFailures, fsyncFailures, failingDescriptors, copySources]) map.clear();
  indexSyncFailure = undefined;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function dropFile(name: string, rawPath: string | Buffer = join(dir, name)): Handoff {
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

const linked = (handoff: Handoff) => statSync(objectPath(storeDir, handoff.sha3)).ino === statSync(handoff.rawPath).ino;
const subjects = async () => (await readStoreIndex(storeDir)).map((e) => e.subject);
const tmpEntries = () => readdirSync(join(storeDir, "tmp"));
/** Descriptors this process holds on files under tmp/ (deleted ones included). */
const openTmpDescriptors = () =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(join(storeDir, "tmp"));
    } catch {
      return false;
    }
  });

describe("link(2) impossible: the store copies every message from then on", () => {
  it.each(["ENOTSUP", "EOPNOTSUPP", "EXDEV"])("after one %s, copies every later message without trying link(2)", async (code) => {
    const warnings: string[] = [];
    const store = await ContentAddressedStore.open(storeDir, (message) => warnings.push(message));
    const first = dropFile("first");
    const second = dropFile("second");
    linkFailures.set(first.rawPath as string, code);
    await store.deliver(first);
    await store.deliver(second);
    await store.close();

    expect(linked(first)).toBe(false);
    expect(linked(second), "the second message is copied although it could be linked").toBe(false);
    expect(readFileSync(objectPath(storeDir, second.sha3))).toEqual(readFileSync(second.rawPath));
    expect(warnings).toEqual([
      `store ${storeDir}: cannot hard-link from ${dir} (${code}); copying every message instead (slower, bytes on disk ` +
        `twice). Keep the store on the drop's filesystem and in one ReadWritePaths= entry.`,
    ]);
    expect(await subjects()).toEqual(["first", "second"]);
    expect(tmpEntries()).toEqual([]);
  });

  it("names a drop directory whose name is not UTF-8 by its bytes", async () => {
    const warnings: string[] = [];
    const store = await ContentAddressedStore.open(storeDir, (message) => warnings.push(message));
    const oddDir = Buffer.concat([Buffer.from(`${dir}/new-`), Buffer.from([0xe9])]);
    fs.mkdirSync(oddDir);
    const rawPath = Buffer.concat([oddDir, Buffer.from("/message")]);
    const message = dropFile("odd", rawPath);
    linkFailures.set(rawPath.toString("latin1"), "EXDEV");
    await store.deliver(message);
    await store.close();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`cannot hard-link from ${dir}/new-\u00e9 (EXDEV)`);
    expect(readFileSync(objectPath(storeDir, message.sha3))).toEqual(readFileSync(rawPath));
  });

  it("answers a redelivery to the same recipient from the object already copied, without a second line", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    const message = dropFile("again");
    linkFailures.set(message.rawPath as string, "EXDEV");
    await store.deliver(message);
    const copiedAt = statSync(objectPath(storeDir, message.sha3)).ino;
    await store.deliver(message);
    await store.close();
    expect(await subjects()).toEqual(["again"]);
    expect(statSync(objectPath(storeDir, message.sha3)).ino, "the object is not copied again").toBe(copiedAt);
  });

  it("replaces an object of the wrong size (cut short) with a whole copy", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    const message = dropFile("short");
    linkFailures.set(message.rawPath as string, "EXDEV");
    writeFileSync(objectPath(storeDir, message.sha3), "Delivered-To: ali");
    await store.deliver(message);
    await store.close();
    expect(readFileSync(objectPath(storeDir, message.sha3))).toEqual(readFileSync(message.rawPath));
    expect(await subjects()).toEqual(["short"]);
  });
});

describe("link(2) failing otherwise", () => {
  it.each(["EIO", "EACCES", "ENOSPC"])(
    "makes %s the hand-off's temporary error: nothing copied, nothing indexed",
    async (code) => {
      const warnings: string[] = [];
      const store = await ContentAddressedStore.open(storeDir, (message) => warnings.push(message));
      const message = dropFile("refused");
      linkFailures.set(message.rawPath as string, code);
      await expect(store.deliver(message)).rejects.toMatchObject({
        name: "SinkError",
        permanent: false,
        message: `store ${storeDir}: ${code}: injected, link '${message.rawPath as string}'`,
      });
      linkFailures.clear();
      const next = dropFile("next");
      await store.deliver(next);
      await store.close();
      expect(warnings).toEqual([]);
      expect(statSync(objectPath(storeDir, message.sha3), { throwIfNoEntry: false })).toBeUndefined();
      expect(linked(next), "the next message is still linked").toBe(true);
      expect(await subjects()).toEqual(["next"]);
    },
  );
});

describe("a copy that fails", () => {
  it("leaves nothing in tmp/ when the copy itself fails, and names the error", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    const message = dropFile("full disk");
    linkFailures.set(message.rawPath as string, "EXDEV");
    copyFailures.set(message.rawPath as string, "ENOSPC");
    await expect(store.deliver(message)).rejects.toMatchObject({
      name: "SinkError",
      permanent: false,
      message: expect.stringContaining("ENOSPC: injected, copyfile"),
    });
    await store.close();
    expect(tmpEntries()).toEqual([]);
    expect(statSync(objectPath(storeDir, message.sha3), { throwIfNoEntry: false })).toBeUndefined();
    expect(await readStoreIndex(storeDir)).toEqual([]);
  });

  it("names a drop file that vanished before its copy", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    const message = dropFile("gone");
    linkFailures.set(message.rawPath as string, "EXDEV");
    rmSync(message.rawPath);
    await expect(store.deliver(message)).rejects.toMatchObject({ message: expect.stringContaining("ENOENT") });
    await store.close();
    expect(tmpEntries()).toEqual([]);
  });

  it.each([
    ["its fsync", fsyncFailures],
    ["its rename into objects/", renameFailures],
  ])("when %s fails, rejects that hand-off alone: no object, no line, nothing left in tmp/ or open", async (_what, failures) => {
    const store = await ContentAddressedStore.open(storeDir);
    const failing = dropFile("failing");
    const fine = dropFile("fine");
    linkFailures.set(failing.rawPath as string, "EXDEV");
    failures.set(failures === renameFailures ? objectPath(storeDir, failing.sha3) : (failing.rawPath as string), "EIO");
    const results = await Promise.allSettled([store.deliver(failing), store.deliver(fine)]);
    expect(results[0]).toMatchObject({
      status: "rejected",
      reason: { name: "SinkError", permanent: false, message: expect.stringContaining("EIO: injected") },
    });
    expect(results[1].status).toBe("fulfilled");
    expect(openTmpDescriptors()).toEqual([]);
    await store.close();
    expect(tmpEntries()).toEqual([]);
    expect(statSync(objectPath(storeDir, failing.sha3), { throwIfNoEntry: false })).toBeUndefined();
    expect(await subjects()).toEqual(["fine"]);
    expect(readFileSync(objectPath(storeDir, fine.sha3))).toEqual(readFileSync(fine.rawPath));
  });
});

describe("an index append that fails", () => {
  it("rejects the hand-off, cuts the line back off, and appends the next one cleanly", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    const before = dropFile("before");
    await store.deliver(before);
    const indexFile = join(storeDir, "index.jsonl");
    const goodLength = statSync(indexFile).size;
    const failing = dropFile("failing");
    indexSyncFailure = "EIO";
    await expect(store.deliver(failing)).rejects.toMatchObject({
      name: "SinkError",
      permanent: false,
      message: `store ${storeDir}: EIO: injected, fdatasync index.jsonl`,
    });
    expect(statSync(indexFile).size, "the unsynced line is cut back off").toBe(goodLength);
    await store.deliver(failing);
    const after = dropFile("after");
    await store.deliver(after);
    await store.close();
    expect(await subjects()).toEqual(["before", "failing", "after"]);
  });
});

describe("an index that cannot be read when the store opens", () => {
  it("fails open() naming the error, and leaves no descriptor on the index", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    await store.deliver(dropFile("kept"));
    await store.close();
    const indexFile = join(storeDir, "index.jsonl");
    const onIndex = () =>
      readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === indexFile;
        } catch {
          return false;
        }
      });
    fstatFailure = "EIO";
    await expect(ContentAddressedStore.open(storeDir)).rejects.toMatchObject({
      code: "EIO",
      message: expect.stringContaining("fstat"),
    });
    expect(onIndex()).toEqual([]);
    const reopened = await ContentAddressedStore.open(storeDir);
    await reopened.close();
    expect(await subjects()).toEqual(["kept"]);
  });
});
