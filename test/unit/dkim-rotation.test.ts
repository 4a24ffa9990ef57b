// DKIM rotation as pure functions: gateway:dkimPrevious (errors naming the field), the keepUntil decision, the
// plan's order mid-rotation (new key → served check → opendkim.conf), the kept record, and doctor's check of a
// DMARC rua on a foreign domain (its <domain>._report._dmarc.<foreign> authorization record).
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { dmarcReportAuthorizationChecks, foreignReportDomains } from "../../infra/doctor/dmarc-report";
import { GatewayConfigError, parseGatewayConfig, readStackConfig, type FlatConfig } from "../../infra/model/config";
import type { GatewayNode } from "../../infra/model/types";
import {
  STEP_DKIM_KEY,
  STEP_DKIM_PREVIOUS,
  STEP_DKIM_SERVED,
  STEP_PACKAGES,
  fileStepId,
  hostPlan,
  hostTeardown,
} from "../../infra/plan";
import { dkimPreviousRecordCommand, dkimRotationAt, dkimServedCheckCommand } from "../../infra/plan/dkim-rotation";
import { hostDirectories, hostFiles } from "../../infra/render";
import { dkimPreviousRecord, dkimRecordText } from "../../infra/render/dns";
import { OPENDKIM_CONF_PATH, renderOpendkimConf } from "../../infra/render/opendkim";
import { examplePrimary, exampleSecrets } from "../fixtures/nodes";
import { generateDkimTxt } from "../helpers/pulumi-program";

const repo = resolve(__dirname, "..", "..");
const primaryFlat = (): FlatConfig => readStackConfig(repo, "primary");

function problems(flat: FlatConfig) {
  try {
    parseGatewayConfig(flat);
  } catch (err) {
    if (err instanceof GatewayConfigError) return [...err.problems];
    throw err;
  }
  throw new Error("expected a GatewayConfigError, but the configuration parsed");
}

const rotating: GatewayNode = {
  ...examplePrimary,
  dkim: { ...examplePrimary.dkim, selector: "mail2026", previous: { selector: "default", keepUntil: "2026-03-31" } },
};
const planOf = (node: GatewayNode) => hostPlan(node, hostFiles(node, exampleSecrets), hostDirectories(node));

describe("gateway:dkimPrevious", () => {
  it("reaches the model beside the new selector", () => {
    const node = parseGatewayConfig({
      ...primaryFlat(),
      "gateway:dkimSelector": "mail2026",
      "gateway:dkimPrevious": JSON.stringify({ selector: "default", keepUntil: "2026-03-31" }),
    });
    expect(node.dkim).toMatchObject({ selector: "mail2026", previous: { selector: "default", keepUntil: "2026-03-31" } });
  });

  it("a day that does not exist, or not as YYYY-MM-DD, is refused naming the field", () => {
    for (const keepUntil of ["2026-02-30", "31.03.2026", "2026-3-31"]) {
      expect(problems({ ...primaryFlat(), "gateway:dkimPrevious": JSON.stringify({ selector: "old", keepUntil }) })).toEqual([
        {
          key: "gateway:dkimPrevious.keepUntil",
          value: keepUntil,
          accepted: "a day as YYYY-MM-DD (UTC), such as 2026-03-31: the last day the previous record is kept",
        },
      ]);
    }
  });

  it("the previous selector equal to the current one, or not a DNS label, is refused at gateway:dkimPrevious.selector", () => {
    const same = problems({
      ...primaryFlat(),
      "gateway:dkimPrevious": JSON.stringify({ selector: "default", keepUntil: "2026-03-31" }),
    });
    expect(same.map((p) => [p.key, p.accepted])).toEqual([
      [
        "gateway:dkimPrevious.selector",
        "a selector other than gateway:dkimSelector (default): the one signed with before the rotation",
      ],
    ]);
    const shell = problems({
      ...primaryFlat(),
      "gateway:dkimPrevious": JSON.stringify({ selector: "a;reboot", keepUntil: "2026-03-31" }),
    });
    expect(shell.map((p) => p.key)).toEqual(["gateway:dkimPrevious.selector"]);
  });
});

describe("keepUntil: the last day the previous record is kept", () => {
  it("kept through the day (UTC), dropped from the first instant after", () => {
    expect(dkimRotationAt(rotating, new Date("2026-03-31T23:59:59.999Z")).dkim.previous).toEqual({
      selector: "default",
      keepUntil: "2026-03-31",
    });
    const after = dkimRotationAt(rotating, new Date("2026-04-01T00:00:00Z"));
    expect(after.dkim).toEqual({ selector: "mail2026", keyDir: "/etc/dkim", keyBits: 2048 });
    expect(dkimRotationAt(examplePrimary, new Date())).toBe(examplePrimary);
  });
});

describe("the plan mid-rotation", () => {
  it("new key, then the served check, then opendkim.conf; the previous record read back", () => {
    const plan = planOf(rotating);
    const at = (id: string) => plan.findIndex((s) => s.id === id);
    const conf = fileStepId(OPENDKIM_CONF_PATH);
    expect(at(STEP_DKIM_KEY)).toBeLessThan(at(STEP_DKIM_SERVED));
    expect(at(STEP_DKIM_SERVED)).toBeLessThan(at(conf));
    expect(plan[at(conf)]!.after).toContain(STEP_DKIM_SERVED);
    expect(plan[at(STEP_DKIM_SERVED)]!.after).toEqual([STEP_DKIM_KEY, STEP_PACKAGES]);
    const previous = plan[at(STEP_DKIM_PREVIOUS)]!;
    expect(previous.command).toBe(dkimPreviousRecordCommand(rotating));
    expect(previous.command).toContain("cat /etc/dkim/default.txt");
    expect(previous.update).toBe(previous.command);
    expect(renderOpendkimConf(rotating)).toMatch(/^Selector\s+mail2026$/m);
  });

  it("not rotating: no check, no previous step, opendkim.conf waits for nothing new", () => {
    const plan = planOf(examplePrimary);
    expect(plan.map((s) => s.id)).not.toContain(STEP_DKIM_SERVED);
    expect(plan.map((s) => s.id)).not.toContain(STEP_DKIM_PREVIOUS);
    expect(plan.find((s) => s.id === fileStepId(OPENDKIM_CONF_PATH))!.after).toEqual(["directories"]);
  });

  it("the served check wants exactly the text the record is published with, and says signing stays put", () => {
    const check = dkimServedCheckCommand(rotating);
    expect(check).toContain("name=mail2026._domainkey.brightchain.org");
    expect(check).toContain("/etc/dkim/mail2026.txt");
    expect(check).toContain("printf 'v=DKIM1; h=sha256; k=rsa; p=%s\\n'");
    expect(check).toContain("OpenDKIM keeps signing with default");
    expect(dkimRecordText("x".repeat(300))).toBe(`v=DKIM1; h=sha256; k=rsa; p=${"x".repeat(300)}`);
  });

  it("a destroy mid-rotation shreds both selectors' private keys", () => {
    const teardown = hostTeardown(rotating, hostFiles(rotating, exampleSecrets));
    expect(teardown).toContain("shred -u /etc/dkim/mail2026.private");
    expect(teardown).toContain("shred -u /etc/dkim/default.private");
    expect(hostTeardown(examplePrimary, hostFiles(examplePrimary, exampleSecrets))).not.toContain("mail2026");
  });

  it("the kept record: the previous selector's name, its key, why it is there", () => {
    const record = dkimPreviousRecord(rotating, generateDkimTxt("default", "brightchain.org"));
    expect(record).toMatchObject({ name: "default._domainkey.brightchain.org", type: "TXT", ttl: 3600 });
    expect(record.content).toMatch(/^v=DKIM1; h=sha256; k=rsa; p=[A-Za-z0-9+/=]{300,}$/);
    expect(record.purpose).toContain("kept until 2026-03-31");
    expect(() => dkimPreviousRecord(examplePrimary, "")).toThrow("gateway:dkimPrevious is not set");
  });
});

describe("doctor: a DMARC rua on a foreign domain needs that domain's authorization", () => {
  const node: GatewayNode = {
    ...examplePrimary,
    dmarc: {
      ...examplePrimary.dmarc,
      rua: [
        "mailto:dmarc@brightchain.org",
        "mailto:x@reports.brightchain.org",
        "mailto:a@dmarc.example.net",
        "mailto:b@dmarc.example.net",
      ],
    },
  };

  it("only domains outside the mail domain, each once", () => {
    expect(foreignReportDomains(node)).toEqual(["dmarc.example.net"]);
    expect(foreignReportDomains(examplePrimary)).toEqual([]);
  });

  it("✓ when <domain>._report._dmarc.<foreign> says v=DMARC1; ✗ naming the record to ask for when not", async () => {
    const asked: string[] = [];
    const ok = await dmarcReportAuthorizationChecks(node, async (name, type) => {
      asked.push(`${type} ${name}`);
      return ["v=DMARC1"];
    });
    expect(asked).toEqual(["TXT brightchain.org._report._dmarc.dmarc.example.net"]);
    expect(ok).toEqual([
      {
        group: "dns",
        subject: "TXT brightchain.org._report._dmarc.dmarc.example.net (DMARC report authorization)",
        status: "ok",
        detail: "present",
      },
    ]);
    const [missing] = await dmarcReportAuthorizationChecks(node, async () => []);
    expect(missing).toMatchObject({ status: "fail", detail: "no record: receivers send no aggregate reports there" });
    expect(missing!.fix).toContain('publish brightchain.org._report._dmarc.dmarc.example.net TXT "v=DMARC1"');
    const [wrong] = await dmarcReportAuthorizationChecks(node, async () => ["v=spf1 -all"]);
    expect(wrong).toMatchObject({ status: "fail", detail: 'served ["v=spf1 -all"], none is v=DMARC1' });
  });
});
