import { spawnSync } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import {
  caaFields,
  dkimRecordText,
  dnsRecords,
  ipv6ReverseName,
  ptrExpectations,
  renderZoneFile,
  txtCharacterStrings,
} from "../../infra/render/dns";
import { mtaStsPolicyText } from "../../infra/render/mta-sts";
import { dnsRecordFromCloudflareInputs } from "../../infra/deploy/zone";
import { cloudflareData, recordResourceName } from "../../infra/pulumi/gatewayDns";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

const publicKeyBase64 = (bits: number): string =>
  generateKeyPairSync("rsa", { modulusLength: bits }).publicKey.export({ type: "spki", format: "der" }).toString("base64");
const key2048 = publicKeyBase64(2048);
const key4096 = publicKeyBase64(4096);

const threeNodePrimary: GatewayNode = {
  ...examplePrimary,
  fleet: [...examplePrimary.fleet, { hostname: "mail3.brightchain.org", ipv4: "203.0.113.30", ipv6: "2001:db8::30" }],
};

describe("records each stack owns", () => {
  it("primary: its A/AAAA, MX 10, SPF, DMARC, MTA-STS, TLS-RPT, the fleet's CAA and (once known) DKIM", () => {
    const records = dnsRecords(examplePrimary, key2048);
    const summary = records.map(({ name, type, content, priority }) => ({
      name,
      type,
      content: type === "TXT" ? content.slice(0, 30) : content,
      priority,
    }));
    expect(summary).toEqual([
      { name: "mail.brightchain.org", type: "A", content: "203.0.113.10", priority: undefined },
      { name: "mail.brightchain.org", type: "AAAA", content: "2001:db8::10", priority: undefined },
      { name: "brightchain.org", type: "MX", content: "mail.brightchain.org", priority: 10 },
      { name: "brightchain.org", type: "TXT", content: "v=spf1 ip4:203.0.113.10 ip6:20", priority: undefined },
      { name: "_dmarc.brightchain.org", type: "TXT", content: "v=DMARC1; p=quarantine; rua=ma", priority: undefined },
      {
        name: "_mta-sts.brightchain.org",
        type: "TXT",
        content: expect.stringMatching(/^v=STSv1; id=[0-9a-f]{18}$/),
        priority: undefined,
      },
      { name: "_smtp._tls.brightchain.org", type: "TXT", content: "v=TLSRPTv1; rua=mailto:tls-rep", priority: undefined },
      { name: "mail.brightchain.org", type: "CAA", content: '0 issue "letsencrypt.org"', priority: undefined },
      { name: "mail.brightchain.org", type: "CAA", content: '0 iodef "mailto:security@brightchain.org"', priority: undefined },
      { name: "mail2.brightchain.org", type: "CAA", content: '0 issue "letsencrypt.org"', priority: undefined },
      { name: "mail2.brightchain.org", type: "CAA", content: '0 iodef "mailto:security@brightchain.org"', priority: undefined },
      { name: "default._domainkey.brightchain.org", type: "TXT", content: "v=DKIM1; h=sha256; k=rsa; p=MI", priority: undefined },
    ]);
    for (const r of records) {
      expect(r.purpose.length).toBeGreaterThan(10);
      expect(r.ttl).toBeGreaterThan(0);
    }
  });

  it("MTA-STS: the record's id is the policy's SHA-256 (32 hex digits); the policy lists every MX of the fleet", () => {
    const policy = mtaStsPolicyText(threeNodePrimary.fleet, threeNodePrimary.mtaSts!);
    expect(policy).toBe(
      "version: STSv1\nmode: testing\nmx: mail.brightchain.org\nmx: mail2.brightchain.org\nmx: mail3.brightchain.org\nmax_age: 604800\n",
    );
    const id = createHash("sha256").update(policy).digest("hex").slice(0, 32);
    expect(dnsRecords(threeNodePrimary).find((r) => r.name === "_mta-sts.brightchain.org")!.content).toBe(`v=STSv1; id=${id}`);
    expect(id).toMatch(/^[A-Za-z0-9]{1,32}$/);
  });

  it("MTA-STS: the id changes when the MX set or the mode changes, and only then", () => {
    const idOf = (node: GatewayNode) => dnsRecords(node).find((r) => r.name === "_mta-sts.brightchain.org")!.content;
    const base = idOf(examplePrimary);
    // Whatever else changes (DMARC, CAA, DKIM), the policy and its id stay.
    expect(idOf({ ...examplePrimary, dmarc: { policy: "reject", rua: [], pct: 100 }, caa: { issuer: "sectigo.com" } })).toBe(
      base,
    );
    expect(idOf(threeNodePrimary)).not.toBe(base);
    expect(idOf({ ...examplePrimary, fleet: [examplePrimary.fleet[0]!] })).not.toBe(base);
    expect(idOf({ ...examplePrimary, mtaSts: { mode: "enforce", maxAgeSeconds: 604800 } })).not.toBe(base);
    expect(idOf({ ...examplePrimary, mtaSts: { mode: "testing", maxAgeSeconds: 86400 } })).not.toBe(base);
    // The same fleet written again: the same id (an address change alone is no policy change).
    expect(
      idOf({
        ...examplePrimary,
        fleet: examplePrimary.fleet.map((h) => ({ ...h, ipv4: h.ipv4.replace("203.0.113", "198.51.100") })),
      }),
    ).toBe(base);
  });

  it("TLS-RPT: every report URI from config, comma-separated; no record without one", () => {
    const both = { ...examplePrimary, tlsRpt: { rua: ["mailto:tls@brightchain.org", "https://reports.example/tlsrpt"] } };
    expect(dnsRecords(both).find((r) => r.name === "_smtp._tls.brightchain.org")!.content).toBe(
      "v=TLSRPTv1; rua=mailto:tls@brightchain.org,https://reports.example/tlsrpt",
    );
    expect(dnsRecords({ ...examplePrimary, tlsRpt: undefined }).some((r) => r.name.startsWith("_smtp._tls"))).toBe(false);
  });

  it("CAA: issue for the CA on each node's name (the primary's with accounturi when set), iodef when set; none without a known CA", () => {
    const pinned = {
      ...examplePrimary,
      caa: { issuer: "letsencrypt.org", accountUri: "https://acme-v02.api.letsencrypt.org/acme/acct/12345" },
    };
    expect(dnsRecords(pinned).filter((r) => r.type === "CAA")).toEqual([
      expect.objectContaining({
        name: "mail.brightchain.org",
        content: '0 issue "letsencrypt.org; accounturi=https://acme-v02.api.letsencrypt.org/acme/acct/12345"',
      }),
      // The relay registers its own ACME account: its name names the CA only.
      expect.objectContaining({ name: "mail2.brightchain.org", content: '0 issue "letsencrypt.org"' }),
    ]);
    expect(caaFields('0 issue "letsencrypt.org; accounturi=https://a/acct/1"')).toEqual({
      flags: 0,
      tag: "issue",
      value: "letsencrypt.org; accounturi=https://a/acct/1",
    });
    expect(() => caaFields("0 issue letsencrypt.org")).toThrow(/CAA content "0 issue letsencrypt.org" is not accepted/);
    expect(dnsRecords({ ...examplePrimary, caa: undefined }).some((r) => r.type === "CAA")).toBe(false);
    // Never at the apex: that would bind the website's and Cloudflare's certificates to this CA too.
    expect(dnsRecords(examplePrimary).some((r) => r.type === "CAA" && r.name === "brightchain.org")).toBe(false);
  });

  it("SPF lists every fleet node by address, and nothing else passes", () => {
    const spf = dnsRecords(threeNodePrimary).find((r) => r.content.startsWith("v=spf1"))!;
    expect(spf.content).toBe("v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 ip4:203.0.113.20 ip4:203.0.113.30 ip6:2001:db8::30 -all");
  });

  it("DMARC carries policy, rua and pct from config; rua left out when there is none", () => {
    expect(dnsRecords(examplePrimary).find((r) => r.name === "_dmarc.brightchain.org")!.content).toBe(
      "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@brightchain.org; pct=100",
    );
    const monitoring = { ...examplePrimary, dmarc: { policy: "none" as const, rua: [], pct: 50 } };
    expect(dnsRecords(monitoring).find((r) => r.name === "_dmarc.brightchain.org")!.content).toBe("v=DMARC1; p=none; pct=50");
  });

  it("no DKIM record until the key exists on the host", () => {
    expect(dnsRecords(examplePrimary).some((r) => r.name.includes("_domainkey"))).toBe(false);
  });

  it("relay: only its own A and MX at its priority (no SPF, DMARC, DKIM, MTA-STS, TLS-RPT, CAA, AAAA for an IPv4-only node)", () => {
    expect(
      dnsRecords(exampleRelay, key2048).map(({ name, type, content, priority }) => ({ name, type, content, priority })),
    ).toEqual([
      { name: "mail2.brightchain.org", type: "A", content: "203.0.113.20", priority: undefined },
      { name: "brightchain.org", type: "MX", content: "mail2.brightchain.org", priority: 20 },
    ]);
    expect(dnsRecords({ ...exampleRelay, mxPriority: 30 }).find((r) => r.type === "MX")!.priority).toBe(30);
  });

  it("primary and relay stacks never own the same record", () => {
    const id = (r: { name: string; type: string; content: string }): string => `${r.name} ${r.type} ${r.content}`;
    const primary = new Set(dnsRecords(examplePrimary, key2048).map(id));
    for (const r of dnsRecords(exampleRelay, key2048)) expect(primary.has(id(r))).toBe(false);
  });
});

describe("CAA through Cloudflare and back (the lab zone)", () => {
  it("GatewayDns's data {flags, tag, value} reads back as the record; a malformed one is refused by name", () => {
    for (const record of dnsRecords(examplePrimary).filter((r) => r.type === "CAA")) {
      const inputs = { name: record.name, type: "CAA", data: cloudflareData(record), ttl: record.ttl, comment: record.purpose };
      expect(dnsRecordFromCloudflareInputs("r", inputs)).toEqual(record);
    }
    expect(() =>
      dnsRecordFromCloudflareInputs("primary-dns-caa-x", { name: "a.b", type: "CAA", data: { flags: 0, tag: "issue" } }),
    ).toThrow('primary-dns-caa-x: CAA data is {"flags":0,"tag":"issue"}; accepted: {flags: 0-255, tag, value}');
    expect(() =>
      dnsRecordFromCloudflareInputs("primary-dns-caa-y", {
        name: "a.b",
        type: "CAA",
        data: { flags: 0, tag: "issue", value: 'a"b' },
      }),
    ).toThrow(/CAA content .* is not accepted/);
  });

  it("each CAA record has its own resource name: a name holds an issue and an iodef record", () => {
    const names = dnsRecords(examplePrimary)
      .filter((r) => r.type === "CAA")
      .map(recordResourceName);
    expect(names).toEqual([
      "caa-issue-mail-brightchain-org",
      "caa-iodef-mail-brightchain-org",
      "caa-issue-mail2-brightchain-org",
      "caa-iodef-mail2-brightchain-org",
    ]);
  });
});

describe("DKIM public key", () => {
  it("reads opendkim-genkey's <selector>.txt as well as a bare key", () => {
    const genkeyTxt = `default._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "\n\t  "p=${key2048.slice(0, 200)}"\n\t  "${key2048.slice(200)}" )  ; ----- DKIM key default for brightchain.org\n`;
    expect(dkimRecordText(genkeyTxt)).toBe(`v=DKIM1; h=sha256; k=rsa; p=${key2048}`);
    expect(dkimRecordText(key2048)).toBe(`v=DKIM1; h=sha256; k=rsa; p=${key2048}`);
    expect(() => dkimRecordText("not a key")).toThrow(/DKIM public key "not a key" is not usable/);
  });
});

describe("PTR expectations", () => {
  it("in-addr.arpa and full-nibble ip6.arpa names pointing at the node's host name", () => {
    expect(ptrExpectations(examplePrimary)).toEqual([
      { address: "203.0.113.10", reverseName: "10.113.0.203.in-addr.arpa", expectedHostname: "mail.brightchain.org" },
      {
        address: "2001:db8::10",
        reverseName: "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        expectedHostname: "mail.brightchain.org",
      },
    ]);
    expect(ptrExpectations(exampleRelay)).toHaveLength(1);
  });

  it("expands every IPv6 spelling to 32 nibbles", () => {
    expect(ipv6ReverseName("2001:db8:0:0:1:0:0:1")).toBe(ipv6ReverseName("2001:db8::1:0:0:1"));
    expect(ipv6ReverseName("::1")).toBe(`1.${Array(31).fill("0").join(".")}.ip6.arpa`);
    expect(ipv6ReverseName("::ffff:192.0.2.1")).toBe(ipv6ReverseName("::ffff:c000:201"));
    expect(ipv6ReverseName("2001:DB8::10").split(".")).toHaveLength(34);
  });
});

describe("zone file", () => {
  it("splits TXT longer than 255 bytes into several character-strings", () => {
    const text = dkimRecordText(key4096);
    const chunks = txtCharacterStrings(text);
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.every((c) => Buffer.byteLength(c) <= 255)).toBe(true);
    expect(chunks.join("")).toBe(text);
  });

  const dir = mkdtempSync(path.join(tmpdir(), "gateway-zone-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const kzonecheck = spawnSync("kzonecheck", ["--version"]).status === 0;

  it.each([
    ["primary", dnsRecords(threeNodePrimary, key4096)],
    ["relay", dnsRecords(exampleRelay)],
  ])("the %s zone is accepted by Knot's kzonecheck, TXT strings re-joining to the record", (name, records) => {
    expect(kzonecheck, "kzonecheck (Debian package knot-dnssecutils) must be installed").toBe(true);
    const zone = renderZoneFile("brightchain.org", records, { notes: ["test note"] });
    const file = path.join(dir, `${name}.zone`);
    writeFileSync(file, zone);
    const check = spawnSync("kzonecheck", ["-o", "brightchain.org", file], { encoding: "utf8" });
    expect(check.stdout + check.stderr).not.toMatch(/error|warning/i);
    expect(check.status).toBe(0);
    expect(zone).toContain("; test note");
    for (const r of records.filter((r) => r.type === "TXT")) {
      const owner = r.name === "brightchain.org" ? "@" : r.name.replace(/\.brightchain\.org$/, "");
      const line = zone.split("\n").find((l) => l.startsWith(`${owner}\t`) && l.includes("TXT"))!;
      const block = zone.slice(zone.indexOf(line)).split(")")[0]!;
      const strings = [...(line.includes("(") ? block : line).matchAll(/"([^"]*)"/g)].map((m) => m[1]).join("");
      expect(strings).toBe(r.content);
    }
    for (const r of records.filter((r) => r.type === "CAA")) {
      expect(zone).toContain(`${r.name.replace(/\.brightchain\.org$/, "")}\t3600\tIN\tCAA\t${r.content}\n`);
    }
  });

  it("kzonecheck does reject a TXT string over 255 bytes (the check is not vacuous)", () => {
    const file = path.join(dir, "broken.zone");
    const zone = renderZoneFile("brightchain.org", []) + `long\tIN\tTXT\t"${"a".repeat(300)}"\n`;
    writeFileSync(file, zone);
    expect(spawnSync("kzonecheck", ["-o", "brightchain.org", file]).status).not.toBe(0);
  });
});
