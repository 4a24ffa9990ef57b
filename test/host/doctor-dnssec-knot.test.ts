// doctor's DNSSEC rows against a real signing name server: knotd on loopback signs brightchain.org itself (the lab's
// policy, ECDSA P-256, one combined key; and RSA/SHA-256 with a 4096-bit KSK, whose DNSKEY answer outgrows the
// 1232-byte EDNS buffer so doctor must ask again over TCP), `keymgr … ds` gives the DS a registrar would publish,
// and dnssecChecks asks knotd through doctor's own query with that DS as the trust anchor. The unit tests sign
// their own zones; this proves doctor reads what a real signer serves, and names keymgr's DS when the anchor is wrong.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dnssecChecks } from "../../infra/doctor/dnssec";
import { decodeAnswer, encodeQuery, TYPE_DNSKEY, TYPE_RRSIG, type DnsAnswer } from "../../infra/doctor/dns-wire";
import { parseTrustAnchor, type TrustAnchor } from "../../infra/doctor/dnssec-validate";
import { dnssecQuery } from "../../infra/doctor/resolver";
import type { CheckResult } from "../../infra/doctor/types";
import { examplePrimary } from "../fixtures/nodes";
import { freePort, processAlive, waitFor } from "../helpers/postfix-server";
import { scratchDir } from "../helpers/postfix-tools";

const ZONE = examplePrimary.domain;
const run = promisify(execFile);

const zoneText = [
  `$ORIGIN ${ZONE}.`,
  "$TTL 300",
  "@ SOA ns.brightchain.org. hostmaster.brightchain.org. 1 3600 600 86400 300",
  "@ NS ns.brightchain.org.",
  "@ MX 10 mail.brightchain.org.",
  "ns A 192.0.2.53",
  "mail A 192.0.2.10",
  "",
].join("\n");

/** Knot's policy lines: the lab's (infra/lab/dns.ts), or RSA with a KSK large enough that DNSKEY needs TCP. */
const POLICIES = {
  ecdsa: ["    algorithm: ecdsap256sha256", "    single-type-signing: on"],
  rsa: ["    algorithm: rsasha256", "    ksk-size: 4096", "    zsk-size: 2048"],
} as const;

interface SigningKnot {
  server: string;
  config: string;
  stop(): Promise<void>;
}

/** knotd signing ZONE with `policy` on 127.0.0.1 (UDP and TCP), ready once it serves a signed DNSKEY set. */
async function startSigningKnot(dir: string, policy: keyof typeof POLICIES): Promise<SigningKnot> {
  for (const sub of ["zones", "run", "db", "keys"]) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, "zones", `${ZONE}.zone`), zoneText);
  const port = await freePort();
  const config = join(dir, "knot.conf");
  writeFileSync(
    config,
    [
      "server:",
      `    rundir: "${join(dir, "run")}"`,
      `    listen: 127.0.0.1@${port}`,
      "database:",
      `    storage: "${join(dir, "db")}"`,
      `    kasp-db: "${join(dir, "keys")}"`,
      "log:",
      "  - target: stderr",
      "    any: warning",
      "policy:",
      "  - id: test",
      ...POLICIES[policy],
      "template:",
      "  - id: default",
      `    storage: "${join(dir, "zones")}"`,
      '    file: "%s.zone"',
      "    zonefile-sync: -1",
      "    journal-content: none",
      "    dnssec-signing: on",
      "    dnssec-policy: test",
      "zone:",
      `  - domain: ${ZONE}`,
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn("knotd", ["-c", config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (chunk: Buffer) => (log += chunk.toString()));
  const server = `127.0.0.1:${port}`;
  const stop = async () => {
    if (child.pid === undefined || !processAlive(child.pid)) return;
    child.kill("SIGTERM");
    await waitFor(`knotd ${child.pid} to exit`, () => child.exitCode !== null || child.signalCode !== null);
  };
  const query = dnssecQuery([server], { timeoutMs: 500 });
  try {
    await waitFor(
      `knotd (${policy}) to serve a signed DNSKEY set for ${ZONE}\n${log}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`knotd exited ${child.exitCode}\n${log}`);
        const answer = await query(ZONE, TYPE_DNSKEY).catch(() => undefined);
        return answer?.records.some((r) => r.type === TYPE_RRSIG) ?? false;
      },
      60_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { server, config, stop };
}

/** `keymgr -c <conf> <zone> ds`: the DS records of the zone's KSK, as knot prints them for a registrar. */
async function keymgrDs(config: string): Promise<string[]> {
  const { stdout } = await run("keymgr", ["-c", config, ZONE, "ds"], { encoding: "utf8" });
  const lines = stdout
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
  expect(lines.length, stdout).toBeGreaterThan(0);
  return lines;
}

/** One plain UDP query with DO, as doctor's first attempt: to see whether knotd truncates the answer. */
function udpAnswer(server: string, type: number): Promise<DnsAnswer> {
  const [address, port] = server.split(":");
  return new Promise((resolve, reject) => {
    const socket = createSocket("udp4");
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no UDP answer from ${server}`));
    }, 2_000);
    socket.on("message", (packet) => {
      clearTimeout(timer);
      socket.close();
      resolve(decodeAnswer(packet));
    });
    socket.send(encodeQuery(4242, ZONE, type, { dnssec: true }), Number(port), address);
  });
}

async function rows(server: string, trustAnchors: TrustAnchor[]): Promise<Record<string, CheckResult>> {
  const results = await dnssecChecks(examplePrimary, dnssecQuery([server], { timeoutMs: 2_000 }), {
    trustAnchors,
    now: new Date(),
    publishHint: "`pulumi up --stack primary` publishes it",
  });
  return Object.fromEntries(results.map((r) => [r.subject, r]));
}
const statuses = (found: Record<string, CheckResult>) => Object.fromEntries(Object.entries(found).map(([k, v]) => [k, v.status]));

/** keymgr's DS in doctor's form (`brightchain.org. IN DS <tag> <alg> 2 <HEX>`): what a ✗'s fix must name. */
const asDoctorWrites = (anchor: TrustAnchor) =>
  `${ZONE}. IN DS ${anchor.keyTag} ${anchor.algorithm} ${anchor.digestType} ${anchor.digest.toString("hex").toUpperCase()}`;

/** The anchor with the digest's last hex digit changed: same key tag and algorithm, a digest of no key. */
function wrongDigest(text: string): TrustAnchor {
  const flipped = text.replace(/([0-9a-f])$/i, (digit) => (digit.toLowerCase() === "0" ? "1" : "0"));
  expect(flipped).not.toBe(text);
  return parseTrustAnchor(flipped);
}

describe.each([
  { policy: "ecdsa", algorithm: 13, name: "ECDSA P-256/SHA-256" },
  { policy: "rsa", algorithm: 8, name: "RSA/SHA-256" },
] as const)("doctor's DNSSEC rows against knotd signing with $name", ({ policy, algorithm, name }) => {
  let root: string;
  let knot: SigningKnot | undefined;
  let dsLines: string[];
  let sha256: TrustAnchor;

  beforeAll(async () => {
    root = scratchDir(`doctor-dnssec-knot-${policy}-`);
    knot = await startSigningKnot(join(root, "knot"), policy);
    dsLines = await keymgrDs(knot.config);
    const line = dsLines.find((l) => parseTrustAnchor(l).digestType === 2);
    expect(line, dsLines.join("\n")).toBeDefined();
    sha256 = parseTrustAnchor(line!);
  });
  afterAll(async () => {
    await knot?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it("keymgr's DS as the trust anchor: DNSKEY, DS (trust anchor), RRSIG MX ✓; AD ! (knot is authoritative)", async () => {
    const anchors = dsLines.map(parseTrustAnchor);
    for (const anchor of anchors) expect(anchor).toMatchObject({ zone: ZONE, algorithm });
    const found = await rows(knot!.server, anchors);
    expect(statuses(found)).toEqual({
      "DNSKEY brightchain.org": "ok",
      "DS brightchain.org (trust anchor)": "ok",
      "RRSIG MX brightchain.org": "ok",
      "AD MX brightchain.org": "warn",
    });
    const ksk = sha256.keyTag;
    expect(found["DNSKEY brightchain.org"]!.detail).toMatch(
      new RegExp(
        `KSK ${ksk}\\b.*\\(${name.replace(/[/()]/g, "\\$&")}\\); the set signed by ${ksk}, valid until \\d{4}-\\d{2}-\\d{2}$`,
      ),
    );
    expect(found["DS brightchain.org (trust anchor)"]!.detail).toContain(
      `from the trust anchor given (--trust-anchor) matches key ${anchors.map((a) => a.keyTag).join(", ")}, which signs the DNSKEY set`,
    );
    expect(found["RRSIG MX brightchain.org"]!.detail).toMatch(/^MX signed by \d+, valid until \d{4}-\d{2}-\d{2}$/);
    if (policy === "ecdsa") {
      // One combined key (single-type-signing): the KSK signs MX too.
      expect(found["RRSIG MX brightchain.org"]!.detail).toContain(`MX signed by ${ksk},`);
    } else {
      expect(found["RRSIG MX brightchain.org"]!.detail).not.toContain(`MX signed by ${ksk},`);
    }
    expect(found["AD MX brightchain.org"]!.detail).toBe(
      `${knot!.server} did not set the AD bit (answered): it is not a validating resolver (an authoritative server, or one that does not validate), or does not know the trust anchor given; the rows above are doctor's own validation`,
    );
  });

  it("keymgr's DS with its digest changed: DS ✗ naming keymgr's DS as the one to publish", async () => {
    const found = await rows(knot!.server, [wrongDigest(sha256.text)]);
    expect(statuses(found)).toEqual({
      "DNSKEY brightchain.org": "ok",
      "DS brightchain.org (trust anchor)": "fail",
      "RRSIG MX brightchain.org": "ok",
      "AD MX brightchain.org": "warn",
    });
    const ds = found["DS brightchain.org (trust anchor)"]!;
    expect(ds.detail).toContain("matches no DNSKEY of the zone");
    expect(ds.fix).toBe(`replace the DS at the registrar with ${asDoctorWrites(sha256)}`);
  });

  it(
    policy === "rsa"
      ? "the DNSKEY answer is truncated over UDP (4096-bit KSK), without its RRSIG: doctor's ✓ above came over TCP"
      : "the DNSKEY answer and its RRSIG fit in UDP",
    async () => {
      const answer = await udpAnswer(knot!.server, TYPE_DNSKEY);
      expect(answer.rcode).toBe(0);
      expect(answer.truncated).toBe(policy === "rsa");
      // knotd sends what fits (the keys) without the RRSIG over them: doctor's DNSKEY ✓ above needs that RRSIG, so
      // it came over TCP.
      expect(answer.records.some((r) => r.type === TYPE_RRSIG)).toBe(policy !== "rsa");
    },
  );
});
