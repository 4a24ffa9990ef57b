// The bundled daemons' Prometheus endpoints and Debian's prometheus-postfix-exporter, scraped over HTTP while they
// serve a real Postfix: the lookup counts the answers Postfix asked for at RCPT, the processor's backlog gauges
// follow a drop into new/ and back to 0, and the exporter, started with the rendered options, reads the
// instance's queue from showq.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import {
  POSTFIX_EXPORTER_DROP_IN,
  mailLogCommand,
  renderPostfixExporterDefaults,
  renderPostfixExporterDropIn,
} from "../../infra/render/metrics";
import { examplePrimary } from "../fixtures/nodes";
import { dropMessage, dropMessageText, makeDropMaildir } from "../helpers/inbound-drop";
import { StandInNode } from "../helpers/node-api-stand-in";
import {
  freePort,
  renderedPostfixOptions,
  sendMail,
  startPostfix,
  waitFor,
  waitForPort,
  type PostfixInstance,
} from "../helpers/postfix-server";
import { sample, scrape, type Scrape } from "../helpers/prometheus-text";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const root = mkdtempSync(join(tmpdir(), "metrics-host-"));
const children: ChildProcess[] = [];
const logs = new Map<ChildProcess, () => string>();
let postfix: PostfixInstance | undefined;
let node: GatewayNode;
const ports = { lookup: 0, lookupMetrics: 0, inboundMetrics: 0, exporter: 0 };
const dropDir = join(root, "incoming");
const errorDir = join(root, "errors");

function start(command: string, args: string[], env: Record<string, string>): ChildProcess {
  // Only PATH and the test's variables: the artifact must need nothing from the repository or this machine.
  const child = spawn(command, args, {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  logs.set(child, () => output);
  children.push(child);
  return child;
}

/** A scrape that waits out the processor's one-second reuse of a directory scan. */
async function freshScrape(port: number): Promise<Scrape> {
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  return scrape(port);
}

beforeAll(async () => {
  chmodSync(root, 0o755);
  makeDropMaildir(dropDir);
  const registryFile = join(root, "recipients");
  writeFileSync(registryFile, "alice@brightchain.org\n");
  const dist = join(root, "dist");
  const [lookupArtifact, inboundArtifact] = await Promise.all([
    bundleRuntimeEntry("brightchain-lookup", dist),
    bundleRuntimeEntry("brightchain-inbound", dist),
  ]);
  for (const key of Object.keys(ports) as (keyof typeof ports)[]) ports[key] = await freePort();

  const lookup = start(process.execPath, [lookupArtifact], {
    EMAIL_DOMAIN: "brightchain.org",
    GATEWAY_REGISTRY_FILE: registryFile,
    GATEWAY_LOOKUP_PORT: String(ports.lookup),
    GATEWAY_LOOKUP_METRICS_PORT: String(ports.lookupMetrics),
  });
  start(process.execPath, [inboundArtifact], {
    EMAIL_DOMAIN: "brightchain.org",
    GATEWAY_MAIL_DROP_DIR: dropDir,
    GATEWAY_ERROR_DIR: errorDir,
    GATEWAY_STORE_DIR: join(root, "store"),
    GATEWAY_SPAM_ENGINE: "none",
    GATEWAY_INBOUND_METRICS_PORT: String(ports.inboundMetrics),
  });
  await waitForPort(ports.lookup);
  await Promise.all([waitForPort(ports.lookupMetrics), waitForPort(ports.inboundMetrics)]).catch((error: Error) => {
    throw new Error(`${error.message}; lookup said:\n${logs.get(lookup)!()}`);
  });

  node = {
    ...examplePrimary,
    mynetworks: [],
    lookup: { ...examplePrimary.lookup, port: ports.lookup },
    metrics: { ...examplePrimary.metrics, postfixPort: ports.exporter },
  };
  // Accepted mail stays queued (the drop transport deferred): the exporter then has a queue to count.
  postfix = await startPostfix(renderedPostfixOptions(node, { main: { defer_transports: "brightchain-drop" } }));
}, 120_000);

afterAll(async () => {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  }
  await postfix?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("metrics of the bundled daemons behind a real Postfix", () => {
  it("brightchain-lookup counts the NOTFOUND and OK answers Postfix asked for at RCPT", async () => {
    const before = await scrape(ports.lookupMetrics);
    expect(before.status).toBe(200);
    expect(sample(before, 'brightchain_lookup_answers_total{answer="NOTFOUND"}')).toBe(0);
    const reply = await sendMail({ port: postfix!.smtpPort, from: "sender@example.net", to: ["mallory@brightchain.org"] });
    expect(reply.rcpt[0]!.code).toBe(550);
    const afterUnknown = await scrape(ports.lookupMetrics);
    // Postfix may ask more than once per address (smtpd, then cleanup or trivial-rewrite): at least one, all NOTFOUND.
    expect(sample(afterUnknown, 'brightchain_lookup_answers_total{answer="NOTFOUND"}')).toBeGreaterThanOrEqual(1);
    expect(sample(afterUnknown, 'brightchain_lookup_answers_total{answer="OK"}')).toBe(0);
    expect(sample(afterUnknown, 'brightchain_lookup_answers_total{answer="TEMP"}')).toBe(0);

    const accepted = await sendMail({ port: postfix!.smtpPort, from: "sender@example.net", to: ["alice@brightchain.org"] });
    expect(accepted.rcpt[0]!.code).toBe(250);
    const after = await scrape(ports.lookupMetrics);
    expect(sample(after, 'brightchain_lookup_answers_total{answer="OK"}')).toBeGreaterThanOrEqual(1);
    expect(sample(after, "brightchain_lookup_duration_seconds_count")).toBe(
      ["OK", "NOTFOUND", "TEMP", "PERM"].reduce(
        (sum, answer) => sum + sample(after, `brightchain_lookup_answers_total{answer="${answer}"}`),
        0,
      ),
    );
    // Postfix keeps its socketmap connections open between lookups.
    expect(sample(after, "brightchain_lookup_open_connections")).toBeGreaterThanOrEqual(1);
  });

  it("brightchain-inbound with the node API down: the drop waits in new/ (1, its age), then 0 and stored once it is back", async () => {
    let nodeUp = false;
    const standIn = await StandInNode.start(() => (nodeUp ? { status: 201 } : { status: 503 }));
    const apiDrop = join(root, "api-incoming");
    makeDropMaildir(apiDrop);
    const metricsPort = await freePort();
    start(process.execPath, [join(root, "dist", "brightchain-inbound.cjs")], {
      EMAIL_DOMAIN: "brightchain.org",
      GATEWAY_MAIL_DROP_DIR: apiDrop,
      GATEWAY_ERROR_DIR: join(root, "api-errors"),
      GATEWAY_NODE_URL: standIn.url,
      GATEWAY_SPAM_ENGINE: "none",
      GATEWAY_INBOUND_METRICS_PORT: String(metricsPort),
    });
    try {
      await waitForPort(metricsPort);
      // Delivered by Postfix two minutes ago, by its name: the age is the backlog's, not the file's mtime.
      dropMessage(
        apiDrop,
        `${Math.floor(Date.now() / 1000) - 120}.V801I9M1.mail.brightchain.org`,
        dropMessageText({ recipient: "alice@brightchain.org" }),
      );
      await waitFor("the node API to refuse the first attempt", () => standIn.requests.length >= 1);
      const waiting = await freshScrape(metricsPort);
      expect(sample(waiting, "brightchain_inbound_new_files")).toBe(1);
      expect(sample(waiting, "brightchain_inbound_new_oldest_age_seconds")).toBeGreaterThanOrEqual(120);
      expect(sample(waiting, 'brightchain_inbound_handoffs_total{outcome="retried"}')).toBeGreaterThanOrEqual(1);
      expect(sample(waiting, 'brightchain_inbound_sink_failures_total{kind="temporary"}')).toBeGreaterThanOrEqual(1);
      expect(sample(waiting, 'brightchain_inbound_handoffs_total{outcome="stored"}')).toBe(0);

      nodeUp = true;
      await waitFor("the retried message to reach cur/", () => readdirSync(join(apiDrop, "cur")).length === 1, 30_000);
      const drained = await freshScrape(metricsPort);
      expect(sample(drained, "brightchain_inbound_new_files")).toBe(0);
      expect(sample(drained, "brightchain_inbound_new_oldest_age_seconds")).toBe(0);
      expect(sample(drained, 'brightchain_inbound_handoffs_total{outcome="stored"}')).toBe(1);
      expect(sample(drained, "brightchain_inbound_retries_total")).toBeGreaterThanOrEqual(1);
      expect(standIn.violations).toEqual([]);
    } finally {
      await standIn.close();
    }
  });

  it("brightchain-inbound with the embedded store: a drop is stored and counted, a foreign recipient's is in errors/", async () => {
    dropMessage(
      dropDir,
      `${Math.floor(Date.now() / 1000)}.V801I1M1.mail.brightchain.org`,
      dropMessageText({ recipient: "alice@brightchain.org" }),
    );
    await waitFor("the message to reach cur/", () => readdirSync(join(dropDir, "cur")).length === 1);
    const stored = await freshScrape(ports.inboundMetrics);
    expect(sample(stored, "brightchain_inbound_new_files")).toBe(0);
    expect(sample(stored, "brightchain_inbound_new_oldest_age_seconds")).toBe(0);
    expect(sample(stored, 'brightchain_inbound_handoffs_total{outcome="stored"}')).toBe(1);

    // A dot file is not a Maildir message: the daemon leaves it, and so do the gauges.
    dropMessage(dropDir, ".hidden", "x");
    // One outside the served domains goes to errors/, with its reason beside it.
    dropMessage(
      dropDir,
      `${Math.floor(Date.now() / 1000)}.V801I2M1.mail.brightchain.org`,
      dropMessageText({ recipient: "bob@elsewhere.example" }),
    );
    await waitFor("the refused message in errors/", () => readdirSync(errorDir).length === 2);
    const refused = await freshScrape(ports.inboundMetrics);
    expect(sample(refused, "brightchain_inbound_errors_files")).toBe(1);
    expect(sample(refused, 'brightchain_inbound_handoffs_total{outcome="refused"}')).toBe(1);
    expect(sample(refused, "brightchain_inbound_new_files")).toBe(0);
  });

  it("prometheus-postfix-exporter with the rendered options serves the instance's queue on the loopback port", async () => {
    // The rendered ARGS, pointed at this instance's showq socket and log instead of the system Postfix's.
    const args = /^ARGS="(.*)"$/m
      .exec(renderPostfixExporterDefaults(node))![1]!
      .replace("/var/spool/postfix/public/showq", join(postfix!.queueDir, "public", "showq"))
      .replace("/var/log/mail.log", postfix!.maillogFile)
      .split(" ");
    expect(args[0]).toBe(`--web.listen-address=127.0.0.1:${ports.exporter}`);
    const exporter = start("/usr/bin/prometheus-postfix-exporter", args, {});
    await waitForPort(ports.exporter).catch((error: Error) => {
      throw new Error(`${error.message}; the exporter said:\n${logs.get(exporter)!()}`);
    });
    // alice's message from the first test is queued (its transport deferred).
    await waitFor(
      "the exporter to count a queued message",
      async () => {
        const scraped = await scrape(ports.exporter);
        return [...scraped.samples].some(
          ([series, value]) => series.startsWith("postfix_showq_message_age_seconds_count") && value >= 1,
        );
      },
      30_000,
    ).catch(async (error: Error) => {
      throw new Error(
        `${error.message}; the exporter served:\n${(await scrape(ports.exporter)).text}\nand said:\n${logs.get(exporter)!()}`,
      );
    });
    const scraped = await scrape(ports.exporter);
    expect(sample(scraped, `postfix_up{path="${join(postfix!.queueDir, "public", "showq")}"}`)).toBe(1);
    const queued = [...scraped.samples]
      .filter(([series]) => series.startsWith("postfix_showq_message_age_seconds_count"))
      .reduce((sum, [, value]) => sum + value, 0);
    expect(queued).toBe((await postfix!.queuedIds()).length);
  });

  it("the exporter stops at start without its log file; the rendered drop-in creates it first and verifies on the packaged unit", () => {
    const missing = join(root, "log", "mail.log");
    mkdirSync(dirname(missing));
    const alone = spawnSync(
      "/usr/bin/prometheus-postfix-exporter",
      [`--web.listen-address=127.0.0.1:${ports.exporter + 1}`, `--postfix.logfile_path=${missing}`],
      { encoding: "utf8", timeout: 20_000 },
    );
    expect(alone.status).not.toBe(0);
    expect(`${alone.stdout}${alone.stderr}`).toContain(`Error opening log source: open ${missing}: no such file or directory`);

    // The drop-in's command, pointed at the test's path: creates it as rsyslog would, then leaves it alone.
    const create = () =>
      spawnSync("sh", ["-c", mailLogCommand(missing).replace(/^\/bin\/sh -c /, "eval ")], { encoding: "utf8" });
    expect(create().status).toBe(0);
    const created = statSync(missing);
    expect([created.size, created.mode & 0o777, created.uid]).toEqual([0, 0o640, 0]);
    expect(spawnSync("getent", ["group", "adm"], { encoding: "utf8" }).stdout.split(":")[2]).toBe(String(created.gid));
    writeFileSync(missing, "a line rsyslog wrote\n");
    expect(create().status).toBe(0);
    expect(readFileSync(missing, "utf8")).toBe("a line rsyslog wrote\n");

    const units = join(root, "units");
    mkdirSync(join(units, dirname(POSTFIX_EXPORTER_DROP_IN.replace("/etc/systemd/system/", ""))), { recursive: true });
    writeFileSync(join(units, POSTFIX_EXPORTER_DROP_IN.replace("/etc/systemd/system/", "")), renderPostfixExporterDropIn());
    const verify = spawnSync("systemd-analyze", ["verify", "prometheus-postfix-exporter.service"], {
      encoding: "utf8",
      // Our directory first, then the packaged unit; the trailing ':' adds systemd's defaults.
      env: { ...process.env, SYSTEMD_UNIT_PATH: `${units}:` },
    });
    expect(`${verify.stdout}${verify.stderr}`).toBe("");
    expect(verify.status).toBe(0);
  });
});
