// The bundled brightchain-lookup (the artifact the host runs) while a local process holds more idle connections
// than the daemon will keep: Postfix's own socketmap client (`postmap -q`) and a real smtpd's RCPT must still be
// answered. Before the eviction policy, 1,030 idle connections made every one of these lookups fail.
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
  waitForPort,
  type PostfixInstance,
} from "../helpers/postfix-server";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const run = promisify(execFile);
/** More than the daemon's 1,024-connection cap: the attacker holds every slot and asks for more. */
const HOSTILE_CONNECTIONS = 1_100;

describe("brightchain-lookup with more idle hostile connections than it keeps", () => {
  const root = mkdtempSync(join(tmpdir(), "lookup-hostile-"));
  const registryFile = join(root, "recipients");
  let daemon: ChildProcess;
  let stderr = "";
  let lookupPort: number;
  let postfix: PostfixInstance;
  const hostile: Socket[] = [];
  let hostileClosed = 0;

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

    // Opened one after another, each connected before the next: the daemon sees them in this order, all idle.
    for (let i = 0; i < HOSTILE_CONNECTIONS; i++) {
      const socket = connect(lookupPort, "127.0.0.1");
      socket.on("error", () => undefined);
      socket.on("close", () => hostileClosed++);
      hostile.push(socket);
      await new Promise<void>((resolve) => {
        socket.once("connect", resolve);
        socket.once("close", resolve);
      });
    }
  });

  afterAll(async () => {
    for (const socket of hostile) socket.destroy();
    await postfix?.stop();
    if (daemon?.exitCode === null && daemon.signalCode === null) daemon.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  });

  it("answers postmap -q and Postfix's RCPT while the attacker's connections stay open", async () => {
    const postmap = (key: string) =>
      run("postmap", ["-q", key, `socketmap:inet:127.0.0.1:${lookupPort}:virtual`]).then(
        ({ stdout }) => ({ code: 0, stdout, stderr: "" }),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await postmap("alice@brightchain.org"), await postmap("nobody@brightchain.org"));
    // postmap exits 1 with an empty stderr for NOTFOUND, and 1 with a warning when the lookup itself failed.
    expect(answers.map(({ code, stdout, stderr }) => ({ code, stdout, stderr }))).toEqual(
      Array.from({ length: 5 }, () => [
        { code: 0, stdout: "alice@brightchain.org\n", stderr: "" },
        { code: 1, stdout: "", stderr: "" },
      ]).flat(),
    );

    const reply = await sendMail({
      port: postfix.smtpPort,
      from: "sender@example.net",
      to: ["alice@brightchain.org", "mallory@brightchain.org"],
    });
    expect(reply.rcpt.map((r) => r.code)).toEqual([250, 550]);

    // The attack was in force throughout: the daemon closed only as many of its connections as it had to.
    expect(hostile.length - hostileClosed).toBeGreaterThanOrEqual(900);
    expect(stderr).toMatch(/at the connection limit \(1024\)/);
  });
});
