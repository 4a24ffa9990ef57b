// brightchain-send (the built CLI) against a real Postfix submission service: STARTTLS required
// (smtpd_tls_security_level=encrypt), SASL through a real Dovecot, delivery to a Maildir we can read.
import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDovecotSasl, type DovecotSasl } from "../helpers/dovecot-sasl";
import { startPostfix, waitFor, type PostfixInstance } from "../helpers/postfix-server";
import { createSelfSignedCert } from "../helpers/postfix-tools";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const NOBODY = 65534;

let work: string;
let sendCli: string;
let certFile: string;
let postfix: PostfixInstance;
let dovecot: DovecotSasl;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "bc-outbound-"));
  sendCli = await bundleRuntimeEntry("brightchain-send", work);
  const cert = await createSelfSignedCert(work, "localhost", { subjectAltName: "DNS:localhost,IP:127.0.0.1" });
  certFile = cert.certFile;

  postfix = await startPostfix({
    main: {
      smtpd_tls_cert_file: cert.certFile,
      smtpd_tls_key_file: cert.keyFile,
      smtpd_tls_security_level: "may",
      // Let the Received header show the TLS session and the SASL login, which the test reads back.
      smtpd_tls_received_header: "yes",
      smtpd_sasl_authenticated_header: "yes",
      // Delivered mail lands in a Maildir of the test's own, so "accepted" is checked by reading it.
      virtual_mailbox_domains: "example.net",
      virtual_mailbox_base: "{dir}/vmail",
      virtual_mailbox_maps: "static:inbox/",
      virtual_uid_maps: `static:${NOBODY}`,
      virtual_gid_maps: `static:${NOBODY}`,
    },
    // tlsmgr is not among the harness's stock services; without it smtpd answers STARTTLS with 454.
    master: `
tlsmgr unix - - n 1000? 1 tlsmgr
127.0.0.1:{port:submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=private/auth
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
`,
  });
  mkdirSync(join(postfix.dir, "vmail"));
  chownSync(join(postfix.dir, "vmail"), NOBODY, NOBODY);
  dovecot = await startDovecotSasl({
    authSocket: join(postfix.queueDir, "private", "auth"),
    users: { "node@brightchain.org": "correct horse" },
  });
});

afterAll(async () => {
  await postfix?.stop();
  await dovecot?.stop();
  rmSync(work, { recursive: true, force: true });
});

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function send(env: Record<string, string>, args: string[], input = "hello over submission\n"): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [sendCli, ...args],
      {
        env: {
          PATH: process.env.PATH,
          EMAIL_DOMAIN: "brightchain.org",
          GATEWAY_POSTFIX_HOST: "127.0.0.1",
          GATEWAY_POSTFIX_PORT: String(postfix.ports.submission),
          GATEWAY_POSTFIX_CA_FILE: certFile,
          ...env,
        },
      },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr });
      },
    );
    child.stdin!.end(input);
  });
}

const goodLogin = { GATEWAY_POSTFIX_USER: "node@brightchain.org", GATEWAY_POSTFIX_PASS: "correct horse" };
const inbox = () => join(postfix.dir, "vmail", "inbox", "new");

describe("brightchain-send through real Postfix submission with Dovecot SASL", () => {
  it("delivers with the right password, over STARTTLS", async () => {
    const result = await send(goodLogin, [
      "--from",
      "node@brightchain.org",
      "--to",
      "carol@example.net",
      "--subject",
      "good login",
    ]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^accepted for carol@example.net: 250 2\.0\.0 Ok: queued as \w+/);

    await waitFor("the message in the Maildir", () => existsSync(inbox()) && readdirSync(inbox()).length === 1);
    const delivered = readFileSync(join(inbox(), readdirSync(inbox())[0]!), "utf8");
    expect(delivered).toContain("Subject: good login");
    expect(delivered).toContain("hello over submission");
    // Postfix records the TLS session and the SASL login in its Received header.
    expect(delivered).toMatch(/using TLSv1\.[23]/);
    expect(delivered).toMatch(/Authenticated sender: node@brightchain\.org/);
  });

  it("reports a wrong password as a permanent 535, exit 1, nothing retried", async () => {
    const result = await send({ ...goodLogin, GATEWAY_POSTFIX_PASS: "wrong" }, [
      "--from",
      "node@brightchain.org",
      "--to",
      "carol@example.net",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/refused: 127\.0\.0\.1:\d+: server answered 535 5\.7\.8 Error: authentication failed/);
    expect(result.stderr).not.toContain("retrying");
  });

  it("is refused without a login, with the server's reason", async () => {
    const result = await send({}, ["--from", "node@brightchain.org", "--to", "carol@example.net"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/refused: .*server answered 5\d\d /);
  });

  it("refuses to trust a certificate it cannot verify", async () => {
    const result = await send({ ...goodLogin, GATEWAY_POSTFIX_CA_FILE: "" }, [
      "--from",
      "node@brightchain.org",
      "--to",
      "carol@example.net",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("TLS certificate not trusted");
  });

  it("will not send in clear to a server without STARTTLS", async () => {
    // The plain smtpd (port 25 role) of the same Postfix has TLS "may" but we point at a listener without it.
    await postfix.setMainCf({ smtpd_tls_security_level: "none" });
    try {
      const result = await send({ ...goodLogin, GATEWAY_POSTFIX_PORT: String(postfix.smtpPort) }, [
        "--from",
        "node@brightchain.org",
        "--to",
        "carol@example.net",
      ]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/refused: .*(ETLS|STARTTLS)/);
    } finally {
      await postfix.setMainCf({ smtpd_tls_security_level: "may" });
    }
  });
});
