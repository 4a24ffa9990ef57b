// gateway doctor's network checks against real Postfix 3.7 on loopback, run from the node's rendered main.cf and
// master.cf (renderedPostfixOptions) with TLS on a throwaway certificate: STARTTLS chain, name and expiry, the
// TLS floor, the open-relay probe and the closed-port check, each seen passing on the rendered configuration and
// failing on a deliberately broken one. DNS is an injected lookup serving exactly the renderer's records (no name
// server runs here); the lookup probe runs the real postmap against a socketmap, up and then stopped; the MTA-STS
// policy is fetched over real HTTPS from a node:https server on a loopback alias's port 443.
//
// Changed from a real node, and why: loopback addresses and free ports instead of 25 (the harness's); the
// primary without submission (587 needs Dovecot, which has its own tests); empty mynetworks, as seen from outside
// (this machine is loopback, which the rendered mynetworks trusts); a certificate valid 2 days, so the expiry
// check's ✗ is seen on a real handshake.
import { execFile } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { doctorNode, formatReport, reportExitCode, type DnsLookup, type HostCommand } from "../../infra/doctor";
import { dropBacklogCheck, lookupProbeCheck, queueCheck } from "../../infra/doctor/host";
import { doctorNetwork } from "../../infra/doctor/network";
import { mtaStsPolicyCheck } from "../../infra/doctor/mta-sts";
import { closedPortChecks, daneCheck, openRelayCheck, starttlsChecks, tlsFloorCheck } from "../../infra/doctor/service";
import type { CheckResult } from "../../infra/doctor/types";
import type { GatewayNode } from "../../infra/model/types";
import { dnsRecords, ptrExpectations } from "../../infra/render/dns";
import { DROP_SERVICE } from "../../infra/render/postfix";
import { MTA_STS_POLICY_PATH, mtaStsPolicyText } from "../../infra/render/mta-sts";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";
import {
  freePort,
  renderedPostfixOptions,
  sendMail,
  startPostfix,
  waitFor,
  withTestDropSpool,
  type PostfixInstance,
} from "../helpers/postfix-server";
import { createSelfSignedCert, scratchDir, startSocketmap, type SocketmapStandIn } from "../helpers/postfix-tools";

const run = promisify(execFile);

/** The MTA-STS policy host's address: port 443 is what a sender (and doctor) fetches from, on a loopback alias. */
const POLICY_ADDRESS = "127.25.3.9";

/** A HostCommand on this machine: what --on-host runs over SSH, run here against the loopback daemons. */
/**
 * A HostCommand on this machine: what --on-host runs over SSH, run here against the loopback daemons; Postfix's
 * commands find the test instance through MAIL_CONFIG.
 */
const localHost =
  (environment: Record<string, string> = {}): HostCommand =>
  async (script) => {
    try {
      const { stdout, stderr } = await run("sh", ["-c", script], { encoding: "utf8", env: { ...process.env, ...environment } });
      return { exitCode: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return {
        exitCode: typeof failed.code === "number" ? failed.code : 1,
        stdout: failed.stdout ?? "",
        stderr: failed.stderr ?? "",
      };
    }
  };

/** The zone a correct deployment serves: the renderer's records and the PTRs, as the resolver adapter answers. */
function servedZone(nodes: GatewayNode[]): DnsLookup {
  const zone: Record<string, string[]> = {};
  for (const node of nodes) {
    for (const record of dnsRecords(node)) {
      (zone[`${record.type} ${record.name}`] ??= []).push(
        record.type === "MX" ? `${record.priority} ${record.content}` : record.content,
      );
    }
    for (const ptr of ptrExpectations(node)) zone[`PTR ${ptr.reverseName}`] = [ptr.expectedHostname];
  }
  zone[`TXT default._domainkey.${examplePrimary.domain}`] = [`v=DKIM1; h=sha256; k=rsa; p=${"A".repeat(392)}`];
  zone[`A mta-sts.${examplePrimary.domain}`] = [POLICY_ADDRESS];
  return (name, type) => Promise.resolve(zone[`${type} ${name}`] ?? []);
}

const bySubject = (checks: CheckResult[], pattern: RegExp): CheckResult[] => checks.filter((c) => pattern.test(c.subject));

describe("gateway doctor against real Postfix on loopback", () => {
  let root: string;
  let socketmap: SocketmapStandIn;
  let primary: PostfixInstance;
  let relay: PostfixInstance;
  let broken: PostfixInstance;
  let plaintext: PostfixInstance;
  let policyServer: HttpsServer;
  let policyBody: string;
  let primaryCertPem: string;
  let primaryNode: GatewayNode;
  let relayNode: GatewayNode;
  let network: ReturnType<typeof doctorNetwork>;
  const at = (instance: PostfixInstance) => ({ address: "127.0.0.1", port: instance.smtpPort });
  /** The STARTTLS rows for one real handshake with `instance`. */
  const tlsRows = async (node: GatewayNode, instance: PostfixInstance, probe = network) =>
    starttlsChecks(node, at(instance), await probe.starttls(at(instance), node.host.hostname), new Date());

  beforeAll(async () => {
    root = scratchDir("doctor-host-");
    socketmap = await startSocketmap(new Set(["alice@brightchain.org"]));
    /** A certificate for `name` alone, in a folder of its own (createSelfSignedCert writes cert.pem and key.pem). */
    const certFor = (name: string) => {
      mkdirSync(join(root, name));
      return createSelfSignedCert(join(root, name), name, { subjectAltName: `DNS:${name}` });
    };
    const primaryCert = await certFor("mail.brightchain.org");
    primaryCertPem = readFileSync(primaryCert.certFile, "utf8");
    const relayCert = await certFor("mail2.brightchain.org");
    const policyCert = await certFor("mta-sts.brightchain.org");

    const spooled = withTestDropSpool(
      { ...examplePrimary, submission: undefined, mynetworks: [], lookup: { ...examplePrimary.lookup, port: socketmap.port } },
      root,
    );
    primaryNode = spooled.node;
    relayNode = { ...exampleRelay, mynetworks: [], lookup: { ...exampleRelay.lookup, port: socketmap.port } };
    primary = await startPostfix(
      renderedPostfixOptions(primaryNode, { cert: primaryCert, maildropScript: spooled.maildropScript }),
    );
    relay = await startPostfix(renderedPostfixOptions(relayNode, { cert: relayCert }));
    // The two classic mistakes at once: every loopback client trusted to relay, and TLS 1.0/1.1 allowed
    // (with OpenSSL's security level lowered, as without it OpenSSL 3 refuses TLS 1.1 whatever Postfix says).
    broken = await startPostfix(
      renderedPostfixOptions(primaryNode, {
        cert: primaryCert,
        maildropScript: spooled.maildropScript,
        main: {
          mynetworks: "127.0.0.0/8",
          // The harness's error: transports refuse foreign recipients at RCPT by themselves, hiding the relay;
          // discard accepts them, as a real open relay would, and loses anything that got through.
          default_transport: "discard",
          relay_transport: "discard",
          smtpd_tls_protocols: ">=TLSv1",
          smtpd_tls_mandatory_protocols: ">=TLSv1",
          smtpd_tls_ciphers: "medium",
          tls_medium_cipherlist: "DEFAULT:@SECLEVEL=0",
        },
      }),
    );
    // TLS off, as on a node whose certificate never arrived.
    plaintext = await startPostfix(renderedPostfixOptions(primaryNode, { maildropScript: spooled.maildropScript }));

    network = doctorNetwork({
      extraCa: [primaryCert, relayCert, policyCert].map((c) => readFileSync(c.certFile, "utf8")),
    });
    policyBody = mtaStsPolicyText(primaryNode.fleet, primaryNode.mtaSts!);
    policyServer = createHttpsServer(
      { key: readFileSync(policyCert.keyFile), cert: readFileSync(policyCert.certFile) },
      (req, res) => {
        if (req.url === MTA_STS_POLICY_PATH) res.writeHead(200, { "Content-Type": "text/plain" }).end(policyBody);
        else res.writeHead(404).end();
      },
    );
    await new Promise<void>((resolve, reject) => {
      policyServer.once("error", (error) =>
        reject(new Error(`${POLICY_ADDRESS}:443 is taken; this test needs it: ${String(error)}`)),
      );
      policyServer.listen(443, POLICY_ADDRESS, resolve);
    });
  });

  afterAll(async () => {
    await new Promise((resolve) => (policyServer ? policyServer.close(resolve) : resolve(undefined)));
    for (const instance of [plaintext, broken, relay, primary]) await instance?.stop();
    await socketmap?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("STARTTLS on the rendered primary: chain trusted (the test CA given), the host's name, expiry ✗ at 1 day left", async () => {
    const checks = await tlsRows(primaryNode, primary);
    expect(checks.map((c) => [c.subject.replace(/\d+$/, "PORT").replace(/:\d+ /, ":PORT "), c.status])).toEqual([
      ["STARTTLS 127.0.0.1:PORT chain", "ok"],
      ["STARTTLS 127.0.0.1:PORT name", "ok"],
      ["STARTTLS 127.0.0.1:PORT expiry", "fail"],
    ]);
    expect(checks[0]!.detail).toMatch(/^TLSv1\.3, issued by mail\.brightchain\.org$/);
    expect(checks[2]!.detail).toMatch(/^1 days left \(until \d{4}-\d\d-\d\d\)$/);
  });

  it("without the test CA the self-signed chain is ✗; another node's certificate is ✗ on name", async () => {
    const untrusted = await tlsRows(primaryNode, primary, doctorNetwork());
    expect(untrusted[0]).toMatchObject({ status: "fail" });
    expect(untrusted[0]!.detail).toContain("SELF_SIGNED");
    const wrongName = await tlsRows(primaryNode, relay);
    expect(wrongName[0]).toMatchObject({ status: "ok" });
    expect(wrongName[1]).toMatchObject({
      status: "fail",
      detail: "certificate is for mail2.brightchain.org, not mail.brightchain.org",
    });
  });

  it("DANE: a TLSA 3 1 1 of the served key ✓, one of another key ✗ (the lab's TLSA mismatch)", async () => {
    const handshake = await network.starttls(at(primary), primaryNode.host.hostname);
    const key = new X509Certificate(primaryCertPem).publicKey.export({ type: "spki", format: "der" });
    const served = `3 1 1 ${createHash("sha256").update(key).digest("hex")}`;
    const tlsa =
      (record: string): DnsLookup =>
      (name, type) =>
        Promise.resolve(type === "TLSA" && name === "_25._tcp.mail.brightchain.org" ? [record] : []);
    expect(await daneCheck(primaryNode, at(primary), handshake, tlsa(served))).toMatchObject({ status: "ok" });
    const stale = await daneCheck(primaryNode, at(primary), handshake, tlsa(`3 1 1 ${"00".repeat(32)}`));
    expect(stale).toMatchObject({ status: "fail" });
    expect(stale!.fix).toContain(`publish TLSA _25._tcp.mail.brightchain.org ${served}`);
  });

  it("a Postfix offering no STARTTLS: one ✗ saying so", async () => {
    const checks = await tlsRows(primaryNode, plaintext);
    expect(checks).toHaveLength(1);
    expect(checks[0]).toMatchObject({ status: "fail", detail: "no-starttls: EHLO reply does not list STARTTLS (250)" });
  });

  it("MTA-STS policy over real HTTPS: the announced policy ✓; one listing a wrong MX ✗ naming it", async () => {
    const lookup = servedZone([primaryNode, relayNode]);
    const records = dnsRecords(primaryNode);
    const context = { publishHint: "`pulumi up --stack primary` publishes it" };
    expect(await mtaStsPolicyCheck(primaryNode, records, lookup, network, context)).toMatchObject({ status: "ok" });
    const served = policyBody;
    policyBody = served.replace("mx: mail2.brightchain.org", "mx: mx.old.example");
    try {
      const wrong = await mtaStsPolicyCheck(primaryNode, records, lookup, network, context);
      expect(wrong).toMatchObject({ status: "fail" });
      expect(wrong!.detail).toContain(
        "mx: mail.brightchain.org, mx.old.example instead of mail.brightchain.org, mail2.brightchain.org",
      );
    } finally {
      policyBody = served;
    }
    const untrusted = await mtaStsPolicyCheck(primaryNode, records, lookup, doctorNetwork(), context);
    expect(untrusted!.detail).toContain("certificate not trusted for mta-sts.brightchain.org");
  });

  it("TLS floor: the rendered primary and relay refuse TLS 1.1 ✓; TLS 1.0/1.1 allowed is ✗", async () => {
    for (const [node, instance] of [
      [primaryNode, primary],
      [relayNode, relay],
    ] as const) {
      const check = await tlsFloorCheck(node, at(instance), network);
      expect(check.status, check.detail).toBe("ok");
      expect(check.detail).toMatch(/^TLS 1\.1 refused \(.*\); TLSv1\.2 completed$/);
    }
    const weak = await tlsFloorCheck(primaryNode, at(broken), network);
    expect(weak, JSON.stringify(weak)).toMatchObject({ status: "fail", detail: "the server completed a TLSv1.1 handshake" });
  });

  it("open relay: the rendered primary and relay refuse RCPT to a foreign domain (554) ✓; a trusting mynetworks is ✗", async () => {
    for (const [node, instance] of [
      [primaryNode, primary],
      [relayNode, relay],
    ] as const) {
      const check = await openRelayCheck(node, at(instance), network);
      expect(check.status, check.detail).toBe("ok");
      expect(check.detail).toMatch(/refused: 554 5\.7\.1 .*Relay access denied/);
    }
    const open = await openRelayCheck(primaryNode, at(broken), network);
    expect(open.status, open.detail).toBe("fail");
    expect(open.detail).toMatch(/^OPEN RELAY: RCPT TO:<doctor-probe@example\.com> accepted \(250 /);
    // The probe quit before DATA: nothing entered the queue.
    expect(await broken.queuedIds()).toEqual([]);
  });

  it("closed ports: a listening lookup port is ✗, a closed one ✓", async () => {
    const listening = await closedPortChecks(primaryNode, "127.0.0.1", network);
    expect(listening[0]).toMatchObject({ subject: `closed 127.0.0.1:${socketmap.port}`, status: "fail" });
    const closedPort = await freePort();
    const closed = await closedPortChecks(
      { ...primaryNode, lookup: { ...primaryNode.lookup, port: closedPort } },
      "127.0.0.1",
      network,
    );
    expect(closed[0]).toMatchObject({ subject: `closed 127.0.0.1:${closedPort}`, status: "ok" });
    expect(closed[0]!.detail).toContain("ECONNREFUSED");
  });

  it("lookup probe with the real postmap: the socketmap answering ✓, stopped ✗", async () => {
    const up = await lookupProbeCheck(primaryNode, localHost());
    expect(up, up.detail).toMatchObject({ status: "ok" });
    const stopped = await freePort();
    const down = await lookupProbeCheck({ ...primaryNode, lookup: { ...primaryNode.lookup, port: stopped } }, localHost());
    expect(down.status).toBe("fail");
    expect(down.detail).toMatch(/connect to 127\.0\.0\.1:\d+: Connection refused/);
  });

  it("the whole primary: DNS and PTR ✓ from the injected zone, the network rows from the real Postfix", async () => {
    const checks = await doctorNode(primaryNode, {
      lookup: servedZone([primaryNode, relayNode]),
      network,
      addresses: ["127.0.0.1"],
      ports: { smtp: primary.smtpPort, submission: 587 },
      publishHint: "`pulumi up --stack primary` publishes it",
      now: new Date(),
    });
    const report = { stack: "primary", host: primaryNode.host.hostname, checks };
    const table = formatReport(report);
    expect(
      checks.filter((c) => c.group === "dns" || c.group === "ptr").every((c) => c.status === "ok"),
      table,
    ).toBe(true);
    expect(
      bySubject(checks, /^(STARTTLS .* (chain|name)|TLS ≥ 1\.2 |open relay )/).map((c) => c.status),
      table,
    ).toEqual(["ok", "ok", "ok", "ok"]);
    // The only ✗: the 2-day certificate, and the stand-in socketmap listening on the address probed.
    expect(checks.filter((c) => c.status === "fail").map((c) => c.subject)).toEqual(
      expect.arrayContaining([`STARTTLS 127.0.0.1:${primary.smtpPort} expiry`, `closed 127.0.0.1:${socketmap.port}`]),
    );
    expect(reportExitCode(report)).toBe(1);
  });

  it("queue and drop backlog on the real primary: a deferred message counted, then delivered into new/ and counted there", async () => {
    const onPrimary = localHost({ MAIL_CONFIG: primary.configDir });
    await primary.setMainCf({ defer_transports: DROP_SERVICE });
    const sent = await sendMail({ port: primary.smtpPort, from: "sender@example.net", to: ["alice@brightchain.org"] });
    expect(sent.message?.code, JSON.stringify(sent)).toBe(250);
    await waitFor("the message in the deferred queue", async () =>
      (await primary.queue()).some((m) => m.queue_name === "deferred"),
    );
    expect(await queueCheck(primaryNode, onPrimary, new Date())).toMatchObject({
      status: "ok",
      detail: expect.stringMatching(/^1 queued, 1 deferred, oldest [01] min$/),
    });
    expect((await dropBacklogCheck(primaryNode, onPrimary, new Date())).detail).toMatch(/^0 waiting; 0 in /);

    await primary.setMainCf({ defer_transports: "" });
    await primary.flushQueue();
    await primary.waitForQueueEmpty();
    expect((await queueCheck(primaryNode, onPrimary, new Date())).detail).toBe("0 queued, 0 deferred");
    const drop = await dropBacklogCheck(primaryNode, onPrimary, new Date());
    expect(drop).toMatchObject({ status: "ok", detail: expect.stringMatching(/^1 waiting, oldest \d+ s; 0 in /) });
    // The same message an hour on, never handed off: the inbound processor is stuck.
    const later = await dropBacklogCheck(primaryNode, onPrimary, new Date(Date.now() + 3_600_000));
    expect(later.status).toBe("fail");
    expect(later.fix).toContain("systemctl status brightchain-inbound");
  });
});
