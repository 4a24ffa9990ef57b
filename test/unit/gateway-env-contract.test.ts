// The gateway.env contract holds both ways: every variable the renderer writes is read by a program that loads
// its file, every variable a program reads is in the contract under that program, and every variable in the
// contract is rendered for some node. The loaders are watched reading a real rendered file.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { readStackConfig, parseGatewayConfig } from "../../infra/model/config";
import type { GatewayNode } from "../../infra/model/types";
import { RUNTIME_DOC, withGatewayEnvTable } from "../../infra/render/gateway-env-docs";
import { envFileVariables, gatewayEnvFiles, nodePrograms, sendEnvFile } from "../../infra/render/gateway-env";
import { runtimeUnitFiles } from "../../infra/render/systemd";
import { loadInboundConfig, loadLookupConfig, loadSendConfig, loadStoreConfig } from "../../runtime/src/config";
import {
  GATEWAY_ENV,
  GATEWAY_ENV_NAMES,
  GATEWAY_PROGRAMS,
  envFileOf,
  programsLoading,
  type GatewayEnvName,
  type GatewayEnvVariable,
  type GatewayProgram,
} from "../../shared/gateway-env-contract";
import { examplePrimary, exampleSecrets, nodeMatrix } from "../fixtures/nodes";
import { parseEnvironmentFile } from "../helpers/env-file";

const loaders: Record<GatewayProgram, (env: Record<string, string | undefined>) => unknown> = {
  "brightchain-lookup": loadLookupConfig,
  "brightchain-inbound": loadInboundConfig,
  "brightchain-send": loadSendConfig,
  "brightchain-store": loadStoreConfig,
};

/** The names a loader looks up while it parses `env`. */
function namesRead(program: GatewayProgram, env: Record<string, string>): Set<string> {
  const read = new Set<string>();
  const watched = new Proxy(env, {
    get(target, name) {
      if (typeof name === "string") read.add(name);
      return target[name as string];
    },
  });
  loaders[program](watched);
  return read;
}

const remoteNode: GatewayNode = {
  ...examplePrimary,
  lookup: { ...examplePrimary.lookup, registry: { kind: "http", url: "https://node.brightchain.org/registry" } },
  runtime: { ...examplePrimary.runtime, nodeUrl: "https://node.brightchain.org" },
};
const nodes = [...nodeMatrix, { name: "primary with the node API", node: remoteNode }];

const readersOf = (name: GatewayEnvName): readonly GatewayProgram[] => GATEWAY_ENV[name].readers;
const contractFor = (program: GatewayProgram): GatewayEnvName[] =>
  GATEWAY_ENV_NAMES.filter((name) => readersOf(name).includes(program));

describe("the gateway.env contract", () => {
  it.each(nodes)("$name: rendered == read, file by file", ({ node }) => {
    for (const file of ["daemons", "send"] as const) {
      const programs = programsLoading(file).filter((program) => nodePrograms(node).includes(program));
      const env = Object.fromEntries(envFileVariables(node, file, exampleSecrets));
      const read = new Set(programs.flatMap((program) => [...namesRead(program, env)]));
      // Nothing written that no program loading the file reads.
      for (const name of Object.keys(env)) expect(read, `${file}: ${name} is rendered but not read`).toContain(name);
      // Every variable a program reads is in the contract under that program, and each one with a default or
      // required is written: the host's behaviour never rests on a default the file does not show.
      for (const program of programs) {
        expect([...namesRead(program, env)].sort()).toEqual(contractFor(program).sort());
        for (const name of contractFor(program)) {
          const variable: GatewayEnvVariable = GATEWAY_ENV[name];
          if (variable.default !== undefined || variable.required) expect(env, `${program}: ${name}`).toHaveProperty(name);
        }
      }
    }
  });

  it("every variable in the contract is rendered for some node and read by some program", () => {
    const rendered = new Set(
      nodes.flatMap(({ node }) =>
        (["daemons", "send"] as const).flatMap((file) => envFileVariables(node, file, exampleSecrets).map(([name]) => name)),
      ),
    );
    expect([...rendered].sort()).toEqual([...GATEWAY_ENV_NAMES].sort());
    for (const name of GATEWAY_ENV_NAMES) expect(readersOf(name).length, name).toBeGreaterThan(0);
    for (const program of GATEWAY_PROGRAMS) expect(contractFor(program).length, program).toBeGreaterThan(0);
  });

  it("a secret is only ever in the file no daemon loads", () => {
    for (const name of GATEWAY_ENV_NAMES) {
      if ((GATEWAY_ENV[name] as GatewayEnvVariable).secret) expect(envFileOf(name), name).toBe("send");
    }
    for (const { node } of nodes) {
      const [daemons] = gatewayEnvFiles(node, exampleSecrets);
      expect(daemons!.content).not.toContain(exampleSecrets.submissionUsers[0]!.password);
    }
  });

  it.each(nodes.filter(({ node }) => node.role === "primary"))(
    "$name: the daemons load gateway.env and cannot open brightchain-send.env",
    ({ node }) => {
      for (const unit of runtimeUnitFiles(node).filter((file) => /brightchain-[a-z]+\.service$/.test(file.path))) {
        const environmentFiles = unit.content.split("\n").filter((line) => line.startsWith("EnvironmentFile="));
        expect(environmentFiles, unit.path).toEqual([`EnvironmentFile=${node.runtime.envFile}`]);
        expect(unit.content, unit.path).toContain(`InaccessiblePaths=-${sendEnvFile(node)}\n`);
      }
    },
  );

  it("one set of defaults: a stack that leaves them unset renders the contract's defaults", () => {
    const flat = readStackConfig(path.resolve(__dirname, "../.."), "primary");
    for (const key of ["gateway:spamProbableScore", "gateway:maxMessageSize", "gateway:lookupPort", "gateway:spoolDir"]) {
      delete flat[key];
    }
    const env = Object.fromEntries(envFileVariables(parseGatewayConfig(flat), "daemons"));
    for (const name of GATEWAY_ENV_NAMES) {
      const variable: GatewayEnvVariable = GATEWAY_ENV[name];
      if (variable.default !== undefined && name in env) expect(env[name], name).toBe(variable.default);
    }
  });

  it("the rendered file parses under systemd's rules to exactly the values the loaders take", () => {
    const [daemons] = gatewayEnvFiles(examplePrimary, exampleSecrets);
    expect(parseEnvironmentFile(daemons!.content)).toEqual(Object.fromEntries(envFileVariables(examplePrimary, "daemons")));
  });

  it("docs/runtime.md's table is the contract's (npm run docs:env rewrites it); every optional variable says what unset means", () => {
    const doc = readFileSync(RUNTIME_DOC, "utf8");
    expect(doc, "docs/runtime.md is stale: run npm run docs:env").toBe(withGatewayEnvTable(doc));
    for (const name of GATEWAY_ENV_NAMES) {
      const variable: GatewayEnvVariable = GATEWAY_ENV[name];
      if (variable.default === undefined && !variable.required) expect(variable.whenUnset, name).toBeDefined();
    }
  });
});
