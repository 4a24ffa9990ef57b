// DANE for port 25 as pure functions: the config keys (errors naming the field), certbot issuing every lineage
// with --reuse-key and pinning reuse_key = True, the key step's command and its output parsed into TLSA records,
// the switch check ordered before main.cf, and the TLSA record in the zone file and back from Cloudflare's data.
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { dnsRecordFromCloudflareInputs } from "../../infra/deploy/zone";
import { GatewayConfigError, parseGatewayConfig, readStackConfig, type FlatConfig } from "../../infra/model/config";
import type { GatewayNode } from "../../infra/model/types";
import { STEP_CERTIFICATE, STEP_DANE_KEYS, STEP_DANE_SWITCH, fileStepId, hostPlan } from "../../infra/plan";
import { daneKeys, daneKeysCommand, daneSwitchCheckCommand, parseDaneKeys, tlsaContent } from "../../infra/plan/dane";
import { certificateCommand } from "../../infra/plan/steps";
import { renderZoneFile, tlsaRecords } from "../../infra/render/dns";
import { hostDirectories, hostFiles } from "../../infra/render";
import { MAIN_CF_PATH, renderMainCf } from "../../infra/render/postfix";
import { certbotIssueCommand, reuseKeyCommand } from "../../infra/render/tls";
import { cloudflareData } from "../../infra/pulumi/gatewayDns";
import { examplePrimary, exampleRelay, exampleSecrets } from "../fixtures/nodes";

const repo = resolve(__dirname, "..", "..");
const primaryFlat = (): FlatConfig => readStackConfig(repo, "primary");
const H1 = "a".repeat(64);
const H2 = "b".repeat(64);

function problems(flat: FlatConfig): { key: string; value: string | undefined; accepted: string }[] {
  try {
    parseGatewayConfig(flat);
  } catch (err) {
    if (err instanceof GatewayConfigError) return [...err.problems];
    throw err;
  }
  throw new Error("expected a GatewayConfigError, but the configuration parsed");
}

const withDane = (dane: GatewayNode["dane"], certName = examplePrimary.tls.certName): GatewayNode => ({
  ...examplePrimary,
  tls: {
    ...examplePrimary.tls,
    certName,
    certFile: `/etc/letsencrypt/live/${certName}/fullchain.pem`,
    keyFile: `/etc/letsencrypt/live/${certName}/privkey.pem`,
  },
  ...(dane !== undefined ? { dane } : {}),
});
const noDane = (): GatewayNode =>
  Object.fromEntries(Object.entries(examplePrimary).filter(([key]) => key !== "dane")) as GatewayNode;

describe("gateway:dane configuration", () => {
  it("defaults: DANE on, the served lineage named after the host", () => {
    const node = parseGatewayConfig(primaryFlat());
    expect(node.dane).toEqual({});
    expect(node.tls).toMatchObject({
      certName: "mail.brightchain.org",
      certFile: "/etc/letsencrypt/live/mail.brightchain.org/fullchain.pem",
    });
  });

  it("a rollover's lineages reach the model; the served lineage's files are what main.cf names", () => {
    const node = parseGatewayConfig({
      ...primaryFlat(),
      "gateway:dane": JSON.stringify({ lineage: "mail.brightchain.org-2027", previousLineage: "mail.brightchain.org" }),
    });
    expect(node.dane).toEqual({ previousLineage: "mail.brightchain.org" });
    expect(node.tls.keyFile).toBe("/etc/letsencrypt/live/mail.brightchain.org-2027/privkey.pem");
    expect(renderMainCf(node)).toContain("smtpd_tls_cert_file = /etc/letsencrypt/live/mail.brightchain.org-2027/fullchain.pem");
  });

  it("enabled false: no TLSA keys, no DANE steps", () => {
    const node = parseGatewayConfig({ ...primaryFlat(), "gateway:dane": JSON.stringify({ enabled: false }) });
    expect(node.dane).toBeUndefined();
    expect(hostPlan(node, hostFiles(node, exampleSecrets), hostDirectories(node)).map((s) => s.id)).not.toContain(STEP_DANE_KEYS);
  });

  it("a lineage name that could leave live/ or break a shell word is refused, naming the field", () => {
    expect(problems({ ...primaryFlat(), "gateway:dane": JSON.stringify({ nextLineage: "../../root" }) })).toEqual([
      {
        key: "gateway:dane.nextLineage",
        value: "../../root",
        accepted: "a certbot lineage name of lower-case letters, digits, dots and hyphens, such as mail.brightchain.org-2027",
      },
    ]);
    expect(problems({ ...primaryFlat(), "gateway:dane": JSON.stringify({ lineage: "x'; rm -rf /" }) })[0]!.key).toBe(
      "gateway:dane.lineage",
    );
  });

  it("next or previous equal to the served lineage, or to each other, is refused at the field to change", () => {
    expect(problems({ ...primaryFlat(), "gateway:dane": JSON.stringify({ nextLineage: "mail.brightchain.org" }) })).toEqual([
      {
        key: "gateway:dane.nextLineage",
        value: "mail.brightchain.org",
        accepted: "a lineage other than the one served (mail.brightchain.org): the next key's own lineage",
      },
    ]);
    const both = problems({
      ...primaryFlat(),
      "gateway:dane": JSON.stringify({ lineage: "b", nextLineage: "a", previousLineage: "a" }),
    });
    expect(both.map((p) => p.key)).toEqual(["gateway:dane.previousLineage"]);
    expect(both[0]!.accepted).toMatch(/other than gateway:dane.nextLineage/);
  });

  it("an unknown field is named with the fields accepted", () => {
    const [problem] = problems({ ...primaryFlat(), "gateway:dane": JSON.stringify({ next: "x" }) });
    expect(problem!.key).toBe("gateway:dane.next");
    expect(problem!.accepted).toContain("enabled, lineage, nextLineage, previousLineage");
  });
});

describe("certbot keeps each lineage's key", () => {
  it("certonly --reuse-key for the served lineage, then reuse_key = True pinned in its renewal config", () => {
    const command = certificateCommand(examplePrimary);
    expect(certbotIssueCommand(examplePrimary)).toContain("--cert-name mail.brightchain.org --keep-until-expiring --reuse-key");
    expect(command).toContain(reuseKeyCommand("mail.brightchain.org"));
    expect(reuseKeyCommand("mail.brightchain.org")).toContain("/etc/letsencrypt/renewal/mail.brightchain.org.conf");
  });

  it("a next lineage is issued in the same step, for the same host name, with its own key kept", () => {
    const command = certificateCommand(withDane({ nextLineage: "mail.brightchain.org-2027" }));
    expect(command).toContain("--cert-name mail.brightchain.org-2027 --keep-until-expiring --reuse-key -d mail.brightchain.org");
    expect(command).toContain(reuseKeyCommand("mail.brightchain.org-2027"));
    expect(command).toContain("test -s /etc/letsencrypt/live/mail.brightchain.org-2027/privkey.pem");
    expect(certificateCommand(examplePrimary)).not.toContain("2027");
  });
});

describe("the DANE key step and its records", () => {
  it("one line per lineage: current first, then next, then previous", () => {
    const node = withDane({ nextLineage: "n", previousLineage: "p" }, "c");
    expect(daneKeys(node)).toEqual([
      { lineage: "c", role: "current" },
      { lineage: "n", role: "next" },
      { lineage: "p", role: "previous" },
    ]);
    const command = daneKeysCommand(node);
    for (const lineage of ["c", "n", "p"])
      expect(command).toContain(`h=$(spki_sha256 /etc/letsencrypt/live/${lineage}/privkey.pem); echo ${lineage} "$h"`);
    expect(command).toContain('openssl pkey -in "$1" -pubout -outform DER | openssl dgst -sha256 -r');
  });

  it("parses its output into TLSA 3 1 1 records at _25._tcp.<host>, each saying which key it is", () => {
    const node = withDane({ nextLineage: "mail.brightchain.org-2027" });
    const records = tlsaRecords(node, `mail.brightchain.org ${H1}\nmail.brightchain.org-2027 ${H2}\n`);
    expect(records.map((r) => [r.name, r.type, r.content, r.ttl])).toEqual([
      ["_25._tcp.mail.brightchain.org", "TLSA", `3 1 1 ${H1}`, 3600],
      ["_25._tcp.mail.brightchain.org", "TLSA", `3 1 1 ${H2}`, 3600],
    ]);
    expect(records[0]!.purpose).toMatch(/the key Postfix serves on port 25 \(certbot lineage mail.brightchain.org\)/);
    expect(records[1]!.purpose).toMatch(/next key, published before Postfix serves it/);
  });

  it("refuses output missing a lineage, naming it, or a line that is not `<lineage> <sha256>`", () => {
    const node = withDane({ nextLineage: "n" }, "c");
    expect(() => parseDaneKeys(node, `c ${H1}`)).toThrow("no DANE key hash for lineage n");
    expect(() => parseDaneKeys(node, `c ${H1}\nn nothex`)).toThrow(
      /"n nothex" .* accepted: "<lineage> <64 lower-case hex>" for c, n/,
    );
    expect(() => parseDaneKeys(node, `c ${H1}\nn ${H2}\nother ${H2}`)).toThrow(/"other/);
  });

  it("in the plan: after the certificate step, reprinting on an update; on relays too, for their own name", () => {
    for (const node of [examplePrimary, exampleRelay]) {
      const step = hostPlan(node, hostFiles(node, exampleSecrets), hostDirectories(node)).find((s) => s.id === STEP_DANE_KEYS)!;
      expect(step.after).toEqual([STEP_CERTIFICATE]);
      expect(step.update).toBe(step.command);
      expect(step.command).toContain(`/etc/letsencrypt/live/${node.host.hostname}/privkey.pem`);
    }
  });

  it("TLSA goes to Cloudflare as data, to the zone file as its presentation form, and back from the data", () => {
    const plain = tlsaRecords(examplePrimary, `mail.brightchain.org ${H1}`)[0]!;
    expect(cloudflareData(plain)).toEqual({ usage: 3, selector: 1, matchingType: 1, certificate: H1 });
    expect(renderZoneFile("brightchain.org", [plain])).toContain(`_25._tcp.mail\t3600\tIN\tTLSA\t3 1 1 ${H1}`);
    const back = dnsRecordFromCloudflareInputs("dns-tlsa-mail-brightchain-org", {
      type: "TLSA",
      name: "_25._tcp.mail.brightchain.org",
      data: { usage: 3, selector: 1, matchingType: 1, certificate: H1.toUpperCase() },
      ttl: 3600,
    });
    expect(back).toMatchObject({ type: "TLSA", content: tlsaContent(H1) });
  });
});

describe("the switch waits for both records at the authoritative servers", () => {
  const switching = withDane({ previousLineage: "mail.brightchain.org" }, "mail.brightchain.org-2027");

  it("only when previousLineage is set; main.cf, whose install is the switch, waits for it", () => {
    expect(daneSwitchCheckCommand(examplePrimary)).toBeUndefined();
    const plan = hostPlan(switching, hostFiles(switching, exampleSecrets), hostDirectories(switching));
    const check = plan.findIndex((s) => s.id === STEP_DANE_SWITCH);
    const mainCf = plan.findIndex((s) => s.id === fileStepId(MAIN_CF_PATH));
    expect(check).toBeGreaterThanOrEqual(0);
    expect(check).toBeLessThan(mainCf);
    expect(plan[mainCf]!.after).toContain(STEP_DANE_SWITCH);
    const unswitched = hostPlan(examplePrimary, hostFiles(examplePrimary, exampleSecrets), hostDirectories(examplePrimary));
    expect(unswitched.find((s) => s.id === fileStepId(MAIN_CF_PATH))!.after).not.toContain(STEP_DANE_SWITCH);
  });

  it("asks every NS of the zone for _25._tcp.<host> TLSA, wanting both keys' hashes, and says what to do", () => {
    const command = daneSwitchCheckCommand(switching)!;
    expect(command).toContain("zone=brightchain.org");
    expect(command).toContain("name=_25._tcp.mail.brightchain.org");
    expect(command).toContain('dig +short NS "$zone"');
    expect(command).toContain('dig +short +norec +time=3 +tries=2 "@$ns" "$name" TLSA');
    expect(command).toContain("spki_sha256 /etc/letsencrypt/live/mail.brightchain.org-2027/privkey.pem");
    expect(command).toContain("spki_sha256 /etc/letsencrypt/live/mail.brightchain.org/privkey.pem");
    expect(command).toContain("set gateway:dane.nextLineage to mail.brightchain.org-2027");
  });
});

describe("no DANE", () => {
  it("no keys, no records, no switch", () => {
    expect(daneKeys(noDane())).toEqual([]);
    expect(daneSwitchCheckCommand(noDane())).toBeUndefined();
  });
});
