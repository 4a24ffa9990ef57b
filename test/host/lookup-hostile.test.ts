// The bundled brightchain-lookup (the artifact the host runs) attacked by a local process: more idle connections
// than the daemon keeps, held still or reconnected as fast as they are closed, and a request dripped a byte every
// 2 s. Postfix's own socketmap client (`postmap -q`) and a real smtpd's RCPT must still be answered. Before the
// eviction policy, 1,030 idle connections made every one of these lookups fail, and the drip was never closed.
import { spawn, type ChildProcess, execFile } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { examplePrimary } from "../fixtures/nodes";
import {
  freePort,
  renderedPostfixOptions,
  sendMail,
  startPostfix,
  waitFor,
  waitForPort,
  type PostfixInstance,
} from "../helpers/postfix-server";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const run = promisify(execFile);
/** More than the daemon's 1,024-connection cap: the attacker holds every slot and asks for more. */
const HOSTILE_CONNECTIONS = 1_100;

describe("brightchain-lookup attacked by a local process", () => {
  const root = mkdtempSync(join(tmpdir(), "lookup-hostile-"));
  const registryFile = join(root, "recipients");
  let daemon: ChildProcess;
  let stderr = "";
  let lookupPort: number;
  let postfix: PostfixInstance;
  const hostile = new Set<Socket>();
  let hostileClosed = 0;
  /** While set, the attacker replaces every connection the daemon closes. */
  let reconnect = false;

  /** One attacker connection, resolved once connected (or closed before that). */
  const openHostile = (): Promise<void> => {
    const socket = connect(lookupPort, "127.0.0.1");
    hostile.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => {
      hostileClosed++;
      hostile.delete(socket);
      if (reconnect) void openHostile();
    });
    return new Promise<void>((resolve) => {
      socket.once("connect", resolve);
      socket.once("close", resolve);
    });
  };

  const postmap = (key: string) =>
    run("postmap", ["-q", key, `socketmap:inet:127.0.0.1:${lookupPort}:virtual`]).then(
      ({ stdout }) => ({ code: 0, stdout, stderr: "" }),
      (error: { code: number; stdout: string; stderr: string }) => ({
        code: error.code,
        stdout: error.stdout,
        stderr: error.stderr,
      }),
    );

  /** Ten postmap lookups and one SMTP transaction's RCPTs, as the attacked daemon answers them. */
  async function realLookups(): Promise<{ postmap: { code: number; stdout: string; stderr: string }[]; rcpt: number[] }> {
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await postmap("alice@brightchain.org"), await postmap("nobody@brightchain.org"));
    const reply = await sendMail({
      port: postfix.smtpPort,
      from: "sender@example.net",
      to: ["alice@brightchain.org", "mallory@brightchain.org"],
    });
    return { postmap: answers, rcpt: reply.rcpt.map((r) => r.code) };
  }
  // postmap exits 1 with an empty stderr for NOTFOUND, and 1 with a warning when the lookup itself failed.
  const ANSWERED = {
    postmap: Array.from({ length: 5 }, () => [
      { code: 0, stdout: "alice@brightchain.org\n", stderr: "" },
      { code: 1, stdout: "", stderr: "" },
    ]).flat(),
    rcpt: [250, 550],
  };

  beforeAll(async () => {
    chmodSync(root, 0o755);
    writeFileSync(registryFile, "alice@brightchain.org\n");
    const artifact = await bundleRuntimeEntry("brightchain-lookup", join(root, "dist"));
    lookupPort = await freePort();
    daemon = spawn(process.execPath, [artifact], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? "",
        EMAIL_DOMAIN: "brightchain.org",
        GATEWAY_REGISTRY_FILE: registryFile,
        GATEWAY_LOOKUP_PORT: String(lookupPort),
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    daemon.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    await waitForPort(lookupPort);
    const node: GatewayNode = { ...examplePrimary, mynetworks: [], lookup: { ...examplePrimary.lookup, port: lookupPort } };
    postfix = await startPostfix(renderedPostfixOptions(node, { main: { defer_transports: "brightchain-drop" } }));
  });

  afterAll(async () => {
    reconnect = false;
    for (const socket of hostile) socket.destroy();
    await postfix?.stop();
    if (daemon?.exitCode === null && daemon.signalCode === null) daemon.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  });

  it("answers postmap -q and Postfix's RCPT while the attacker holds 1,100 idle connections", async () => {
    // Opened one after another, each connected before the next: the daemon sees them in this order, all idle.
    for (let i = 0; i < HOSTILE_CONNECTIONS; i++) await openHostile();
    expect(await realLookups()).toEqual(ANSWERED);
    // The attack was in force throughout: the daemon closed only as many of its connections as it had to.
    expect(hostile.size).toBeGreaterThanOrEqual(1_000);
    expect(stderr).toMatch(/at the connection limit \(1024\): closed the longest-idle connection of 127\.0\.0\.1/);
  });

  it("answers them while the attacker reconnects every connection the daemon closes", async () => {
    reconnect = true;
    const closedBefore = hostileClosed;
    try {
      // Back over the cap: from here each reconnect makes the daemon close another attacker connection, which
      // reconnects in turn, a chain that runs as fast as the two processes can go until the attacker stops.
      while (hostile.size < HOSTILE_CONNECTIONS) await openHostile();
      await waitFor("the attacker's churn", () => hostileClosed - closedBefore >= 2_000, 60_000);
      expect(await realLookups()).toEqual(ANSWERED);
    } finally {
      reconnect = false;
      for (const socket of hostile) socket.destroy();
    }
  });

  it("closes a client that drips a request a byte every 2 s, logging its bytes escaped", async () => {
    const drip = connect(lookupPort, "127.0.0.1");
    drip.on("error", () => undefined);
    const closed = new Promise<void>((resolve) => drip.once("close", () => resolve()));
    let isClosed = false;
    void closed.then(() => (isClosed = true));
    await new Promise<void>((resolve) => drip.once("connect", resolve));
    const request = Buffer.from("50:\nFORGED journal line\x1b[2J");
    let sent = 0;
    while (!isClosed && sent < request.length) {
      drip.write(request.subarray(sent, ++sent));
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2_000))]);
    }
    expect(isClosed).toBe(true);
    expect(sent).toBeLessThan(request.length);
    expect(stderr).toMatch(/: request not complete 10000 ms after its first byte \(starts "50:\\x0aF?O?R?"\)\n/);
    expect(stderr.split("\n").filter((line) => line !== "" && !line.startsWith("brightchain-lookup: "))).toEqual([]);
  }, 60_000);
});
