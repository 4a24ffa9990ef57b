// Host firewall: ufw on Debian/Ubuntu, firewalld on RHEL, applied by one rendered, idempotent script.
// Inbound is refused by default with REJECT, not DROP: a sender (or an operator's probe) gets an immediate
// answer instead of waiting out a 30-second connect timeout.
import type { GatewayNode, HostFile } from "../model/types";
import { metricsEndpoints } from "./metrics";
import { OPENDKIM_PORT } from "./opendkim";
import { RSPAMD_CONTROLLER_PORT, RSPAMD_PROXY_PORT, SPAMD_PORT } from "./spam";
import { acmeInboundPorts } from "./tls";

export const FIREWALL_SCRIPT = "/usr/local/sbin/brightchain-firewall";

export interface FirewallPort {
  port: number | [number, number];
  why: string;
}

/**
 * The script opens SSH on $BRIGHTCHAIN_SSH_PORT (22 when unset): the deploy passes the port it connects on, so
 * applying the firewall can never lock the deploy, or the admin, out.
 */
const SSH_PORT_VARIABLE = "BRIGHTCHAIN_SSH_PORT";
const SSH_PORT = `"\${${SSH_PORT_VARIABLE}:-22}"`;

/** Ports opened to the world besides SSH (which the script opens first, from the variable above). */
export function openPorts(node: GatewayNode): FirewallPort[] {
  const ports: FirewallPort[] = [{ port: 25, why: "SMTP from other mail servers" }];
  if (node.submission?.enabled) ports.push({ port: 587, why: "submission from the BrightChain node" });
  for (const port of acmeInboundPorts(node)) ports.push({ port, why: "ACME http-01 challenge (certbot standalone)" });
  return ports;
}

/** Mail daemons that listen on 127.0.0.1 only; refused from outside as well, in case one is ever bound wider. */
function daemonPorts(node: GatewayNode): FirewallPort[] {
  return [
    { port: node.lookup.port, why: "recipient lookup socketmap" },
    { port: SPAMD_PORT, why: "spamd" },
    { port: OPENDKIM_PORT, why: "OpenDKIM milter" },
    { port: [RSPAMD_PROXY_PORT, RSPAMD_CONTROLLER_PORT], why: "Rspamd proxy, normal and controller workers" },
  ];
}

/**
 * Every port nobody outside the node may reach (what `gateway doctor` probes): the mail daemons' and, unless
 * gateway:metrics.scrapers names a network that may reach them, the metrics endpoints'.
 */
export function loopbackOnlyPorts(node: GatewayNode): FirewallPort[] {
  return [...daemonPorts(node), ...(node.metrics.scrapers.length === 0 ? metricsEndpoints(node) : [])];
}

/**
 * The reject rules: the daemons' ports, and the metrics ports always, whose scraper allow rules come first
 * (scraperRules). The metrics rules' comment does not depend on whether scrapers are set, so adding one changes
 * no reject rule.
 */
export function rejectedPorts(node: GatewayNode): FirewallPort[] {
  return [
    ...daemonPorts(node).map((p) => ({ ...p, why: `${p.why}, loopback only` })),
    ...metricsEndpoints(node).map((p) => ({ ...p, why: `${p.why}, loopback and metrics scrapers only` })),
  ];
}

export interface ScraperRule {
  network: string;
  port: number;
  why: string;
}

/** gateway:metrics.scrapers × every metrics port: the only way in to a metrics endpoint from outside. */
export function scraperRules(node: GatewayNode): ScraperRule[] {
  return node.metrics.scrapers.flatMap((network) =>
    metricsEndpoints(node).map((endpoint) => ({ network, port: endpoint.port, why: endpoint.why })),
  );
}

const SCRAPER_COMMENT = "brightchain: metrics scraper";
const scraperTag = (rule: ScraperRule) => `${rule.network} port ${rule.port}`;

/**
 * ufw: each scraper's allow rule is prepended, so it precedes the port's reject rule even when added on a later
 * run (an appended one would come after it and never match). Its comment names the network and port, so a rule
 * for a network or port no longer configured is found and deleted by that name.
 */
function ufwScraperLines(node: GatewayNode): string[] {
  const rules = scraperRules(node);
  const wanted = rules.map((rule) => `'${scraperTag(rule)}'`);
  return [
    `ufw status numbered | sed -n 's/^\\[ *\\([0-9][0-9]*\\)\\].*# ${SCRAPER_COMMENT} \\(.*\\)$/\\1 \\2/p' | sort -rn |`,
    `  while read -r rule wanted; do case "$wanted" in ${wanted.length > 0 ? `${wanted.join("|")}) ;; ` : ""}*) ufw --force delete "$rule" >/dev/null ;; esac; done`,
    ...rules.map(
      (rule) =>
        `ufw prepend allow from ${rule.network} to any port ${rule.port} proto tcp comment '${SCRAPER_COMMENT} ${scraperTag(rule)}'`,
    ),
  ];
}

/**
 * firewalld: a rich rule at priority -10 is evaluated before the port's reject rule (priority 0). Ours are the
 * only ones at -10, so one no longer rendered is found by its priority and removed.
 */
function firewalldScraperRule(rule: ScraperRule): string {
  const family = rule.network.includes(":") ? "ipv6" : "ipv4";
  return `rule priority="-10" family="${family}" source address="${rule.network}" port port="${rule.port}" protocol="tcp" accept`;
}

function firewalldScraperLines(node: GatewayNode): string[] {
  const rules = scraperRules(node).map(firewalldScraperRule);
  const wanted = rules.map((rule) => `'${rule}'`);
  return [
    `fw_list --list-rich-rules | grep '^rule priority="-10" ' |`,
    `  while IFS= read -r rule; do case "$rule" in ${wanted.length > 0 ? `${wanted.join("|")}) ;; ` : ""}*) fw --remove-rich-rule="$rule" ;; esac; done`,
    ...rules.map((rule) => `fw --add-rich-rule='${rule}'  # metrics scraper`),
  ];
}

/** Ports this script may have opened on an earlier run and must close when the node no longer needs them. */
const CONDITIONAL_PORTS = [587, 80];

function ufwPort(port: FirewallPort["port"]): string {
  return typeof port === "number" ? `${port}` : `${port[0]}:${port[1]}`;
}

function firewalldPort(port: FirewallPort["port"]): string {
  return typeof port === "number" ? `${port}` : `${port[0]}-${port[1]}`;
}

/**
 * ufw adds a rule only once ("Skipping adding existing rule"), so re-running changes nothing. ufw accepts
 * everything on lo before its user rules, so the reject rules only ever hit traffic from outside.
 */
function renderUfwScript(node: GatewayNode): string {
  const open = openPorts(node);
  const openNumbers = new Set(open.map((p) => p.port));
  const lines = [
    "#!/bin/sh",
    "# Rendered by brightchain-gateway from the node model: the host firewall (ufw). Safe to run repeatedly.",
    "set -eu",
    "ufw default reject incoming",
    "ufw default allow outgoing",
    // The firewall is managed: a rule without our comment (added by hand, or by a package) is drift and goes,
    // highest number first so the numbers of the rules still to delete stay valid. ufw lists rules only while
    // enabled, so a first run has nothing to remove.
    `ufw status numbered | sed -n 's/^\\[ *\\([0-9][0-9]*\\)\\].*/\\1 &/p' | grep -v '# brightchain:' | cut -d' ' -f1 | sort -rn |`,
    '  while read -r rule; do ufw --force delete "$rule" >/dev/null; done',
    `ufw allow ${SSH_PORT}/tcp comment 'brightchain: SSH administration'`,
    ...open.map((p) => `ufw allow ${ufwPort(p.port)}/tcp comment 'brightchain: ${p.why}'`),
    ...CONDITIONAL_PORTS.filter((port) => !openNumbers.has(port)).map(
      (port) => `ufw --force delete allow ${port}/tcp >/dev/null 2>&1 || true`,
    ),
    ...ufwScraperLines(node),
    ...rejectedPorts(node).map((p) => `ufw reject ${ufwPort(p.port)}/tcp comment 'brightchain: ${p.why}'`),
    "ufw --force enable",
    "",
  ];
  return lines.join("\n");
}

/**
 * firewalld's public zone already rejects what it does not allow (with an ICMP prohibited reply) and accepts
 * everything on lo. The script edits the permanent configuration — with firewall-cmd when firewalld runs,
 * firewall-offline-cmd when it does not (first boot, or before the service is enabled) — then reloads.
 */
function renderFirewalldScript(node: GatewayNode): string {
  const open = openPorts(node);
  const openNumbers = new Set(open.map((p) => p.port));
  const lines = [
    "#!/bin/sh",
    "# Rendered by brightchain-gateway from the node model: the host firewall (firewalld). Safe to run repeatedly.",
    "set -eu",
    "if firewall-cmd --state >/dev/null 2>&1; then",
    '  fw() { firewall-cmd --permanent --zone=public "$@" >/dev/null; }',
    '  fw_list() { firewall-cmd --permanent --zone=public "$@"; }',
    "  running=yes",
    "else",
    '  fw() { firewall-offline-cmd --zone=public "$@" >/dev/null; }',
    '  fw_list() { firewall-offline-cmd --zone=public "$@"; }',
    "  running=no",
    "fi",
    `fw --add-port=${SSH_PORT}/tcp  # SSH administration`,
    ...open.map((p) => `fw --add-port=${firewalldPort(p.port)}/tcp  # ${p.why}`),
    ...CONDITIONAL_PORTS.filter((port) => !openNumbers.has(port)).map((port) => `fw --remove-port=${port}/tcp`),
    ...firewalldScraperLines(node),
    ...rejectedPorts(node).map(
      (p) => `fw --add-rich-rule='rule port port="${firewalldPort(p.port)}" protocol="tcp" reject'  # ${p.why}`,
    ),
    'if [ "$running" = yes ]; then firewall-cmd --reload >/dev/null; fi',
    "",
  ];
  return lines.join("\n");
}

export function renderFirewallScript(node: GatewayNode): string {
  return node.os.family === "debian" ? renderUfwScript(node) : renderFirewalldScript(node);
}

/** What the host step runs after the script is in place (and again whenever it or the SSH port changes). */
export function firewallApplyCommand(sshPort = 22): string {
  return `${SSH_PORT_VARIABLE}=${sshPort} ${FIREWALL_SCRIPT}`;
}

export function firewallFiles(node: GatewayNode): HostFile[] {
  return [
    {
      path: FIREWALL_SCRIPT,
      mode: 0o755,
      owner: "root",
      group: "root",
      content: renderFirewallScript(node),
      // The host step re-runs the script on change; no daemon needs a reload for it.
      notify: [],
    },
  ];
}
