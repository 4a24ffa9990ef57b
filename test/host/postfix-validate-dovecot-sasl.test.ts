// Submission on the primary with the rendered Dovecot as SASL backend, against real Dovecot 2.3 and Postfix 3.7:
// doveconf accepts the file, the rendered SHA512-CRYPT entries authenticate (and a wrong password does not),
// and port 587 refuses mail before STARTTLS, then takes AUTH PLAIN over TLS (235) and refuses a bad password (535).
//
// What the test changes from the rendered files: Dovecot's passwd-file path, auth listener (inside the test
// Postfix's queue directory, where smtpd_sasl_path=private/auth points), base_dir/state_dir/log_path (a
// second Dovecot beside any other); Postfix as renderedPostfixOptions changes it (instance paths, loopback
// ports, no milters) with TLS kept on a self-signed cert and submission kept; its drop spool owned by nobody.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examplePrimary as stackPrimary, exampleSecrets } from "../fixtures/nodes";
import { onThisMachine } from "../helpers/machine-release";
import {
  POSTFIX_AUTH_LISTENER,
  SUBMISSION_PASSWD_PATH,
  renderDovecotConf,
  renderSubmissionPasswd,
} from "../../infra/render/dovecot";
import {
  renderedPostfixOptions,
  startPostfix,
  waitFor,
  withTestDropSpool,
  type PostfixInstance,
} from "../helpers/postfix-server";
import { SmtpClient, createSelfSignedCert, scratchDir, startSocketmap, type SocketmapStandIn } from "../helpers/postfix-tools";

const execFileAsync = promisify(execFile);
const user = exampleSecrets.submissionUsers[0]!;
// This machine's Dovecot reads the syntax of this machine's release (2.3 on Debian 12); Debian 13's 2.4 syntax
// is proven by test/host/validate-debian13 and on the lab's Debian 13 primary.
const examplePrimary = onThisMachine(stackPrimary);

async function swaks(args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout } = await execFileAsync("swaks", args, { encoding: "utf8" });
    return { code: 0, output: stdout };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string };
    return { code: typeof failed.code === "number" ? failed.code : 1, output: failed.stdout ?? "" };
  }
}

describe("Dovecot SASL behind Postfix submission", () => {
  let root: string;
  let dovecotConf: string;
  let dovecot: ChildProcess | undefined;
  let postfix: PostfixInstance;
  let socketmap: SocketmapStandIn;

  beforeAll(async () => {
    root = scratchDir("h3-sasl-");
    socketmap = await startSocketmap(new Set(["alice@brightchain.org"]));
    const cert = await createSelfSignedCert(root, "mail.brightchain.org");
    // Accepted test mail must land in the test's own Maildir (virtual(8) would create the real path).
    const { node } = withTestDropSpool(
      { ...examplePrimary, mynetworks: [], lookup: { ...examplePrimary.lookup, port: socketmap.port } },
      root,
    );
    // `postfix start` creates private/ in the queue directory; Dovecot then puts its listener there.
    postfix = await startPostfix(renderedPostfixOptions(node, { cert, submission: true }));

    const authListener = join(postfix.queueDir, "private", "auth");
    mkdirSync(join(root, "dovecot", "base"), { recursive: true });
    mkdirSync(join(root, "dovecot", "state"), { recursive: true });
    dovecotConf = join(root, "dovecot", "dovecot.conf");
    const passwd = join(root, "dovecot", "passwd");
    writeFileSync(passwd, renderSubmissionPasswd(exampleSecrets), { mode: 0o640 });
    // Same ownership as on a host (root:dovecot 0640): Dovecot's auth process reads it as the dovecot user.
    chownSync(passwd, 0, Number((await execFileAsync("id", ["-g", "dovecot"])).stdout.trim()));
    writeFileSync(
      dovecotConf,
      renderDovecotConf(examplePrimary).replace(SUBMISSION_PASSWD_PATH, passwd).replace(POSTFIX_AUTH_LISTENER, authListener) +
        `base_dir = ${join(root, "dovecot", "base")}\nstate_dir = ${join(root, "dovecot", "state")}\nlog_path = ${join(root, "dovecot", "log")}\n`,
    );
    dovecot = spawn("dovecot", ["-F", "-c", dovecotConf], { stdio: "ignore", detached: true });
    await waitFor("Dovecot's auth listener", () => existsSync(authListener));
  });

  afterAll(async () => {
    await postfix?.stop();
    if (dovecot !== undefined && dovecot.exitCode === null && dovecot.signalCode === null) {
      const exited = new Promise<void>((resolve) => dovecot!.once("exit", () => resolve()));
      dovecot.kill("SIGTERM");
      await exited;
    }
    await socketmap?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("doveconf accepts the rendered file without a warning", async () => {
    const { stderr } = await execFileAsync("doveconf", ["-n", "-c", dovecotConf], { encoding: "utf8" });
    expect(stderr).toBe("");
  });

  it("authenticates the rendered account and refuses a wrong password", async () => {
    const good = await execFileAsync("doveadm", ["-c", dovecotConf, "auth", "test", user.username, user.password], {
      encoding: "utf8",
    });
    expect(good.stdout).toContain(`passdb: ${user.username} auth succeeded`);
    await expect(
      execFileAsync("doveadm", ["-c", dovecotConf, "auth", "test", user.username, "not the password"]),
    ).rejects.toMatchObject({
      code: 77,
    });
  });

  it("offers no AUTH and takes no mail on 587 before STARTTLS", async () => {
    const { client } = await SmtpClient.open(postfix.ports.submission!);
    try {
      expect(await client.command("EHLO client.example.net")).toMatch(/^250 /);
      expect(await client.command("AUTH PLAIN AGZvbwBiYXI=")).toMatch(/^5\d\d /);
      expect(await client.command("MAIL FROM:<node@brightchain.org>")).toMatch(
        /^530 5\.7\.0 Must issue a STARTTLS command first/,
      );
    } finally {
      client.destroy();
    }
  });

  it("accepts mail after STARTTLS + AUTH PLAIN (235) and refuses a wrong password (535)", async () => {
    const common = [
      "--server",
      `127.0.0.1:${postfix.ports.submission}`,
      "--tls",
      "--auth",
      "PLAIN",
      "--auth-user",
      user.username,
      "--from",
      "node@brightchain.org",
      "--to",
      "alice@brightchain.org",
      "--helo",
      "node.brightchain.org",
      "--timeout",
      "20",
    ];
    const good = await swaks([...common, "--auth-password", user.password]);
    expect(good.output).toMatch(/<~ +235 2\.7\.0 Authentication successful/);
    expect(good.output).toMatch(/<~ +250 2\.0\.0 Ok: queued/);
    expect(good.code).toBe(0);
    const bad = await swaks([...common, "--auth-password", "not the password"]);
    expect(bad.output).toMatch(/<~\* +535 5\.7\.8/);
    expect(bad.code).not.toBe(0);
  });
});
