import { describe, expect, it } from "vitest";
import { gatewayEnvFiles, renderGatewayEnv } from "../../infra/render/gateway-env";
import { runtimeUnitFiles } from "../../infra/render/systemd";
import { loadRuntimeConfig } from "../../runtime/src/config";
import { examplePrimary, exampleRelay, exampleSecrets, nodeMatrix } from "../fixtures/nodes";
import type { GatewayNode } from "../../infra/model/types";

/**
 * systemd's EnvironmentFile rules for what the renderer writes: `#` comment lines, KEY=value, a value in
 * double quotes with backslash escapes, unquoted values taken verbatim.
 */
function parseEnvironmentFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (line.trim() === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) throw new Error(`not a systemd environment line: ${line}`);
    const raw = match[2]!;
    env[match[1]!] = raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
  }
  return env;
}

describe("gateway.env renderer", () => {
  it.each(nodeMatrix)("$name: loadRuntimeConfig accepts the rendered file and reads back the model", ({ node }) => {
    const config = loadRuntimeConfig(parseEnvironmentFile(renderGatewayEnv(node, exampleSecrets)));
    expect(config.emailDomains).toEqual([node.domain]);
    expect(config.lookupHost).toBe("127.0.0.1");
    expect(config.lookupPort).toBe(node.lookup.port);
    expect(config.lookupCacheTtlSeconds).toBe(node.lookup.cacheTtlSeconds);
    expect(config.mailDropDir).toBe(node.drop.mailDropDir);
    expect(config.errorDir).toBe(node.drop.errorDir);
    expect(config.spamEngine).toBe(node.spam.engine);
    expect(config.spamProbable).toBe(node.spam.probableScore);
    expect(config.spamDefinite).toBe(node.spam.definiteScore);
    expect(config.maxMessageSize).toBe(node.maxMessageSize);
    expect(config.registryFile).toBe(node.lookup.registry.kind === "file" ? node.lookup.registry.path : undefined);
    expect(config.storeDir).toBe(node.runtime.storeDir);
    expect(config.nodeUrl).toBeUndefined();
    if (node.role === "primary") {
      // By name: the client verifies the submission certificate, which names the host.
      expect(config.postfixHost).toBe(node.host.hostname);
      expect(config.postfixPort).toBe(587);
      expect(config.postfixUser).toBe("brightchain-node");
      // The fixture password has spaces: it must survive systemd's quoting intact.
      expect(config.postfixPass).toBe("correct horse battery staple");
    } else {
      expect(config.postfixUser).toBeUndefined();
    }
  });

  it("an HTTP registry and a node URL reach the runtime", () => {
    const node: GatewayNode = {
      ...exampleRelay,
      lookup: { ...exampleRelay.lookup, registry: { kind: "http", url: "https://node.brightchain.org/registry" } },
      runtime: { ...exampleRelay.runtime, nodeUrl: "https://node.brightchain.org" },
    };
    const config = loadRuntimeConfig(parseEnvironmentFile(renderGatewayEnv(node)));
    expect(config.registryUrl).toBe("https://node.brightchain.org/registry");
    expect(config.registryFile).toBeUndefined();
    expect(config.nodeUrl).toBe("https://node.brightchain.org");
  });

  it("names the DKIM key on the primary only, where it exists", () => {
    expect(renderGatewayEnv(examplePrimary)).toContain("GATEWAY_DKIM_KEY_PATH=/etc/dkim/default.private\n");
    expect(renderGatewayEnv(exampleRelay)).not.toContain("GATEWAY_DKIM_KEY_PATH");
    expect(renderGatewayEnv(exampleRelay)).toContain("GATEWAY_DKIM_SELECTOR=default\n");
  });

  it("is readable by the brightchain group only, and secret when it holds the SASL password", () => {
    const [withPassword] = gatewayEnvFiles(examplePrimary, exampleSecrets);
    expect(withPassword).toMatchObject({
      path: "/etc/brightchain/gateway.env",
      mode: 0o640,
      owner: "root",
      group: "brightchain",
      secret: true,
    });
    expect(withPassword!.notify).toEqual(["brightchain-lookup", "brightchain-inbound"]);
    const [relay] = gatewayEnvFiles(exampleRelay, exampleSecrets);
    expect(relay!.secret).toBe(false);
    expect(relay!.content).not.toContain("correct horse");
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

  it("refuses a value systemd would split across lines", () => {
    const node: GatewayNode = { ...examplePrimary, dkim: { ...examplePrimary.dkim, selector: "a\nb" } };
    expect(() => renderGatewayEnv(node)).toThrow(/GATEWAY_DKIM_SELECTOR value "a\\nb" contains a line break/);
  });
});
