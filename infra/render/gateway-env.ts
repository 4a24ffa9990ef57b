// /etc/brightchain/gateway.env: the runtime's whole configuration, as the systemd units' EnvironmentFile.
// Variable names are the ones runtime/src/config.ts reads; a test round-trips every fixture node through
// loadRuntimeConfig so the two cannot drift apart.
import type { GatewayNode, GatewaySecrets, HostFile } from "../model/types";
import { dkimKeyPaths, opendkimEnabled } from "./opendkim";

export const RUNTIME_SERVICES = ["brightchain-lookup", "brightchain-inbound"] as const;

/**
 * systemd's EnvironmentFile takes KEY=value; a value with spaces, quotes, backslashes or `$` is written in
 * double quotes with those characters escaped so systemd hands the runtime the exact string.
 */
function envLine(name: string, value: string): string {
  if (/[\n\r]/.test(value)) {
    throw new Error(`${name} value ${JSON.stringify(value)} contains a line break; accepted: a single-line value`);
  }
  const plain = /^[A-Za-z0-9_.,:/@+=-]*$/.test(value);
  return plain ? `${name}=${value}` : `${name}="${value.replace(/(["\\$`])/g, "\\$1")}"`;
}

function score(value: number): string {
  return Number.isInteger(value) ? value.toFixed(1) : String(value);
}

function environment(node: GatewayNode, secrets?: GatewaySecrets): [string, string][] {
  const vars: [string, string][] = [
    ["EMAIL_DOMAIN", node.domain],
    ["GATEWAY_LOOKUP_HOST", "127.0.0.1"],
    ["GATEWAY_LOOKUP_PORT", String(node.lookup.port)],
    ["GATEWAY_LOOKUP_CACHE_TTL", String(node.lookup.cacheTtlSeconds)],
    ["GATEWAY_MAIL_DROP_DIR", node.drop.mailDropDir],
    ["GATEWAY_ERROR_DIR", node.drop.errorDir],
    ["GATEWAY_SPAM_ENGINE", node.spam.engine],
    ["GATEWAY_SPAM_PROBABLE", score(node.spam.probableScore)],
    ["GATEWAY_SPAM_DEFINITE", score(node.spam.definiteScore)],
    ["GATEWAY_MAX_MESSAGE_SIZE", String(node.maxMessageSize)],
    ["GATEWAY_DKIM_SELECTOR", node.dkim.selector],
  ];
  // Only the primary holds a signing key; naming a path that does not exist on a relay would mislead.
  if (opendkimEnabled(node)) vars.push(["GATEWAY_DKIM_KEY_PATH", dkimKeyPaths(node).privateKey]);
  const registry = node.lookup.registry;
  vars.push(registry.kind === "file" ? ["GATEWAY_REGISTRY_FILE", registry.path] : ["GATEWAY_REGISTRY_URL", registry.url]);
  vars.push(["GATEWAY_STORE_DIR", node.runtime.storeDir]);
  if (node.runtime.nodeUrl !== undefined) vars.push(["GATEWAY_NODE_URL", node.runtime.nodeUrl]);
  // The outbound client submits on this node's own 587 by its host name: STARTTLS is verified against the
  // certificate, which names the host, not 127.0.0.1. Relays have no submission service and send nothing.
  if (node.submission?.enabled) {
    vars.push(["GATEWAY_POSTFIX_HOST", node.host.hostname], ["GATEWAY_POSTFIX_PORT", "587"]);
    const account = secrets?.submissionUsers[0];
    if (account !== undefined) {
      vars.push(["GATEWAY_POSTFIX_USER", account.username], ["GATEWAY_POSTFIX_PASS", account.password]);
    }
  }
  return vars;
}

/**
 * Without secrets the file holds no password and the outbound client cannot authenticate; with them it
 * carries the first submission account, and the file is marked secret.
 */
export function renderGatewayEnv(node: GatewayNode, secrets?: GatewaySecrets): string {
  return [
    "# Rendered by brightchain-gateway from the node model; read by the brightchain-* systemd units.",
    ...environment(node, secrets).map(([name, value]) => envLine(name, value)),
    "",
  ].join("\n");
}

export function gatewayEnvFiles(node: GatewayNode, secrets?: GatewaySecrets): HostFile[] {
  const withPassword = node.submission?.enabled === true && (secrets?.submissionUsers.length ?? 0) > 0;
  return [
    {
      path: node.runtime.envFile,
      // Group brightchain so the services' user can read it; no one else, it may hold the SASL password.
      mode: 0o640,
      owner: "root",
      group: node.drop.group,
      content: renderGatewayEnv(node, secrets),
      secret: withPassword,
      // A relay has no inbound processor unit; notifying it made the deploy enable a unit that does not exist.
      notify:
        node.role === "primary" ? [...RUNTIME_SERVICES] : RUNTIME_SERVICES.filter((service) => service !== "brightchain-inbound"),
    },
  ];
}
