// The embedded store when the kernel itself refuses link(2) for one drop file: an immutable file (chattr +i,
// root only) answers EPERM, as a file the daemon does not own does under fs.protected_hardlinks. That message is
// copied; the store keeps hard-linking every other one.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Handoff } from "../../runtime/src/inbound/sink";
import { ContentAddressedStore, objectPath, readStoreIndex } from "../../runtime/src/store/content-addressed-store";

let dir: string;
const immutable: string[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bc-store-link-"));
});
afterEach(() => {
  for (const path of immutable.splice(0)) execFileSync("chattr", ["-i", path]);
  rmSync(dir, { recursive: true, force: true });
});

function dropFile(name: string): Handoff & { rawPath: string } {
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

describe("ContentAddressedStore with a drop file link(2) refuses (real EPERM)", () => {
  it("copies that one message and keeps linking the next ones", async () => {
    const storeDir = join(dir, "store");
    const warnings: string[] = [];
    const store = await ContentAddressedStore.open(storeDir, (message) => warnings.push(message));
    const refused = dropFile("immutable");
    execFileSync("chattr", ["+i", refused.rawPath]);
    immutable.push(refused.rawPath);
    const next = dropFile("next");
    await store.deliver(refused);
    await store.deliver(next);
    await store.close();

    expect(statSync(objectPath(storeDir, refused.sha3)).ino).not.toBe(statSync(refused.rawPath).ino);
    expect(readFileSync(objectPath(storeDir, refused.sha3))).toEqual(readFileSync(refused.rawPath));
    expect(statSync(objectPath(storeDir, next.sha3)).ino, "hard links go on after one refusal").toBe(statSync(next.rawPath).ino);
    expect(warnings).toEqual([`store ${storeDir}: cannot hard-link ${refused.rawPath} (EPERM); copying this message`]);
    expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["immutable", "next"]);
    expect(readdirSync(join(storeDir, "tmp"))).toEqual([]);
  });
});
