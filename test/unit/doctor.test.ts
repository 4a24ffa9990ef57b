// gateway doctor's checks over a fake zone, fake SMTP/TLS probes and a fake host: each check seen good and bad,
// the table and JSON, and the exit codes. The real network and a real Postfix: test/host/doctor.test.ts.
import { createHash, generateKeyPairSync } from "node:crypto";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../../infra/cli/dispatch";
import { dkimPresenceCheck, ptrChecks, recordChecks } from "../../infra/doctor/dns";
import { dropBacklogCheck, hostDkimKey, lookupProbeCheck, queueCheck } from "../../infra/doctor/host";
import { doctorNode, runDoctor, type NodeProbes } from "../../infra/doctor";
import { formatReport, reportExitCode, reportJson } from "../../infra/doctor/report";
import { parseResolverAddress } from "../../infra/doctor/resolver";
import { decodeAnswer, DnsWireError, encodeQuery, tlsaText, TYPE_TLSA } from "../../infra/doctor/dns-wire";
import {
  certificateNames,
  closedPortChecks,
  daneCheck,
  openRelayCheck,
  starttlsChecks,
  tlsFloorCheck,
} from "../../infra/doctor/service";
import {
  ResolverUnreachableError,
  type CheckResult,
  type DnsLookup,
  type DoctorNetwork,
  type HostCommand,
  type HttpsAnswer,
  type TlsHandshake,
} from "../../infra/doctor/types";
import type { DnsRecord } from "../../infra/model/types";
import { dkimRecordText, dnsRecords, ptrExpectations } from "../../infra/render/dns";
import { mtaStsPolicyText } from "../../infra/render/mta-sts";
import { mtaStsPolicyCheck } from "../../infra/doctor/mta-sts";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

const repo = path.resolve(__dirname, "../..");
const NOW = new Date("2026-12-07T00:00:00Z");
const DAY = 86_400_000;
const key = (): string =>
  generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "der" }).toString("base64");
const hostKey = key();
const context = { publishHint: "`pulumi up --stack primary` publishes it" };

type Zone = Record<string, string[]>;

/** The zone a correct deployment of both example stacks serves, as the resolver adapter answers it. */
function goodZone(dkimKey = hostKey): Zone {
  const zone: Zone = {};
  for (const record of [...dnsRecords(examplePrimary, dkimKey), ...dnsRecords(exampleRelay)]) {
    const value = record.type === "MX" ? `${record.priority} ${record.content}` : record.content;
    (zone[`${record.type} ${record.name}`] ??= []).push(value);
  }
  for (const node of [examplePrimary, exampleRelay]) {
    for (const ptr of ptrExpectations(node)) zone[`PTR ${ptr.reverseName}`] = [ptr.expectedHostname];
  }
  zone["A mta-sts.brightchain.org"] = ["192.0.2.80"];
  return zone;
}

function lookupOf(zone: Zone, failing: Record<string, Error> = {}): DnsLookup {
  return (name, type) => {
    const error = failing[`${type} ${name}`];
    if (error) return Promise.reject(error);
    return Promise.resolve(zone[`${type} ${name}`] ?? []);
  };
}

const statuses = (results: CheckResult[]) => Object.fromEntries(results.map((r) => [r.subject, r.status]));
const only = (results: CheckResult[], subject: string): CheckResult => {
  const found = results.filter((r) => r.subject === subject);
  expect(found, `one check named ${subject} in ${results.map((r) => r.subject).join(" | ")}`).toHaveLength(1);
  return found[0]!;
};

describe("DNS records against the renderer's list", () => {
  const records = dnsRecords(examplePrimary, hostKey);

  it("a correct zone: every record ✓", async () => {
    const results = await recordChecks(examplePrimary, records, lookupOf(goodZone()), context);
    // Every record the renderer lists is checked, those added after this test was written too.
    expect(results.length).toBeGreaterThanOrEqual(records.length - 1);
    expect(results.map((r) => r.subject)).toEqual(
      expect.arrayContaining([
        "A mail.brightchain.org",
        "AAAA mail.brightchain.org",
        "MX brightchain.org",
        "TXT brightchain.org (v=spf1)",
        "TXT _dmarc.brightchain.org (v=DMARC1)",
        "TXT default._domainkey.brightchain.org (v=DKIM1)",
      ]),
    );
    expect(
      results.every((r) => r.status === "ok"),
      JSON.stringify(results, null, 2),
    ).toBe(true);
  });

  it("an AAAA written in another compression, names in another case: still ✓", async () => {
    const zone: Zone = {
      ...goodZone(),
      "AAAA mail.brightchain.org": ["2001:0db8:0:0:0:0:0:0010"],
      "MX brightchain.org": ["10 MAIL.brightchain.org", "20 mail2.brightchain.org"],
    };
    const results = await recordChecks(examplePrimary, records, lookupOf(zone), context);
    expect(results.every((r) => r.status === "ok")).toBe(true);
  });

  it("A: a missing or an extra address ✗, naming what to publish and what to remove", async () => {
    const wrong = await recordChecks(
      examplePrimary,
      records,
      lookupOf({ ...goodZone(), "A mail.brightchain.org": ["203.0.113.99"] }),
      context,
    );
    const a = only(wrong, "A mail.brightchain.org");
    expect(a.status).toBe("fail");
    expect(a.fix).toContain("publish A mail.brightchain.org 203.0.113.10");
    expect(a.fix).toContain("remove A mail.brightchain.org 203.0.113.99");
    expect(a.fix).toContain("pulumi up --stack primary");
  });

  it("MX: exactly the fleet, this node's priority", async () => {
    const check = async (mx: string[]) =>
      only(
        await recordChecks(examplePrimary, records, lookupOf({ ...goodZone(), "MX brightchain.org": mx }), context),
        "MX brightchain.org",
      );
    expect((await check(["10 mail.brightchain.org"])).detail).toContain("no MX for fleet node mail2.brightchain.org");
    expect((await check(["10 mail.brightchain.org", "20 mail2.brightchain.org", "5 mx.elsewhere.example"])).detail).toContain(
      "5 mx.elsewhere.example is not a fleet node",
    );
    expect((await check(["30 mail.brightchain.org", "20 mail2.brightchain.org"])).detail).toContain(
      "10 mail.brightchain.org missing",
    );
    expect((await check(["10 mail.brightchain.org", "20 mail2.brightchain.org"])).status).toBe("ok");
  });

  it("SPF: missing, different, or two records ✗; other TXT records at the name do not count", async () => {
    const spf = async (texts: string[]) =>
      only(
        await recordChecks(examplePrimary, records, lookupOf({ ...goodZone(), "TXT brightchain.org": texts }), context),
        "TXT brightchain.org (v=spf1)",
      );
    const expected = records.find((r) => r.content.startsWith("v=spf1"))!.content;
    expect((await spf(["google-site-verification=abc", expected])).status).toBe("ok");
    expect(await spf(["google-site-verification=abc"])).toMatchObject({ status: "fail", detail: "missing" });
    const relayMissing = await spf(["v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 -all"]);
    expect(relayMissing.status).toBe("fail");
    expect(relayMissing.detail).toContain(`expected "${expected}"`);
    expect(relayMissing.fix).toContain(`set TXT brightchain.org "${expected}"`);
    expect(relayMissing.why).toBe(records.find((r) => r.content === expected)!.purpose);
    const two = await spf([expected, "v=spf1 include:_spf.google.com ~all"]);
    expect(two.status).toBe("fail");
    expect(two.detail).toContain("2 records of this kind");
  });

  it("DMARC: a different policy ✗", async () => {
    const zone = { ...goodZone(), "TXT _dmarc.brightchain.org": ["v=DMARC1; p=none"] };
    const dmarc = only(
      await recordChecks(examplePrimary, records, lookupOf(zone), context),
      "TXT _dmarc.brightchain.org (v=DMARC1)",
    );
    expect(dmarc.status).toBe("fail");
    expect(dmarc.detail).toContain('served "v=DMARC1; p=none"');
  });

  it("DKIM with the host's key: a record for another key ✗", async () => {
    const results = await recordChecks(examplePrimary, records, lookupOf(goodZone(key())), context);
    expect(only(results, "TXT default._domainkey.brightchain.org (v=DKIM1)").status).toBe("fail");
  });

  it("DKIM without the host's key: present with a key ✓, missing ✗", async () => {
    expect((await dkimPresenceCheck(examplePrimary, lookupOf(goodZone()), context)).status).toBe("ok");
    const missing = await dkimPresenceCheck(examplePrimary, lookupOf({}), context);
    expect(missing).toMatchObject({ status: "fail", detail: "missing" });
    expect(missing.fix).toContain("/etc/dkim/default.txt");
    const empty = await dkimPresenceCheck(
      examplePrimary,
      lookupOf({ "TXT default._domainkey.brightchain.org": ["v=DKIM1; p="] }),
      context,
    );
    expect(empty.status).toBe("fail");
  });

  it("a record kind without a rule of its own (CAA) is checked by presence, good and bad", async () => {
    const caa: DnsRecord = {
      name: "brightchain.org",
      type: "CAA" as string as DnsRecord["type"],
      content: '0 issue "letsencrypt.org"',
      ttl: 3600,
      purpose: "CAA",
    };
    const good = await recordChecks(
      examplePrimary,
      [caa],
      lookupOf({ "CAA brightchain.org": ['0 issue "letsencrypt.org"', '0 iodef "mailto:x@y"'] }),
      context,
    );
    expect(good[0]).toMatchObject({ subject: "CAA brightchain.org", status: "ok" });
    const bad = await recordChecks(
      examplePrimary,
      [caa],
      lookupOf({ "CAA brightchain.org": ['0 issue "other-ca.example"'] }),
      context,
    );
    expect(bad[0]!.status).toBe("fail");
    expect(bad[0]!.fix).toContain('publish CAA brightchain.org 0 issue "letsencrypt.org"');
  });

  it("a versioned TXT the renderer adds (MTA-STS) gets the one-record, exact-value rule", async () => {
    const sts = {
      name: "_mta-sts.brightchain.org",
      type: "TXT",
      content: "v=STSv1; id=2026120701",
      ttl: 3600,
      purpose: "MTA-STS",
    } satisfies DnsRecord;
    const results = await recordChecks(
      examplePrimary,
      [sts],
      lookupOf({ "TXT _mta-sts.brightchain.org": ["v=STSv1; id=old"] }),
      context,
    );
    expect(results[0]).toMatchObject({ subject: "TXT _mta-sts.brightchain.org (v=STSv1)", status: "fail" });
  });

  it("a lookup that fails (SERVFAIL) is that record's ✗; no name server answering stops the run", async () => {
    const servfail = lookupOf(goodZone(), { "TXT _dmarc.brightchain.org": new Error("TXT _dmarc.brightchain.org: ESERVFAIL") });
    const results = await recordChecks(examplePrimary, records, servfail, context);
    expect(only(results, "TXT _dmarc.brightchain.org").detail).toContain("ESERVFAIL");
    expect(results.filter((r) => r.status === "fail")).toHaveLength(1);
    const unreachable: DnsLookup = () => Promise.reject(new ResolverUnreachableError("no answer"));
    await expect(recordChecks(examplePrimary, records, unreachable, context)).rejects.toBeInstanceOf(ResolverUnreachableError);
  });
});

describe("PTR, forward-confirmed, for every address", () => {
  it("both addresses of the primary ✓", async () => {
    expect(statuses(await ptrChecks(examplePrimary, lookupOf(goodZone())))).toEqual({
      "PTR 203.0.113.10": "ok",
      "PTR 2001:db8::10": "ok",
    });
  });

  it("no PTR, a PTR naming another host, a PTR whose name does not point back: ✗ each, fix at the address's provider", async () => {
    const [v4, v6] = ptrExpectations(examplePrimary);
    const none = await ptrChecks(examplePrimary, lookupOf({ ...goodZone(), [`PTR ${v6!.reverseName}`]: [] }));
    expect(only(none, "PTR 2001:db8::10")).toMatchObject({ status: "fail", detail: "no PTR record" });
    expect(only(none, "PTR 2001:db8::10").fix).toContain("at the provider of the address");
    const other = await ptrChecks(
      examplePrimary,
      lookupOf({ ...goodZone(), [`PTR ${v4!.reverseName}`]: ["static.203-0-113-10.example.net"] }),
    );
    expect(only(other, "PTR 203.0.113.10").detail).toContain("static.203-0-113-10.example.net");
    const unconfirmed = await ptrChecks(examplePrimary, lookupOf({ ...goodZone(), "A mail.brightchain.org": ["203.0.113.11"] }));
    expect(only(unconfirmed, "PTR 203.0.113.10").detail).toContain("not forward-confirmed");
    expect(only(unconfirmed, "PTR 2001:db8::10").status).toBe("ok");
  });
});

const cert = (names: string[], daysLeft: number) => ({
  subject: names[0]!,
  issuer: "R11",
  names,
  validTo: new Date(NOW.getTime() + daysLeft * DAY),
});
const goodHandshake: TlsHandshake = {
  kind: "handshake",
  protocol: "TLSv1.3",
  authorized: true,
  chain: [cert(["mail.brightchain.org"], 60)],
};

const servedPolicy = (
  body = mtaStsPolicyText(examplePrimary.fleet, examplePrimary.mtaSts!),
): HttpsAnswer & { kind: "response" } => ({
  kind: "response",
  status: 200,
  contentType: "text/plain",
  body,
  authorized: true,
});

/** A network whose answers the test sets; the policy is the correct one unless set. */
function fakeNetwork(answers: {
  starttls?: (versions?: { maxVersion: string }) => TlsHandshake;
  relay?: Awaited<ReturnType<DoctorNetwork["relayProbe"]>>;
  open?: number[];
  unreachable?: boolean;
  policy?: HttpsAnswer;
}): DoctorNetwork {
  return {
    httpsGet: () => Promise.resolve(answers.policy ?? servedPolicy()),
    starttls: (_target, _name, versions) => Promise.resolve((answers.starttls ?? (() => goodHandshake))(versions)),
    relayProbe: () => Promise.resolve(answers.relay ?? { kind: "failed", reason: "not set" }),
    connect: (target) =>
      Promise.resolve(
        answers.unreachable
          ? { kind: "closed", reason: "ENETUNREACH" }
          : target.port === 25 || answers.open?.includes(target.port)
            ? { kind: "open" }
            : { kind: "closed", reason: "ECONNREFUSED" },
      ),
  };
}
const target = { address: "203.0.113.10", port: 25 };

describe("MTA-STS policy", () => {
  const check = (network: DoctorNetwork, zone = goodZone()) =>
    mtaStsPolicyCheck(examplePrimary, dnsRecords(examplePrimary), lookupOf(zone), network, context);
  const expected = mtaStsPolicyText(examplePrimary.fleet, examplePrimary.mtaSts!);

  it("the policy the _mta-sts id announces, served as text/plain with a trusted certificate: ✓", async () => {
    expect(await check(fakeNetwork({}))).toMatchObject({
      status: "ok",
      detail: "mode testing, mx mail.brightchain.org, mail2.brightchain.org, max_age 604800",
    });
  });

  it("a policy listing a wrong MX ✗ naming the field; wrong type, status, certificate, no address ✗ each", async () => {
    const wrongMx = await check(
      fakeNetwork({ policy: servedPolicy(expected.replace("mail2.brightchain.org", "mx.old.example")) }),
    );
    expect(wrongMx).toMatchObject({ status: "fail" });
    expect(wrongMx!.detail).toBe(
      "served policy differs: mx: mail.brightchain.org, mx.old.example instead of mail.brightchain.org, mail2.brightchain.org",
    );
    expect((await check(fakeNetwork({ policy: { ...servedPolicy(), contentType: "text/html" } })))!.detail).toContain(
      "text/plain",
    );
    expect((await check(fakeNetwork({ policy: { ...servedPolicy(), status: 404 } })))!.detail).toBe("HTTP 404");
    const untrusted = { ...servedPolicy(), authorized: false, authorizationError: "ERR_TLS_CERT_ALTNAME_INVALID" };
    expect((await check(fakeNetwork({ policy: untrusted })))!.detail).toContain("ERR_TLS_CERT_ALTNAME_INVALID");
    const noAddress = { ...goodZone(), "A mta-sts.brightchain.org": [] };
    expect((await check(fakeNetwork({}), noAddress))!.detail).toContain("has no address");
  });

  it("no check when the stack announces no policy (a relay)", async () => {
    expect(
      await mtaStsPolicyCheck(exampleRelay, dnsRecords(exampleRelay), lookupOf(goodZone()), fakeNetwork({}), context),
    ).toBeUndefined();
  });
});

describe("DANE: TLSA against the served certificate", () => {
  const leafKey = Buffer.from("the leaf's SubjectPublicKeyInfo");
  const issuerKey = Buffer.from("the issuer's SubjectPublicKeyInfo");
  const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");
  const handshake: TlsHandshake = {
    ...goodHandshake,
    chain: [
      { ...cert(["mail.brightchain.org"], 60), publicKeyDer: leafKey },
      { ...cert(["R11"], 600), publicKeyDer: issuerKey },
    ],
  };
  const tlsa = (records: string[]) => lookupOf({ "TLSA _25._tcp.mail.brightchain.org": records });

  it("3 1 1 of the leaf's key ✓, 2 1 1 of the issuer's ✓, none published: no check", async () => {
    expect(await daneCheck(examplePrimary, target, handshake, tlsa([`3 1 1 ${sha256(leafKey)}`]))).toMatchObject({
      status: "ok",
    });
    expect(await daneCheck(examplePrimary, target, handshake, tlsa([`2 1 1 ${sha256(issuerKey)}`]))).toMatchObject({
      status: "ok",
    });
    expect(await daneCheck(examplePrimary, target, handshake, tlsa([]))).toBeUndefined();
  });

  it("a TLSA for another key ✗ naming the served key's record; the issuer's key as 3 1 1 ✗", async () => {
    const mismatch = await daneCheck(examplePrimary, target, handshake, tlsa([`3 1 1 ${sha256(Buffer.from("old key"))}`]));
    expect(mismatch).toMatchObject({ status: "fail" });
    expect(mismatch!.fix).toContain(`publish TLSA _25._tcp.mail.brightchain.org 3 1 1 ${sha256(leafKey)}`);
    expect((await daneCheck(examplePrimary, target, handshake, tlsa([`3 1 1 ${sha256(issuerKey)}`])))!.status).toBe("fail");
  });

  it("TLSA published but no handshake ✗", async () => {
    const check = await daneCheck(
      examplePrimary,
      target,
      { kind: "failed", reason: "ECONNREFUSED" },
      tlsa([`3 1 1 ${sha256(leafKey)}`]),
    );
    expect(check).toMatchObject({ status: "fail" });
  });
});

describe("the TLSA wire format", () => {
  /** An answer to `query` carrying `rdata` as TLSA records, the owner name compressed to the question's. */
  function answerTo(query: Buffer, rdata: Buffer[], flags = 0x8180): Buffer {
    const header = Buffer.from(query.subarray(0, 12));
    header.writeUInt16BE(flags, 2);
    header.writeUInt16BE(rdata.length, 6);
    const records = rdata.map((data) => {
      const fixed = Buffer.alloc(12);
      fixed.writeUInt16BE(0xc00c, 0);
      fixed.writeUInt16BE(TYPE_TLSA, 2);
      fixed.writeUInt16BE(1, 4);
      fixed.writeUInt32BE(3600, 6);
      fixed.writeUInt16BE(data.length, 10);
      return Buffer.concat([fixed, data]);
    });
    return Buffer.concat([header, query.subarray(12), ...records]);
  }
  const digest = Buffer.alloc(32, 0xab);

  it("a query and its answer round-trip to dig's text", () => {
    const query = encodeQuery(0x1234, "_25._tcp.mail.brightchain.org", TYPE_TLSA);
    const answer = decodeAnswer(answerTo(query, [Buffer.concat([Buffer.from([3, 1, 1]), digest])]));
    expect(answer).toMatchObject({ id: 0x1234, rcode: 0, truncated: false });
    expect(answer.records.map((r) => tlsaText(r.data))).toEqual([`3 1 1 ${digest.toString("hex")}`]);
  });

  it("hostile answers are errors, never partial answers", () => {
    const query = encodeQuery(1, "_25._tcp.mail.brightchain.org", TYPE_TLSA);
    const good = answerTo(query, [Buffer.concat([Buffer.from([3, 1, 1]), digest])]);
    expect(() => decodeAnswer(good.subarray(0, good.length - 5))).toThrow(DnsWireError);
    expect(() => decodeAnswer(good.subarray(0, 8))).toThrow(/shorter than a DNS header/);
    expect(() => decodeAnswer(query)).toThrow(/a query, not an answer/);
    expect(() => tlsaText(Buffer.from([3, 1]))).toThrow(/at least 4 expected/);
    expect(() => encodeQuery(1, `${"a".repeat(64)}.example`, TYPE_TLSA)).toThrow(/label of 64 bytes/);
  });
});

describe("STARTTLS: chain, name, expiry", () => {
  it("a trusted certificate for the host, 60 days left: three ✓", async () => {
    expect(statuses(await starttlsChecks(examplePrimary, target, goodHandshake, NOW))).toEqual({
      "STARTTLS 203.0.113.10:25 chain": "ok",
      "STARTTLS 203.0.113.10:25 name": "ok",
      "STARTTLS 203.0.113.10:25 expiry": "ok",
    });
  });

  it("untrusted chain ✗, another name ✗, expiry ! at 14 days and ✗ when expired", async () => {
    const run = (handshake: TlsHandshake) => starttlsChecks(examplePrimary, target, handshake, NOW);
    const selfSigned = await run({ ...goodHandshake, authorized: false, authorizationError: "DEPTH_ZERO_SELF_SIGNED_CERT" });
    expect(only(selfSigned, "STARTTLS 203.0.113.10:25 chain")).toMatchObject({ status: "fail" });
    expect(only(selfSigned, "STARTTLS 203.0.113.10:25 chain").detail).toContain("DEPTH_ZERO_SELF_SIGNED_CERT");
    const wrongName = await run({ ...goodHandshake, chain: [cert(["www.brightchain.org"], 60)] });
    expect(only(wrongName, "STARTTLS 203.0.113.10:25 name").detail).toContain("www.brightchain.org, not mail.brightchain.org");
    const soon = await run({ ...goodHandshake, chain: [cert(["mail.brightchain.org"], 14)] });
    expect(only(soon, "STARTTLS 203.0.113.10:25 expiry").status).toBe("warn");
    const expired = await run({ ...goodHandshake, chain: [cert(["mail.brightchain.org"], -3)] });
    expect(only(expired, "STARTTLS 203.0.113.10:25 expiry")).toMatchObject({ status: "fail", detail: "expired 3 days ago" });
  });

  it("no STARTTLS offered, or nothing answering: one ✗ saying which", async () => {
    const none = starttlsChecks(
      examplePrimary,
      target,
      { kind: "no-starttls", reason: "EHLO reply does not list STARTTLS (250)" },
      NOW,
    );
    expect(none).toHaveLength(1);
    expect(none[0]!.fix).toContain("smtpd_tls_cert_file");
    const down = starttlsChecks(examplePrimary, target, { kind: "failed", reason: "ECONNREFUSED" }, NOW);
    expect(down[0]!.fix).toContain("systemctl status postfix");
  });

  it("certificate names: exact, one-label wildcard, never a bare-domain wildcard match", () => {
    expect(certificateNames("mail.brightchain.org", ["mail.brightchain.org"])).toBe(true);
    expect(certificateNames("MAIL.brightchain.org", ["*.brightchain.org"])).toBe(true);
    expect(certificateNames("a.mail.brightchain.org", ["*.brightchain.org"])).toBe(false);
    expect(certificateNames("brightchain.org", ["*.brightchain.org"])).toBe(false);
  });
});

describe("TLS floor", () => {
  const floor = (old: TlsHandshake) =>
    tlsFloorCheck(
      examplePrimary,
      target,
      fakeNetwork({ starttls: (v) => (v?.maxVersion === "TLSv1.1" ? old : { ...goodHandshake, protocol: "TLSv1.2" }) }),
    );

  it("TLS 1.1 refused by the server, 1.2 completed: ✓", async () => {
    expect((await floor({ kind: "refused-by-server", reason: "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION" })).status).toBe("ok");
  });
  it("TLS 1.1 completed: ✗", async () => {
    const check = await floor({ ...goodHandshake, protocol: "TLSv1.1" });
    expect(check).toMatchObject({ status: "fail", detail: "the server completed a TLSv1.1 handshake" });
    expect(check.fix).toContain(">=TLSv1.2");
  });
  it("this machine cannot offer TLS 1.1: ! (proves nothing about the server)", async () => {
    expect((await floor({ kind: "refused-by-client", reason: "ERR_SSL_NO_PROTOCOLS_AVAILABLE" })).status).toBe("warn");
  });
  it("TLS 1.2 not completed either: ✗", async () => {
    const check = await tlsFloorCheck(
      examplePrimary,
      target,
      fakeNetwork({ starttls: () => ({ kind: "refused-by-server", reason: "alert" }) }),
    );
    expect(check.status).toBe("fail");
  });
});

describe("open relay", () => {
  const transcript = (rcpt?: { code: number; text: string }, mail = { code: 250, text: "2.1.0 Ok" }) =>
    ({ kind: "transcript", greeting: { code: 220, text: "mail ESMTP" }, mail, ...(rcpt ? { rcpt } : {}) }) as const;
  it.each([554, 454])("RCPT to a foreign domain refused with %i: ✓", async (code) => {
    const check = await openRelayCheck(
      examplePrimary,
      target,
      fakeNetwork({ relay: transcript({ code, text: "5.7.1 Relay access denied" }) }),
    );
    expect(check.status).toBe("ok");
  });
  it("RCPT to a foreign domain accepted: ✗ OPEN RELAY", async () => {
    const check = await openRelayCheck(
      examplePrimary,
      target,
      fakeNetwork({ relay: transcript({ code: 250, text: "2.1.5 Ok" }) }),
    );
    expect(check.status).toBe("fail");
    expect(check.detail).toContain("OPEN RELAY");
    expect(check.fix).toContain("reject_unauth_destination");
  });
  it("MAIL refused, or no connection: ! (relaying not tried)", async () => {
    expect(
      (
        await openRelayCheck(
          examplePrimary,
          target,
          fakeNetwork({ relay: transcript(undefined, { code: 554, text: "blocked" }) }),
        )
      ).status,
    ).toBe("warn");
    expect(
      (await openRelayCheck(examplePrimary, target, fakeNetwork({ relay: { kind: "failed", reason: "ETIMEDOUT" } }))).status,
    ).toBe("warn");
  });
});

describe("ports that must be closed", () => {
  it("every loopback-only port refused: ✓ each; one open: ✗ naming the daemon", async () => {
    const closed = await closedPortChecks(examplePrimary, "203.0.113.10", fakeNetwork({}));
    expect(closed.map((r) => r.subject)).toEqual(
      [2526, 783, 8891, 11332, 11333, 11334, 9526, 9527, 9154].map((p) => `closed 203.0.113.10:${p}`),
    );
    expect(closed.every((r) => r.status === "ok")).toBe(true);
    const open = await closedPortChecks(examplePrimary, "2001:db8::10", fakeNetwork({ open: [2526] }));
    expect(only(open, "closed [2001:db8::10]:2526")).toMatchObject({
      status: "fail",
      detail: "recipient lookup socketmap: accepts connections from here",
    });
  });
});

function fakeHost(
  answers: Record<string, { exitCode?: number; stdout?: string; stderr?: string }>,
): HostCommand & { scripts: string[] } {
  const scripts: string[] = [];
  const run = (script: string) => {
    scripts.push(script);
    const match = Object.entries(answers).find(([prefix]) => script.startsWith(prefix))?.[1];
    if (match === undefined) return Promise.reject(new Error(`unexpected host command ${script}`));
    return Promise.resolve({ exitCode: match.exitCode ?? 0, stdout: match.stdout ?? "", stderr: match.stderr ?? "" });
  };
  return Object.assign(run, { scripts });
}

const opendkimTxt = (k: string) =>
  `default._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "\n\t  "p=${k.slice(0, 200)}"\n\t  "${k.slice(200)}" )  ; ----- DKIM key default for brightchain.org\n`;

describe("on the host", () => {
  it("reads the DKIM key opendkim-genkey wrote, as the record text", async () => {
    const key = await hostDkimKey(examplePrimary, fakeHost({ "cat /etc/dkim/default.txt": { stdout: opendkimTxt(hostKey) } }));
    expect(key).toEqual({ kind: "key", recordText: dkimRecordText(hostKey) });
    const missing = await hostDkimKey(examplePrimary, fakeHost({ cat: { exitCode: 1, stderr: "No such file or directory" } }));
    expect(missing.kind === "check" && missing.check.status).toBe("fail");
  });

  it("lookup probe: found ✓, not found ✓ (an answer), no answer ✗", async () => {
    const probe = (answer: { exitCode?: number; stdout?: string; stderr?: string }) =>
      lookupProbeCheck(examplePrimary, fakeHost({ "postmap -q": answer }));
    expect((await probe({ stdout: "postmaster@brightchain.org\n" })).status).toBe("ok");
    expect((await probe({ exitCode: 1 })).detail).toContain("is not a recipient");
    const down = await probe({ exitCode: 1, stderr: "postmap: warning: connect to 127.0.0.1:2526: Connection refused" });
    expect(down.status).toBe("fail");
    expect(down.fix).toContain("systemctl status brightchain-lookup");
  });

  // The scripts count on the host and print a few numbers (parsed here); test/host/doctor.test.ts runs them.
  it("queue: a few ✓, a backlog !, postqueue failing ✗", async () => {
    const queue = (stdout: string, node = examplePrimary, exitCode = 0) =>
      queueCheck(
        node,
        fakeHost({ "queue=": { stdout, exitCode, stderr: exitCode ? "postqueue: fatal: Queue report unavailable" : "" } }),
        NOW,
      );
    const tenMinutesAgo = NOW.getTime() / 1000 - 600;
    expect(await queue(`2 1 ${tenMinutesAgo}\n`)).toMatchObject({ status: "ok", detail: "2 queued, 1 deferred, oldest 10 min" });
    expect(await queue("0 0 0\n")).toMatchObject({ status: "ok", detail: "0 queued, 0 deferred" });
    const many = await queue(`150 150 ${tenMinutesAgo}\n`, exampleRelay);
    expect(many.status).toBe("warn");
    expect(many.fix).toContain("mail.brightchain.org is unreachable");
    expect((await queue("", examplePrimary, 75)).status).toBe("fail");
  });

  it("drop Maildir: empty ✓, a message stuck ✗, files in errors/ !", async () => {
    const now = NOW.getTime() / 1000;
    const drop = (stdout: string) => dropBacklogCheck(examplePrimary, fakeHost({ "for d": { stdout } }), NOW);
    expect((await drop("waiting 0 0\nerrors 0\n")).status).toBe("ok");
    expect((await drop(`waiting 1 ${now - 5}\nerrors 0\n`)).status).toBe("ok");
    const stuck = await drop(`waiting 2 ${now - 3600}\nerrors 0\n`);
    expect(stuck).toMatchObject({ status: "fail", detail: "2 waiting, oldest 3600 s; 0 in /var/spool/brightchain/errors" });
    expect((await drop("waiting 0 0\nerrors 3\n")).status).toBe("warn");
  });
});

function probes(overrides: Partial<NodeProbes> = {}): NodeProbes {
  return {
    lookup: lookupOf(goodZone()),
    network: fakeNetwork({
      starttls: (v) =>
        v?.maxVersion === "TLSv1.1"
          ? { kind: "refused-by-server", reason: "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION" }
          : goodHandshake,
      relay: {
        kind: "transcript",
        greeting: { code: 220, text: "" },
        mail: { code: 250, text: "" },
        rcpt: { code: 554, text: "5.7.1 Relay access denied" },
      },
    }),
    addresses: ["203.0.113.10"],
    ports: { smtp: 25, submission: 587 },
    publishHint: context.publishHint,
    now: NOW,
    ...overrides,
  };
}

describe("the whole node", () => {
  it("a healthy primary: every check ✓, exit 0, and --on-host compares DKIM p= with the host's key", async () => {
    const host = fakeHost({
      true: {},
      "cat /etc/dkim/default.txt": { stdout: opendkimTxt(hostKey) },
      "postmap -q": { stdout: "postmaster@brightchain.org\n" },
      "queue=": { stdout: "0 0 0\n" },
      "for d": { stdout: "waiting 0 0\nerrors 0\n" },
    });
    const checks = await doctorNode(examplePrimary, probes({ host }));
    expect(
      checks.filter((c) => c.status !== "ok"),
      formatReport({ stack: "primary", host: "mail", checks }),
    ).toEqual([]);
    expect(checks.map((c) => c.group)).toEqual(expect.arrayContaining(["dns", "ptr", "tls", "relay", "ports", "host"]));
    expect(only(checks, "TXT default._domainkey.brightchain.org (v=DKIM1)").detail).toContain(hostKey.slice(0, 40));
    expect(reportExitCode({ stack: "primary", host: "mail", checks })).toBe(0);
  });

  it("SSH failing: one host ✗ naming it, no host check after it, DKIM checked for presence", async () => {
    const host = fakeHost({ true: { exitCode: 255, stderr: "Host key verification failed." } });
    const checks = await doctorNode(examplePrimary, probes({ host }));
    expect(checks.filter((c) => c.group === "host")).toEqual([
      expect.objectContaining({ subject: "ssh mail.brightchain.org", status: "fail" }),
    ]);
    expect(checks.find((c) => c.group === "host")!.detail).toContain("Host key verification failed.");
    expect(host.scripts).toEqual(["true"]);
    expect(only(checks, "TXT default._domainkey.brightchain.org (v=DKIM1)").detail).toContain("--on-host compares it");
  });

  it("a relay has no SPF/DMARC/DKIM of its own, no 587 and no drop Maildir", async () => {
    const relayHandshake = { ...goodHandshake, chain: [cert(["mail2.brightchain.org"], 60)] };
    const network = {
      ...probes().network,
      starttls: (...args: Parameters<DoctorNetwork["starttls"]>) =>
        args[2]?.maxVersion === "TLSv1.1" ? probes().network.starttls(...args) : Promise.resolve(relayHandshake),
    };
    const checks = await doctorNode(exampleRelay, probes({ network, addresses: ["203.0.113.20"] }));
    expect(checks.some((c) => c.subject.includes("TXT"))).toBe(false);
    expect(checks.some((c) => c.subject.includes(":587"))).toBe(false);
    expect(checks.filter((c) => c.status !== "ok")).toEqual([]);
  });

  it("an address this machine has no route to: one ! instead of a column of ✗", async () => {
    const checks = await doctorNode(
      examplePrimary,
      probes({ network: fakeNetwork({ unreachable: true }), addresses: ["2001:db8::10"] }),
    );
    expect(checks.filter((c) => c.group !== "dns" && c.group !== "ptr" && c.group !== "policy")).toEqual([
      expect.objectContaining({ subject: "reach 2001:db8::10", status: "warn" }),
    ]);
  });
});

describe("the report", () => {
  const checks: CheckResult[] = [
    { group: "dns", subject: "MX brightchain.org", status: "ok", detail: "10 mail.brightchain.org" },
    {
      group: "dns",
      subject: "TXT brightchain.org (v=spf1)",
      status: "fail",
      detail: "missing",
      fix: 'set TXT brightchain.org "v=spf1 -all"',
      why: "SPF: only the gateway nodes may send as this domain.",
    },
    { group: "tls", subject: "STARTTLS 203.0.113.10:25 expiry", status: "warn", detail: "14 days left", fix: "certbot renew" },
  ];
  const report = { stack: "primary", host: "mail.brightchain.org", checks };

  it("a table with ✓/✗/! and the fix under each problem; exit 1 when a check failed", () => {
    expect(formatReport(report)).toBe(
      [
        "doctor primary (mail.brightchain.org)",
        "  ✓  dns  MX brightchain.org               10 mail.brightchain.org",
        "  ✗  dns  TXT brightchain.org (v=spf1)     missing",
        '       fix: set TXT brightchain.org "v=spf1 -all"',
        "       why: SPF: only the gateway nodes may send as this domain.",
        "  !  tls  STARTTLS 203.0.113.10:25 expiry  14 days left",
        "       fix: certbot renew",
        "3 checks: 1 ✓, 1 ✗, 1 !",
        "",
      ].join("\n"),
    );
    expect(reportExitCode(report)).toBe(1);
    expect(reportExitCode({ ...report, checks: [checks[0]!, checks[2]!] })).toBe(0);
  });

  it("JSON for machines", () => {
    expect(JSON.parse(reportJson(report))).toEqual({
      stack: "primary",
      host: "mail.brightchain.org",
      ok: false,
      summary: { ok: 1, fail: 1, warn: 1 },
      checks,
    });
  });
});

describe("gateway doctor command line", () => {
  const io = () => {
    const out = { stdout: "", stderr: "" };
    return {
      out,
      io: { stdout: (t: string) => (out.stdout += t), stderr: (t: string) => (out.stderr += t), env: {}, cwd: repo },
    };
  };

  it.each([
    [[], "--stack is required"],
    [["--stack", "primary", "--resolver", "dns.example"], '--resolver "dns.example" is not a name server address'],
    [["--stack", "primary", "--address", "mail.brightchain.org"], "is not HOST=IP"],
    [
      ["--stack", "primary", "--address", "mx.other.example=192.0.2.1"],
      "a host of gateway:fleet (mail.brightchain.org, mail2.brightchain.org)",
    ],
    [["--stack", "primary", "--address", "mail.brightchain.org=not-an-ip"], "HOST=IP with an IPv4 or IPv6 address"],
    [["--stack", "nosuch"], "Pulumi.nosuch.yaml"],
    [["--stack", "primary", "--identity", "id"], "--identity is for --on-host"],
    [["--stack", "primary", "--bogus"], "unknown flag --bogus"],
  ])("%j: exit 2 naming the problem", async (args, message) => {
    const { out, io: cli } = io();
    expect(await main(["doctor", ...args], cli)).toBe(2);
    expect(out.stderr).toContain(message);
  });

  it("a name server that does not answer: exit 2, cannot run", async () => {
    const { out, io: cli } = io();
    expect(await main(["doctor", "--stack", "primary", "--resolver", "127.0.0.1:1"], cli)).toBe(2);
    expect(out.stderr).toMatch(/cannot run: no answer from 127\.0\.0\.1:1 .*ECONNREFUSED/);
  });

  it("resolver addresses as node:dns takes them", () => {
    expect(parseResolverAddress("192.0.2.53")).toBe("192.0.2.53:53");
    expect(parseResolverAddress("127.0.0.1:5353")).toBe("127.0.0.1:5353");
    expect(parseResolverAddress("[2001:db8::53]:53")).toBe("[2001:db8::53]:53");
    expect(parseResolverAddress("2001:db8::53")).toBe("[2001:db8::53]:53");
  });

  it("runDoctor reads the stack files and connects to the --address given for the node", async () => {
    const connected: string[] = [];
    const network = probes().network;
    const report = await runDoctor({
      stack: "primary",
      projectDir: repo,
      addresses: { "mail.brightchain.org": ["192.0.2.10"] },
      lookup: lookupOf(goodZone()),
      network: { ...network, connect: (t) => (connected.push(`${t.address}:${t.port}`), network.connect(t)) },
      now: NOW,
    });
    expect(new Set(connected.map((c) => c.split(":")[0]))).toEqual(new Set(["192.0.2.10"]));
    // Without the host's key the DKIM record is checked for presence: the fake zone has one.
    expect(report.checks.filter((c) => c.status !== "ok")).toEqual([]);
  });
});
