// The node's Prometheus endpoints: brightchain-lookup and brightchain-inbound serve their own (GATEWAY_METRICS_HOST
// and the ports in gateway.env), and Debian's prometheus-postfix-exporter serves Postfix's queues, read from
// showq. This file renders the exporter's options and names every metrics port for the firewall.
import { runsComponent } from "../model/profiles";
import type { GatewayNode, HostFile } from "../model/types";
import { nodePrograms } from "./gateway-env";

export const POSTFIX_EXPORTER_SERVICE = "prometheus-postfix-exporter";
/** The package's EnvironmentFile: its unit runs `prometheus-postfix-exporter $ARGS`. */
export const POSTFIX_EXPORTER_DEFAULTS = "/etc/default/prometheus-postfix-exporter";
export const POSTFIX_EXPORTER_DROP_IN = `/etc/systemd/system/${POSTFIX_EXPORTER_SERVICE}.service.d/brightchain.conf`;
/** Where Debian's rsyslog writes the mail facility, and what the exporter tails for its log counters. */
export const MAIL_LOG = "/var/log/mail.log";

export interface MetricsEndpoint {
  port: number;
  why: string;
}

/** Every metrics port this node serves, for the firewall and the docs. */
export function metricsEndpoints(node: GatewayNode): MetricsEndpoint[] {
  const endpoints: MetricsEndpoint[] = [{ port: node.metrics.lookupPort, why: "brightchain-lookup metrics" }];
  if (nodePrograms(node).includes("brightchain-inbound"))
    endpoints.push({ port: node.metrics.inboundPort, why: "brightchain-inbound metrics" });
  if (runsComponent(node, "postfix-exporter"))
    endpoints.push({ port: node.metrics.postfixPort, why: "prometheus-postfix-exporter (Postfix queues)" });
  return endpoints;
}

/** host:port as Go's net.Listen takes it: an IPv6 host in brackets. */
function listenAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export function renderPostfixExporterDefaults(node: GatewayNode): string {
  const args = [
    // The package's default is :9154, every address: the firewall would be all that kept it in.
    `--web.listen-address=${listenAddress(node.metrics.listenHost, node.metrics.postfixPort)}`,
    // showq's socket: what postqueue reads; the unit's SupplementaryGroups=postdrop opens public/ to it.
    "--postfix.showq_path=/var/spool/postfix/public/showq",
    // Written by rsyslog, which the package depends on; Debian's build cannot read the journal.
    `--postfix.logfile_path=${MAIL_LOG}`,
  ];
  return [
    "# Rendered by brightchain-gateway from the node model (gateway:metrics): prometheus-postfix-exporter's options.",
    `ARGS="${args.join(" ")}"`,
    "",
  ].join("\n");
}

/**
 * The exporter exits at start when its log file does not exist ("Error opening log source"), which is the case on
 * a new node until rsyslog has written a mail line: the deploy's restart would fail and the node never verify. So
 * the unit first creates it empty, as rsyslog would (root:adm 0640, which the unit's adm group reads), and never
 * touches an existing one.
 */
export function mailLogCommand(path = MAIL_LOG): string {
  return `/bin/sh -c 'test -e ${path} || install -m 0640 -o root -g adm /dev/null ${path}'`;
}

export function renderPostfixExporterDropIn(): string {
  return [
    "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
    "[Service]",
    // "+": as root; the exporter itself runs as prometheus.
    `ExecStartPre=+${mailLogCommand()}`,
    "",
  ].join("\n");
}

export function metricsFiles(node: GatewayNode): HostFile[] {
  if (!runsComponent(node, "postfix-exporter")) return [];
  return [
    {
      path: POSTFIX_EXPORTER_DROP_IN,
      mode: 0o644,
      owner: "root",
      group: "root",
      content: renderPostfixExporterDropIn(),
      notify: [POSTFIX_EXPORTER_SERVICE],
    },
    {
      path: POSTFIX_EXPORTER_DEFAULTS,
      mode: 0o644,
      owner: "root",
      group: "root",
      content: renderPostfixExporterDefaults(node),
      notify: [POSTFIX_EXPORTER_SERVICE],
    },
  ];
}
