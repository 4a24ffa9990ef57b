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
import { sendMail, startPostfix, type PostfixInstance } from "../helpers/postfix-server";

// Not under /tmp: OpenDKIM refuses a key whose parent directories others can write (RequireSafeKeys).
const work = mkdtempSync("/var/lib/bc-opendkim-test-");
chmodSync(work, 0o755);
const node: GatewayNode = { ...examplePrimary, dkim: { ...examplePrimary.dkim, keyDir: join(work, "keys") } };
let daemon: ChildProcess | undefined;
let milterPort: number | undefined;
let postfix: PostfixInstance | undefined;

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
  await postfix?.stop();
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
    milterPort = port;
    const path = join(work, "opendkim-run.conf");
    writeFileSync(path, testConf(port));
    daemon = spawn("opendkim", ["-f", "-x", path], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    daemon.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    await waitForPort(port).catch((error: Error) => {
      throw new Error(`${error.message}; opendkim said: ${stderr}`);
    });
    // -f keeps opendkim in the foreground: the child is the milter itself, which setuid()s to UserID before
    // it listens. Real, effective, saved and filesystem uid all: a daemon that kept root in any would pass `id`.
    const status = readFileSync(`/proc/${daemon.pid}/status`, "utf8");
    const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/).map(Number);
    expect(uids, status).toEqual(Array(4).fill(opendkimUid().uid));
    expect(spawnSync("ps", ["-o", "user=", "-p", String(daemon.pid)], { encoding: "utf8" }).stdout.trim()).toBe("opendkim");
  });

  it("signs mail a local client submits through Postfix with the domain's selector", async () => {
    expect(milterPort, "the previous test starts opendkim").toBeDefined();
    postfix = await startPostfix({
      main: {
        relay_domains: "example.net",
        relay_transport: "discard:dkim test",
        // Held in the queue so the test can read the signature the milter added.
        smtpd_end_of_data_restrictions: "check_client_access static:HOLD",
        smtpd_milters: `inet:127.0.0.1:${milterPort}`,
        milter_default_action: "tempfail",
      },
    });
    const reply = await sendMail({ port: postfix.smtpPort, from: "alice@brightchain.org", to: ["bob@example.net"] });
    expect(reply.message?.code).toBe(250);
    const queueId = /queued as ([0-9A-F]+)/.exec(reply.message!.text)![1]!;
    const headers = spawnSync("postcat", ["-c", postfix.configDir, "-h", "-q", queueId], { encoding: "utf8" }).stdout;
    const signature = /^DKIM-Signature:[^\n]*(?:\n[ \t][^\n]*)*/m.exec(headers)?.[0] ?? "";
    expect(signature).toMatch(/\bd=brightchain\.org;/);
    expect(signature).toMatch(/\bs=default;/);
    expect(signature).toMatch(/\bc=relaxed\/simple;/);
    // OversignHeaders From: "from" listed once more than the message has From headers.
    expect(signature.replace(/\s+/g, "")).toMatch(/h=from:[^;]*from/i);
  });
});
