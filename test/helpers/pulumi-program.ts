// Runs the real Pulumi program (infra/index.ts) under pulumi.runtime.setMocks for one example stack and records
// every resource it registers. The program is imported only after setMocks: a static import would run it
// before the mocks exist and silently register nothing. One stack per test file (vitest isolates files).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { readStackConfigFiles } from "../../infra/model/config";
import type { GatewayNode } from "../../infra/model/types";
import { GatewayHost, type GatewayHostArgs } from "../../infra/pulumi";
import { hostDirectories, hostFiles } from "../../infra/render";
import { exampleSecrets } from "../fixtures/nodes";

export interface RegisteredResource {
  type: string;
  name: string;
  /** Inputs as the provider would receive them, secrets unwrapped. */
  inputs: Record<string, unknown>;
  /** Whether each input arrived as a Pulumi secret. */
  secretInputs: string[];
}

export const REPO_ROOT = join(__dirname, "..", "..");
export const ZONE_ID = "zone-brightchain-org";

/** What Cloudflare answers for a zone whose DNSSEC was just turned on (algorithm 13, SHA-256 digest). */
export const MOCK_DNSSEC = {
  status: "pending",
  ds: "brightchain.org. 3600 IN DS 2371 13 2 C2B5D8C1E3B0A7E1F1F8BDB1B0B3C9E8B1A9E1E4F0E7B2D7C4A1B9E6D3F2A5C8",
  keyTag: 2371,
  algorithm: "13",
  digestType: "2",
  digest: "C2B5D8C1E3B0A7E1F1F8BDB1B0B3C9E8B1A9E1E4F0E7B2D7C4A1B9E6D3F2A5C8",
  flags: 257,
  publicKey: "mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==",
};

/**
 * What the DANE key step prints on a host, for the lineages its command reads: `<lineage> <sha256>`, the hash
 * standing in for the key's SubjectPublicKeyInfo digest (a fixed function of the lineage name: mockDaneHash).
 */
export function mockDaneKeys(command: string): string {
  return [...command.matchAll(/\/etc\/letsencrypt\/live\/([^/\s']+)\/privkey\.pem/g)]
    .map((m) => `${m[1]} ${mockDaneHash(m[1]!)}`)
    .join("\n");
}

export function mockDaneHash(lineage: string): string {
  return createHash("sha256").update(`spki of ${lineage}`).digest("hex");
}

let previousDkim: string | undefined;
/** The previous selector's record file a rotating primary's dkim-previous-key step prints (one key per file). */
export function previousDkimTxt(): string {
  previousDkim ??= generateDkimTxt("previous", "brightchain.org");
  return previousDkim;
}

/** Resolves an Output in a mock run (apply runs once the value is known). */
export function outputValue<T>(output: pulumi.Input<T> | undefined): Promise<T> {
  return new Promise((resolve) => pulumi.output(output as pulumi.Input<T>).apply((v) => resolve(v as T)));
}

/** A real opendkim-genkey <selector>.txt, as the DKIM step prints it on the host. */
export function generateDkimTxt(selector: string, domain: string): string {
  const dir = mkdtempSync(join(tmpdir(), "pulumi-dkim-"));
  try {
    execFileSync("opendkim-genkey", ["-b", "2048", "-h", "sha256", "-s", selector, "-d", domain, "-D", dir]);
    return readFileSync(join(dir, `${selector}.txt`), "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function isSecret(value: unknown): boolean {
  return pulumi.runtime.unwrapRpcSecret(value) !== value;
}

/**
 * The stack's configuration exactly as `pulumi up` hands it to the program: Pulumi.yaml + Pulumi.<stack>.yaml,
 * plus the secrets a real stack holds encrypted.
 */
export function stackConfig(stack: string): { config: Record<string, string>; secretKeys: string[] } {
  const { values } = readStackConfigFiles(REPO_ROOT, stack);
  const secretValues: Record<string, string> = {
    "gateway:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n",
    "gateway:certbotCloudflareToken": exampleSecrets.certbotCloudflareToken!,
    "cloudflare:apiToken": "cf-api-token-not-real",
  };
  if (values["gateway:role"] === "primary")
    secretValues["gateway:submissionUsers"] = JSON.stringify(exampleSecrets.submissionUsers);
  return { config: { ...values, ...secretValues }, secretKeys: Object.keys(secretValues) };
}

export interface MockedProgram {
  program: typeof import("../../infra/index");
  resources: RegisteredResource[];
  /** stdout the mocked DKIM step returned (primary only). */
  dkimTxt: string;
}

export interface RunOptions {
  /**
   * `pulumi preview` of a first deploy: every command's stdout is unknown (nothing has run), and the run returns
   * once the resource named `until` has been registered instead of waiting for outputs that never resolve.
   */
  preview?: { until: string };
}

/** `overrides` replace configuration values, e.g. a bad one to see the program refuse it. */
export async function runProgram(
  stack: string,
  overrides: Record<string, string> = {},
  options: RunOptions = {},
): Promise<MockedProgram> {
  const resources: RegisteredResource[] = [];
  const dkimTxt = generateDkimTxt("default", "brightchain.org");
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const inputs: Record<string, unknown> = {};
        const secretInputs: string[] = [];
        for (const [key, value] of Object.entries(args.inputs as Record<string, unknown>)) {
          if (isSecret(value)) secretInputs.push(key);
          inputs[key] = pulumi.runtime.unwrapRpcSecret(value);
        }
        resources.push({ type: args.type, name: args.name, inputs, secretInputs });
        const state: Record<string, unknown> = { ...inputs };
        if (args.type === "cloudflare:index/zoneDnssec:ZoneDnssec" && options.preview === undefined)
          Object.assign(state, MOCK_DNSSEC);
        if (args.type === "command:remote:Command" && options.preview === undefined) {
          state.stdout = args.name.endsWith("-dkim-key")
            ? dkimTxt
            : args.name.endsWith("-dkim-previous-key")
              ? previousDkimTxt()
              : args.name.endsWith("-dane-keys")
                ? mockDaneKeys(String((inputs as { create?: unknown }).create))
                : "";
          state.stderr = "";
        }
        return { id: `${args.name}-id`, state };
      },
      call(args) {
        if (args.token === "cloudflare:index/getZone:getZone") {
          return { id: ZONE_ID, zoneId: ZONE_ID, name: (args.inputs as { filter?: { name?: string } }).filter?.name ?? "" };
        }
        return args.inputs;
      },
    },
    "brightchain-gateway",
    stack,
    options.preview !== undefined,
  );
  const { config, secretKeys } = stackConfig(stack);
  pulumi.runtime.setAllConfig({ ...config, ...overrides }, secretKeys);

  // The program installs whatever runtime/dist holds; a small stand-in keeps the unit suite free of a build.
  const dist = mkdtempSync(join(tmpdir(), "pulumi-runtime-dist-"));
  writeFileSync(join(dist, "brightchain-lookup.cjs"), "#!/usr/bin/env node\n// stand-in for the bundled lookup service\n");
  writeFileSync(join(dist, "brightchain-inbound.cjs"), "#!/usr/bin/env node\n// stand-in for the bundled inbound processor\n");
  process.env.GATEWAY_RUNTIME_DIST = dist;
  try {
    const program = await import("../../infra/index.js");
    if (options.preview !== undefined) {
      const until = options.preview.until;
      const deadline = Date.now() + 10_000;
      while (!resources.some((r) => r.name === until)) {
        if (Date.now() > deadline) throw new Error(`preview: ${until} was never registered`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return { program, resources, dkimTxt };
    }
    // The final verification runs after every other host step, and records resolve from their own resources:
    // once both are known, everything the program creates has been registered.
    await outputValue(program.verified);
    await outputValue(program.records);
    return { program, resources, dkimTxt };
  } finally {
    delete process.env.GATEWAY_RUNTIME_DIST;
    rmSync(dist, { recursive: true, force: true });
  }
}

/**
 * The inputs of every command one extra GatewayHost registers, by step id, with the node's rendered main.cf
 * passed through `mainCfEdit` first. Two hosts with different names and edits show which steps a change re-runs.
 */
export async function hostCommandInputs(
  run: MockedProgram,
  name: string,
  host: { node: GatewayNode } & Pick<GatewayHostArgs, "artifacts" | "connection">,
  mainCfEdit: (text: string) => string,
): Promise<Map<string, Record<string, unknown>>> {
  const files = hostFiles(host.node, exampleSecrets).map((f) =>
    f.path === "/etc/postfix/main.cf" ? { ...f, content: mainCfEdit(f.content) } : f,
  );
  const component = new GatewayHost(name, { ...host, files, directories: hostDirectories(host.node) });
  await outputValue(component.verified);
  const prefix = `${name}-`;
  return new Map(
    run.resources
      // The plan's steps only: the teardown (the node's delete) is no step.
      .filter((r) => r.type === "command:remote:Command" && r.name.startsWith(prefix) && r.name !== `${prefix}teardown`)
      .map((r) => [r.name.slice(prefix.length), r.inputs]),
  );
}
