// brightchain-inbound's Prometheus endpoint, scraped over HTTP in-process while the real processor and the
// embedded store work on a real drop Maildir: the backlog gauges follow new/, the outcomes follow what happened.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { inboundMetrics, scanDirectory } from "../../runtime/src/inbound/inbound-metrics";
import { InboundProcessor, type InboundLogger } from "../../runtime/src/inbound/inbound-processor";
import { SinkError, type Handoff, type Sink } from "../../runtime/src/inbound/sink";
import { MetricsEndpoint, daemonRegistry } from "../../runtime/src/metrics/metrics-endpoint";
import { ContentAddressedStore } from "../../runtime/src/store/content-addressed-store";
import { dropMessage, dropMessageText, waitUntil } from "../helpers/inbound-drop";
import { inboundTestOptions, makeInboundSpool } from "../helpers/inbound-daemon";
import { sample, scrape, type Scrape } from "../helpers/prometheus-text";

let dir: string;
let dropDir: string;
let errorDir: string;
const logger: InboundLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
const cleanups: (() => Promise<void>)[] = [];

beforeEach(() => {
  ({ dir, dropDir, errorDir } = makeInboundSpool("bc-inbound-metrics-"));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** The daemon's wiring (runtime/bin/brightchain-inbound.ts) with a sink of the test's choosing; not started yet. */
async function inboundWithMetrics(sink: Sink) {
  const registry = daemonRegistry();
  const observer = inboundMetrics(registry, { mailDropDir: dropDir, errorDir, inFlight: () => processor.inFlight });
  // Read by the metrics only when scraped, after this line has run.
  const processor = new InboundProcessor({ ...inboundTestOptions({ dropDir, errorDir }, sink, logger), observer });
  const endpoint = new MetricsEndpoint({ registry, host: "127.0.0.1", port: 0 });
  const port = await endpoint.listen();
  cleanups.push(async () => {
    await processor.stop();
    await sink.close();
    await endpoint.close();
  });
  // A scan result is reused for a second; a test that changed new/ must not read the last one.
  const fresh = async (): Promise<Scrape> => {
    await new Promise((resolve) => setTimeout(resolve, 1_050));
    return scrape(port);
  };
  return { processor, port, fresh };
}

/** A Maildir name as virtual(8) writes it: delivery time in seconds first. */
const maildirName = (secondsAgo: number, tag: string) =>
  `${Math.floor(Date.now() / 1000) - secondsAgo}.V801I${tag}M1.mail.brightchain.org`;
const outcome = (name: string) => `brightchain_inbound_handoffs_total{outcome="${name}"}`;
const curCount = () => readdirSync(join(dropDir, "cur")).length;

describe("brightchain-inbound metrics", () => {
  it("count a waiting drop file and its age, then 0 once it is stored; the same bytes again are a duplicate", async () => {
    const store = await ContentAddressedStore.open(join(dir, "store"));
    const { processor, port, fresh } = await inboundWithMetrics(store);
    const idle = await scrape(port);
    expect(sample(idle, "brightchain_inbound_new_files")).toBe(0);
    expect(sample(idle, "brightchain_inbound_new_oldest_age_seconds")).toBe(0);
    for (const name of ["stored", "duplicate", "refused", "retried"]) expect(sample(idle, outcome(name))).toBe(0);

    const message = dropMessageText({ recipient: "alice@brightchain.org", subject: "backlog" });
    dropMessage(dropDir, maildirName(120, "1"), message);
    const waiting = await fresh();
    expect(sample(waiting, "brightchain_inbound_new_files")).toBe(1);
    expect(sample(waiting, "brightchain_inbound_new_oldest_age_seconds")).toBeGreaterThanOrEqual(120);
    expect(sample(waiting, "brightchain_inbound_new_oldest_age_seconds")).toBeLessThan(180);

    await processor.start();
    await waitUntil("the message to reach cur/", () => curCount() === 1);
    const drained = await fresh();
    expect(sample(drained, "brightchain_inbound_new_files")).toBe(0);
    expect(sample(drained, "brightchain_inbound_new_oldest_age_seconds")).toBe(0);
    expect(sample(drained, outcome("stored"))).toBe(1);

    // Postfix delivered the same message twice (a retry after a lost answer): the store already holds it.
    dropMessage(dropDir, maildirName(0, "2"), message);
    await waitUntil("the second copy to reach cur/", () => curCount() === 2);
    const twice = await scrape(port);
    expect([sample(twice, outcome("stored")), sample(twice, outcome("duplicate"))]).toEqual([1, 1]);
    expect(sample(twice, 'brightchain_inbound_sink_failures_total{kind="temporary"}')).toBe(0);
  });

  it("count a refused file in errors/ (its .reason file not counted) and a refusal as the outcome", async () => {
    const store = await ContentAddressedStore.open(join(dir, "store"));
    const { processor, port, fresh } = await inboundWithMetrics(store);
    expect(sample(await scrape(port), "brightchain_inbound_errors_files")).toBe(0);
    await processor.start();
    dropMessage(dropDir, maildirName(0, "3"), dropMessageText({ recipient: "alice@elsewhere.example" }));
    await waitUntil("the refused file to reach errors/", () => readdirSync(errorDir).length === 2);
    const scraped = await fresh();
    expect(sample(scraped, "brightchain_inbound_errors_files")).toBe(1);
    expect(sample(scraped, outcome("refused"))).toBe(1);
    expect(sample(scraped, outcome("stored"))).toBe(0);
    expect(sample(scraped, 'brightchain_inbound_scan_truncated{directory="errors"}')).toBe(0);
  });

  it("count a sink's temporary failure as a retried hand-off, its retry, then the message stored", async () => {
    let failures = 1;
    const delivered: Handoff[] = [];
    const flaky: Sink = {
      async deliver(handoff) {
        if (failures-- > 0) throw new SinkError("node API answered 503", false);
        delivered.push(handoff);
        return "stored";
      },
      close: async () => undefined,
    };
    const { processor, fresh } = await inboundWithMetrics(flaky);
    await processor.start();
    dropMessage(dropDir, maildirName(0, "4"), dropMessageText({ recipient: "alice@brightchain.org" }));
    await waitUntil("the retried message to reach cur/", () => curCount() === 1);
    const scraped = await fresh();
    expect(sample(scraped, outcome("retried"))).toBe(1);
    expect(sample(scraped, outcome("stored"))).toBe(1);
    expect(sample(scraped, "brightchain_inbound_retries_total")).toBe(1);
    expect(sample(scraped, 'brightchain_inbound_sink_failures_total{kind="temporary"}')).toBe(1);
    expect(sample(scraped, 'brightchain_inbound_sink_failures_total{kind="permanent"}')).toBe(0);
    expect(sample(scraped, "brightchain_inbound_new_files")).toBe(0);
    expect(delivered).toHaveLength(1);
  });
});

describe("scanDirectory", () => {
  it("stops at its limit and says so; ages a name without a Maildir time by its mtime; skips dot and .reason files", async () => {
    const scanned = join(dir, "scanned");
    mkdirSync(scanned);
    for (let i = 0; i < 5; i++) writeFileSync(join(scanned, maildirName(60 + i, `s${i}`)), "x");
    expect(await scanDirectory(scanned, { skipReasons: false, limit: 3 })).toMatchObject({ files: 3, truncated: true });
    const whole = await scanDirectory(scanned, { skipReasons: false });
    expect(whole).toMatchObject({ files: 5, truncated: false });
    expect(whole.oldestSeconds).toBeGreaterThanOrEqual(64);

    const errors = join(dir, "errors-like");
    mkdirSync(errors);
    writeFileSync(join(errors, "hand-made"), "x");
    writeFileSync(join(errors, "hand-made.reason"), "why\n");
    writeFileSync(join(errors, ".hidden"), "x");
    const refused = await scanDirectory(errors, { skipReasons: true, now: Date.now() + 30_000 });
    expect(refused.files).toBe(1);
    expect(refused.oldestSeconds).toBeGreaterThanOrEqual(29);
    expect(await scanDirectory(join(dir, "absent"), { skipReasons: true })).toEqual({
      files: 0,
      truncated: false,
      oldestSeconds: 0,
    });
  });
});
