// DKIM rotation as the primary stack registers it (the real program under mocks, configured mid-rotation:
// gateway:dkimSelector mail2026, gateway:dkimPrevious {selector: default, keepUntil in the future}), and the
// records of the phases before and after as extra GatewayDns components in the same run.
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { fileStepId } from "../../infra/plan";
import { dkimRotationAt } from "../../infra/plan/dkim-rotation";
import { GatewayDns } from "../../infra/pulumi";
import { dkimRecordText } from "../../infra/render/dns";
import { OPENDKIM_CONF_PATH } from "../../infra/render/opendkim";
import { examplePrimary } from "../fixtures/nodes";
import { outputValue, previousDkimTxt, runProgram, type MockedProgram } from "../helpers/pulumi-program";

const DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord";
const KEEP_UNTIL = "2999-12-31";

let run: MockedProgram;
beforeAll(async () => {
  run = await runProgram("primary", {
    "gateway:dkimSelector": "mail2026",
    "gateway:dkimPrevious": JSON.stringify({ selector: "default", keepUntil: KEEP_UNTIL }),
  });
});

const named = (name: string) => {
  const resource = run.resources.find((r) => r.name === name);
  expect(resource, `${name} is registered`).toBeDefined();
  return resource!;
};
const position = (name: string): number => run.resources.indexOf(named(name));
const txt = (content: unknown) => [...String(content).matchAll(/"([^"]*)"/g)].map((m) => m[1]).join("");

describe("mid-rotation: both selectors published, signing switched only after the zone serves the new one", () => {
  it("the new selector's record carries the key generated on the host; the previous one's the key read back", () => {
    expect(named("dns-dkim-mail2026").inputs).toMatchObject({ type: "TXT", name: "mail2026._domainkey.brightchain.org" });
    expect(txt(named("dns-dkim-mail2026").inputs.content)).toBe(dkimRecordText(run.dkimTxt));
    expect(named("dns-dkim-default").inputs).toMatchObject({ type: "TXT", name: "default._domainkey.brightchain.org" });
    expect(txt(named("dns-dkim-default").inputs.content)).toBe(dkimRecordText(previousDkimTxt()));
    expect(named("dns-dkim-default").inputs.comment).toContain(`kept until ${KEEP_UNTIL}`);
  });

  it("order: key step → new record → dkim-selector-served → opendkim.conf; the new record does not wait for verify", () => {
    expect(position("node-dkim-key")).toBeLessThan(position("dns-dkim-mail2026"));
    expect(position("dns-dkim-mail2026")).toBeLessThan(position("node-dkim-selector-served"));
    expect(position("node-dkim-selector-served")).toBeLessThan(position(`node-${fileStepId(OPENDKIM_CONF_PATH)}`));
    expect(position("dns-dkim-mail2026")).toBeLessThan(position("node-verify"));
    // The kept record is published with the mail records, after the node verified.
    expect(position("dns-dkim-default")).toBeGreaterThan(position("node-verify"));
  });

  it("the check asks the zone's NS for the new selector; opendkim.conf signs with it", () => {
    const check = named("node-dkim-selector-served").inputs.create as string;
    expect(check).toContain("name=mail2026._domainkey.brightchain.org");
    expect(check).toContain('dig +short +norec +time=3 +tries=2 "@$ns" "$name" TXT');
    const conf = named(`node-${fileStepId(OPENDKIM_CONF_PATH)}`).inputs.stdin as string;
    expect(conf).toMatch(/^Selector\s+mail2026$/m);
    expect(conf).toMatch(/^KeyFile\s+\/etc\/dkim\/mail2026\.private$/m);
  });

  it("the stack output dkimRecord is the new selector's", async () => {
    expect(await outputValue(run.program.dkimRecord)).toMatchObject({ name: "mail2026._domainkey.brightchain.org" });
  });
});

/** The DKIM records one phase's GatewayDns registers: child name → owner name, and the aliases it names. */
async function dkimOf(name: string, node: GatewayNode, keyText: string, previousText?: string) {
  const aliases: Record<string, string[]> = {};
  const dns = new GatewayDns(
    name,
    { node, zoneName: node.domain },
    {
      transformations: [
        (args) => {
          if (args.type === DNS_RECORD)
            // Only the aliases with a name: Pulumi adds a nameless one for the parent on its own.
            aliases[args.name.slice(name.length + 1)] = (args.opts.aliases ?? [])
              .map((a) => (typeof a === "string" ? a : (a as { name?: string }).name))
              .filter((a): a is string => typeof a === "string");
          return undefined;
        },
      ],
    },
  );
  dns.publishDkimEarly(keyText);
  dns.publishMailRecords({ after: [], dkimRecordText: keyText, ...(previousText ? { dkimPreviousText: previousText } : {}) });
  await outputValue(pulumi.all(Object.values(dns.records).map((r) => r.id)));
  const records = Object.fromEntries(
    run.resources
      .filter((r) => r.type === DNS_RECORD && r.name.startsWith(`${name}-dkim`))
      .map((r) => [r.name.slice(name.length + 1), r.inputs.name]),
  );
  return { records, aliases };
}

describe("the phases of a rotation, one up each", () => {
  const rotating: GatewayNode = {
    ...examplePrimary,
    dkim: { ...examplePrimary.dkim, selector: "mail2026", previous: { selector: "default", keepUntil: "2026-03-31" } },
  };

  it("before: one record, under a resource that takes over the stack's earlier `dkim`", async () => {
    const { records, aliases } = await dkimOf("before", examplePrimary, run.dkimTxt);
    expect(records).toEqual({ "dkim-default": "default._domainkey.brightchain.org" });
    expect(aliases["dkim-default"]).toEqual(["before-dkim"]);
  });

  it("through keepUntil: both records, the old one keeping its resource (alias `dkim` for stacks never upgraded)", async () => {
    const node = dkimRotationAt(rotating, new Date("2026-03-31T23:59:59Z"));
    const { records, aliases } = await dkimOf("during", node, run.dkimTxt, previousDkimTxt());
    expect(records).toEqual({
      "dkim-mail2026": "mail2026._domainkey.brightchain.org",
      "dkim-default": "default._domainkey.brightchain.org",
    });
    expect(aliases["dkim-default"]).toEqual(["during-dkim"]);
    expect(aliases["dkim-mail2026"]).toEqual([]);
  });

  it("the first up after keepUntil: the previous record is gone, the new one unchanged", async () => {
    const node = dkimRotationAt(rotating, new Date("2026-04-01T00:00:00Z"));
    expect(node.dkim.previous).toBeUndefined();
    const { records } = await dkimOf("after", node, run.dkimTxt);
    expect(records).toEqual({ "dkim-mail2026": "mail2026._domainkey.brightchain.org" });
  });
});
