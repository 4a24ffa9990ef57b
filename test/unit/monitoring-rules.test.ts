// docs/monitoring.md's alert rules, as an operator copies them: promtool (Debian's prometheus package) checks
// their syntax and runs them over synthetic series, so each alert is seen to fire on the state it names and to
// stay quiet otherwise; every brightchain_* metric they read is one the daemons really export.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { inboundMetrics } from "../../runtime/src/inbound/inbound-metrics";
import { lookupMetrics } from "../../runtime/src/lookup/lookup-metrics";
import { daemonRegistry } from "../../runtime/src/metrics/metrics-endpoint";

const DOC = resolve(__dirname, "../../docs/monitoring.md");
const dir = mkdtempSync(join(tmpdir(), "monitoring-rules-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The one ```yaml block of the doc that starts with `groups:`. */
function rulesFromDoc(): string {
  const blocks = [...readFileSync(DOC, "utf8").matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!);
  const rules = blocks.filter((block) => block.startsWith("groups:"));
  expect(rules).toHaveLength(1);
  return rules[0]!;
}

function promtool(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync("promtool", args, { cwd: dir, encoding: "utf8" });
  if (run.error) throw new Error(`promtool: ${run.error.message} (Debian's prometheus package, named in .ci/run)`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

const rulesFile = join(dir, "brightchain.rules.yml");
writeFileSync(rulesFile, rulesFromDoc());

interface AlertCase {
  eval_time: string;
  alertname: string;
  exp_alerts: { exp_labels: Record<string, string>; exp_annotations: Record<string, string> }[];
}

/** The annotations each alert renders, as the doc writes them, so a template error shows here. */
const DESCRIPTIONS: Record<string, string> = {
  BrightChainDropBacklogOld:
    "See brightchain_inbound_sink_failures_total and the journal of brightchain-inbound (journalctl -u brightchain-inbound).",
  BrightChainErrorsNotEmpty:
    "Read /var/spool/brightchain/errors/*.reason; requeue a fixed message by moving it back into incoming/new/.",
  BrightChainLookupTempFailures:
    "The recipient registry (GATEWAY_REGISTRY_URL or the registry file) is failing or slower than GATEWAY_LOOKUP_TIMEOUT_MS.",
  BrightChainPostfixQueueGrowing: "postqueue -p on the node shows why mail is deferred.",
  BrightChainMetricsDown:
    "The daemon is down, or its metrics port is taken (its journal says so) or closed to this scraper (gateway:metrics.scrapers).",
};

/** One promtool unit test: series in, which alerts are firing at which time out. */
function ruleTest(name: string, series: Record<string, string>, cases: AlertCase[]) {
  return {
    name,
    interval: "1m",
    input_series: Object.entries(series).map(([series, values]) => ({ series, values })),
    alert_rule_test: cases,
  };
}
const firing = (alertname: string, at: string, labels: Record<string, string>, summary: string): AlertCase => ({
  eval_time: at,
  alertname,
  exp_alerts: [
    {
      exp_labels: labels,
      exp_annotations: { summary, ...(DESCRIPTIONS[alertname] ? { description: DESCRIPTIONS[alertname] } : {}) },
    },
  ],
});
const quiet = (alertname: string, at: string): AlertCase => ({ eval_time: at, alertname, exp_alerts: [] });

describe("docs/monitoring.md alert rules", () => {
  it("pass promtool check rules", () => {
    const check = promtool("check", "rules", rulesFile);
    expect(check.output).toMatch(/SUCCESS: 6 rules found/);
    expect(check.status).toBe(0);
  });

  it("fire on the state each names, and only then (promtool test rules)", () => {
    const node = { instance: "mail.brightchain.org:9527", job: "brightchain-inbound" };
    const lookupNode = { instance: "mail.brightchain.org:9526", job: "brightchain-lookup" };
    const postfixNode = { instance: "mail2.brightchain.org:9154", job: "postfix" };
    const labels = (base: Record<string, string>, extra: Record<string, string> = {}) =>
      `{${Object.entries({ ...base, ...extra })
        .map(([k, v]) => `${k}="${v}"`)
        .join(",")}}`;
    const tests = [
      ruleTest(
        "a drop file waiting 10 minutes pages after 5 more; a drained backlog does not",
        // Age grows a minute per minute from 0: over 600 s at minute 11, firing from minute 16.
        { [`brightchain_inbound_new_oldest_age_seconds${labels(node)}`]: "0+60x30" },
        [
          quiet("BrightChainDropBacklogOld", "14m"),
          firing(
            "BrightChainDropBacklogOld",
            "17m",
            { ...node, severity: "page" },
            "mail.brightchain.org:9527: accepted mail has waited 17m 0s in incoming/new/",
          ),
        ],
      ),
      ruleTest(
        "errors/ non-empty for 15 minutes opens a ticket; empty is quiet",
        {
          [`brightchain_inbound_errors_files${labels(node)}`]: "0x5 1x30",
          [`brightchain_inbound_errors_files${labels({ ...node, instance: "other:9527" })}`]: "0x40",
        },
        [
          quiet("BrightChainErrorsNotEmpty", "15m"),
          firing(
            "BrightChainErrorsNotEmpty",
            "22m",
            { ...node, severity: "ticket" },
            "mail.brightchain.org:9527: 1 message(s) in errors/",
          ),
        ],
      ),
      ruleTest(
        "10% of lookups TEMP for 5 minutes pages; 1% does not",
        {
          [`brightchain_lookup_answers_total${labels(lookupNode, { answer: "OK" })}`]: "0+90x30",
          [`brightchain_lookup_answers_total${labels(lookupNode, { answer: "TEMP" })}`]: "0x10 0+10x20",
          [`brightchain_lookup_answers_total${labels({ ...lookupNode, instance: "mail2:9526" }, { answer: "OK" })}`]: "0+99x30",
          [`brightchain_lookup_answers_total${labels({ ...lookupNode, instance: "mail2:9526" }, { answer: "TEMP" })}`]: "0+1x30",
        },
        [
          quiet("BrightChainLookupTempFailures", "9m"),
          firing(
            "BrightChainLookupTempFailures",
            "25m",
            { instance: lookupNode.instance, severity: "page" },
            "mail.brightchain.org:9526: 10% of recipient lookups answer TEMP (451)",
          ),
        ],
      ),
      ruleTest(
        "a deferred queue growing by 10 a minute pages; a large steady queue does not",
        {
          [`postfix_showq_message_age_seconds_count${labels(postfixNode, { queue: "deferred" })}`]: "0+10x80",
          [`postfix_showq_message_age_seconds_count${labels({ ...postfixNode, instance: "mail:9154" }, { queue: "deferred" })}`]:
            "500x80",
        },
        [
          quiet("BrightChainPostfixQueueGrowing", "5m"),
          firing(
            "BrightChainPostfixQueueGrowing",
            "60m",
            { instance: postfixNode.instance, severity: "page" },
            "mail2.brightchain.org:9154: Postfix queue grew by 300 messages in 30 minutes",
          ),
        ],
      ),
      ruleTest(
        "showq unreadable and a target down open tickets",
        {
          [`postfix_up${labels(postfixNode, { path: "/var/spool/postfix/public/showq" })}`]: "1x5 0x20",
          [`up${labels(lookupNode)}`]: "1x5 0x20",
          [`up${labels(node)}`]: "1x25",
        },
        [
          firing(
            "BrightChainPostfixQueueUnreadable",
            "20m",
            {
              ...postfixNode,
              path: "/var/spool/postfix/public/showq",
              severity: "ticket",
            },
            "mail2.brightchain.org:9154: prometheus-postfix-exporter cannot read Postfix's showq (/var/spool/postfix/public/showq)",
          ),
          firing(
            "BrightChainMetricsDown",
            "15m",
            { ...lookupNode, severity: "ticket" },
            "mail.brightchain.org:9526: brightchain-lookup metrics cannot be scraped",
          ),
        ],
      ),
    ];
    const testFile = join(dir, "brightchain.rules.test.yml");
    writeFileSync(testFile, stringify({ rule_files: [rulesFile], evaluation_interval: "1m", tests }));
    const result = promtool("test", "rules", testFile);
    expect(result.output).toContain("SUCCESS");
    expect(result.status).toBe(0);
  });

  it("read only brightchain_* metrics the daemons export", async () => {
    const registry = daemonRegistry();
    lookupMetrics(registry, () => 0);
    inboundMetrics(registry, { mailDropDir: join(dir, "drop"), errorDir: join(dir, "errors"), inFlight: () => 0 });
    const exported = await registry.metrics();
    const used = new Set(rulesFromDoc().match(/brightchain_[a-z_]+/g));
    expect(used.size).toBeGreaterThan(0);
    for (const name of used) expect(exported, name).toMatch(new RegExp(`^${name}[{ ]`, "m"));
  });
});
