// Runtime configuration from the environment, under the names the BrightChain gateway already uses.
// Parsed once at start; any bad value stops the daemon with a message naming the variable.

export type SpamEngineName = "spamassassin" | "rspamd" | "none";

export interface RuntimeConfig {
  emailDomains: string[];
  lookupHost: string;
  lookupPort: number;
  lookupCacheTtlSeconds: number;
  /** Deadline for one registry answer; slower is answered TEMP so Postfix defers instead of hanging. */
  lookupTimeoutMs: number;
  mailDropDir: string;
  errorDir: string;
  spamEngine: SpamEngineName;
  spamProbable: number;
  spamDefinite: number;
  maxMessageSize: number;
  postfixHost: string;
  postfixPort: number;
  postfixUser?: string;
  postfixPass?: string;
  /** CA bundle that signs the submission service's certificate, when it is not a public CA (lab, tests). */
  postfixCaFile?: string;
  registryFile?: string;
  storeDir?: string;
  registryUrl?: string;
  nodeUrl?: string;
  inboundConcurrency: number;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly value: string | undefined,
    readonly accepted: string,
  ) {
    super(
      value === undefined
        ? `${variable} is not set; expected ${accepted}`
        : `${variable}=${JSON.stringify(value)} is invalid; expected ${accepted}`,
    );
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

function optional(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === "" ? undefined : raw.trim();
}

function required(env: Env, name: string, accepted: string): string {
  const value = optional(env, name);
  if (value === undefined) throw new ConfigError(name, env[name], accepted);
  return value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  const accepted = `an integer from ${min} to ${max}`;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, raw, accepted);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, raw, accepted);
  return value;
}

function score(env: Env, name: string, fallback: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^-?\d+(\.\d+)?$/.test(raw) || !Number.isFinite(value)) {
    throw new ConfigError(name, raw, "a decimal score such as 5.0");
  }
  return value;
}

function absolutePath(env: Env, name: string, fallback?: string): string | undefined {
  const value = optional(env, name) ?? fallback;
  if (value !== undefined && !value.startsWith("/")) {
    throw new ConfigError(name, value, "an absolute path");
  }
  return value;
}

function httpUrl(env: Env, name: string): string | undefined {
  const value = optional(env, name);
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(name, value, "an http:// or https:// URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(name, value, "an http:// or https:// URL");
  }
  return value.replace(/\/+$/, "");
}

const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

export function loadRuntimeConfig(env: Env = process.env): RuntimeConfig {
  const domains = required(env, "EMAIL_DOMAIN", "a mail domain such as brightchain.org (comma-separated for several)")
    .split(",")
    .map((d) => d.trim().toLowerCase())
    .filter((d) => d !== "");
  for (const domain of domains) {
    if (!DOMAIN.test(domain)) throw new ConfigError("EMAIL_DOMAIN", env.EMAIL_DOMAIN, "domain names such as brightchain.org");
  }

  const engine = optional(env, "GATEWAY_SPAM_ENGINE") ?? "none";
  if (engine !== "spamassassin" && engine !== "rspamd" && engine !== "none") {
    throw new ConfigError("GATEWAY_SPAM_ENGINE", engine, "spamassassin, rspamd or none");
  }
  const spamProbable = score(env, "GATEWAY_SPAM_PROBABLE", 5.0);
  const spamDefinite = score(env, "GATEWAY_SPAM_DEFINITE", 10.0);
  if (spamDefinite < spamProbable) {
    throw new ConfigError(
      "GATEWAY_SPAM_DEFINITE",
      env.GATEWAY_SPAM_DEFINITE,
      `a score at or above GATEWAY_SPAM_PROBABLE (${spamProbable})`,
    );
  }

  const mailDropDir = absolutePath(env, "GATEWAY_MAIL_DROP_DIR", "/var/spool/brightchain/incoming")!;
  const errorDir = absolutePath(env, "GATEWAY_ERROR_DIR", "/var/spool/brightchain/errors")!;

  const postfixUser = optional(env, "GATEWAY_POSTFIX_USER");
  const postfixPass = optional(env, "GATEWAY_POSTFIX_PASS");
  if ((postfixUser === undefined) !== (postfixPass === undefined)) {
    const missing = postfixUser === undefined ? "GATEWAY_POSTFIX_USER" : "GATEWAY_POSTFIX_PASS";
    throw new ConfigError(missing, undefined, "set together with its partner (SASL username and password)");
  }

  return {
    emailDomains: domains,
    lookupHost: optional(env, "GATEWAY_LOOKUP_HOST") ?? "127.0.0.1",
    lookupPort: integer(env, "GATEWAY_LOOKUP_PORT", 2526, 1, 65535),
    lookupCacheTtlSeconds: integer(env, "GATEWAY_LOOKUP_CACHE_TTL", 300, 0, 86_400),
    lookupTimeoutMs: integer(env, "GATEWAY_LOOKUP_TIMEOUT_MS", 2_000, 10, 60_000),
    mailDropDir,
    errorDir,
    spamEngine: engine,
    spamProbable,
    spamDefinite,
    maxMessageSize: integer(env, "GATEWAY_MAX_MESSAGE_SIZE", 26_214_400, 1_024, 2_147_483_647),
    postfixHost: optional(env, "GATEWAY_POSTFIX_HOST") ?? "127.0.0.1",
    postfixPort: integer(env, "GATEWAY_POSTFIX_PORT", 587, 1, 65535),
    postfixUser,
    postfixPass,
    postfixCaFile: absolutePath(env, "GATEWAY_POSTFIX_CA_FILE"),
    registryFile: absolutePath(env, "GATEWAY_REGISTRY_FILE"),
    storeDir: absolutePath(env, "GATEWAY_STORE_DIR"),
    registryUrl: httpUrl(env, "GATEWAY_REGISTRY_URL"),
    nodeUrl: httpUrl(env, "GATEWAY_NODE_URL"),
    // 64: hand-offs commit in groups of what is in flight, and 8 or 32 left the disk idle between fsyncs
    // (bench/inbound: 1,309 and 1,459 vs 2,207 msgs/s, docs/performance.md).
    inboundConcurrency: integer(env, "GATEWAY_INBOUND_CONCURRENCY", 64, 1, 256),
  };
}
