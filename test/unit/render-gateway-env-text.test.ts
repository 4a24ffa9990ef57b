// gateway.env and brightchain-send.env word for word: the header naming the programs that read each file, every
// variable in the contract's order with the model's value or the contract's default, the system trust store of
// each family, and each file's mode, group, secrecy and the services it restarts.
import { describe, expect, it } from "vitest";
import { releaseOs } from "../../infra/model/releases";
import type { GatewayNode } from "../../infra/model/types";
import { gatewayEnvFiles, nodePrograms, renderGatewayEnv, renderSendEnv } from "../../infra/render/gateway-env";
import { examplePrimary, exampleRelay, exampleSecrets } from "../fixtures/nodes";

describe("gateway.env, exactly", () => {
  it("a primary: the lookup's, the processor's and the store's variables", () => {
    expect(renderGatewayEnv(examplePrimary).split("\n")).toEqual([
      "# Rendered by brightchain-gateway from the node model; read by brightchain-lookup, brightchain-inbound, brightchain-store.",
      "EMAIL_DOMAIN=brightchain.org",
      "GATEWAY_LOOKUP_HOST=127.0.0.1",
      "GATEWAY_LOOKUP_PORT=2526",
      "GATEWAY_LOOKUP_CACHE_TTL=300",
      "GATEWAY_LOOKUP_TIMEOUT_MS=2000",
      "GATEWAY_METRICS_HOST=127.0.0.1",
      "GATEWAY_LOOKUP_METRICS_PORT=9526",
      "GATEWAY_REGISTRY_FILE=/etc/brightchain/recipients",
      "GATEWAY_MAIL_DROP_DIR=/var/spool/brightchain/incoming",
      "GATEWAY_ERROR_DIR=/var/spool/brightchain/errors",
      "GATEWAY_SPAM_ENGINE=spamassassin",
      "GATEWAY_SPAM_PROBABLE=5.0",
      "GATEWAY_MAX_MESSAGE_SIZE=26214400",
      "GATEWAY_STORE_DIR=/var/spool/brightchain/store",
      "GATEWAY_INBOUND_CONCURRENCY=64",
      "GATEWAY_INBOUND_METRICS_PORT=9527",
      "",
    ]);
  });

  it("a relay with an HTTP registry: the lookup's variables only, the registry's URL and no file", () => {
    const relay: GatewayNode = {
      ...exampleRelay,
      lookup: { ...exampleRelay.lookup, registry: { kind: "http", url: "http://127.0.0.1:3000/api" } },
    };
    expect(renderGatewayEnv(relay).split("\n")).toEqual([
      "# Rendered by brightchain-gateway from the node model; read by brightchain-lookup.",
      "EMAIL_DOMAIN=brightchain.org",
      "GATEWAY_LOOKUP_HOST=127.0.0.1",
      "GATEWAY_LOOKUP_PORT=2526",
      "GATEWAY_LOOKUP_CACHE_TTL=300",
      "GATEWAY_LOOKUP_TIMEOUT_MS=2000",
      "GATEWAY_METRICS_HOST=127.0.0.1",
      "GATEWAY_LOOKUP_METRICS_PORT=9526",
      "GATEWAY_REGISTRY_URL=http://127.0.0.1:3000/api",
      "",
    ]);
  });

  it("a fractional spam score is written as it is, a whole one with one decimal", () => {
    const node: GatewayNode = { ...examplePrimary, spam: { ...examplePrimary.spam, probableScore: 6.25 } };
    expect(renderGatewayEnv(node)).toContain("\nGATEWAY_SPAM_PROBABLE=6.25\n");
    const whole: GatewayNode = { ...examplePrimary, spam: { ...examplePrimary.spam, probableScore: 7 } };
    expect(renderGatewayEnv(whole)).toContain("\nGATEWAY_SPAM_PROBABLE=7.0\n");
  });
});

describe("brightchain-send.env, exactly", () => {
  it("with the first submission account: host by name, port 587, the host's trust store, user and quoted password", () => {
    const secrets = {
      ...exampleSecrets,
      submissionUsers: [...exampleSecrets.submissionUsers, { username: "second", password: "not this one" }],
    };
    expect(renderSendEnv(examplePrimary, secrets).split("\n")).toEqual([
      "# Rendered by brightchain-gateway from the node model; read by brightchain-send.",
      "GATEWAY_POSTFIX_HOST=mail.brightchain.org",
      "GATEWAY_POSTFIX_PORT=587",
      "GATEWAY_POSTFIX_CA_FILE=/etc/ssl/certs/ca-certificates.crt",
      "GATEWAY_POSTFIX_USER=brightchain-node",
      'GATEWAY_POSTFIX_PASS="correct horse battery staple"',
      "",
    ]);
  });

  it("RHEL's trust store is its ca-bundle", () => {
    expect(renderSendEnv({ ...examplePrimary, os: releaseOs("rhel-9") })).toContain(
      "\nGATEWAY_POSTFIX_CA_FILE=/etc/pki/tls/certs/ca-bundle.crt\n",
    );
  });
});

describe("the env files", () => {
  const meta = (files: ReturnType<typeof gatewayEnvFiles>) =>
    files.map((file) => Object.fromEntries(Object.entries(file).filter(([key]) => key !== "content")));

  it("a relay: gateway.env alone, restarting the lookup only", () => {
    expect(meta(gatewayEnvFiles(exampleRelay))).toEqual([
      { path: "/etc/brightchain/gateway.env", mode: 0o640, owner: "root", group: "brightchain", notify: ["brightchain-lookup"] },
    ]);
  });

  it("a primary: gateway.env for both daemons, and brightchain-send.env beside it, secret only with an account", () => {
    const daemons = {
      path: "/etc/brightchain/gateway.env",
      mode: 0o640,
      owner: "root",
      group: "brightchain",
      notify: ["brightchain-lookup", "brightchain-inbound"],
    };
    const send = { path: "/etc/brightchain/brightchain-send.env", mode: 0o640, owner: "root", group: "brightchain", notify: [] };
    expect(meta(gatewayEnvFiles(examplePrimary))).toEqual([daemons, { ...send, secret: false }]);
    expect(meta(gatewayEnvFiles(examplePrimary, { submissionUsers: [] }))).toEqual([daemons, { ...send, secret: false }]);
    const files = gatewayEnvFiles(examplePrimary, exampleSecrets);
    expect(meta(files)).toEqual([daemons, { ...send, secret: true }]);
    expect(files[0]!.content).toBe(renderGatewayEnv(examplePrimary));
    expect(files[1]!.content).toBe(renderSendEnv(examplePrimary, exampleSecrets));
  });
});

describe("the programs a node runs", () => {
  it("the lookup everywhere; the processor and the store on the primary; send beside 587", () => {
    expect(nodePrograms(examplePrimary)).toEqual([
      "brightchain-lookup",
      "brightchain-inbound",
      "brightchain-store",
      "brightchain-send",
    ]);
    expect(nodePrograms({ ...examplePrimary, submission: { enabled: false, saslBackend: "dovecot" } })).toEqual([
      "brightchain-lookup",
      "brightchain-inbound",
      "brightchain-store",
    ]);
    expect(nodePrograms(exampleRelay)).toEqual(["brightchain-lookup"]);
  });
});
