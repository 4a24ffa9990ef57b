import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { gatewayEnvFiles, renderGatewayEnv, renderSendEnv } from "../../infra/render/gateway-env";
import { runtimeUnitFiles } from "../../infra/render/systemd";
import { loadInboundConfig, loadLookupConfig, loadSendConfig } from "../../runtime/src/config";
import { examplePrimary, exampleRelay, exampleSecrets, nodeMatrix } from "../fixtures/nodes";
import { parseEnvironmentFile } from "../helpers/env-file";
import type { GatewayNode } from "../../infra/model/types";

describe("gateway.env and brightchain-send.env renderers", () => {
  it.each(nodeMatrix)("$name: each program's loader accepts its file and reads back the model", ({ node }) => {
    const daemons = parseEnvironmentFile(renderGatewayEnv(node));
    const lookup = loadLookupConfig(daemons);
    expect(lookup.emailDomains).toEqual([node.domain]);
    expect(lookup.lookupHost).toBe("127.0.0.1");
    expect(lookup.lookupPort).toBe(node.lookup.port);
    expect(lookup.lookupCacheTtlSeconds).toBe(node.lookup.cacheTtlSeconds);
    expect(lookup.registryFile).toBe(node.lookup.registry.kind === "file" ? node.lookup.registry.path : undefined);
    if (node.role !== "primary") {
      expect(daemons.GATEWAY_MAIL_DROP_DIR).toBeUndefined();
      return;
    }
    const inbound = loadInboundConfig(daemons);
    expect(inbound.mailDropDir).toBe(node.drop.mailDropDir);
    expect(inbound.errorDir).toBe(node.drop.errorDir);
    expect(inbound.spamEngine).toBe(node.spam.engine);
    expect(inbound.spamProbable).toBe(node.spam.probableScore);
    expect(inbound.maxMessageSize).toBe(node.maxMessageSize);
    expect(inbound.storeDir).toBe(node.runtime.storeDir);
    expect(inbound.nodeUrl).toBeUndefined();

    const send = loadSendConfig(parseEnvironmentFile(renderSendEnv(node, exampleSecrets)));
    // By name: the client verifies the submission certificate, which names the host.
    expect(send.postfixHost).toBe(node.host.hostname);
    expect(send.postfixPort).toBe(587);
    expect(send.postfixCaFile).toBe(
      node.os.family === "rhel" ? "/etc/pki/tls/certs/ca-bundle.crt" : "/etc/ssl/certs/ca-certificates.crt",
    );
    expect(send.postfixUser).toBe("brightchain-node");
    // The fixture password has spaces: it must survive systemd's and sh's quoting intact.
    expect(send.postfixPass).toBe("correct horse battery staple");
  });

  it("an HTTP registry and a node URL reach the runtime", () => {
    const node: GatewayNode = {
      ...examplePrimary,
      lookup: { ...examplePrimary.lookup, registry: { kind: "http", url: "https://node.brightchain.org/registry" } },
      runtime: { ...examplePrimary.runtime, nodeUrl: "https://node.brightchain.org" },
    };
    const env = parseEnvironmentFile(renderGatewayEnv(node));
    expect(loadLookupConfig(env).registryUrl).toBe("https://node.brightchain.org/registry");
    expect(loadLookupConfig(env).registryFile).toBeUndefined();
    expect(loadInboundConfig(env).nodeUrl).toBe("https://node.brightchain.org");
  });

  it("writes no variable that nothing reads (the DKIM selector and key path were)", () => {
    for (const { node } of nodeMatrix) {
      expect(renderGatewayEnv(node)).not.toMatch(/GATEWAY_DKIM_/);
      expect(renderGatewayEnv(node)).not.toMatch(/GATEWAY_SPAM_DEFINITE/);
    }
  });

  it("keeps the SASL password out of gateway.env: only brightchain-send.env holds it, marked secret", () => {
    const [daemons, send] = gatewayEnvFiles(examplePrimary, exampleSecrets);
    expect(daemons).toMatchObject({
      path: "/etc/brightchain/gateway.env",
      mode: 0o640,
      owner: "root",
      group: "brightchain",
      notify: ["brightchain-lookup", "brightchain-inbound"],
    });
    expect(daemons!.secret).toBeFalsy();
    expect(daemons!.content).not.toContain("correct horse");
    expect(daemons!.content).not.toContain("GATEWAY_POSTFIX_");
    expect(send).toMatchObject({
      path: "/etc/brightchain/brightchain-send.env",
      mode: 0o640,
      owner: "root",
      group: "brightchain",
      secret: true,
      notify: [],
    });
    expect(send!.mode & 0o007).toBe(0);
    expect(send!.content).toContain('GATEWAY_POSTFIX_PASS="correct horse battery staple"\n');
  });

  it("without secrets brightchain-send.env names no account and is not secret", () => {
    const [, send] = gatewayEnvFiles(examplePrimary);
    expect(send!.secret).toBe(false);
    expect(send!.content).not.toContain("GATEWAY_POSTFIX_USER");
  });

  it("a relay (no submission service) gets no brightchain-send.env", () => {
    const files = gatewayEnvFiles(exampleRelay, exampleSecrets);
    expect(files.map((f) => f.path)).toEqual(["/etc/brightchain/gateway.env"]);
    expect(files[0]!.content).not.toContain("correct horse");
  });

  it("restarts only runtime services the node has a unit for (a relay has no inbound processor)", () => {
    for (const { name, node } of nodeMatrix) {
      const units = runtimeUnitFiles(node).map((file) =>
        file.path
          .split("/")
          .pop()!
          .replace(/\.service$/, ""),
      );
      for (const service of gatewayEnvFiles(node)[0]!.notify) expect(units, `${name}: ${service}`).toContain(service);
    }
    expect(gatewayEnvFiles(exampleRelay)[0]!.notify).toEqual(["brightchain-lookup"]);
  });

  it("refuses a value systemd would split across lines, without printing a secret", () => {
    const node: GatewayNode = { ...examplePrimary, domain: "a\nb" };
    expect(() => renderGatewayEnv(node)).toThrow(/EMAIL_DOMAIN value "a\\nb" contains a line break/);
    const secrets = { ...exampleSecrets, submissionUsers: [{ username: "node", password: "pass\nword" }] };
    expect(() => renderSendEnv(examplePrimary, secrets)).toThrow(/GATEWAY_POSTFIX_PASS value \(secret\) contains a line break/);
  });

  it("a password survives as written, spaces at its ends included, for systemd and for sh alike", () => {
    const password = ` it's "$HOME" \\ \`id\` `;
    const secrets = { ...exampleSecrets, submissionUsers: [{ username: "brightchain-node", password }] };
    const text = renderSendEnv(examplePrimary, secrets);
    expect(loadSendConfig(parseEnvironmentFile(text)).postfixPass).toBe(password);
    const dir = mkdtempSync(join(tmpdir(), "send-env-"));
    try {
      writeFileSync(join(dir, "brightchain-send.env"), text);
      const sourced = spawnSync(
        "sh",
        ["-c", `set -a; . ${join(dir, "brightchain-send.env")}; printf %s "$GATEWAY_POSTFIX_PASS"`],
        {
          encoding: "utf8",
          env: { PATH: process.env.PATH },
        },
      );
      expect(sourced.stdout).toBe(password);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
