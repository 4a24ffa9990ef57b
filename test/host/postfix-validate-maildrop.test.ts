// The rendered brightchain-maildrop script run directly with bash and coreutils, as pipe(8) runs it (as the drop
// user, message on stdin): it files the message under a Maildir-unique name, and every failure is exit 75
// (EX_TEMPFAIL, Postfix retries) with nothing left behind in tmp/ or new/.
import { spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { examplePrimary } from "../fixtures/nodes";
import type { GatewayNode } from "../../infra/model/types";
import { renderMaildropScript } from "../../infra/render/spool";
import { scratchDir } from "../helpers/postfix-tools";

const NOBODY = 65534;

/** Runs the script as nobody (like pipe's user=), feeding `message`; resolves with the exit status and stderr. */
function runScript(script: string, args: string[], message: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "bash", script, ...args], {
      stdio: ["pipe", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stderr }));
    child.stdin.on("error", () => undefined);
    child.stdin.end(message);
  });
}

describe("brightchain-maildrop", () => {
  let root: string;
  let dropDir: string;
  let script: string;

  beforeEach(() => {
    root = scratchDir("h3-maildrop-");
    dropDir = join(root, "incoming");
    for (const sub of ["", "tmp", "new", "cur"]) {
      mkdirSync(join(dropDir, sub), { recursive: true, mode: 0o750 });
      chownSync(join(dropDir, sub), NOBODY, NOBODY);
    }
    const node: GatewayNode = { ...examplePrimary, drop: { ...examplePrimary.drop, transport: "pipe", mailDropDir: dropDir } };
    script = join(root, "brightchain-maildrop");
    writeFileSync(script, renderMaildropScript(node), { mode: 0o755 });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it("files stdin byte for byte into new/ under a Maildir-unique name, nothing left in tmp/", async () => {
    const message = "Delivered-To: alice@brightchain.org\nSubject: hi\n\nbody line\n.\nno trailing newline";
    const first = await runScript(script, ["sender@example.net", "alice@brightchain.org"], message);
    const second = await runScript(script, ["", "alice@brightchain.org"], message);
    expect([first.code, second.code]).toEqual([0, 0]);
    const names = readdirSync(join(dropDir, "new"));
    expect(names).toHaveLength(2);
    for (const name of names) {
      expect(name).toMatch(/^\d+\.M\d+P\d+R[0-9a-f]{16}\.[^/:]+$/);
      expect(readFileSync(join(dropDir, "new", name), "utf8")).toBe(message);
    }
    expect(readdirSync(join(dropDir, "tmp"))).toEqual([]);
  });

  it("exits 75 when the recipient argument is missing", async () => {
    const result = await runScript(script, ["sender@example.net"], "x\n");
    expect(result.code).toBe(75);
    expect(result.stderr).toContain("usage: brightchain-maildrop SENDER RECIPIENT");
    expect(readdirSync(join(dropDir, "new"))).toEqual([]);
  });

  it("exits 75 and leaves nothing behind when new/ is not writable", async () => {
    chmodSync(join(dropDir, "new"), 0o550);
    const result = await runScript(script, ["sender@example.net", "alice@brightchain.org"], "x\n");
    expect(result.code).toBe(75);
    expect(readdirSync(join(dropDir, "tmp"))).toEqual([]);
    expect(readdirSync(join(dropDir, "new"))).toEqual([]);
  });

  it("exits 75 when the drop directory is missing", async () => {
    rmSync(dropDir, { recursive: true });
    const result = await runScript(script, ["sender@example.net", "alice@brightchain.org"], "x\n");
    expect(result.code).toBe(75);
  });
});
