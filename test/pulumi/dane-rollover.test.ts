// DANE key rollover as the stacks register it at Cloudflare (the real program under mocks, a rollover's phases as
// extra GatewayDns components in the same run): which TLSA records exist in each phase, under which resource, and
// which host steps the switch adds. The phases are config changes, each one `pulumi up`:
//   steady       {}                                              TLSA: K1
//   publish      {nextLineage: L2}                               TLSA: K1, K2   (L2 issued, not served)
//   switch       {lineage: L2, previousLineage: L1}              TLSA: K2, K1   (served once both are at the NS)
//   done         {lineage: L2}                                   TLSA: K2       (K1's record deleted)
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { STEP_DANE_SWITCH, fileStepId } from "../../infra/plan";
import { daneKeysCommand } from "../../infra/plan/dane";
import { GatewayDns } from "../../infra/pulumi";
import { MAIN_CF_PATH } from "../../infra/render/postfix";
import { examplePrimary } from "../fixtures/nodes";
import {
  hostCommandInputs,
  mockDaneHash,
  mockDaneKeys,
  outputValue,
  runProgram,
  type MockedProgram,
} from "../helpers/pulumi-program";

const DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord";
const L1 = "mail.brightchain.org";
const L2 = "mail.brightchain.org-2027";
const K1 = mockDaneHash(L1);
const K2 = mockDaneHash(L2);

let run: MockedProgram;
beforeAll(async () => {
  run = await runProgram("primary");
});

function phase(dane: NonNullable<GatewayNode["dane"]>, lineage = L1): GatewayNode {
  return {
    ...examplePrimary,
    tls: {
      ...examplePrimary.tls,
      certName: lineage,
      certFile: `/etc/letsencrypt/live/${lineage}/fullchain.pem`,
      keyFile: `/etc/letsencrypt/live/${lineage}/privkey.pem`,
    },
    dane,
  };
}

const PHASES = {
  steady: phase({}),
  publish: phase({ nextLineage: L2 }),
  switch: phase({ previousLineage: L1 }, L2),
  done: phase({}, L2),
};

/** The TLSA records one phase's GatewayDns registers: child name → certificate hash, and its published list. */
async function tlsaOf(name: string, node: GatewayNode): Promise<{ resources: Map<string, unknown>; published: string[] }> {
  const dns = new GatewayDns(name, { node, zoneName: node.domain });
  // What the host's DANE key step prints for this phase's lineages.
  dns.publishMailRecords({ after: [], daneKeysText: mockDaneKeys(daneKeysCommand(node)) });
  await outputValue(pulumi.all(Object.values(dns.records).map((r) => r.id)));
  const published = await outputValue(dns.published);
  const prefix = `${name}-`;
  const resources = new Map(
    run.resources
      .filter((r) => r.type === DNS_RECORD && r.name.startsWith(prefix) && r.inputs.type === "TLSA")
      .map((r) => {
        expect(r.inputs.name).toBe("_25._tcp.mail.brightchain.org");
        return [r.name.slice(prefix.length), (r.inputs.data as { certificate: string }).certificate];
      }),
  );
  return { resources, published: published.filter((r) => r.type === "TLSA").map((r) => r.content) };
}

describe("DANE rollover: TLSA records in each phase", () => {
  it("steady: the served key's record only", async () => {
    const { resources, published } = await tlsaOf("steady", PHASES.steady);
    expect(resources).toEqual(new Map([["tlsa-mail-brightchain-org", K1]]));
    expect(published).toEqual([`3 1 1 ${K1}`]);
  });

  it("publish: the next lineage's record beside the served one (nothing served changes)", async () => {
    const { resources, published } = await tlsaOf("publish", PHASES.publish);
    expect(resources).toEqual(
      new Map([
        ["tlsa-mail-brightchain-org", K1],
        ["tlsa-mail-brightchain-org-2027", K2],
      ]),
    );
    expect(published).toEqual([`3 1 1 ${K1}`, `3 1 1 ${K2}`]);
  });

  it("switch: both records still, under the same resources as before, so the switch creates or deletes none", async () => {
    const { resources } = await tlsaOf("switch", PHASES.switch);
    expect(resources).toEqual(
      new Map([
        ["tlsa-mail-brightchain-org-2027", K2],
        ["tlsa-mail-brightchain-org", K1],
      ]),
    );
  });

  it("done: the old key's record is gone, the new one's resource unchanged", async () => {
    const { resources, published } = await tlsaOf("done", PHASES.done);
    expect(resources).toEqual(new Map([["tlsa-mail-brightchain-org-2027", K2]]));
    expect(published).toEqual([`3 1 1 ${K2}`]);
  });
});

describe("DANE rollover: the host steps of each phase", () => {
  const commandsOf = (name: string, node: GatewayNode) =>
    hostCommandInputs(
      run,
      name,
      { node, artifacts: [{ name: "brightchain-lookup.cjs", content: "x" }], connection: { host: "203.0.113.10" } },
      (t) => t,
    );

  it("publish issues the next lineage in the certificate step and reads both keys; no switch check yet", async () => {
    const steps = await commandsOf("host-publish", PHASES.publish);
    expect(steps.get("certificate")!.create as string).toContain(`--cert-name ${L2} --keep-until-expiring --reuse-key`);
    expect(steps.get("dane-keys")!.create as string).toContain(`/etc/letsencrypt/live/${L2}/privkey.pem`);
    expect(steps.has(STEP_DANE_SWITCH)).toBe(false);
  });

  it("switch adds the check of both records at the zone's servers, and main.cf's install waits for it", async () => {
    const steps = await commandsOf("host-switch", PHASES.switch);
    expect(steps.get(STEP_DANE_SWITCH)!.create as string).toContain('dig +short +norec +time=3 +tries=2 "@$ns" "$name" TLSA');
    const mainCf = run.resources.find((r) => r.name === `host-switch-${fileStepId(MAIN_CF_PATH)}`)!;
    expect(mainCf.inputs.stdin as string).toContain(`smtpd_tls_cert_file = /etc/letsencrypt/live/${L2}/fullchain.pem`);
    const done = await commandsOf("host-done", PHASES.done);
    expect(done.has(STEP_DANE_SWITCH)).toBe(false);
  });
});
