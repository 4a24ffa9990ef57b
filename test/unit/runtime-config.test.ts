import { describe, expect, it } from "vitest";
import { ConfigError, loadRuntimeConfig } from "../../runtime/src/config";

describe("loadRuntimeConfig", () => {
  it("applies the guide's defaults", () => {
    const config = loadRuntimeConfig({ EMAIL_DOMAIN: "BrightChain.org" });
    expect(config).toMatchObject({
      emailDomains: ["brightchain.org"],
      lookupPort: 2526,
      lookupCacheTtlSeconds: 300,
      mailDropDir: "/var/spool/brightchain/incoming",
      errorDir: "/var/spool/brightchain/errors",
      spamEngine: "none",
      spamProbable: 5.0,
      spamDefinite: 10.0,
      maxMessageSize: 26214400,
      postfixPort: 587,
    });
  });

  it.each([
    [{ GATEWAY_LOOKUP_PORT: "25x" }, "GATEWAY_LOOKUP_PORT"],
    [{ GATEWAY_LOOKUP_PORT: "70000" }, "GATEWAY_LOOKUP_PORT"],
    [{ GATEWAY_SPAM_ENGINE: "amavis" }, "GATEWAY_SPAM_ENGINE"],
    [{ GATEWAY_SPAM_PROBABLE: "five" }, "GATEWAY_SPAM_PROBABLE"],
    [{ GATEWAY_SPAM_DEFINITE: "4" }, "GATEWAY_SPAM_DEFINITE"],
    [{ GATEWAY_MAIL_DROP_DIR: "spool/incoming" }, "GATEWAY_MAIL_DROP_DIR"],
    [{ GATEWAY_NODE_URL: "ftp://node" }, "GATEWAY_NODE_URL"],
    [{ GATEWAY_POSTFIX_USER: "bc" }, "GATEWAY_POSTFIX_PASS"],
  ])("rejects %j naming %s", (bad, variable) => {
    const attempt = () => loadRuntimeConfig({ EMAIL_DOMAIN: "brightchain.org", ...bad });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(variable);
  });

  it("requires EMAIL_DOMAIN", () => {
    expect(() => loadRuntimeConfig({})).toThrow(/EMAIL_DOMAIN is not set/);
  });
});
