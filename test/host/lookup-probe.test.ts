// The lookup service answering the tools an operator uses: the guide's nc line probe and Postfix's own socketmap
// client (`postmap -q`), on the same port.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileRegistry } from "../../runtime/src/lookup/registry";
import { RecipientLookupService } from "../../runtime/src/lookup/server";

const run = promisify(execFile);

describe("lookup service probed with nc and postmap", () => {
  const dir = mkdtempSync(join(tmpdir(), "lookup-probe-"));
  let registry: FileRegistry;
  let service: RecipientLookupService;
  let port: number;

  beforeAll(async () => {
    writeFileSync(join(dir, "recipients"), "alice@brightchain.org\n");
    registry = new FileRegistry(join(dir, "recipients"));
    service = new RecipientLookupService({ registry, domains: ["brightchain.org"], port: 0, lookupTimeoutMs: 1_000 });
    port = await service.listen();
  });
  afterAll(async () => {
    await service.close();
    registry.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers the guide's probe, and nc returns on its own", async () => {
    const probe = (address: string) =>
      run("bash", ["-c", `echo "virtual ${address}" | nc 127.0.0.1 ${port}`], { timeout: 10_000 });
    expect((await probe("alice@brightchain.org")).stdout).toBe("OK alice@brightchain.org\n");
    expect((await probe("Alice+news@BrightChain.org")).stdout).toBe("OK alice@brightchain.org\n");
    expect((await probe("nobody@brightchain.org")).stdout).toBe("NOTFOUND\n");
  });

  it("answers Postfix's socketmap client", async () => {
    const postmap = (key: string, map = "virtual") => run("postmap", ["-q", key, `socketmap:inet:127.0.0.1:${port}:${map}`]);
    expect((await postmap("alice@brightchain.org")).stdout).toBe("alice@brightchain.org\n");
    expect((await postmap("alice+news@brightchain.org")).stdout).toBe("alice@brightchain.org\n");
    // postmap exits 1 for "not found" and for a failed lookup; only the latter says why on stderr.
    await expect(postmap("nobody@brightchain.org")).rejects.toMatchObject({ code: 1, stderr: "" });
    await expect(postmap("alice@brightchain.org", "aliases")).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/unknown map name "aliases"; this service answers virtual/),
    });
  });
});
