// The example stacks (Pulumi.primary.yaml, Pulumi.relay.yaml) pointed at the lab: same nodes, lab addresses,
// lab SSH key, pebble as ACME server. Built in code so the lab never needs stack files of its own.
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import type { FlatConfig } from "../model/config";
import { readStackConfigFiles } from "../model/config";
import { DEFAULT_OS_RELEASE } from "../model/releases";
import {
  isLabRelease,
  LAB_ACME_DIRECTORY_URL,
  LAB_HOSTS,
  LAB_OUTSIDE_RELEASE,
  LAB_RELEASES,
  LAB_STATE_DIR,
  type LabHostName,
  type LabHostReleases,
  type LabHostSpec,
  type LabRelease,
} from "../lab/constants";
import { labSshPaths } from "../lab/hosts";
import { readLabState, recordedHostRelease } from "../lab/state";

/**
 * The users the lab's stacks list in gateway:recipients, so the deploy writes the same registry on the primary
 * and the relay: alice and postmaster for the scenarios, demo for `npm run lab`.
 */
export const LAB_RECIPIENT_LOCAL_PARTS = ["alice", "postmaster", "demo"] as const;

/** The SASL account the lab's submission tests log in with (lab only: the lab is a private bridge). */
export const LAB_SUBMISSION_USER = { username: "brightchain-node", password: "lab-only-submission-password" };

export interface LabStack {
  /** The lab host the stack's node is deployed to. */
  host: LabHostSpec;
  /** Plain configuration laid over Pulumi.yaml + Pulumi.<stack>.yaml. */
  overrides: FlatConfig;
  /** What `pulumi config set --secret` would hold, minus the SSH key (the lab's, added by the caller). */
  secrets: FlatConfig;
}

function labHostFor(hostname: string): LabHostSpec {
  const host = LAB_HOSTS.find((spec) => spec.fqdn === hostname);
  if (!host) {
    throw new Error(
      `gateway:hostname ${JSON.stringify(hostname)} has no lab host; accepted: ${LAB_HOSTS.map((spec) => spec.fqdn).join(", ")}`,
    );
  }
  return host;
}

/** The example stacks the lab deploys, each onto the lab host its gateway:hostname names. */
export const LAB_STACKS = ["primary", "relay"] as const;

/** gateway:os of a stack's files as a lab release (unset: the model's default), or why the lab cannot boot it. */
export function stackLabRelease(stack: string, values: FlatConfig): LabRelease {
  const release = values["gateway:os"] ?? DEFAULT_OS_RELEASE;
  if (!isLabRelease(release)) {
    throw new Error(
      `Pulumi.${stack}.yaml: gateway:os is ${JSON.stringify(release)}; the lab boots ${LAB_RELEASES.join(", ")} ` +
        "(pass the host's release to lab up to try this stack on one of them)",
    );
  }
  return release;
}

/**
 * The release each lab host boots: `explicit` first (a test swapping the fleet), else the gateway:os of the
 * stack deployed to it (Pulumi.primary.yaml → mail, Pulumi.relay.yaml → mail2), else debian-12 for outside.
 * A stack file that is absent from projectDir, or names no lab host, leaves its host on the model's default
 * release.
 */
export function labHostReleases(projectDir: string, explicit: Partial<LabHostReleases> = {}): LabHostReleases {
  const unset: LabRelease = isLabRelease(DEFAULT_OS_RELEASE) ? DEFAULT_OS_RELEASE : LAB_OUTSIDE_RELEASE;
  const releases: LabHostReleases = { mail: unset, mail2: unset, outside: LAB_OUTSIDE_RELEASE };
  for (const stack of LAB_STACKS) {
    if (!existsSync(path.join(projectDir, `Pulumi.${stack}.yaml`))) continue;
    const values = readStackConfigFiles(projectDir, stack).values;
    // A project whose nodes are not the lab's (the user's own) leaves the hosts on the default release.
    const host = LAB_HOSTS.find((spec) => spec.fqdn === values["gateway:hostname"]);
    if (host !== undefined && explicit[host.name] === undefined) releases[host.name] = stackLabRelease(stack, values);
  }
  for (const [host, release] of Object.entries(explicit)) {
    if (release !== undefined) releases[host as LabHostName] = release;
  }
  for (const release of Object.values(releases)) {
    if (!isLabRelease(release)) throw new Error(`lab: release ${JSON.stringify(release)}; accepted: ${LAB_RELEASES.join(", ")}`);
  }
  return releases;
}

/**
 * Overrides for one stack: every fleet entry at its lab host's IPv4 address and no other,
 * SSH to the lab host as root, http-01 against pebble (Cloudflare's dns-01 cannot reach a lab zone), and
 * gateway:os = the release its lab host boots (`hostReleases`, from the lab's state), so the stack and the host
 * agree even when a test boots a host on another release than the stack file names.
 */
export function labStackOverrides(
  stack: string,
  values: FlatConfig,
  hostReleases: Partial<LabHostReleases> = {},
  hostKeys: Partial<Record<LabHostName, string>> = {},
): LabStack {
  const hostname = values["gateway:hostname"];
  if (hostname === undefined)
    throw new Error(
      `Pulumi.${stack}.yaml: gateway:hostname is not set; accepted: a lab host name (${LAB_HOSTS.map((spec) => spec.fqdn).join(", ")})`,
    );
  const host = labHostFor(hostname);
  let fleet: unknown;
  try {
    fleet = JSON.parse(values["gateway:fleet"] ?? "");
  } catch {
    throw new Error(`gateway:fleet is ${JSON.stringify(values["gateway:fleet"])}; accepted: a JSON list of {hostname, ipv4}`);
  }
  if (!Array.isArray(fleet))
    throw new Error(`gateway:fleet is ${JSON.stringify(values["gateway:fleet"])}; accepted: a list of {hostname, ipv4}`);
  // The lab bridge is IPv4-only: an address nobody answers on would be in SPF, AAAA and Postfix's listeners.
  const labFleet = fleet.map((entry: { hostname?: unknown }) => {
    const name = typeof entry.hostname === "string" ? entry.hostname : "";
    return { ...entry, hostname: name, ipv4: labHostFor(name).ipv4, ipv6: undefined };
  });
  const overrides: FlatConfig = {
    "gateway:fleet": JSON.stringify(labFleet),
    "gateway:acmeServer": LAB_ACME_DIRECTORY_URL,
    "gateway:acmeChallenge": "http-01",
    // The host key the lab generated for this host: the program pins it as a user's stack pins its host's.
    "gateway:ssh": JSON.stringify({
      host: host.ipv4,
      user: "root",
      port: 22,
      ...(hostKeys[host.name] !== undefined ? { hostKey: hostKeys[host.name] } : {}),
    }),
  };
  const hostRelease = hostReleases[host.name];
  if (hostRelease !== undefined) overrides["gateway:os"] = hostRelease;
  const domain = values["gateway:domain"];
  if (domain !== undefined) {
    overrides["gateway:recipients"] = JSON.stringify(LAB_RECIPIENT_LOCAL_PARTS.map((local) => `${local}@${domain}`));
  }
  const secrets: FlatConfig = {};
  if (values["gateway:role"] === "primary") secrets["gateway:submissionUsers"] = JSON.stringify([LAB_SUBMISSION_USER]);
  return { host, overrides, secrets };
}

/** The release each lab host boots, as the running lab recorded it (empty when no lab is up). */
export function runningLabReleases(): Partial<LabHostReleases> {
  const state = readLabState();
  const releases: Partial<LabHostReleases> = {};
  for (const host of LAB_HOSTS) {
    const release = recordedHostRelease(state, host.name);
    if (release !== undefined) releases[host.name] = release;
  }
  return releases;
}

/** Each running lab host's ed25519 key (`type base64`), from the known_hosts the lab wrote when it made them. */
export function runningLabHostKeys(knownHostsFile = labSshPaths(LAB_STATE_DIR).knownHosts): Partial<Record<LabHostName, string>> {
  const keys: Partial<Record<LabHostName, string>> = {};
  if (!existsSync(knownHostsFile)) return keys;
  for (const line of readFileSync(knownHostsFile, "utf8").split("\n")) {
    const [names, type, key] = line.trim().split(/\s+/);
    if (type !== "ssh-ed25519" || key === undefined) continue;
    const host = LAB_HOSTS.find((spec) => names?.split(",").includes(spec.ipv4));
    if (host !== undefined) keys[host.name] = `${type} ${key}`;
  }
  return keys;
}

/** The lab form of a stack of the project in projectDir, on the release its host boots in the running lab. */
export function labStackConfig(stack: string, projectDir: string): LabStack {
  return labStackOverrides(stack, readStackConfigFiles(projectDir, stack).values, runningLabReleases(), runningLabHostKeys());
}
