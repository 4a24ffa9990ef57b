// MTA-STS, TLS-RPT and CAA as the primary stack registers them at Cloudflare (the real program under mocks), and
// what a later `up` would change: extra GatewayDns components built from changed nodes in the same mocked run.
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { GatewayDns } from "../../infra/pulumi";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";
import { ZONE_ID, outputValue, runProgram, type MockedProgram, type RegisteredResource } from "../helpers/pulumi-program";

const DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord";
const WORKERS_SCRIPT = "cloudflare:index/workersScript:WorkersScript";
const CUSTOM_DOMAIN = "cloudflare:index/workersCustomDomain:WorkersCustomDomain";
const POLICY = "version: STSv1\nmode: testing\nmx: mail.brightchain.org\nmx: mail2.brightchain.org\nmax_age: 604800\n";
const POLICY_ID = createHash("sha256").update(POLICY).digest("hex").slice(0, 32);

let run: MockedProgram;
beforeAll(async () => {
  run = await runProgram("primary");
});

const named = (name: string): RegisteredResource => {
  const resource = run.resources.find((r) => r.name === name);
  expect(resource, `${name} is registered`).toBeDefined();
  return resource!;
};
const position = (name: string): number => run.resources.indexOf(named(name));

describe("primary stack: MTA-STS, TLS-RPT and CAA records", () => {
  it("_mta-sts TXT carries the id of the policy served, _smtp._tls TXT the configured report address", () => {
    expect(named("dns-txt-mta-sts-brightchain-org").inputs).toMatchObject({
      type: "TXT",
      name: "_mta-sts.brightchain.org",
      content: `"v=STSv1; id=${POLICY_ID}"`,
      zoneId: ZONE_ID,
      ttl: 3600,
    });
    expect(named("dns-txt-smtp-tls-brightchain-org").inputs).toMatchObject({
      type: "TXT",
      name: "_smtp._tls.brightchain.org",
      content: '"v=TLSRPTv1; rua=mailto:tls-reports@brightchain.org"',
    });
  });

  it("CAA records go to Cloudflare as data {flags, tag, value}, one issue and one iodef per fleet name", () => {
    const caa = run.resources.filter((r) => r.type === DNS_RECORD && r.inputs.type === "CAA");
    expect(caa.map((r) => [r.name, r.inputs.name, r.inputs.data, r.inputs.content])).toEqual([
      [
        "dns-caa-issue-mail-brightchain-org",
        "mail.brightchain.org",
        { flags: 0, tag: "issue", value: "letsencrypt.org" },
        undefined,
      ],
      [
        "dns-caa-iodef-mail-brightchain-org",
        "mail.brightchain.org",
        { flags: 0, tag: "iodef", value: "mailto:security@brightchain.org" },
        undefined,
      ],
      [
        "dns-caa-issue-mail2-brightchain-org",
        "mail2.brightchain.org",
        { flags: 0, tag: "issue", value: "letsencrypt.org" },
        undefined,
      ],
      [
        "dns-caa-iodef-mail2-brightchain-org",
        "mail2.brightchain.org",
        { flags: 0, tag: "iodef", value: "mailto:security@brightchain.org" },
        undefined,
      ],
    ]);
    for (const r of run.resources.filter((r) => r.type === DNS_RECORD && r.inputs.type !== "CAA" && r.inputs.type !== "TLSA"))
      expect(r.inputs.data, r.name).toBeUndefined();
  });

  it("CAA before the certificate step (a wrong CA fails this deploy, not a renewal); MTA-STS and TLS-RPT after verification", () => {
    const certificate = position("node-certificate");
    for (const r of run.resources.filter((r) => r.type === DNS_RECORD && r.inputs.type === "CAA"))
      expect(position(r.name), r.name).toBeLessThan(certificate);
    const verify = position("node-verify");
    expect(position("dns-txt-mta-sts-brightchain-org")).toBeGreaterThan(verify);
    expect(position("dns-txt-smtp-tls-brightchain-org")).toBeGreaterThan(verify);
  });
});

describe("primary stack: the MTA-STS Worker", () => {
  it("a module Worker whose source holds the policy, under a name derived from the domain", () => {
    const script = named("dns-mta-sts-script");
    expect(script.type).toBe(WORKERS_SCRIPT);
    expect(script.inputs).toMatchObject({ scriptName: "mta-sts-brightchain-org", mainModule: "mta-sts.mjs" });
    expect(script.inputs.content as string).toContain(`const POLICY = ${JSON.stringify(POLICY)};`);
    expect(script.inputs.compatibilityDate).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });

  it("routed from mta-sts.<domain> by a custom domain in the zone, and announced only once both exist", () => {
    const domain = named("dns-mta-sts-domain");
    expect(domain.type).toBe(CUSTOM_DOMAIN);
    expect(domain.inputs).toMatchObject({
      hostname: "mta-sts.brightchain.org",
      service: "mta-sts-brightchain-org",
      zoneId: ZONE_ID,
    });
    const announced = position("dns-txt-mta-sts-brightchain-org");
    expect(position("dns-mta-sts-script")).toBeLessThan(announced);
    expect(position("dns-mta-sts-domain")).toBeLessThan(announced);
  });

  it("one Worker per primary stack; a relay's GatewayDns registers none and no MTA-STS, TLS-RPT or CAA record", async () => {
    expect(run.resources.filter((r) => r.type === WORKERS_SCRIPT)).toHaveLength(1);
    const relay = await registered("relay-extra", exampleRelay);
    expect(relay.worker).toBeUndefined();
    expect([...relay.records.values()].map((r) => `${String(r.type)} ${String(r.name)}`)).toEqual([
      "A mail2.brightchain.org",
      "MX brightchain.org",
    ]);
  });
});

interface Registered {
  /** DnsRecord inputs by child name, the component's prefix removed. */
  records: Map<string, Record<string, unknown>>;
  worker?: Record<string, unknown>;
  customDomain?: Record<string, unknown>;
}

/** A GatewayDns for `node`, published, and the inputs of everything it registered. */
async function registered(name: string, node: GatewayNode): Promise<Registered> {
  const dns = new GatewayDns(name, { node, zoneName: node.domain });
  dns.publishMailRecords({ after: [] });
  await outputValue(pulumi.all(Object.values(dns.records).map((r) => r.id)));
  if (dns.mtaStsWorker) await outputValue(pulumi.all([dns.mtaStsWorker.script.id, dns.mtaStsWorker.customDomain.id]));
  const prefix = `${name}-`;
  const mine = run.resources.filter((r) => r.name.startsWith(prefix));
  const result: Registered = {
    records: new Map(mine.filter((r) => r.type === DNS_RECORD).map((r) => [r.name.slice(prefix.length), r.inputs])),
  };
  const worker = mine.find((r) => r.type === WORKERS_SCRIPT)?.inputs;
  const customDomain = mine.find((r) => r.type === CUSTOM_DOMAIN)?.inputs;
  if (worker) result.worker = worker;
  if (customDomain) result.customDomain = customDomain;
  return result;
}

const withFleet = (fleet: GatewayNode["fleet"]): GatewayNode => ({ ...examplePrimary, fleet });
const mtaStsId = (r: Registered) => r.records.get("txt-mta-sts-brightchain-org")!.content;

describe("what a later `up` changes", () => {
  it("nothing changed: every input identical, so the preview shows no update and no replace", async () => {
    const before = await registered("same-a", examplePrimary);
    const after = await registered("same-b", examplePrimary);
    expect(after).toEqual(before);
    expect(mtaStsId(before)).toBe(`"v=STSv1; id=${POLICY_ID}"`);
  });

  it("an MX added: the id and the Worker's source change in place; name, type, zone, script name and route stay", async () => {
    const before = await registered("mx-a", examplePrimary);
    const after = await registered(
      "mx-b",
      withFleet([...examplePrimary.fleet, { hostname: "mail3.brightchain.org", ipv4: "203.0.113.30" }]),
    );
    expect(mtaStsId(after)).not.toBe(mtaStsId(before));
    expect(after.worker!.content as string).toContain("mx: mail3.brightchain.org");
    // The inputs a change would replace the resource for (a Worker's account and name, a record's zone, name, type).
    expect({ ...after.worker, content: undefined }).toEqual({ ...before.worker, content: undefined });
    expect(after.customDomain).toEqual(before.customDomain);
    const record = after.records.get("txt-mta-sts-brightchain-org")!;
    const recordBefore = before.records.get("txt-mta-sts-brightchain-org")!;
    expect({ ...record, content: undefined }).toEqual({ ...recordBefore, content: undefined });
  });

  it("an address changed or the fleet reordered behind the primary: the MX set, and so the id, stay", async () => {
    const before = await registered("addr-a", examplePrimary);
    const readdressed = await registered(
      "addr-b",
      withFleet(examplePrimary.fleet.map((h) => ({ ...h, ipv4: h.ipv4.replace("203.0.113.", "198.51.100.") }))),
    );
    expect(mtaStsId(readdressed)).toBe(mtaStsId(before));
    expect(readdressed.worker).toEqual(before.worker);
    const three = [...examplePrimary.fleet, { hostname: "mail3.brightchain.org", ipv4: "203.0.113.30" }];
    const reordered = await registered("order-a", withFleet([three[0]!, three[2]!, three[1]!]));
    expect(mtaStsId(reordered)).toBe(mtaStsId(await registered("order-b", withFleet(three))));
  });

  it("an MX removed: a new id", async () => {
    const before = await registered("rm-a", examplePrimary);
    const after = await registered("rm-b", withFleet([examplePrimary.fleet[0]!]));
    expect(mtaStsId(after)).not.toBe(mtaStsId(before));
    expect(after.worker!.content as string).not.toContain("mail2.brightchain.org");
  });
});
