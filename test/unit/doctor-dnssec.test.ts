// gateway doctor's DNSSEC rows against real DNSSEC data: keys made with node:crypto, DNSKEY/DS/RRSIG records
// signed here (the canonical form written out again in this file, not borrowed from the code under test), served
// by a small DNS server on 127.0.0.1 over UDP and TCP, and asked through doctor's own query.
import { createHash, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { createServer, type Server } from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../infra/cli/dispatch";
import { runDoctor } from "../../infra/doctor";
import { dnssecChecks } from "../../infra/doctor/dnssec";
import { decodeAnswer, DnsWireError, encodeQuery, rrsigData, TYPE_DNSKEY, TYPE_MX } from "../../infra/doctor/dns-wire";
import { dsRecordText, keyTag, parseTrustAnchor, type TrustAnchor } from "../../infra/doctor/dnssec-validate";
import { dnssecQuery } from "../../infra/doctor/resolver";
import type { CheckResult, DnsLookup } from "../../infra/doctor/types";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

const repo = path.resolve(__dirname, "../..");
const ZONE = "brightchain.org";
const NOW = new Date();
const T = { DNSKEY: 48, DS: 43, RRSIG: 46, MX: 15, OPT: 41 } as const;

// ---- wire form, written out here ----

function wireName(name: string): Buffer {
  const labels = name === "" ? [] : name.split(".");
  return Buffer.concat([
    ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, "ascii")])),
    Buffer.from([0]),
  ]);
}
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

interface Rr {
  type: number;
  ttl: number;
  /** Record data as signed (canonical: names lower case, uncompressed). */
  data: Buffer;
  /** Record data as served, when it differs (a compressed, upper-case name). */
  served?: Buffer;
}

type Algorithm = 8 | 13 | 14 | 15;

interface ZoneKey {
  flags: number;
  algorithm: Algorithm;
  privateKey: KeyObject;
  dnskey: Buffer;
  tag: number;
}

function makeKey(algorithm: Algorithm, flags: number): ZoneKey {
  const pair =
    algorithm === 8
      ? generateKeyPairSync("rsa", { modulusLength: 2048 })
      : algorithm === 15
        ? generateKeyPairSync("ed25519")
        : generateKeyPairSync("ec", { namedCurve: algorithm === 13 ? "P-256" : "P-384" });
  const jwk = pair.publicKey.export({ format: "jwk" });
  const b = (s: string | undefined) => Buffer.from(s!, "base64url");
  const publicKey =
    algorithm === 8
      ? Buffer.concat([Buffer.from([b(jwk.e).length]), b(jwk.e), b(jwk.n)])
      : algorithm === 15
        ? b(jwk.x)
        : Buffer.concat([b(jwk.x), b(jwk.y)]);
  const dnskey = Buffer.concat([u16(flags), Buffer.from([3, algorithm]), publicKey]);
  // RFC 4034 Appendix B, written out again.
  let ac = 0;
  dnskey.forEach((byte, i) => (ac += i & 1 ? byte : byte << 8));
  ac += (ac >> 16) & 0xffff;
  return { flags, algorithm, privateKey: pair.privateKey, dnskey, tag: ac & 0xffff };
}

function ds(key: ZoneKey, digestType = 2, zone = ZONE): Buffer {
  const digest = createHash(digestType === 4 ? "sha384" : "sha256")
    .update(wireName(zone))
    .update(key.dnskey)
    .digest();
  return Buffer.concat([u16(key.tag), Buffer.from([key.algorithm, digestType]), digest]);
}

/** An RRSIG over `rrset` (one type at ZONE) by `key`: RFC 4034 §3.1.8.1, the set sorted by data. */
function rrsig(key: ZoneKey, rrset: Rr[], validity: { inception: Date; expiration: Date } = valid): Rr {
  const type = rrset[0]!.type;
  const ttl = rrset[0]!.ttl;
  const fields = Buffer.concat([
    u16(type),
    Buffer.from([key.algorithm, ZONE.split(".").length]),
    u32(ttl),
    u32(Math.floor(validity.expiration.getTime() / 1000)),
    u32(Math.floor(validity.inception.getTime() / 1000)),
    u16(key.tag),
    wireName(ZONE),
  ]);
  const rrs = [...rrset]
    .sort((a, b) => Buffer.compare(a.data, b.data))
    .map((r) => Buffer.concat([wireName(ZONE), u16(type), u16(1), u32(ttl), u16(r.data.length), r.data]));
  const data = Buffer.concat([fields, ...rrs]);
  const hash = key.algorithm === 15 ? null : key.algorithm === 14 ? "sha384" : "sha256";
  const signature =
    key.algorithm === 13 || key.algorithm === 14
      ? sign(hash, data, { key: key.privateKey, dsaEncoding: "ieee-p1363" })
      : sign(hash, data, key.privateKey);
  return { type: T.RRSIG, ttl, data: Buffer.concat([fields, signature]) };
}
const valid = { inception: new Date(NOW.getTime() - 3_600_000), expiration: new Date(NOW.getTime() + 14 * 86_400_000) };

/** MX set: 10 mail.brightchain.org served as `MAIL` + a pointer to the question's name, 20 mail2 in full. */
function mxSet(): Rr[] {
  return [
    {
      type: T.MX,
      ttl: 300,
      data: Buffer.concat([u16(10), wireName(`mail.${ZONE}`)]),
      served: Buffer.concat([u16(10), Buffer.from([4]), Buffer.from("MAIL"), Buffer.from([0xc0, 0x0c])]),
    },
    { type: T.MX, ttl: 300, data: Buffer.concat([u16(20), wireName(`mail2.${ZONE}`)]) },
  ];
}

// ---- a name server on 127.0.0.1 ----

interface ServedZone {
  /** `${name} ${type}` → records; absent: NODATA. */
  answers: Record<string, Rr[]>;
  /** `${name} ${type}` → the answer's rcode (0 when absent). */
  rcodes?: Record<string, number>;
  /** Set AD on every answer (a validating resolver's). */
  authenticated?: boolean;
  /** Answer over UDP with TC and no records: the whole answer only over TCP. */
  truncateUdp?: boolean;
  /** Raw answer packets to send instead (hostile servers). */
  raw?: (query: Buffer) => Buffer;
}

let served: ServedZone = { answers: {} };
const asked: string[] = [];

function answerTo(query: Buffer, overTcp: boolean): Buffer {
  if (served.raw) return served.raw(query);
  let offset = 12;
  const labels: string[] = [];
  while (query[offset]! !== 0) {
    labels.push(query.subarray(offset + 1, offset + 1 + query[offset]!).toString("ascii"));
    offset += 1 + query[offset]!;
  }
  const qtype = query.readUInt16BE(offset + 1);
  const question = query.subarray(12, offset + 5);
  const arcount = query.readUInt16BE(10);
  const optAt = offset + 5;
  const dnssecOk = arcount === 1 && query.readUInt16BE(optAt + 1) === T.OPT && (query.readUInt32BE(optAt + 5) & 0x8000) !== 0;
  const name = labels.join(".").toLowerCase();
  asked.push(`${name} ${qtype}${dnssecOk ? " DO" : ""}`);
  const all = served.answers[`${name} ${qtype}`] ?? [];
  const records = all.filter((r) => dnssecOk || r.type !== T.RRSIG);
  const truncated = !overTcp && served.truncateUdp === true;
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  header.writeUInt16BE(
    0x8500 | (truncated ? 0x0200 : 0) | (served.authenticated ? 0x0020 : 0) | (served.rcodes?.[`${name} ${qtype}`] ?? 0),
    2,
  );
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(truncated ? 0 : records.length, 6);
  const body = truncated
    ? []
    : records.map((r) => {
        const data = r.served ?? r.data;
        return Buffer.concat([Buffer.from([0xc0, 0x0c]), u16(r.type), u16(1), u32(r.ttl), u16(data.length), data]);
      });
  return Buffer.concat([header, question, ...body]);
}

let udp: Socket;
let tcp: Server;
let server: string;

beforeAll(async () => {
  udp = createSocket("udp4");
  udp.on("message", (query, from) => udp.send(answerTo(query, false), from.port, from.address));
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
  const port = udp.address().port;
  tcp = createServer((socket) => {
    let buffered = Buffer.alloc(0);
    socket.on("data", (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 2 || buffered.length < 2 + buffered.readUInt16BE(0)) return;
      const answer = answerTo(buffered.subarray(2, 2 + buffered.readUInt16BE(0)), true);
      socket.end(Buffer.concat([u16(answer.length), answer]));
    });
  });
  // The TCP port of the same number: doctor retries a truncated answer there, as with any name server.
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, "127.0.0.1", resolve);
  });
  server = `127.0.0.1:${port}`;
});

afterAll(async () => {
  udp.close();
  await new Promise((resolve) => tcp.close(resolve));
});

// ---- zones ----

interface Signed {
  ksk: ZoneKey;
  zsk: ZoneKey;
  answers: Record<string, Rr[]>;
}

function signedZone(algorithm: Algorithm = 13, options: { parentDs?: Buffer[]; kskValidity?: typeof valid } = {}): Signed {
  const ksk = makeKey(algorithm, 257);
  const zsk = makeKey(algorithm, 256);
  const keys: Rr[] = [ksk, zsk].map((k) => ({ type: T.DNSKEY, ttl: 3600, data: k.dnskey }));
  const mx = mxSet();
  return {
    ksk,
    zsk,
    answers: {
      [`${ZONE} ${T.DNSKEY}`]: [...keys, rrsig(ksk, keys, options.kskValidity)],
      [`${ZONE} ${T.MX}`]: [...mx, rrsig(zsk, mx)],
      [`${ZONE} ${T.DS}`]: (options.parentDs ?? [ds(ksk)]).map((data) => ({ type: T.DS, ttl: 86400, data })),
    },
  };
}

async function rows(
  zone: ServedZone,
  trustAnchors: TrustAnchor[] = [],
  node = examplePrimary,
): Promise<Record<string, CheckResult>> {
  served = zone;
  const results = await dnssecChecks(node, dnssecQuery([server], { timeoutMs: 2_000 }), {
    trustAnchors,
    now: NOW,
    publishHint: "`pulumi up --stack primary` publishes it",
  });
  for (const r of results) expect(r.group).toBe("dnssec");
  return Object.fromEntries(results.map((r) => [r.subject, r]));
}
const statuses = (found: Record<string, CheckResult>) => Object.fromEntries(Object.entries(found).map(([k, v]) => [k, v.status]));
const dsText = (key: ZoneKey) =>
  `${ZONE}. IN DS ${key.tag} ${key.algorithm} 2 ${ds(key).subarray(4).toString("hex").toUpperCase()}`;

describe("the DNSSEC chain, served by a name server on 127.0.0.1", () => {
  it.each([8, 13, 14, 15] as const)(
    "algorithm %i, the parent's DS matching the KSK: DNSKEY, DS, RRSIG MX ✓; no AD: !",
    async (algorithm) => {
      const zone = signedZone(algorithm);
      const found = await rows({ answers: zone.answers });
      expect(statuses(found)).toEqual({
        "DNSKEY brightchain.org": "ok",
        "DS brightchain.org": "ok",
        "RRSIG MX brightchain.org": "ok",
        "AD MX brightchain.org": "warn",
      });
      expect(found["DNSKEY brightchain.org"]!.detail).toContain(`KSK ${zone.ksk.tag}`);
      expect(found["DS brightchain.org"]!.detail).toContain(`matches key ${zone.ksk.tag}, which signs the DNSKEY set`);
      expect(found["RRSIG MX brightchain.org"]!.detail).toContain(`MX signed by ${zone.zsk.tag}`);
      expect(found["AD MX brightchain.org"]!.detail).toMatch(/did not set the AD bit.*not a validating resolver/);
      // Every query carried the DO bit.
      expect(asked.slice(-3)).toEqual([`${ZONE} 48 DO`, `${ZONE} 43 DO`, `${ZONE} 15 DO`]);
    },
  );

  it("a validating resolver's AD bit: the AD row ✓", async () => {
    const found = await rows({ answers: signedZone().answers, authenticated: true });
    expect(found["AD MX brightchain.org"]).toMatchObject({ status: "ok" });
    expect(found["AD MX brightchain.org"]!.detail).toContain(`${server} validated MX brightchain.org`);
  });

  it("a SHA-384 DS (digest type 4) matches too", async () => {
    const zone = signedZone(13);
    const answers = { ...zone.answers, [`${ZONE} ${T.DS}`]: [{ type: T.DS, ttl: 86400, data: ds(zone.ksk, 4) }] };
    expect((await rows({ answers }))["DS brightchain.org"]).toMatchObject({ status: "ok" });
  });

  it("the parent's DS with a wrong digest: ✗ naming the DS to give the registrar", async () => {
    const zone = signedZone();
    const wrong = ds(zone.ksk);
    wrong[wrong.length - 1] ^= 0xff;
    const found = await rows({ answers: { ...zone.answers, [`${ZONE} ${T.DS}`]: [{ type: T.DS, ttl: 86400, data: wrong }] } });
    const row = found["DS brightchain.org"]!;
    expect(row.status).toBe("fail");
    expect(row.detail).toContain("matches no DNSKEY of the zone");
    expect(row.fix).toBe(`replace the DS at the registrar with ${dsText(zone.ksk)}`);
  });

  it("a DS of another key (a rollover gone wrong): ✗, naming the KSK's DS", async () => {
    const zone = signedZone(13, { parentDs: [ds(makeKey(13, 257))] });
    const row = (await rows({ answers: zone.answers }))["DS brightchain.org"]!;
    expect(row.status).toBe("fail");
    expect(row.fix).toContain(dsText(zone.ksk));
  });

  it("no DS at the parent: ✗ 'DNSSEC is on at the DNS provider but the registrar has no DS', with the DS to add", async () => {
    const zone = signedZone(13, { parentDs: [] });
    const row = (await rows({ answers: zone.answers }))["DS brightchain.org"]!;
    expect(row.status).toBe("fail");
    expect(row.detail).toContain("DNSSEC is on at the DNS provider but the registrar has no DS");
    expect(row.fix).toContain(`add at the registrar's DNSSEC page: ${dsText(zone.ksk)}`);
    // The DS doctor computes is the one its own helper prints, and the test's digest.
    expect(dsRecordText(ZONE, zone.ksk.dnskey)).toBe(dsText(zone.ksk));
  });

  it("a DS matching the ZSK, which does not sign the key set: ✗ (the chain breaks there)", async () => {
    const zone = signedZone(13, {});
    const answers = { ...zone.answers, [`${ZONE} ${T.DS}`]: [{ type: T.DS, ttl: 86400, data: ds(zone.zsk) }] };
    const row = (await rows({ answers }))["DS brightchain.org"]!;
    expect(row.status).toBe("fail");
    expect(row.detail).toContain(`matches key ${zone.zsk.tag}, but no valid signature by it covers the DNSKEY set`);
    expect(row.fix).toContain(dsText(zone.ksk));
  });

  it("a broken signature over the DNSKEY set: DNSKEY ✗ naming the key whose signature does not verify", async () => {
    const zone = signedZone();
    const set = zone.answers[`${ZONE} ${T.DNSKEY}`]!;
    const sig = set.at(-1)!;
    const broken = Buffer.from(sig.data);
    broken[broken.length - 5] ^= 0x01;
    const found = await rows({
      answers: { ...zone.answers, [`${ZONE} ${T.DNSKEY}`]: [...set.slice(0, -1), { ...sig, data: broken }] },
    });
    expect(found["DNSKEY brightchain.org"]).toMatchObject({ status: "fail" });
    expect(found["DNSKEY brightchain.org"]!.detail).toContain(`the signature by key ${zone.ksk.tag} does not verify`);
    // The DS matches a key, but no verified signature by it: the chain is broken at the DS too.
    expect(found["DS brightchain.org"]).toMatchObject({ status: "fail" });
  });

  it("a broken signature over MX: RRSIG MX ✗", async () => {
    const zone = signedZone();
    const mx = zone.answers[`${ZONE} ${T.MX}`]!;
    const sig = mx.at(-1)!;
    const broken = Buffer.from(sig.data);
    broken[broken.length - 1] ^= 0x01;
    const found = await rows({
      answers: { ...zone.answers, [`${ZONE} ${T.MX}`]: [...mx.slice(0, -1), { ...sig, data: broken }] },
    });
    expect(statuses(found)).toMatchObject({
      "DNSKEY brightchain.org": "ok",
      "DS brightchain.org": "ok",
      "RRSIG MX brightchain.org": "fail",
    });
    expect(found["RRSIG MX brightchain.org"]!.detail).toContain(`the signature by key ${zone.zsk.tag} does not verify`);
  });

  it("an MX set changed after signing (an exchange not in the signed set): RRSIG MX ✗", async () => {
    const zone = signedZone();
    const mx = zone.answers[`${ZONE} ${T.MX}`]!;
    const forged: Rr = { type: T.MX, ttl: 300, data: Buffer.concat([u16(5), wireName("mx.attacker.example")]) };
    const found = await rows({ answers: { ...zone.answers, [`${ZONE} ${T.MX}`]: [forged, ...mx] } });
    expect(found["RRSIG MX brightchain.org"]).toMatchObject({ status: "fail" });
  });

  it("an expired signature over the key set: DNSKEY ✗ saying when it expired", async () => {
    const expired = { inception: new Date(NOW.getTime() - 30 * 86_400_000), expiration: new Date(NOW.getTime() - 86_400_000) };
    const found = await rows({ answers: signedZone(13, { kskValidity: expired }).answers });
    expect(found["DNSKEY brightchain.org"]).toMatchObject({ status: "fail" });
    expect(found["DNSKEY brightchain.org"]!.detail).toContain(`expired ${expired.expiration.toISOString().slice(0, 10)}`);
  });

  it("a key set without RRSIG: DNSKEY ✗", async () => {
    const zone = signedZone();
    const keysOnly = zone.answers[`${ZONE} ${T.DNSKEY}`]!.filter((r) => r.type === T.DNSKEY);
    const found = await rows({ answers: { ...zone.answers, [`${ZONE} ${T.DNSKEY}`]: keysOnly } });
    expect(found["DNSKEY brightchain.org"]!.detail).toContain("no RRSIG over them");
    expect(found["DNSKEY brightchain.org"]!.status).toBe("fail");
  });

  it("an unsigned zone, no DS: one DNSKEY ✗ saying to sign it", async () => {
    const found = await rows({ answers: { [`${ZONE} ${T.MX}`]: mxSet() } });
    expect(statuses(found)).toEqual({ "DNSKEY brightchain.org": "fail" });
    expect(found["DNSKEY brightchain.org"]!.detail).toContain("the zone is not signed");
    expect(found["DNSKEY brightchain.org"]!.fix).toContain("pulumi up --stack primary");
  });

  it("an unsigned zone whose parent still has a DS: the DS ✗ says the domain is bogus", async () => {
    const zone = signedZone();
    const found = await rows({ answers: { [`${ZONE} ${T.DS}`]: zone.answers[`${ZONE} ${T.DS}`]! } });
    expect(found["DS brightchain.org"]).toMatchObject({ status: "fail" });
    expect(found["DS brightchain.org"]!.detail).toContain(
      "the zone serves no DNSKEY: validating resolvers fail the whole domain",
    );
  });

  it("a validating resolver answering SERVFAIL for the keys (a bogus chain): DNSKEY ✗, the parent's DS shown but not compared", async () => {
    const zone = signedZone();
    const found = await rows({ answers: zone.answers, rcodes: { [`${ZONE} ${T.DNSKEY}`]: 2 } });
    expect(found["DNSKEY brightchain.org"]).toMatchObject({ status: "fail" });
    expect(found["DNSKEY brightchain.org"]!.detail).toContain("answered SERVFAIL for DNSKEY brightchain.org");
    expect(found["DNSKEY brightchain.org"]!.fix).toContain("a validating resolver answers SERVFAIL when the chain is broken");
    expect(found["DS brightchain.org"]).toMatchObject({ status: "warn" });
    expect(found["DS brightchain.org"]!.detail).toContain(`${zone.ksk.tag} 13 2`);
    expect(Object.keys(found)).toHaveLength(2);
  });

  it("SERVFAIL for MX only: the AD row ✗ (a validating resolver refuses the records mail goes by)", async () => {
    const found = await rows({ answers: signedZone().answers, rcodes: { [`${ZONE} ${T.MX}`]: 2 } });
    expect(found["AD MX brightchain.org"]).toMatchObject({ status: "fail" });
    expect(found["AD MX brightchain.org"]!.detail).toContain("answers SERVFAIL for MX brightchain.org");
  });

  it("an answer too large for UDP: asked again over TCP", async () => {
    const zone = signedZone(8);
    const before = asked.length;
    const found = await rows({ answers: zone.answers, truncateUdp: true });
    expect(statuses(found)).toMatchObject({
      "DNSKEY brightchain.org": "ok",
      "DS brightchain.org": "ok",
      "RRSIG MX brightchain.org": "ok",
    });
    // Each question twice: UDP (truncated), then TCP.
    expect(asked.length - before).toBe(6);
  });
});

describe("a trust anchor standing in for the parent's DS (the lab has no root and no TLD)", () => {
  it("the anchor matching the KSK: DS ✓, the parent never asked", async () => {
    const zone = signedZone(13, { parentDs: [] });
    const before = asked.length;
    const found = await rows({ answers: zone.answers }, [parseTrustAnchor(dsText(zone.ksk))]);
    expect(found["DS brightchain.org (trust anchor)"]).toMatchObject({ status: "ok" });
    expect(found["DS brightchain.org (trust anchor)"]!.detail).toContain("the trust anchor given (--trust-anchor)");
    expect(asked.slice(before).some((q) => q.includes(" 43 "))).toBe(false);
    expect(found["AD MX brightchain.org"]!.detail).toContain("does not know the trust anchor given");
  });

  it("a wrong anchor: ✗ naming the DS that would match", async () => {
    const zone = signedZone();
    const found = await rows({ answers: zone.answers }, [parseTrustAnchor(dsText(makeKey(13, 257)))]);
    expect(found["DS brightchain.org (trust anchor)"]).toMatchObject({ status: "fail" });
    expect(found["DS brightchain.org (trust anchor)"]!.fix).toContain(dsText(zone.ksk));
  });

  it("parses the forms keymgr and dig print, and refuses others naming the form accepted", () => {
    const hex = "e96fff5ece41b7a958de6628297fb33c2c2b6d9921e21c6faaa66fa0d070280f";
    for (const text of [
      `brightchain.org. DS 44696 13 2 ${hex}`,
      `brightchain.org. 3600 IN DS 44696 13 2 ${hex.toUpperCase()}`,
      `BrightChain.org IN DS 44696 13 2 ${hex.slice(0, 32)} ${hex.slice(32)}`,
    ]) {
      expect(parseTrustAnchor(text)).toMatchObject({ zone: "brightchain.org", keyTag: 44696, algorithm: 13, digestType: 2 });
    }
    expect(() => parseTrustAnchor("brightchain.org. IN DNSKEY 257 3 13 abc")).toThrow(
      /is not a DS record; accepted: a DS record/,
    );
    expect(() => parseTrustAnchor(`brightchain.org. IN DS 44696 13 2 ${hex.slice(2)}`)).toThrow(
      /62 hex digits; digest type 2 has 64/,
    );
    expect(() => parseTrustAnchor(`brightchain.org. IN DS 44696 13 3 ${hex}`)).toThrow(/digest type 3/);
    expect(() => parseTrustAnchor(`brightchain.org. IN DS 70000 13 2 ${hex}`)).toThrow(/key tag over 65535/);
  });
});

describe("what Knot served in the lab (real data)", () => {
  // `knotd` with the lab's policy (ECDSA P-256) and `keymgr brightchain.org ds`, captured once.
  const dnskey = Buffer.concat([
    Buffer.from([1, 1, 3, 13]),
    Buffer.from("FYqxDeXbgzHhJn+GYE5Hq6PyTxnV3IXP6zocmO7lS6wNNoU9PmOKNfPkS6jA+HfHrNZFctPh3kBOHCqEbn+COw==", "base64"),
  ]);
  it("key tag and DS digest as keymgr printed them", () => {
    expect(keyTag(dnskey)).toBe(44696);
    expect(dsRecordText(ZONE, dnskey)).toBe(
      "brightchain.org. IN DS 44696 13 2 E96FFF5ECE41B7A958DE6628297FB33C2C2B6D9921E21C6FAAA66FA0D070280F",
    );
    expect(dsRecordText(ZONE, dnskey, 4)).toBe(
      "brightchain.org. IN DS 44696 13 4 23B7B9BF9CFE919C8ED5BDD4ECC42FA289907A3BDEEC6B4FAE8AF38945A923D77CDE1E30B3873E203C9D7FEB748762D7",
    );
  });
});

describe("hostile answers: an error naming what was wrong, never a crash", () => {
  const withQuestion = (query: Buffer, flags: number, counts: [number, number], body: Buffer[]) => {
    const header = Buffer.from(query.subarray(0, 12));
    header.writeUInt16BE(flags, 2);
    header.writeUInt16BE(counts[0], 4);
    header.writeUInt16BE(counts[1], 6);
    header.writeUInt16BE(0, 10);
    return Buffer.concat([header, query.subarray(12, query.length - 11), ...body]);
  };

  it("the query carries DO and AD; the decoder reads AD, names, and refuses forward pointers and loops", () => {
    const query = encodeQuery(7, ZONE, TYPE_DNSKEY, { dnssec: true });
    expect(query.readUInt16BE(2) & 0x0020).toBe(0x0020);
    expect(query.readUInt16BE(10)).toBe(1);
    expect(query.readUInt32BE(query.length - 6) & 0x8000).toBe(0x8000);
    const record = Buffer.concat([
      Buffer.from([0xc0, 0x0c]),
      u16(TYPE_MX),
      u16(1),
      u32(60),
      u16(4),
      u16(10),
      Buffer.from([0xc0, 0x0c]),
    ]);
    const answer = decodeAnswer(withQuestion(query, 0x81a0, [1, 1], [record]));
    expect(answer).toMatchObject({ id: 7, authenticated: true });
    expect(answer.records[0]).toMatchObject({ name: ZONE, type: TYPE_MX, ttl: 60 });
    expect(answer.records[0]!.canonical).toEqual(Buffer.concat([u16(10), wireName(ZONE)]));
    const forward = Buffer.concat([Buffer.from([0xc0, 0xff]), u16(TYPE_MX), u16(1), u32(60), u16(0)]);
    expect(() => decodeAnswer(withQuestion(query, 0x8180, [1, 1], [forward]))).toThrow(/points forward/);
    const self = Buffer.concat([u16(10), Buffer.from([0xc0, 0x00])]);
    const loop = Buffer.concat([Buffer.from([0xc0, 0x0c]), u16(TYPE_MX), u16(1), u32(60), u16(4), self]);
    const packet = withQuestion(query, 0x8180, [1, 1], [loop]);
    // The exchange points at itself: rewrite the pointer to its own offset.
    packet.writeUInt16BE(0xc000 | (packet.length - 2), packet.length - 2);
    expect(() => decodeAnswer(packet)).toThrow(DnsWireError);
    expect(() => decodeAnswer(packet)).toThrow(/points forward/);
  });

  it("an RRSIG whose signer's name is compressed or missing is refused", () => {
    const fields = Buffer.alloc(18);
    expect(() => rrsigData(Buffer.concat([fields, Buffer.from([0xc0, 0x0c]), Buffer.alloc(64)]))).toThrow(
      /signer's name: name is compressed/,
    );
    expect(() => rrsigData(Buffer.concat([fields, wireName(ZONE)]))).toThrow(/no signature/);
    expect(() => rrsigData(Buffer.alloc(10))).toThrow(/RRSIG data of 10 bytes/);
  });

  it("a server sending a DNSKEY of 2 bytes, or a packet that does not parse: rows ✗ naming it", async () => {
    const zone = signedZone();
    const tiny: Rr = { type: T.DNSKEY, ttl: 60, data: Buffer.from([1, 1]) };
    const found = await rows({ answers: { ...zone.answers, [`${ZONE} ${T.DNSKEY}`]: [tiny] } });
    expect(found["DNSKEY brightchain.org"]).toMatchObject({ status: "fail" });
    expect(found["DNSKEY brightchain.org"]!.detail).toContain("DNSKEY data of 2 bytes; at least 5 expected");
    const garbage = await rows({ answers: {}, raw: (query) => withQuestion(query, 0x8180, [1, 3], [Buffer.from([1, 2, 3])]) });
    expect(garbage["DNSKEY brightchain.org"]).toMatchObject({ status: "fail" });
    expect(garbage["DNSKEY brightchain.org"]!.detail).toMatch(/DNSKEY query failed: .*runs past the end/);
  });
});

describe("where the rows appear", () => {
  it("DNSSEC off on the primary: one ! saying DANE cannot be validated", async () => {
    const found = await rows({ answers: {} }, [], { ...examplePrimary, dnssec: false });
    expect(statuses(found)).toEqual({ "DNSSEC brightchain.org": "warn" });
    expect(found["DNSSEC brightchain.org"]!.detail).toContain("senders cannot validate DANE");
  });

  const emptyZone: DnsLookup = () => Promise.resolve([]);
  const network = {
    httpsGet: () => Promise.resolve({ kind: "failed" as const, reason: "test" }),
    starttls: () => Promise.resolve({ kind: "failed" as const, reason: "test" }),
    relayProbe: () => Promise.resolve({ kind: "failed" as const, reason: "test" }),
    connect: () => Promise.resolve({ kind: "closed" as const, reason: "ENETUNREACH" }),
  };

  it("runDoctor runs them on the primary with the injected query and trust anchor, and never on a relay", async () => {
    const zone = signedZone(13, { parentDs: [] });
    served = { answers: zone.answers };
    const query = dnssecQuery([server]);
    const primary = await runDoctor({
      stack: "primary",
      projectDir: repo,
      lookup: emptyZone,
      dnssecQuery: query,
      network,
      trustAnchors: [dsText(zone.ksk)],
    });
    expect(primary.checks.filter((c) => c.group === "dnssec").map((c) => [c.subject, c.status])).toEqual([
      ["DNSKEY brightchain.org", "ok"],
      ["DS brightchain.org (trust anchor)", "ok"],
      ["RRSIG MX brightchain.org", "ok"],
      ["AD MX brightchain.org", "warn"],
    ]);
    const relay = await runDoctor({ stack: "relay", projectDir: repo, lookup: emptyZone, dnssecQuery: query, network });
    expect(relay.checks.some((c) => c.group === "dnssec")).toBe(false);
    // A lookup injected alone: the DNSSEC rows are skipped rather than asked of the real network.
    const noQuery = await runDoctor({ stack: "primary", projectDir: repo, lookup: emptyZone, network });
    expect(noQuery.checks.some((c) => c.group === "dnssec")).toBe(false);
    expect(exampleRelay.dnssec).toBeUndefined();
  });

  it("a trust anchor for another zone: a configuration error naming it", async () => {
    await expect(
      runDoctor({
        stack: "primary",
        projectDir: repo,
        lookup: emptyZone,
        network,
        trustAnchors: [`example.org. IN DS 1 13 2 ${"ab".repeat(32)}`],
      }),
    ).rejects.toThrow(/--trust-anchor="example\.org\. IN DS .*expected a DS record for the stack's zone brightchain\.org/);
  });

  it("the command line: a malformed --trust-anchor is exit 2 naming the form accepted", async () => {
    let stderr = "";
    const io = { stdout: () => undefined, stderr: (t: string) => void (stderr += t), env: {}, cwd: repo };
    expect(await main(["doctor", "--stack", "primary", "--trust-anchor", "brightchain.org DS 1 2"], io)).toBe(2);
    expect(stderr).toContain(
      "is not a DS record; accepted: a DS record, '<zone>. IN DS <key tag> <algorithm> <digest type> <hex digest>'",
    );
  });
});
