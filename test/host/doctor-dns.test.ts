// doctor's resolver (node:dns with setServers, infra/doctor/resolver.ts) against a real name server: Knot on
// loopback serving the zone file the renderer writes for the stacks' records (renderZoneFile, as the lab does)
// and reverse zones for the fleet's addresses. Every record and PTR check is ✓ on the correct zones; the lab's
// DNS faults (SPF without the relay, the DKIM record deleted, the primary's PTR changed) turn exactly their
// checks ✗. Also what the resolver answers for a name that does not exist, and for a server that is not there.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ptrChecks, recordChecks } from "../../infra/doctor/dns";
import { dnsLookup } from "../../infra/doctor/resolver";
import { ResolverUnreachableError, type CheckResult } from "../../infra/doctor/types";
import type { DnsRecord } from "../../infra/model/types";
import { dnsRecords, ptrExpectations, renderZoneFile, spfRecordText } from "../../infra/render/dns";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";
import { freePort, processAlive, waitFor } from "../helpers/postfix-server";
import { scratchDir } from "../helpers/postfix-tools";

const DOMAIN = examplePrimary.domain;
const dkimKey = generateKeyPairSync("rsa", { modulusLength: 2048 })
  .publicKey.export({ type: "spki", format: "der" })
  .toString("base64");
const published: DnsRecord[] = [...dnsRecords(examplePrimary, dkimKey), ...dnsRecords(exampleRelay)];
const context = { publishHint: "`pulumi up --stack primary` publishes it" };

function soa(origin: string): string {
  return `$ORIGIN ${origin}.\n$TTL 300\n@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300\n@ NS ns.test.\n`;
}

/** PTRs of every fleet address, in the zones their reverse names fall in; `override` replaces one address's name. */
function reverseZones(override: Record<string, string> = {}): Record<string, string> {
  const zones: Record<string, string> = {
    "113.0.203.in-addr.arpa": soa("113.0.203.in-addr.arpa"),
    "8.b.d.0.1.0.0.2.ip6.arpa": soa("8.b.d.0.1.0.0.2.ip6.arpa"),
  };
  for (const node of [examplePrimary, exampleRelay]) {
    for (const ptr of ptrExpectations(node)) {
      const zone = Object.keys(zones).find((z) => ptr.reverseName.endsWith(z))!;
      zones[zone] += `${ptr.reverseName}. PTR ${override[ptr.address] ?? ptr.expectedHostname}.\n`;
    }
  }
  return zones;
}

interface Knot {
  port: number;
  stop(): Promise<void>;
}

/** knotd serving `zones` on 127.0.0.1:port, ready once every zone's SOA is answered. */
async function startKnot(dir: string, zones: Record<string, string>): Promise<Knot> {
  rmSync(dir, { recursive: true, force: true });
  for (const sub of ["zones", "run", "db"]) mkdirSync(join(dir, sub), { recursive: true });
  for (const [name, text] of Object.entries(zones)) writeFileSync(join(dir, "zones", `${name}.zone`), text);
  const port = await freePort();
  const config = [
    "server:",
    `    rundir: "${join(dir, "run")}"`,
    `    listen: 127.0.0.1@${port}`,
    "database:",
    `    storage: "${join(dir, "db")}"`,
    "log:",
    "  - target: stderr",
    "    any: warning",
    "template:",
    "  - id: default",
    `    storage: "${join(dir, "zones")}"`,
    '    file: "%s.zone"',
    "    zonefile-sync: -1",
    "    journal-content: none",
    "zone:",
    ...Object.keys(zones).map((name) => `  - domain: ${name}`),
    "",
  ].join("\n");
  writeFileSync(join(dir, "knot.conf"), config);
  const child: ChildProcess = spawn("knotd", ["-c", join(dir, "knot.conf")], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (chunk: Buffer) => (log += chunk.toString()));
  const lookup = dnsLookup([`127.0.0.1:${port}`], { timeoutMs: 500 });
  try {
    for (const name of Object.keys(zones)) {
      await waitFor(`knotd to serve ${name}\n${log}`, async () => (await lookup(name, "NS").catch(() => [])).length > 0);
    }
  } catch (error) {
    child.kill("SIGTERM");
    throw error;
  }
  return {
    port,
    async stop() {
      if (child.pid === undefined || !processAlive(child.pid)) return;
      child.kill("SIGTERM");
      await waitFor(`knotd ${child.pid} to exit`, () => child.exitCode !== null || child.signalCode !== null);
    },
  };
}

const failed = (results: CheckResult[]) => results.filter((r) => r.status !== "ok").map((r) => `${r.subject}: ${r.detail}`);

describe("doctor's DNS checks through a real name server", () => {
  let root: string;
  let knot: Knot | undefined;

  beforeAll(() => {
    root = scratchDir("doctor-dns-");
  });
  afterAll(async () => {
    await knot?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  async function serve(records: DnsRecord[], ptrOverride: Record<string, string> = {}, extraLines = "") {
    await knot?.stop();
    const zone = renderZoneFile(DOMAIN, records) + extraLines;
    knot = await startKnot(join(root, "knot"), { [DOMAIN]: zone, ...reverseZones(ptrOverride) });
    return dnsLookup([`127.0.0.1:${knot.port}`]);
  }

  it("the zones the stacks publish: every record and PTR ✓, the 2048-bit DKIM key re-joined from its strings", async () => {
    const lookup = await serve(published);
    const records = await recordChecks(examplePrimary, dnsRecords(examplePrimary, dkimKey), lookup, context);
    const ptrs = [...(await ptrChecks(examplePrimary, lookup)), ...(await ptrChecks(exampleRelay, lookup))];
    expect(failed([...records, ...ptrs])).toEqual([]);
    expect(records.map((r) => r.subject)).toEqual(
      expect.arrayContaining([
        "MX brightchain.org",
        "AAAA mail.brightchain.org",
        "TXT default._domainkey.brightchain.org (v=DKIM1)",
      ]),
    );
    expect(ptrs.map((r) => r.subject)).toEqual(["PTR 203.0.113.10", "PTR 2001:db8::10", "PTR 203.0.113.20"]);
    expect(await lookup(`_dmarc.${DOMAIN}`, "TXT")).toHaveLength(1);
    // A name that does not exist, and a type the name lacks: no records, not an error.
    expect(await lookup(`nosuch.${DOMAIN}`, "A")).toEqual([]);
    expect(await lookup(`_dmarc.${DOMAIN}`, "MX")).toEqual([]);
  });

  it("the lab's DNS faults: SPF without the relay, DKIM record deleted, the primary's PTR changed — exactly those ✗", async () => {
    const spfWithoutRelay = spfRecordText({ ...examplePrimary, fleet: [examplePrimary.host] });
    const broken = published
      .filter((r) => !r.name.includes("._domainkey."))
      .map((r) => (r.content === spfRecordText(examplePrimary) ? { ...r, content: spfWithoutRelay } : r));
    const lookup = await serve(broken, { "203.0.113.10": "static.203-0-113-10.provider.example" });
    const records = await recordChecks(examplePrimary, dnsRecords(examplePrimary, dkimKey), lookup, context);
    const ptrs = await ptrChecks(examplePrimary, lookup);
    expect(failed([...records, ...ptrs])).toEqual([
      `TXT brightchain.org (v=spf1): served "${spfWithoutRelay}"; expected "${spfRecordText(examplePrimary)}"`,
      "TXT default._domainkey.brightchain.org (v=DKIM1): missing",
      "PTR 203.0.113.10: PTR names static.203-0-113-10.provider.example; expected mail.brightchain.org",
    ]);
  });

  it("TLSA, which node:dns cannot ask for on Node 20: doctor's own query reads it back as dig prints it", async () => {
    const digest = "ab".repeat(32);
    const lookup = await serve(
      published,
      {},
      `_25._tcp.mail 3600 IN TLSA 3 1 1 ${digest}\n_25._tcp.mail 3600 IN TLSA 2 1 1 ${"cd".repeat(32)}\n`,
    );
    expect((await lookup(`_25._tcp.mail.${DOMAIN}`, "TLSA")).sort()).toEqual([`2 1 1 ${"cd".repeat(32)}`, `3 1 1 ${digest}`]);
    expect(await lookup(`_25._tcp.mail2.${DOMAIN}`, "TLSA")).toEqual([]);
    expect(await lookup(`_25._tcp.nosuch.${DOMAIN}`, "TLSA")).toEqual([]);
    const nobody = dnsLookup([`127.0.0.1:${await freePort()}`], { timeoutMs: 300 });
    await expect(nobody(`_25._tcp.mail.${DOMAIN}`, "TLSA")).rejects.toBeInstanceOf(ResolverUnreachableError);
  });

  it("`gateway doctor --stack primary --resolver … --json` end to end: DNS rows ✓ through Knot, nothing listening ✗, exit 1", async () => {
    // Nothing listens on this loopback alias: every SMTP check fails fast with ECONNREFUSED.
    const nowhere = "127.25.3.11";
    await serve(published, {}, `mta-sts 3600 IN A ${nowhere}\n`);
    const repo = resolve(__dirname, "../..");
    const args = ["bin/gateway.cjs", "doctor", "--stack", "primary", "--resolver", `127.0.0.1:${knot!.port}`];
    const run = async (extra: string[]) => {
      try {
        const { stdout } = await promisify(execFile)(process.execPath, [...args, ...extra], { cwd: repo, encoding: "utf8" });
        return { code: 0, stdout };
      } catch (error) {
        const failed = error as { code: number; stdout: string; stderr: string };
        return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
      }
    };
    const json = await run(["--address", `mail.brightchain.org=${nowhere}`, "--json"]);
    expect(json.code, JSON.stringify(json)).toBe(1);
    const report = JSON.parse(json.stdout) as { ok: boolean; checks: CheckResult[] };
    expect(report.ok).toBe(false);
    expect(failed(report.checks.filter((c) => c.group === "dns" || c.group === "ptr"))).toEqual([]);
    expect(report.checks.find((c) => c.group === "policy")).toMatchObject({
      status: "fail",
      detail: expect.stringContaining("ECONNREFUSED"),
    });
    expect(report.checks.find((c) => c.subject === `STARTTLS ${nowhere}:25`)).toMatchObject({
      status: "fail",
      detail: "failed: ECONNREFUSED",
    });
    expect(report.checks.filter((c) => c.group === "ports").every((c) => c.status === "ok")).toBe(true);
    const table = await run(["--address", `mail.brightchain.org=${nowhere}`]);
    expect(table.code).toBe(1);
    const lines = table.stdout.split("\n");
    expect(lines[0]).toBe("doctor primary (mail.brightchain.org)");
    expect(lines[1]).toMatch(/^ {2}✓ {2}dns /);
    const starttls = lines.findIndex((line) => line.includes(`STARTTLS ${nowhere}:25 `));
    expect(lines[starttls]).toMatch(/^ {2}✗ {2}tls +STARTTLS \S+ +failed: ECONNREFUSED$/);
    expect(lines[starttls + 1]).toMatch(/^ {7}fix: nothing answers SMTP at /);
  });

  it("a name server that is not there: ResolverUnreachableError (doctor exits 2), not every record missing", async () => {
    const nobody = dnsLookup([`127.0.0.1:${await freePort()}`], { timeoutMs: 500 });
    await expect(nobody(DOMAIN, "MX")).rejects.toBeInstanceOf(ResolverUnreachableError);
  });
});
