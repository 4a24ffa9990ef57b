import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContentAddressedStore } from "../../runtime/src/store/content-addressed-store";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const run = promisify(execFile);
let dir: string;
let cli: string;
let storeDir: string;
const raw = "Delivered-To: alice@brightchain.org\r\nSubject: tab\there\r\n\r\nbody\r\n";
const sha3 = createHash("sha3-512").update(raw).digest("hex");

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "bc-store-cli-"));
  cli = await bundleRuntimeEntry("brightchain-store", dir);
  storeDir = join(dir, "store");
  writeFileSync(join(dir, "m"), raw);
  const store = await ContentAddressedStore.open(storeDir);
  const base = { sha3, size: Buffer.byteLength(raw), rawPath: join(dir, "m"), subject: "tab\there", from: "s@example.net" };
  await store.deliver({ ...base, recipient: "alice@brightchain.org", folder: "inbox" });
  await store.deliver({ ...base, recipient: "bob@brightchain.org", folder: "spam", spamScore: 7.2 });
  await store.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cliEnv = () => ({ PATH: process.env.PATH, GATEWAY_STORE_DIR: storeDir });

describe("brightchain-store", () => {
  it("lists the index as a table, filtered by folder and recipient", async () => {
    const { stdout } = await run(process.execPath, [cli, "list", "--folder", "spam"], { env: cliEnv() });
    const lines = stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("received\tfolder\trecipient\tfrom\tsubject\tsize\tsha3");
    expect(lines).toHaveLength(2);
    expect(lines[1]!.split("\t").slice(1)).toEqual([
      "spam",
      "bob@brightchain.org",
      "s@example.net",
      "tab here",
      String(Buffer.byteLength(raw)),
      sha3.slice(0, 16),
    ]);
    const json = await run(process.execPath, [cli, "list", "--recipient", "Alice@BrightChain.org", "--json"], { env: cliEnv() });
    expect(JSON.parse(json.stdout)).toMatchObject({ recipient: "alice@brightchain.org", folder: "inbox" });
  });

  it("shows the raw message by a prefix of its SHA3-512", async () => {
    const { stdout } = await run(process.execPath, [cli, "show", sha3.slice(0, 10)], { env: cliEnv() });
    expect(stdout).toBe(raw);
  });

  it("says so, exit 1, when an object no longer matches its SHA3-512 (its Maildir file edited in place)", async () => {
    const edited = "Delivered-To: carol@brightchain.org\r\nSubject: edited\r\n\r\nbody\r\n";
    const editedSha3 = createHash("sha3-512").update(edited).digest("hex");
    writeFileSync(join(dir, "e"), edited);
    const store = await ContentAddressedStore.open(storeDir);
    await store.deliver({
      sha3: editedSha3,
      size: edited.length,
      rawPath: join(dir, "e"),
      recipient: "carol@brightchain.org",
      folder: "inbox",
    });
    await store.close();
    // Same inode as the object: an append to the Maildir file changes the stored message.
    appendFileSync(join(dir, "e"), "appended later\r\n");

    await expect(run(process.execPath, [cli, "show", editedSha3.slice(0, 12)], { env: cliEnv() })).rejects.toMatchObject({
      code: 1,
      stdout: `${edited}appended later\r\n`,
      stderr: expect.stringContaining("no longer matches its SHA3-512"),
    });
  });

  it("names the bad argument and what is accepted", async () => {
    await expect(run(process.execPath, [cli, "list", "--folder", "junk"], { env: cliEnv() })).rejects.toMatchObject({
      code: 64,
      stderr: expect.stringContaining('--folder "junk" is not a folder; expected inbox or spam'),
    });
    await expect(run(process.execPath, [cli, "show", "ffffffff"], { env: cliEnv() })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("no message ffffffff"),
    });
  });
});
