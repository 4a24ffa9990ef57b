// The embedded store's fallbacks, each of which no other test pinned: a link(2) refused for one file
// (EPERM, EMLINK) copies that message only; leftovers of an interrupted copy in tmp/ are removed on open.
// link(2) answers are injected for chosen files only; every other call is the real one on real files.
// (test/host/store-link.test.ts makes the kernel itself refuse the link, with an immutable file.)
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Handoff } from "../../runtime/src/inbound/sink";
import { ContentAddressedStore, objectPath, readStoreIndex } from "../../runtime/src/store/content-addressed-store";

/** Paths whose link(2) fails with the given code, once per entry. */
const refusals = new Map<string, string>();

vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs")>();
  return {
    ...real,
    linkSync: (existing: fs.PathLike, target: fs.PathLike) => {
      const code = refusals.get(String(existing));
      if (code !== undefined) {
        refusals.delete(String(existing));
        throw Object.assign(new Error(`${code}: refused, link '${String(existing)}'`), { code });
      }
      return real.linkSync(existing, target);
    },
  };
});

let dir: string;
let storeDir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bc-store-fallbacks-"));
  storeDir = join(dir, "store");
  refusals.clear();
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

const sameInode = (handoff: Handoff) =>
  statSync(objectPath(storeDir, handoff.sha3)).ino === statSync(handoff.rawPath as string).ino;

describe("ContentAddressedStore fallbacks", () => {
  it.each(["EPERM", "EMLINK"])("copies the one message whose link(2) answers %s, and links the next ones", async (code) => {
    const warnings: string[] = [];
    const store = await ContentAddressedStore.open(storeDir, (message) => warnings.push(message));
    const refused = dropFile("refused");
    const next = dropFile("next");
    const later = dropFile("later");
    refusals.set(refused.rawPath as string, code);
    await store.deliver(refused);
    await store.deliver(next);
    await store.deliver(later);
    await store.close();

    expect(sameInode(refused), "the refused file is a copy").toBe(false);
    expect(readFileSync(objectPath(storeDir, refused.sha3))).toEqual(readFileSync(refused.rawPath));
    expect(sameInode(next), "the next file is linked again").toBe(true);
    expect(sameInode(later)).toBe(true);
    expect(warnings).toEqual([
      `store ${storeDir}: cannot hard-link ${refused.rawPath as string} (${code}); copying this message`,
    ]);
    expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["refused", "next", "later"]);
    expect(readdirSync(join(storeDir, "tmp"))).toEqual([]);
  });

  it("removes what an interrupted copy left in tmp/ when it opens, and keeps objects and index", async () => {
    const store = await ContentAddressedStore.open(storeDir);
    const kept = dropFile("kept");
    await store.deliver(kept);
    await store.close();
    // What kill -9 in the middle of a copy leaves: partial files named as copyToTmp names them, one of them large.
    writeFileSync(join(storeDir, "tmp", `${"ab".repeat(16)}.4242.1`), "Delivered-To: alice@brightchain.org\r\nSubj");
    writeFileSync(join(storeDir, "tmp", `${"cd".repeat(16)}.4242.2`), Buffer.alloc(2 * 1024 * 1024));
    mkdirSync(join(storeDir, "objects", "ff"), { recursive: true });

    const reopened = await ContentAddressedStore.open(storeDir);
    expect(readdirSync(join(storeDir, "tmp"))).toEqual([]);
    const after = dropFile("after");
    await reopened.deliver(after);
    await reopened.close();
    expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["kept", "after"]);
    expect(readFileSync(objectPath(storeDir, kept.sha3))).toEqual(readFileSync(kept.rawPath));
  });
});
