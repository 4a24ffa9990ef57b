// The bundled brightchain-lookup artifact (what the host runs: one .cjs, no node_modules) serving a real
// Postfix configured by the rendered files, then stopped by SIGTERM the way systemd stops it.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { examplePrimary } from "../fixtures/nodes";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";
import {
  freePort,
  portAccepts,
  renderedPostfixOptions,
  sendMail,
  startPostfix,
  waitFor,
  waitForPort,
  type PostfixInstance,
} from "../helpers/postfix-server";

describe("the bundled brightchain-lookup behind a real Postfix", () => {
  const root = mkdtempSync(join(tmpdir(), "lookup-artifact-"));
  const registryFile = join(root, "recipients");
  let artifact: string;
  let daemon: ChildProcess;
  let exited: Promise<number | null>;
  let stderr = "";
  let lookupPort: number;
  let postfix: PostfixInstance;

  beforeAll(async () => {
    chmodSync(root, 0o755);
    writeFileSync(registryFile, "alice@brightchain.org\n");
    artifact = await bundleRuntimeEntry("brightchain-lookup", join(root, "dist"));
    lookupPort = await freePort();
    // Run from an empty directory with only PATH set: the artifact must need nothing from the repository.
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
    exited = new Promise((done) => daemon.once("exit", (code) => done(code)));
    await waitForPort(lookupPort);

    // The primary has no drop spool here: validation at RCPT is the subject, so accepted mail stays queued.
    const node: GatewayNode = { ...examplePrimary, mynetworks: [], lookup: { ...examplePrimary.lookup, port: lookupPort } };
    postfix = await startPostfix(renderedPostfixOptions(node, { main: { defer_transports: "brightchain-drop" } }));
  });

  afterAll(async () => {
    await postfix?.stop();
    if (daemon?.exitCode === null && daemon.signalCode === null) daemon.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  });

  it("answers 250 for a known and 550 for an unknown recipient", async () => {
    const reply = await sendMail({
      port: postfix.smtpPort,
      from: "sender@example.net",
      to: ["alice@brightchain.org", "mallory@brightchain.org"],
    });
    expect(reply.rcpt.map((r) => r.code)).toEqual([250, 550]);
    expect(stderr).toMatch(
      /registry .*recipients: 1 recipients\nbrightchain-lookup: serving socketmap "virtual" for brightchain.org on 127\.0\.0\.1:\d+\n/,
    );
  });

  it("exits 0 on SIGTERM while Postfix holds connections to it, after which Postfix answers 451", async () => {
    daemon.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/SIGTERM: finishing in-flight lookups\nbrightchain-lookup: stopped\n$/);
    await waitFor("the lookup port to close", async () => !(await portAccepts(lookupPort)));
    const reply = await sendMail({ port: postfix.smtpPort, from: "sender@example.net", to: ["alice@brightchain.org"] });
    expect(reply.rcpt[0]!.code).toBe(451);
  });
});
