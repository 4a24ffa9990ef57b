// Every name and address the lab creates on this machine, in one place, so `lab down` can remove exactly these
// and a reviewer can check in one glance that nothing else is ever touched.
import { RELEASES, type OsRelease } from "../model/releases";

export const LAB_BRIDGE = "bclab0";
export const LAB_SUBNET = "10.231.0.0/24";
export const LAB_PREFIX_LENGTH = 24;
/** The machine's own address on the bridge: gateway, DNS server and ACME server for the guests. */
export const LAB_GATEWAY_IP = "10.231.0.1";
export const LAB_NFT_TABLE = "brightchain_lab";
/** The /24's first three octets: every lab address starts with it, and its reverse zone is named after it. */
export const LAB_SUBNET_OCTETS = LAB_GATEWAY_IP.split(".").slice(0, 3);

export type LabHostName = "mail" | "mail2" | "outside";

export interface LabHostSpec {
  name: LabHostName;
  /** What the host is for, shown in progress and status lines. */
  role: string;
  ipv4: string;
  fqdn: string;
}

export const LAB_HOSTS: readonly LabHostSpec[] = [
  { name: "mail", role: "primary gateway", ipv4: "10.231.0.10", fqdn: "mail.brightchain.org" },
  { name: "mail2", role: "relay gateway", ipv4: "10.231.0.20", fqdn: "mail2.brightchain.org" },
  { name: "outside", role: "the rest of the internet (sender and foreign MTA)", ipv4: "10.231.0.30", fqdn: "mx.outside.test" },
];

export const LAB_DNS_PORT = 53;
export const LAB_ACME_PORT = 14000;
export const LAB_ACME_MANAGEMENT_PORT = 15000;
export const LAB_ACME_DIRECTORY_URL = `https://${LAB_GATEWAY_IP}:${LAB_ACME_PORT}/dir`;

/** The releases a lab host can boot: Debian's, from the machine's own mirror. */
export const LAB_RELEASES = ["debian-12", "debian-13"] as const satisfies readonly OsRelease[];
export type LabRelease = (typeof LAB_RELEASES)[number];

/**
 * One base image per release, beside each other: `<root>-bookworm`, `<root>-trixie`. They outlive `lab down`:
 * rebuilding one costs a minute or two and a few hundred MB of downloads.
 */
export const LAB_BASE_DIR_PREFIX = process.env.BRIGHTCHAIN_LAB_BASE_DIR ?? "/var/lib/machines/brightchain-lab-base";

export function labBaseDir(release: LabRelease): string {
  return `${LAB_BASE_DIR_PREFIX}-${labSuite(release)}`;
}

/** The Debian suite (code name) a lab release is debootstrapped from. */
export function labSuite(release: LabRelease): string {
  const codename = RELEASES[release].codename;
  if (codename === undefined) throw new Error(`${release} has no Debian suite`);
  return codename;
}

export function isLabRelease(value: string): value is LabRelease {
  return (LAB_RELEASES as readonly string[]).includes(value);
}

/** The release each lab host boots. */
export type LabHostReleases = Record<LabHostName, LabRelease>;

/**
 * `outside` stands for the rest of the internet and runs no gateway: it boots Debian 12, so a mixed lab (primary
 * on 13, relay on 12) needs no third base image, and its swaks/Postfix/python3-dkim are the ones the lab's
 * scenarios were written against.
 */
export const LAB_OUTSIDE_RELEASE: LabRelease = "debian-12";

/** "debian-13 (trixie)": how progress and status lines name a host's release. */
export function labReleaseLabel(release: LabRelease): string {
  return `${release} (${labSuite(release)})`;
}
/**
 * Parent of one apt archive per host (bind-mounted on its /var/cache/apt/archives) that outlives `lab down`, so
 * repeated lab runs don't download the same .debs. One per host, not one shared: apt-get fails at once, rather
 * than waiting, when another host's apt holds the archive lock, and the two gateways deploy at the same time.
 */
export const LAB_APT_CACHE_DIR = process.env.BRIGHTCHAIN_LAB_APT_CACHE_DIR ?? "/var/cache/brightchain-lab/apt-archives";
/** Everything `lab up` makes on disk lives here; `lab down` removes it whole. */
export const LAB_STATE_DIR = process.env.BRIGHTCHAIN_LAB_STATE_DIR ?? "/var/lib/brightchain-lab";

/** Packages of the bare server. The deploy engines install the mail stack; the base stays a fresh Debian. */
export const LAB_BASE_PACKAGES: readonly string[] = [
  "systemd",
  "systemd-sysv",
  "dbus",
  "openssh-server",
  "iproute2",
  "python3",
  "ca-certificates",
  "curl",
];

export function labHostSpec(name: string): LabHostSpec {
  const spec = LAB_HOSTS.find((host) => host.name === name);
  if (!spec) {
    throw new Error(`lab host "${name}" does not exist; accepted: ${LAB_HOSTS.map((host) => host.name).join(", ")}`);
  }
  return spec;
}
