// brightchain-store show prints a stored message, never what an object path was replaced by: a symbolic link
// to a file outside the store (whatever put it there) is refused, and nothing of its target is printed.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContentAddressedStore, objectPath } from "../../runtime/src/store/content-addressed-store";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const run = promisify(execFile);
let dir: string;
let cli: string;
const raw = "Delivered-To: alice@brightchain.org\r\nSubject: stored\r\n\r\nbody\r\n";
const sha3 = createHash("sha3-512").update(raw).digest("hex");

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "bc-store-show-"));
  cli = await bundleRuntimeEntry("brightchain-store", dir);
  writeFileSync(join(dir, "m"), raw);
  const store = await ContentAddressedStore.open(join(dir, "store"));
  await store.deliver({ sha3, size: raw.length, rawPath: join(dir, "m"), recipient: "alice@brightchain.org", folder: "inbox" });
  await store.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("brightchain-store show", () => {
  it("refuses an object that is a symbolic link, printing nothing of its target", async () => {
    const secret = join(dir, "secret");
    writeFileSync(secret, "root:secret-hash:19000:0:99999:7:::\n");
    unlinkSync(objectPath(join(dir, "store"), sha3));
    symlinkSync(secret, objectPath(join(dir, "store"), sha3));

    await expect(run(process.execPath, [cli, "show", sha3.slice(0, 12), "--store", join(dir, "store")])).rejects.toMatchObject({
      code: 1,
      stdout: "",
      stderr: expect.stringContaining("is a symbolic link, not a stored message: not shown"),
    });
  });
});
