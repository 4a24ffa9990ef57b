import { Resolver } from "node:dns/promises";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LAB_DNS_PORT, LAB_GATEWAY_IP, LAB_HOSTS, LAB_SUBNET_OCTETS } from "./constants";
import { readLogTail, startDetached } from "./daemon";
import { LabStepError, runCommand, waitFor } from "./process";
import { LabProcessRecord } from "./state";

/** Knot, authoritative only: guests resolve the lab's zones and the mirror and nothing else. */
export interface LabDnsPaths {
  dir: string;
  config: string;
  zonesDir: string;
  log: string;
}

export function labDnsPaths(stateDir: string): LabDnsPaths {
  const dir = join(stateDir, "dns");
  return { dir, config: join(dir, "knot.conf"), zonesDir: join(dir, "zones"), log: join(dir, "knotd.log") };
}

const ZONE_NAME = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/;

export function assertZoneName(name: string): void {
  if (!ZONE_NAME.test(name)) {
    throw new Error(
      `lab zone name "${name}" is not a DNS name; accepted: lowercase labels like "brightchain.org" (no trailing dot)`,
    );
  }
}

export function renderKnotConfig(paths: LabDnsPaths, zoneNames: readonly string[]): string {
  return [
    "server:",
    `    rundir: "${join(paths.dir, "run")}"`,
    `    listen: ${LAB_GATEWAY_IP}@${LAB_DNS_PORT}`,
    "database:",
    `    storage: "${join(paths.dir, "db")}"`,
    "control:",
    `    listen: "${join(paths.dir, "run", "knot.sock")}"`,
    "log:",
    "  - target: stderr",
    "    any: info",
    // Every lab zone is DNSSEC-signed, as gateway:dnssec has Cloudflare sign the real one: a validating resolver
    // given the zone's DS as its trust anchor (labZoneTrustAnchor) can check MX and TLSA answers, which DANE needs.
    // One ECDSA P-256 key (algorithm 13, Cloudflare's) signs each zone; the keys live in the KASP database under
    // the state directory and are re-used when a zone is reloaded.
    "policy:",
    "  - id: lab",
    "    algorithm: ecdsap256sha256",
    "    single-type-signing: on",
    "template:",
    "  - id: default",
    `    storage: "${paths.zonesDir}"`,
    '    file: "%s.zone"',
    // The zone file is the only source of truth: no journal, no writing back, reload replaces the zone whole
    // (and signs it again).
    "    zonefile-sync: -1",
    "    zonefile-load: whole",
    "    journal-content: none",
    "    dnssec-signing: on",
    "    dnssec-policy: lab",
    "zone:",
    ...zoneNames.map((name) => `  - domain: ${name}`),
    "",
  ].join("\n");
}

function soaHeader(origin: string): string {
  return `$ORIGIN ${origin}.\n$TTL 300\n@ SOA ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 300\n@ NS ns.lab.test.\n`;
}

/**
 * lab.test, where the name every lab zone's NS record gives (ns.lab.test) has its address: a host step that asks
 * a zone's authoritative servers directly (a DKIM or DANE switch waiting for its record) finds them as on the
 * internet.
 */
export function renderNameserverZone(): { name: string; text: string } {
  return { name: "lab.test", text: `${soaHeader("lab.test")}ns A ${LAB_GATEWAY_IP}\n` };
}

/** The mirror's names answered with the addresses this machine resolves them to, so guests use the same mirror. */
export function renderMirrorZone(name: string, addresses: readonly string[]): string {
  return soaHeader(name) + addresses.map((address) => `@ A ${address}\n`).join("");
}

/** PTRs for the lab hosts: receiving MTAs (and Postfix's reject_unknown_* checks) look them up. */
export function renderReverseZone(): { name: string; text: string } {
  const name = `${[...LAB_SUBNET_OCTETS].reverse().join(".")}.in-addr.arpa`;
  const records = LAB_HOSTS.map((host) => `${host.ipv4.split(".")[3]} PTR ${host.fqdn}.\n`).join("");
  return { name, text: soaHeader(name) + records };
}

/** A working starting point: the stacks' own records replace brightchain.org once a deploy publishes them. */
export function defaultLabZones(): Record<string, string> {
  const ip = (name: string): string => LAB_HOSTS.find((host) => host.name === name)?.ipv4 ?? "";
  return {
    "brightchain.org":
      soaHeader("brightchain.org") +
      `@ MX 10 mail.brightchain.org.\n@ MX 20 mail2.brightchain.org.\nmail A ${ip("mail")}\nmail2 A ${ip("mail2")}\n`,
    "outside.test": soaHeader("outside.test") + `@ MX 10 mx.outside.test.\nmx A ${ip("outside")}\n`,
  };
}

export function writeZoneFile(paths: LabDnsPaths, name: string, text: string): void {
  mkdirSync(paths.zonesDir, { recursive: true });
  writeFileSync(join(paths.zonesDir, `${name}.zone`), text.endsWith("\n") ? text : `${text}\n`);
}

export async function startLabDns(paths: LabDnsPaths, zones: Record<string, string>): Promise<LabProcessRecord> {
  for (const dir of [paths.dir, paths.zonesDir, join(paths.dir, "run"), join(paths.dir, "db")])
    mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(zones)) writeZoneFile(paths, name, text);
  writeFileSync(paths.config, renderKnotConfig(paths, Object.keys(zones)));
  const record = startDetached("knotd", ["-c", paths.config], paths.log, paths.config);
  for (const name of Object.keys(zones)) await waitForZoneServed(paths, name);
  return record;
}

async function zoneSerial(name: string): Promise<number | undefined> {
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([`${LAB_GATEWAY_IP}:${LAB_DNS_PORT}`]);
  try {
    return (await resolver.resolveSoa(name)).serial;
  } catch {
    return undefined;
  }
}

async function waitForZoneServed(paths: LabDnsPaths, name: string, serial?: number): Promise<void> {
  await waitFor(
    { host: "lab", step: `serve zone ${name} from ${LAB_GATEWAY_IP}:${LAB_DNS_PORT}` },
    15_000,
    async () => {
      const served = await zoneSerial(name);
      return served !== undefined && (serial === undefined || served === serial) ? true : undefined;
    },
    () => `knotd log (${paths.log}):\n${readLogTail(paths.log)}`,
  );
}

/**
 * Replaces (or adds) a zone on the running server, e.g. once the primary has generated its DKIM key. Resolves
 * once the server answers with the new zone's serial. A zone Knot refuses fails with Knot's reason, and the
 * previous zone file and configuration are put back so a later restart still serves what is being served now.
 */
export async function publishLabZone(
  paths: LabDnsPaths,
  zones: Readonly<Record<string, string>>,
  name: string,
  text: string,
): Promise<void> {
  assertZoneName(name);
  const zoneNames = Object.keys(zones);
  const isNew = !zoneNames.includes(name);
  const knotc = (args: string[]) => runCommand("knotc", ["-c", paths.config, "-b", "-t", "10", ...args]);
  writeZoneFile(paths, name, text);
  if (isNew) writeFileSync(paths.config, renderKnotConfig(paths, [...zoneNames, name]));
  const command = isNew ? ["reload"] : ["zone-reload", name];
  const result = await knotc(command);
  if (result.exitCode !== 0) {
    const reason = result.stdout + result.stderr + readLogTail(paths.log, 8);
    if (isNew) {
      rmSync(join(paths.zonesDir, `${name}.zone`), { force: true });
      writeFileSync(paths.config, renderKnotConfig(paths, zoneNames));
      await knotc(["reload"]);
    } else {
      writeZoneFile(paths, name, zones[name]);
    }
    throw new LabStepError("lab", `publish zone ${name}`, `knotc ${command.join(" ")}`, reason);
  }
  const status = await knotc(["zone-status", name]);
  const serial = /serial:\s*(\d+)/.exec(status.stdout)?.[1];
  await waitForZoneServed(paths, name, serial === undefined ? undefined : Number(serial));
}

/**
 * The DS record (SHA-256 digest) of a signed lab zone, in presentation form: what a registrar would publish in the
 * parent zone, and what a lab resolver takes as the zone's trust anchor.
 */
export async function labZoneTrustAnchor(paths: LabDnsPaths, name: string): Promise<string> {
  assertZoneName(name);
  const result = await runCommand("keymgr", ["-c", paths.config, name, "ds"]);
  const ds = result.stdout.split("\n").find((line) => /^\S+ DS \d+ 13 2 [0-9a-f]{64}$/.test(line.trim()));
  if (result.exitCode !== 0 || ds === undefined) {
    throw new LabStepError(
      "lab",
      `read the DS of zone ${name}`,
      `keymgr -c ${paths.config} ${name} ds`,
      result.stdout + result.stderr,
    );
  }
  return ds.trim();
}
