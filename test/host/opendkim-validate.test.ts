// The rendered opendkim.conf against the real opendkim 2.11 with a real key from opendkim-genkey; only the
// key directory, pid file and port are moved into a private temp dir.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { dkimKeyPaths, dkimKeygenCommand, parseDkimTxtRecord, renderOpendkimConf } from "../../infra/render/opendkim";
import { examplePrimary } from "../fixtures/nodes";
import { freePort, waitForPort } from "../helpers/renderer-net";

// Not under /tmp: OpenDKIM refuses a key whose parent directories others can write (RequireSafeKeys).
const work = mkdtempSync("/var/lib/bc-opendkim-test-");
chmodSync(work, 0o755);
const node: GatewayNode = { ...examplePrimary, dkim: { ...examplePrimary.dkim, keyDir: join(work, "keys") } };
let daemon: ChildProcess | undefined;

function opendkimUid(): { uid: number; gid: number } {
  const id = spawnSync("id", ["opendkim"], { encoding: "utf8" }).stdout;
  return { uid: Number(/uid=(\d+)/.exec(id)![1]), gid: Number(/gid=(\d+)/.exec(id)![1]) };
}

function testConf(port?: number): string {
  let conf = renderOpendkimConf(node).replace(/^PidFile\s+.*$/m, `PidFile ${join(work, "opendkim.pid")}`);
  if (port !== undefined) conf = conf.replace(/^Socket\s+.*$/m, `Socket inet:${port}@127.0.0.1`);
  return conf;
}

function configCheck(conf: string): { status: number | null; output: string } {
  const path = join(work, "opendkim.conf");
  writeFileSync(path, conf);
  const run = spawnSync("opendkim", ["-n", "-x", path], { encoding: "utf8" });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

beforeAll(() => {
  // The host step's own command, run for real.
  const keygen = spawnSync("sh", ["-c", dkimKeygenCommand(node)], { encoding: "utf8" });
  expect(keygen.stderr).toBe("");
  expect(keygen.status).toBe(0);
});

afterAll(async () => {
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon!.once("exit", resolve));
    daemon.kill("SIGTERM");
    await exited;
  }
  rmSync(work, { recursive: true, force: true });
});

describe("opendkim.conf with a real key", () => {
  it("opendkim -n accepts the rendered configuration", () => {
    const check = configCheck(testConf());
    expect(check.output).toBe("");
    expect(check.status).toBe(0);
  });

  it("the check is real: a key others can read is refused", () => {
    const { privateKey } = dkimKeyPaths(node);
    chmodSync(privateKey, 0o644);
    try {
      const check = configCheck(testConf());
      expect(check.status).not.toBe(0);
      expect(check.output).toContain("can be read or written by other users");
    } finally {
      chmodSync(privateKey, 0o600);
    }
  });

  it("keygen is idempotent: a second run keeps the published key", () => {
    const { privateKey } = dkimKeyPaths(node);
    const before = readFileSync(privateKey, "utf8");
    expect(spawnSync("sh", ["-c", dkimKeygenCommand(node)]).status).toBe(0);
    expect(readFileSync(privateKey, "utf8")).toBe(before);
    const { uid } = opendkimUid();
    expect(spawnSync("stat", ["-c", "%u %a", privateKey], { encoding: "utf8" }).stdout.trim()).toBe(`${uid} 600`);
  });

  it("parseDkimTxtRecord turns genkey's record into the public half of the private key", () => {
    const { privateKey, txtRecord } = dkimKeyPaths(node);
    const value = parseDkimTxtRecord(readFileSync(txtRecord, "utf8"));
    expect(value).toMatch(/^v=DKIM1; h=sha256; k=rsa; p=[A-Za-z0-9+/=]+$/);
    const published = value.replace(/^.*p=/, "");
    const expected = createPublicKey(createPrivateKey(readFileSync(privateKey)))
      .export({ type: "spki", format: "der" })
      .toString("base64");
    expect(published).toBe(expected);
  });

  it("opendkim starts as the opendkim user and listens on the rendered socket", async () => {
    const port = await freePort();
    const path = join(work, "opendkim-run.conf");
    writeFileSync(path, testConf(port));
    daemon = spawn("opendkim", ["-f", "-x", path], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    daemon.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    await waitForPort(port).catch((error: Error) => {
      throw new Error(`${error.message}; opendkim said: ${stderr}`);
    });
  });
});
