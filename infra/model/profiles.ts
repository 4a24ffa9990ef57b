// One profile per component and release: which packages bring it, which units run it, and what removing it
// means. The package step, the service steps and the verification iterate over the node's profiles, so a new
// release is a row in PROFILE_ROWS, not edits across renderers.
import type { OsRelease } from "./releases";
import type { GatewayNode } from "./types";

export type Component =
  "postfix" | "opendkim" | "spamassassin" | "rspamd" | "dovecot" | "certbot" | "firewall" | "runtime" | "postfix-exporter";

export interface ComponentProfile {
  component: Component;
  /** Distribution package names, as this release spells them. */
  packages: string[];
  /**
   * systemd units the plan enables and (re)starts. Postfix's is absent: it has its own check and reload steps.
   * The runtime's units come from its rendered unit files, not from a package.
   */
  services: string[];
  /**
   * What turning the component off means on this release: these units stopped and disabled, these packages
   * purged. Postfix and the runtime are the node itself; removing them is the stack's destroy, not a switch.
   */
  removal: { services: string[]; packages: string[] };
}

type Row = Omit<ComponentProfile, "component" | "removal"> & { removal?: ComponentProfile["removal"] };
type Family = "debian-like" | "rhel";

/** Debian 12, Debian 13 and Ubuntu 24.04 share every name here; RHEL (with EPEL) differs. */
const PROFILE_ROWS: Record<Exclude<Component, "certbot">, Record<Family, Row>> = {
  postfix: {
    // dig: the deploy's checks ask the zone's authoritative servers before a switch (DANE key, DKIM selector).
    "debian-like": { packages: ["postfix", "bind9-dnsutils"], services: [] },
    rhel: { packages: ["postfix", "bind-utils"], services: [] },
  },
  opendkim: {
    "debian-like": { packages: ["opendkim", "opendkim-tools"], services: ["opendkim"] },
    rhel: { packages: ["opendkim", "opendkim-tools"], services: ["opendkim"] },
  },
  spamassassin: {
    // spamd left the spamassassin package in Debian 12 and Ubuntu 24.04; with --no-install-recommends it is
    // not pulled in, so it is named. Its unit is `spamd` there, `spamassassin` on RHEL. On RHEL,
    // spamass-milter-postfix is what creates the socket Postfix is pointed at.
    "debian-like": { packages: ["spamassassin", "spamd", "spamass-milter"], services: ["spamd", "spamass-milter"] },
    rhel: { packages: ["spamassassin", "spamass-milter-postfix"], services: ["spamassassin", "spamass-milter"] },
  },
  rspamd: {
    "debian-like": { packages: ["rspamd"], services: ["rspamd"] },
    rhel: { packages: ["rspamd"], services: ["rspamd"] },
  },
  dovecot: {
    "debian-like": { packages: ["dovecot-core"], services: ["dovecot"] },
    rhel: { packages: ["dovecot"], services: ["dovecot"] },
  },
  firewall: {
    // The rules stay in place when the firewall tool is "removed": a host must never be left open by a switch.
    "debian-like": { packages: ["ufw"], services: [], removal: { services: [], packages: [] } },
    rhel: { packages: ["firewalld"], services: [], removal: { services: [], packages: [] } },
  },
  "postfix-exporter": {
    // Postfix's queue sizes for Prometheus, read from showq (docs/monitoring.md). Debian 12 and 13 both ship
    // 0.3.0 (kumina/postfix_exporter), built without journal support, so the package pulls in rsyslog for
    // /var/log/mail.log; its unit runs as prometheus with SupplementaryGroups=adm postdrop.
    "debian-like": { packages: ["prometheus-postfix-exporter"], services: ["prometheus-postfix-exporter"] },
    // Neither RHEL nor EPEL packages it: nodeComponents leaves it out there (and on Ubuntu).
    rhel: { packages: [], services: [] },
  },
  runtime: {
    // Debian's own nodejs (18 on Debian 12, 20 on Debian 13): security fixes arrive with the host's updates
    // (docs/runtime.md says why not a pinned Node). The runtime is built for Node 18.
    "debian-like": { packages: ["nodejs", "ca-certificates"], services: [] },
    // RHEL 9's default module stream is Node 16; the package step enables the nodejs:20 stream first.
    rhel: { packages: ["nodejs", "ca-certificates"], services: [] },
  },
};

function family(release: OsRelease): Family {
  return release === "rhel-9" ? "rhel" : "debian-like";
}

/** One component's profile on a node's release (certbot's packages depend on the node's ACME challenge). */
export function componentProfile(node: GatewayNode, component: Component): ComponentProfile {
  if (component === "certbot") {
    const packages = node.tls.challenge === "dns-01" ? ["certbot", "python3-certbot-dns-cloudflare"] : ["certbot"];
    // Debian's certbot package ships certbot.timer, EPEL's certbot-renew.timer.
    const timer = family(node.os.release) === "rhel" ? "certbot-renew.timer" : "certbot.timer";
    return { component, packages, services: [timer], removal: { services: [timer], packages } };
  }
  const row = PROFILE_ROWS[component][family(node.os.release)];
  return {
    component,
    packages: row.packages,
    services: row.services,
    removal: row.removal ?? { services: row.services, packages: row.packages },
  };
}

/** The components this node runs, Postfix first (its package must be configured before any milter's). */
function nodeComponents(node: GatewayNode): Component[] {
  const components: Component[] = ["postfix"];
  // Relays forward mail they did not originate: nothing for them to sign, and the primary verifies.
  if (node.role === "primary") components.push("opendkim");
  if (node.spam.engine !== "none") components.push(node.spam.engine);
  if (node.submission?.enabled) components.push("dovecot");
  components.push("certbot", "firewall", "runtime");
  // Checked on Debian 12 and 13 only (0.3.0-4 and 0.3.0-5, same flags); Ubuntu carries it in universe, which a
  // host may not enable, and RHEL not at all.
  if (node.os.distro === "debian") components.push("postfix-exporter");
  return components;
}

export function runsComponent(node: GatewayNode, component: Component): boolean {
  return nodeComponents(node).includes(component);
}

export function nodeProfiles(node: GatewayNode): ComponentProfile[] {
  return nodeComponents(node).map((component) => componentProfile(node, component));
}
