// The runtime's configuration as two env files, from the shared contract (shared/gateway-env-contract.ts):
//   gateway.env           what brightchain-lookup and brightchain-inbound read; their units' EnvironmentFile
//   brightchain-send.env  what brightchain-send reads, SASL password included; no daemon loads it
// A variable is written only when a program this node runs reads it.
import * as path from "node:path";
import {
  GATEWAY_ENV,
  GATEWAY_ENV_NAMES,
  envFileLine,
  envFileOf,
  programsLoading,
  type GatewayEnvFile,
  type GatewayEnvName,
  type GatewayEnvVariable,
  type GatewayProgram,
} from "../../shared/gateway-env-contract";
import type { GatewayNode, GatewaySecrets, HostFile } from "../model/types";

export const RUNTIME_SERVICES = ["brightchain-lookup", "brightchain-inbound"] as const;

/** brightchain-send's env file, beside gateway.env. */
export function sendEnvFile(node: GatewayNode): string {
  return path.posix.join(path.posix.dirname(node.runtime.envFile), "brightchain-send.env");
}

/**
 * The runtime programs this node runs: the lookup everywhere, the processor and the store's CLI on the primary,
 * send beside 587.
 */
export function nodePrograms(node: GatewayNode): GatewayProgram[] {
  return [
    "brightchain-lookup",
    ...(node.role === "primary" ? (["brightchain-inbound", "brightchain-store"] as const) : []),
    ...(node.submission?.enabled ? (["brightchain-send"] as const) : []),
  ];
}

function score(value: number): string {
  return Number.isInteger(value) ? value.toFixed(1) : String(value);
}

/**
 * Node's TLS trusts only its bundled CAs unless given a file; the host's store (ca-certificates is in the runtime
 * profile) also holds a private CA the operator added with update-ca-certificates / update-ca-trust.
 */
function systemTrustStore(node: GatewayNode): string {
  return node.os.family === "rhel" ? "/etc/pki/tls/certs/ca-bundle.crt" : "/etc/ssl/certs/ca-certificates.crt";
}

/**
 * The model's value of every variable; undefined where the model has none, and then the contract's default is
 * written. Typed as the whole table, so a variable added to the contract does not compile until it is mapped.
 */
function modelValues(node: GatewayNode, secrets?: GatewaySecrets): Record<GatewayEnvName, string | undefined> {
  const registry = node.lookup.registry;
  const account = secrets?.submissionUsers[0];
  return {
    EMAIL_DOMAIN: node.domain,
    GATEWAY_LOOKUP_HOST: undefined,
    GATEWAY_LOOKUP_PORT: String(node.lookup.port),
    GATEWAY_LOOKUP_CACHE_TTL: String(node.lookup.cacheTtlSeconds),
    GATEWAY_LOOKUP_TIMEOUT_MS: undefined,
    GATEWAY_METRICS_HOST: node.metrics.listenHost,
    GATEWAY_LOOKUP_METRICS_PORT: String(node.metrics.lookupPort),
    GATEWAY_REGISTRY_FILE: registry.kind === "file" ? registry.path : undefined,
    GATEWAY_REGISTRY_URL: registry.kind === "http" ? registry.url : undefined,
    GATEWAY_MAIL_DROP_DIR: node.drop.mailDropDir,
    GATEWAY_ERROR_DIR: node.drop.errorDir,
    GATEWAY_SPAM_ENGINE: node.spam.engine,
    GATEWAY_SPAM_PROBABLE: score(node.spam.probableScore),
    GATEWAY_MAX_MESSAGE_SIZE: String(node.maxMessageSize),
    GATEWAY_STORE_DIR: node.runtime.storeDir,
    GATEWAY_NODE_URL: node.runtime.nodeUrl,
    GATEWAY_INBOUND_CONCURRENCY: undefined,
    GATEWAY_INBOUND_METRICS_PORT: String(node.metrics.inboundPort),
    // By name: STARTTLS is verified against the certificate, which names the host, not 127.0.0.1.
    GATEWAY_POSTFIX_HOST: node.host.hostname,
    GATEWAY_POSTFIX_PORT: undefined,
    GATEWAY_POSTFIX_CA_FILE: systemTrustStore(node),
    GATEWAY_POSTFIX_USER: account?.username,
    GATEWAY_POSTFIX_PASS: account?.password,
  };
}

/** The variables of one file for this node, in the contract's order. */
export function envFileVariables(node: GatewayNode, file: GatewayEnvFile, secrets?: GatewaySecrets): [GatewayEnvName, string][] {
  const programs = nodePrograms(node).filter((program) => programsLoading(file).includes(program));
  const values = modelValues(node, secrets);
  const variables: [GatewayEnvName, string][] = [];
  for (const name of GATEWAY_ENV_NAMES) {
    const variable: GatewayEnvVariable = GATEWAY_ENV[name];
    if (envFileOf(name) !== file || !variable.readers.some((reader) => programs.includes(reader))) continue;
    const value = values[name] ?? variable.default;
    if (value !== undefined) variables.push([name, value]);
  }
  return variables;
}

function renderEnvFile(node: GatewayNode, file: GatewayEnvFile, secrets?: GatewaySecrets): string {
  const readers = programsLoading(file).filter((program) => nodePrograms(node).includes(program));
  return [
    `# Rendered by brightchain-gateway from the node model; read by ${readers.join(", ")}.`,
    ...envFileVariables(node, file, secrets).map(([name, value]) => envFileLine(name, value)),
    "",
  ].join("\n");
}

/** gateway.env: the daemons' configuration. It never holds a secret. */
export function renderGatewayEnv(node: GatewayNode): string {
  return renderEnvFile(node, "daemons");
}

/**
 * brightchain-send.env: the submission service and its SASL account (the first of gateway:submissionUsers).
 * Without secrets it names no account and the client cannot authenticate.
 */
export function renderSendEnv(node: GatewayNode, secrets?: GatewaySecrets): string {
  return renderEnvFile(node, "send", secrets);
}

export function gatewayEnvFiles(node: GatewayNode, secrets?: GatewaySecrets): HostFile[] {
  const daemons: HostFile = {
    path: node.runtime.envFile,
    // Group brightchain so the services' user can read it; it holds no secret, but nobody else needs it.
    mode: 0o640,
    owner: "root",
    group: node.drop.group,
    content: renderGatewayEnv(node),
    // A relay has no inbound processor unit; notifying it made the deploy enable a unit that does not exist.
    notify: RUNTIME_SERVICES.filter((service) => nodePrograms(node).includes(service)),
  };
  if (!nodePrograms(node).includes("brightchain-send")) return [daemons];
  const withPassword = (secrets?.submissionUsers.length ?? 0) > 0;
  const send: HostFile = {
    path: sendEnvFile(node),
    // Readable by the brightchain user, who runs brightchain-send; the daemons, which run as that user too,
    // cannot see it: their units make the path inaccessible (infra/render/systemd.ts).
    mode: 0o640,
    owner: "root",
    group: node.drop.group,
    content: renderSendEnv(node, secrets),
    secret: withPassword,
    // brightchain-send is a command, not a service: it reads the file at each run.
    notify: [],
  };
  return [daemons, send];
}
