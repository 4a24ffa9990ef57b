// The rendered certbot command and deploy hook against real tools: a local pebble ACME server (with
// pebble-challtestsrv as its DNS, answering 127.0.0.1 for every name) validates a real http-01 challenge
// served by certbot's standalone server; `certbot renew --force-renewal` then runs the rendered hook, which
// must make a running Postfix serve the new certificate — or refuse, loudly, when `postfix check` fails.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { chmodSync, closeSync, existsSync, openSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { certbotIssueCommand, renderDeployHook } from "../../infra/render/tls";
import { examplePrimary } from "../fixtures/nodes";
import { startPostfix, type PostfixInstance } from "../helpers/postfix-server";
import { freeFixedPort, freePort, waitForPort } from "../helpers/renderer-net";
import { presentedCertificate, probeStarttls } from "../helpers/tls-probe";

const work = mkdtempSync(join(tmpdir(), "bc-tls-"));
const daemons: ChildProcess[] = [];
let postfix: PostfixInstance | undefined;
let node: GatewayNode;
let httpPort: number;
const certbotDirs = { config: join(work, "config"), work: join(work, "work"), logs: join(work, "logs") };
const host = examplePrimary.host.hostname;
const live = join(certbotDirs.config, "live", host);

function openssl(args: string[]): void {
  const run = spawnSync("openssl", args, { cwd: work, encoding: "utf8" });
  if (run.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${run.stderr}`);
}

/**
 * Output goes to a file, not a pipe: certbot runs through spawnSync, which stops this process reading pipes,
 * and pebble would block on a full one mid-validation.
 */
function startDaemon(command: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const log = openSync(join(work, `${command}.log`), "a");
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", log, log] });
  closeSync(log);
  daemons.push(child);
  return child;
}

/** certbot with its state in the temp dir, trusting our pebble's TLS certificate. */
function certbot(command: string, env: Record<string, string> = {}): { status: number | null; output: string } {
  const dirs = `--config-dir ${certbotDirs.config} --work-dir ${certbotDirs.work} --logs-dir ${certbotDirs.logs}`;
  const run = spawnSync("sh", ["-c", `${command} ${dirs}`], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, REQUESTS_CA_BUNDLE: join(work, "ca.pem"), ...env },
  });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

function liveSerial(): string {
  return new X509Certificate(readFileSync(join(live, "cert.pem"))).serialNumber;
}

/** The serial of the certificate Postfix presents in a completed STARTTLS handshake on its smtpd port. */
async function servedSerial(port: number): Promise<string> {
  const probe = await probeStarttls({ host: "127.0.0.1", port, servername: host });
  if (probe.verdict.kind !== "handshake") throw new Error(`${JSON.stringify(probe.verdict)}\n${postfix?.maillog() ?? ""}`);
  return new X509Certificate(presentedCertificate(probe)).serialNumber;
}

beforeAll(async () => {
  // A CA of our own for pebble's HTTPS listener; certbot trusts it through REQUESTS_CA_BUNDLE.
  openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=bc-test-ca",
  ]);
  openssl([
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "pebble.key",
    "-out",
    "pebble.csr",
    "-subj",
    "/CN=localhost",
  ]);
  writeFileSync(join(work, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl([
    "x509",
    "-req",
    "-in",
    "pebble.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "pebble.pem",
    "-days",
    "2",
    "-extfile",
    "san.ext",
  ]);

  const [acmePort, managementPort, dnsPort, dnsManagementPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  httpPort = await freeFixedPort();
  writeFileSync(
    join(work, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: join(work, "pebble.pem"),
        privateKey: join(work, "pebble.key"),
        // The port pebble's validator connects to for http-01: certbot's standalone server listens there.
        httpPort,
        tlsPort: await freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  // Only a DNS server: every A query answers 127.0.0.1, no AAAA, so pebble validates against loopback.
  startDaemon("pebble-challtestsrv", [
    "-dns01",
    `127.0.0.1:${dnsPort}`,
    "-http01",
    "",
    "-https01",
    "",
    "-tlsalpn01",
    "",
    "-management",
    `127.0.0.1:${dnsManagementPort}`,
    "-defaultIPv6",
    "",
  ]);
  await waitForPort(dnsPort);
  startDaemon("pebble", ["-config", join(work, "pebble.json"), "-dnsserver", `127.0.0.1:${dnsPort}`], {
    PEBBLE_VA_NOSLEEP: "1",
    // Pebble rejects 5 % of nonces by default to exercise clients; determinism matters more here.
    PEBBLE_WFE_NONCEREJECT: "0",
  });
  await waitForPort(acmePort);

  node = {
    ...examplePrimary,
    tls: { ...examplePrimary.tls, challenge: "http-01", acmeServer: `https://127.0.0.1:${acmePort}/dir` },
  };
}, 60_000);

afterAll(async () => {
  await postfix?.stop();
  await Promise.all(
    daemons.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGTERM");
        }),
    ),
  );
  rmSync(work, { recursive: true, force: true });
});

describe("certbot against a local ACME server", () => {
  it("the rendered issue command gets a certificate through a real http-01 validation", () => {
    const issue = certbot(`${certbotIssueCommand(node)} --http-01-port ${httpPort}`);
    expect(issue.output).toContain("Successfully received certificate");
    expect(issue.status).toBe(0);
    const cert = new X509Certificate(readFileSync(join(live, "fullchain.pem")));
    expect(cert.subjectAltName).toContain(`DNS:${host}`);
    expect(cert.issuer).toContain("Pebble");
  });

  it("running it again is a no-op (--keep-until-expiring)", () => {
    const before = liveSerial();
    const again = certbot(`${certbotIssueCommand(node)} --http-01-port ${httpPort}`);
    expect(again.status).toBe(0);
    expect(again.output).toContain("Certificate not yet due for renewal");
    expect(liveSerial()).toBe(before);
  });

  it("renewal runs the deploy hook, and Postfix serves the new certificate without a restart", async () => {
    const hookDir = join(certbotDirs.config, "renewal-hooks", "deploy");
    mkdirSync(hookDir, { recursive: true });
    writeFileSync(join(hookDir, "brightchain-postfix"), renderDeployHook(node));
    chmodSync(join(hookDir, "brightchain-postfix"), 0o755);

    postfix = await startPostfix({
      // The harness's stock services leave tlsmgr out; without it smtpd disables TLS.
      master: "tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n",
      main: {
        myhostname: host,
        smtpd_tls_security_level: "may",
        smtpd_tls_cert_file: join(live, "fullchain.pem"),
        smtpd_tls_key_file: join(live, "privkey.pem"),
      },
    });
    const first = liveSerial();
    expect(await servedSerial(postfix.smtpPort)).toBe(first);

    // Without a tty certbot renew first sleeps a random 0–8 minutes to spread load on Let's Encrypt.
    const renew = certbot(`certbot renew --force-renewal --no-random-sleep-on-renew --http-01-port ${httpPort}`, {
      MAIL_CONFIG: postfix.configDir,
    });
    expect(renew.output).toContain("brightchain-postfix: Postfix reloaded");
    expect(renew.status).toBe(0);
    const renewed = liveSerial();
    expect(renewed).not.toBe(first);
    expect(postfix.maillog()).toMatch(/postfix\/master\[\d+\]: reload/);
    expect(existsSync(`/proc/${postfix.masterPid}`)).toBe(true);
    expect(await servedSerial(postfix.smtpPort)).toBe(renewed);
  });

  it("a failing postfix check stops the reload and fails the hook", () => {
    const mainCf = join(postfix!.configDir, "main.cf");
    const good = readFileSync(mainCf, "utf8");
    writeFileSync(mainCf, `${good}default_process_limit = lots\n`);
    try {
      const reloadsBefore = postfix!.maillog().match(/: reload/g)?.length ?? 0;
      const hook = spawnSync("sh", [join(certbotDirs.config, "renewal-hooks", "deploy", "brightchain-postfix")], {
        encoding: "utf8",
        env: { ...process.env, MAIL_CONFIG: postfix!.configDir, RENEWED_LINEAGE: live },
      });
      expect(hook.status).toBe(1);
      expect(hook.stderr).toContain("'postfix check' failed; not reloading");
      expect(postfix!.maillog().match(/: reload/g)?.length ?? 0).toBe(reloadsBefore);
    } finally {
      writeFileSync(mainCf, good);
    }
  });
});
