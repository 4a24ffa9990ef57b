import { describe, expect, it } from "vitest";
import { ConfigError, loadInboundConfig, loadLookupConfig, loadSendConfig, loadStoreConfig } from "../../runtime/src/config";
import { GATEWAY_ENV } from "../../shared/gateway-env-contract";

describe("the runtime's loaders", () => {
  it("apply the contract's defaults, and only those", () => {
    expect(loadLookupConfig({ EMAIL_DOMAIN: "BrightChain.org" })).toEqual({
      emailDomains: ["brightchain.org"],
      lookupHost: GATEWAY_ENV.GATEWAY_LOOKUP_HOST.default,
      lookupPort: 2526,
      lookupCacheTtlSeconds: 300,
      lookupTimeoutMs: 2000,
      registryFile: undefined,
      registryUrl: undefined,
      metricsHost: "127.0.0.1",
      metricsPort: 9526,
    });
    expect(loadInboundConfig({ EMAIL_DOMAIN: "brightchain.org", GATEWAY_SPAM_ENGINE: "rspamd" })).toEqual({
      emailDomains: ["brightchain.org"],
      mailDropDir: "/var/spool/brightchain/incoming",
      errorDir: "/var/spool/brightchain/errors",
      spamEngine: "rspamd",
      spamProbable: 5.0,
      maxMessageSize: 26214400,
      storeDir: "/var/spool/brightchain/store",
      nodeUrl: undefined,
      inboundConcurrency: 64,
      metricsHost: "127.0.0.1",
      metricsPort: 9527,
    });
    expect(loadStoreConfig({})).toEqual({ storeDir: "/var/spool/brightchain/store" });
    expect(loadSendConfig({ GATEWAY_POSTFIX_HOST: "mail.brightchain.org" })).toEqual({
      postfixHost: "mail.brightchain.org",
      postfixPort: 587,
      postfixUser: undefined,
      postfixPass: undefined,
      postfixCaFile: undefined,
    });
  });

  it.each([
    [loadLookupConfig, "EMAIL_DOMAIN", /EMAIL_DOMAIN is not set; expected a mail domain/],
    // No guess: the processor would trust a score header the engine that really runs does not write.
    [
      (env: Record<string, string>) => loadInboundConfig({ EMAIL_DOMAIN: "brightchain.org", ...env }),
      "GATEWAY_SPAM_ENGINE",
      /GATEWAY_SPAM_ENGINE is not set; expected spamassassin, rspamd or none/,
    ],
    [loadSendConfig, "GATEWAY_POSTFIX_HOST", /GATEWAY_POSTFIX_HOST is not set; expected a host name/],
  ])("%o: a required variable that is unset is an error naming it (%s)", (load, _name, message) => {
    expect(() => load({})).toThrow(ConfigError);
    expect(() => load({})).toThrow(message);
  });

  const lookupEnv = { EMAIL_DOMAIN: "brightchain.org" };
  const inboundEnv = { EMAIL_DOMAIN: "brightchain.org", GATEWAY_SPAM_ENGINE: "none" };
  const sendEnv = { GATEWAY_POSTFIX_HOST: "mail.brightchain.org" };
  it.each([
    [
      loadLookupConfig,
      { ...lookupEnv, GATEWAY_LOOKUP_PORT: "25x" },
      'GATEWAY_LOOKUP_PORT="25x" is invalid; expected an integer from 1 to 65535',
    ],
    [loadLookupConfig, { ...lookupEnv, GATEWAY_LOOKUP_PORT: "70000" }, "GATEWAY_LOOKUP_PORT"],
    [loadLookupConfig, { EMAIL_DOMAIN: "brightchain" }, 'EMAIL_DOMAIN="brightchain" is invalid; expected a mail domain'],
    [loadLookupConfig, { ...lookupEnv, GATEWAY_REGISTRY_URL: "ftp://node" }, "GATEWAY_REGISTRY_URL"],
    [loadLookupConfig, { ...lookupEnv, GATEWAY_LOOKUP_HOST: "127.0.0.1;x" }, "GATEWAY_LOOKUP_HOST"],
    [
      loadInboundConfig,
      { ...inboundEnv, GATEWAY_SPAM_ENGINE: "amavis" },
      'GATEWAY_SPAM_ENGINE="amavis" is invalid; expected spamassassin, rspamd or none',
    ],
    [loadInboundConfig, { ...inboundEnv, GATEWAY_SPAM_PROBABLE: "five" }, "GATEWAY_SPAM_PROBABLE"],
    // Negative scores filed nearly everything as spam; exponent forms are not what the deploy writes.
    [loadInboundConfig, { ...inboundEnv, GATEWAY_SPAM_PROBABLE: "-1" }, "GATEWAY_SPAM_PROBABLE"],
    [loadInboundConfig, { ...inboundEnv, GATEWAY_SPAM_PROBABLE: "1e+23" }, "GATEWAY_SPAM_PROBABLE"],
    [loadInboundConfig, { ...inboundEnv, GATEWAY_MAIL_DROP_DIR: "spool/incoming" }, "GATEWAY_MAIL_DROP_DIR"],
    [loadInboundConfig, { ...inboundEnv, GATEWAY_NODE_URL: "ftp://node" }, "GATEWAY_NODE_URL"],
    [loadInboundConfig, { ...inboundEnv, GATEWAY_MAX_MESSAGE_SIZE: "512" }, "GATEWAY_MAX_MESSAGE_SIZE"],
    [loadSendConfig, { ...sendEnv, GATEWAY_POSTFIX_USER: "bc" }, "GATEWAY_POSTFIX_PASS is not set"],
    [loadSendConfig, { ...sendEnv, GATEWAY_POSTFIX_PORT: "0" }, "GATEWAY_POSTFIX_PORT"],
  ])("%o rejects %j naming the variable", (load, env, message) => {
    expect(() => load(env)).toThrow(ConfigError);
    expect(() => load(env)).toThrow(message);
  });

  it("keeps a password's leading and trailing spaces (Dovecot hashes it as written)", () => {
    const config = loadSendConfig({ ...sendEnv, GATEWAY_POSTFIX_USER: "node", GATEWAY_POSTFIX_PASS: " correct horse " });
    expect(config.postfixPass).toBe(" correct horse ");
  });

  it("never prints a secret's value", () => {
    expect(new ConfigError("GATEWAY_POSTFIX_PASS", "hunter2", "a non-empty value").message).toBe(
      "GATEWAY_POSTFIX_PASS=(secret) is invalid; expected a non-empty value",
    );
  });

  it("a program reads none of the other programs' variables: the lookup needs no spool, send no domain", () => {
    expect(() => loadLookupConfig({ ...lookupEnv, GATEWAY_SPAM_ENGINE: "amavis" })).not.toThrow();
    expect(() => loadInboundConfig({ ...inboundEnv, GATEWAY_LOOKUP_PORT: "x" })).not.toThrow();
    expect(() => loadSendConfig({ ...sendEnv, EMAIL_DOMAIN: "x" })).not.toThrow();
  });
});
