// The example stacks (Pulumi.primary.yaml, Pulumi.relay.yaml) pointed at the lab: same nodes, lab addresses,
// lab SSH key, pebble as ACME server. Built in code so the lab never needs stack files of its own.
import type { FlatConfig } from "../model/config";
import { readStackConfigFiles } from "../model/config";
import { LAB_ACME_DIRECTORY_URL, LAB_HOSTS, type LabHostSpec } from "../lab/constants";

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

/**
 * Overrides for one stack: every fleet entry at its lab host's IPv4 address and no other,
 * SSH to the lab host as root, and http-01 against pebble (Cloudflare's dns-01 cannot reach a lab zone).
 */
export function labStackOverrides(stack: string, values: FlatConfig): LabStack {
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
    "gateway:ssh": JSON.stringify({ host: host.ipv4, user: "root", port: 22 }),
  };
  const domain = values["gateway:domain"];
  if (domain !== undefined) {
    overrides["gateway:recipients"] = JSON.stringify(LAB_RECIPIENT_LOCAL_PARTS.map((local) => `${local}@${domain}`));
  }
  const secrets: FlatConfig = {};
  if (values["gateway:role"] === "primary") secrets["gateway:submissionUsers"] = JSON.stringify([LAB_SUBMISSION_USER]);
  return { host, overrides, secrets };
}

/** The lab form of a stack of the project in projectDir. */
export function labStackConfig(stack: string, projectDir: string): LabStack {
  return labStackOverrides(stack, readStackConfigFiles(projectDir, stack).values);
}
