// Runtime configuration from the environment, one loader per program. Names, bounds and defaults come from
// the shared gateway.env contract (shared/gateway-env-contract.ts), the table the deploy renders from. Parsed
// once at start; any bad value stops the program with a message naming the variable.
import { ConfigError, readGatewayEnv, type GatewayProgram } from "../../shared/gateway-env-contract";

export { ConfigError };

export type SpamEngineName = "spamassassin" | "rspamd" | "none";

type Env = Record<string, string | undefined>;

export interface LookupConfig {
  emailDomains: string[];
  lookupHost: string;
  lookupPort: number;
  lookupCacheTtlSeconds: number;
  /** Deadline for one registry answer; slower is answered TEMP so Postfix defers instead of hanging. */
  lookupTimeoutMs: number;
  registryFile?: string;
  registryUrl?: string;
  metricsHost: string;
  metricsPort: number;
}

export interface InboundConfig {
  /** Mail whose Delivered-To is outside these goes to errors/ (EMAIL_DOMAIN). */
  emailDomains: string[];
  mailDropDir: string;
  errorDir: string;
  spamEngine: SpamEngineName;
  spamProbable: number;
  maxMessageSize: number;
  storeDir: string;
  nodeUrl?: string;
  inboundConcurrency: number;
  metricsHost: string;
  metricsPort: number;
}

export interface SendConfig {
  postfixHost: string;
  postfixPort: number;
  postfixUser?: string;
  postfixPass?: string;
  /** CA bundle that signs the submission service's certificate. */
  postfixCaFile?: string;
}

function reader(env: Env, program: GatewayProgram) {
  return <N extends Parameters<typeof readGatewayEnv>[2]>(name: N) => readGatewayEnv(env, program, name);
}

export function loadLookupConfig(env: Env = process.env): LookupConfig {
  const read = reader(env, "brightchain-lookup");
  return {
    emailDomains: read("EMAIL_DOMAIN"),
    lookupHost: read("GATEWAY_LOOKUP_HOST"),
    lookupPort: read("GATEWAY_LOOKUP_PORT"),
    lookupCacheTtlSeconds: read("GATEWAY_LOOKUP_CACHE_TTL"),
    lookupTimeoutMs: read("GATEWAY_LOOKUP_TIMEOUT_MS"),
    registryFile: read("GATEWAY_REGISTRY_FILE"),
    registryUrl: read("GATEWAY_REGISTRY_URL"),
    metricsHost: read("GATEWAY_METRICS_HOST"),
    metricsPort: read("GATEWAY_LOOKUP_METRICS_PORT"),
  };
}

export function loadInboundConfig(env: Env = process.env): InboundConfig {
  const read = reader(env, "brightchain-inbound");
  return {
    emailDomains: read("EMAIL_DOMAIN"),
    mailDropDir: read("GATEWAY_MAIL_DROP_DIR"),
    errorDir: read("GATEWAY_ERROR_DIR"),
    spamEngine: read("GATEWAY_SPAM_ENGINE"),
    spamProbable: read("GATEWAY_SPAM_PROBABLE"),
    maxMessageSize: read("GATEWAY_MAX_MESSAGE_SIZE"),
    storeDir: read("GATEWAY_STORE_DIR"),
    nodeUrl: read("GATEWAY_NODE_URL"),
    inboundConcurrency: read("GATEWAY_INBOUND_CONCURRENCY"),
    metricsHost: read("GATEWAY_METRICS_HOST"),
    metricsPort: read("GATEWAY_INBOUND_METRICS_PORT"),
  };
}

export function loadSendConfig(env: Env = process.env): SendConfig {
  const read = reader(env, "brightchain-send");
  const postfixUser = read("GATEWAY_POSTFIX_USER");
  const postfixPass = read("GATEWAY_POSTFIX_PASS");
  if ((postfixUser === undefined) !== (postfixPass === undefined)) {
    const missing = postfixUser === undefined ? "GATEWAY_POSTFIX_USER" : "GATEWAY_POSTFIX_PASS";
    throw new ConfigError(missing, undefined, "set together with its partner (SASL username and password)");
  }
  return {
    postfixHost: read("GATEWAY_POSTFIX_HOST"),
    postfixPort: read("GATEWAY_POSTFIX_PORT"),
    postfixUser,
    postfixPass,
    postfixCaFile: read("GATEWAY_POSTFIX_CA_FILE"),
  };
}

export interface StoreConfig {
  storeDir: string;
}

export function loadStoreConfig(env: Env = process.env): StoreConfig {
  return { storeDir: readGatewayEnv(env, "brightchain-store", "GATEWAY_STORE_DIR") };
}
