// The contract between the deploy and the runtime: every GATEWAY_* variable, once. infra/render/gateway-env.ts
// writes the env files from this table and runtime/src/config.ts parses them with it, so a name, a bound or a
// default cannot differ between the two; test/unit/gateway-env-contract.test.ts proves that every variable the
// renderer writes is read by a program that loads its file, and that every variable a program reads is rendered.
// Imported by the infra (tsx) and bundled into each runtime program (esbuild): Node's core only.

export const GATEWAY_PROGRAMS = ["brightchain-lookup", "brightchain-inbound", "brightchain-send", "brightchain-store"] as const;
export type GatewayProgram = (typeof GATEWAY_PROGRAMS)[number];

export type GatewayEnvType =
  | { kind: "domains" }
  | { kind: "host" }
  | { kind: "integer"; min: number; max: number }
  | { kind: "score" }
  | { kind: "path" }
  | { kind: "url" }
  | { kind: "choice"; values: readonly string[] }
  | { kind: "text" };

export interface GatewayEnvVariable {
  type: GatewayEnvType;
  /**
   * Applied by the runtime when the variable is unset, and what the renderer writes when the node model has no
   * value of its own. A variable with neither `default` nor `required` is optional: unset turns its feature off.
   */
  default?: string;
  /** Unset is an error naming the variable: no runtime guess may differ from what the deploy would write. */
  required?: true;
  /** What an optional variable's absence means, for the docs. */
  whenUnset?: string;
  /** The programs that read it; only those programs' env files carry it. */
  readers: readonly GatewayProgram[];
  /** Never printed in an error, and kept out of the file the daemons load. */
  secret?: true;
  description: string;
}

export const GATEWAY_ENV = {
  EMAIL_DOMAIN: {
    type: { kind: "domains" },
    required: true,
    readers: ["brightchain-lookup", "brightchain-inbound"],
    description:
      "the mail domain served, gateway:domain (comma-separated for several); other domains' keys are NOTFOUND, their mail goes to errors/",
  },
  GATEWAY_LOOKUP_HOST: {
    type: { kind: "host" },
    default: "127.0.0.1",
    readers: ["brightchain-lookup"],
    description: "address the socketmap listens on; Postfix asks it on this host only",
  },
  GATEWAY_LOOKUP_PORT: {
    type: { kind: "integer", min: 1, max: 65535 },
    default: "2526",
    readers: ["brightchain-lookup"],
    description: "TCP port of the socketmap (gateway:lookupPort)",
  },
  GATEWAY_LOOKUP_CACHE_TTL: {
    type: { kind: "integer", min: 0, max: 86_400 },
    default: "300",
    readers: ["brightchain-lookup"],
    description: "seconds a positive answer from GATEWAY_REGISTRY_URL is cached (gateway:lookupCacheTtl)",
  },
  GATEWAY_LOOKUP_TIMEOUT_MS: {
    type: { kind: "integer", min: 10, max: 60_000 },
    default: "2000",
    readers: ["brightchain-lookup"],
    description: "deadline for one registry answer; slower is TEMP, so Postfix defers instead of hanging",
  },
  GATEWAY_METRICS_HOST: {
    type: { kind: "host" },
    default: "127.0.0.1",
    readers: ["brightchain-lookup", "brightchain-inbound"],
    description:
      "address the daemons' Prometheus endpoints listen on: loopback unless gateway:metrics.scrapers names a network (docs/monitoring.md)",
  },
  GATEWAY_LOOKUP_METRICS_PORT: {
    type: { kind: "integer", min: 1, max: 65535 },
    default: "9526",
    readers: ["brightchain-lookup"],
    description: "TCP port of brightchain-lookup's GET /metrics (gateway:metrics.lookupPort)",
  },
  GATEWAY_REGISTRY_FILE: {
    type: { kind: "path" },
    whenUnset: "GATEWAY_REGISTRY_URL is asked",
    readers: ["brightchain-lookup"],
    description: "the recipient file, one address per line (gateway:registry)",
  },
  GATEWAY_REGISTRY_URL: {
    type: { kind: "url" },
    whenUnset: "GATEWAY_REGISTRY_FILE is read",
    readers: ["brightchain-lookup"],
    description: "the node API's base URL for GET /recipients/<address> (gateway:registry, docs/node-api.openapi.yaml)",
  },
  GATEWAY_MAIL_DROP_DIR: {
    type: { kind: "path" },
    default: "/var/spool/brightchain/incoming",
    readers: ["brightchain-inbound"],
    description: "the Maildir Postfix drops accepted mail into (gateway:spoolDir + /incoming)",
  },
  GATEWAY_ERROR_DIR: {
    type: { kind: "path" },
    default: "/var/spool/brightchain/errors",
    readers: ["brightchain-inbound"],
    description: "where a message refused for good goes, with a .reason file beside it",
  },
  GATEWAY_SPAM_ENGINE: {
    type: { kind: "choice", values: ["spamassassin", "rspamd", "none"] },
    required: true,
    readers: ["brightchain-inbound"],
    description: "whose score header the processor trusts (gateway:spamEngine); a guess could trust a forged one",
  },
  GATEWAY_SPAM_PROBABLE: {
    type: { kind: "score" },
    default: "5.0",
    readers: ["brightchain-inbound"],
    description: "score at or above which a message is filed in the spam folder (gateway:spamProbableScore)",
  },
  GATEWAY_MAX_MESSAGE_SIZE: {
    type: { kind: "integer", min: 1_024, max: 2_147_483_647 },
    default: "26214400",
    readers: ["brightchain-inbound"],
    description: "largest message in bytes (gateway:maxMessageSize); a larger drop file goes to the error dir",
  },
  GATEWAY_STORE_DIR: {
    type: { kind: "path" },
    default: "/var/spool/brightchain/store",
    readers: ["brightchain-inbound", "brightchain-store"],
    description: "the embedded content-addressed store, used when GATEWAY_NODE_URL is unset (gateway:storeDir)",
  },
  GATEWAY_NODE_URL: {
    type: { kind: "url" },
    whenUnset: "the embedded store",
    readers: ["brightchain-inbound"],
    description: "the node API's base URL for PUT /messages/<sha3> (gateway:nodeUrl, docs/node-api.openapi.yaml)",
  },
  GATEWAY_INBOUND_CONCURRENCY: {
    type: { kind: "integer", min: 1, max: 256 },
    // 64: hand-offs commit in groups of what is in flight, and 8 or 32 left the disk idle between fsyncs
    // (bench/inbound: 1,309 and 1,459 vs 2,207 msgs/s, docs/performance.md).
    default: "64",
    readers: ["brightchain-inbound"],
    description: "messages handed off at once",
  },
  GATEWAY_INBOUND_METRICS_PORT: {
    type: { kind: "integer", min: 1, max: 65535 },
    default: "9527",
    readers: ["brightchain-inbound"],
    description: "TCP port of brightchain-inbound's GET /metrics (gateway:metrics.inboundPort)",
  },
  GATEWAY_POSTFIX_HOST: {
    type: { kind: "host" },
    required: true,
    readers: ["brightchain-send"],
    description: "the submission service's host, by the name its certificate carries",
  },
  GATEWAY_POSTFIX_PORT: {
    type: { kind: "integer", min: 1, max: 65535 },
    default: "587",
    readers: ["brightchain-send"],
    description: "the submission service's port (STARTTLS required)",
  },
  GATEWAY_POSTFIX_CA_FILE: {
    type: { kind: "path" },
    whenUnset: "Node's own CA list",
    readers: ["brightchain-send"],
    description: "CA bundle that verifies the submission certificate: the host's trust store, so a private CA works too",
  },
  GATEWAY_POSTFIX_USER: {
    type: { kind: "text" },
    whenUnset: "no login",
    readers: ["brightchain-send"],
    description: "SASL user name (the first of gateway:submissionUsers); set together with GATEWAY_POSTFIX_PASS",
  },
  GATEWAY_POSTFIX_PASS: {
    type: { kind: "text" },
    whenUnset: "no login",
    readers: ["brightchain-send"],
    secret: true,
    description: "SASL password; only in brightchain-send's env file, never in the daemons'",
  },
} as const satisfies Record<string, GatewayEnvVariable>;

export type GatewayEnvName = keyof typeof GATEWAY_ENV;
export const GATEWAY_ENV_NAMES = Object.keys(GATEWAY_ENV) as GatewayEnvName[];

/**
 * The two files the renderer writes. `daemons` is loaded by brightchain-lookup and brightchain-inbound through
 * their units (and sourced by a person running brightchain-store); `send` by brightchain-send alone, because it
 * holds the SASL password the daemons have no use for.
 */
export type GatewayEnvFile = "daemons" | "send";

export function envFileOf(name: GatewayEnvName): GatewayEnvFile {
  const readers: readonly GatewayProgram[] = GATEWAY_ENV[name].readers;
  return readers.every((reader) => reader === "brightchain-send") ? "send" : "daemons";
}

export function programsLoading(file: GatewayEnvFile): GatewayProgram[] {
  return file === "send" ? ["brightchain-send"] : ["brightchain-lookup", "brightchain-inbound", "brightchain-store"];
}

type ValueOfType<T> = T extends { kind: "domains" }
  ? string[]
  : T extends { kind: "integer" | "score" }
    ? number
    : T extends { kind: "choice"; values: readonly (infer V)[] }
      ? V
      : string;

/** The parsed value of a variable: present whenever the table gives it a default or requires it. */
export type GatewayEnvValue<N extends GatewayEnvName> =
  | ValueOfType<(typeof GATEWAY_ENV)[N]["type"]>
  | ((typeof GATEWAY_ENV)[N] extends { default: string } | { required: true } ? never : undefined);

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly value: string | undefined,
    readonly accepted: string,
  ) {
    const secret = variable in GATEWAY_ENV && (GATEWAY_ENV[variable as GatewayEnvName] as GatewayEnvVariable).secret;
    const shown = secret ? "(secret)" : JSON.stringify(value);
    super(
      value === undefined
        ? `${variable} is not set; expected ${accepted}`
        : `${variable}=${shown} is invalid; expected ${accepted}`,
    );
    this.name = "ConfigError";
  }
}

const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|[0-9A-Fa-f:.]+)$/;
// What the infra schema accepts (gateway:spamProbableScore): above 0, at most 1000, at most two decimals.
const SCORE = /^\d{1,4}(?:\.\d{1,2})?$/;

/** What a value of this variable looks like, for error messages and docs. */
export function acceptedValues(name: GatewayEnvName): string {
  const type: GatewayEnvType = GATEWAY_ENV[name].type;
  switch (type.kind) {
    case "domains":
      return "a mail domain such as brightchain.org (comma-separated for several)";
    case "host":
      return "a host name or IP address such as 127.0.0.1";
    case "integer":
      return `an integer from ${type.min} to ${type.max}`;
    case "score":
      return "a score above 0 and at most 1000 with at most two decimals, such as 5.0";
    case "path":
      return "an absolute path";
    case "url":
      return "an http:// or https:// URL";
    case "choice":
      return type.values.length === 1
        ? type.values[0]!
        : `${type.values.slice(0, -1).join(", ")} or ${type.values[type.values.length - 1]}`;
    case "text":
      return "a non-empty value";
  }
}

function parseValue(name: GatewayEnvName, raw: string): unknown {
  const type: GatewayEnvType = GATEWAY_ENV[name].type;
  const invalid = (): never => {
    throw new ConfigError(name, raw, acceptedValues(name));
  };
  switch (type.kind) {
    case "domains": {
      const domains = raw
        .split(",")
        .map((domain) => domain.trim().toLowerCase())
        .filter((domain) => domain !== "");
      if (domains.length === 0 || !domains.every((domain) => DOMAIN.test(domain))) invalid();
      return domains;
    }
    case "host":
      return HOST.test(raw) ? raw : invalid();
    case "integer": {
      const value = Number(raw);
      return /^\d+$/.test(raw) && value >= type.min && value <= type.max ? value : invalid();
    }
    case "score": {
      const value = Number(raw);
      return SCORE.test(raw) && value > 0 && value <= 1000 ? value : invalid();
    }
    case "path":
      return raw.startsWith("/") ? raw : invalid();
    case "url": {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        return invalid();
      }
      if (url.protocol !== "http:" && url.protocol !== "https:") invalid();
      return raw.replace(/\/+$/, "");
    }
    case "choice":
      return type.values.includes(raw) ? raw : invalid();
    case "text":
      return raw;
  }
}

/**
 * One variable from the environment, as `program` reads it: unset or blank takes the table's default, a required
 * one is an error naming it. Text values keep their spaces (a password may begin or end with one); others are
 * trimmed. Asking for a variable the table does not list for `program` is a programming error, so the table
 * cannot fall behind the parser.
 */
export function readGatewayEnv<N extends GatewayEnvName>(
  env: Record<string, string | undefined>,
  program: GatewayProgram,
  name: N,
): GatewayEnvValue<N> {
  const variable: GatewayEnvVariable = GATEWAY_ENV[name];
  if (!variable.readers.includes(program)) {
    throw new Error(`${program} reads ${name}, which shared/gateway-env-contract.ts does not list it as reading`);
  }
  const raw = env[name];
  const value = raw === undefined || raw.trim() === "" ? undefined : variable.type.kind === "text" ? raw : raw.trim();
  if (value !== undefined) return parseValue(name, value) as GatewayEnvValue<N>;
  if (variable.default !== undefined) return parseValue(name, variable.default) as GatewayEnvValue<N>;
  if (variable.required) throw new ConfigError(name, undefined, acceptedValues(name));
  return undefined as GatewayEnvValue<N>;
}

/**
 * systemd's EnvironmentFile takes KEY=value; a value with spaces, quotes, backslashes or `$` is written in
 * double quotes with those characters escaped so systemd hands the runtime the exact string. The same text
 * sourced by sh (`set -a; . FILE`) gives the same values.
 */
export function envFileLine(name: GatewayEnvName, value: string): string {
  if (/[\n\r]/.test(value)) {
    const shown = (GATEWAY_ENV[name] as GatewayEnvVariable).secret ? "(secret)" : JSON.stringify(value);
    throw new Error(`${name} value ${shown} contains a line break; accepted: a single-line value`);
  }
  const plain = /^[A-Za-z0-9_.,:/@+=-]*$/.test(value);
  return plain ? `${name}=${value}` : `${name}="${value.replace(/(["\\$`])/g, "\\$1")}"`;
}
