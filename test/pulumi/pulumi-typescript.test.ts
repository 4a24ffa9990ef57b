// `pulumi up` does not load the program the way our tests do (tsx, vitest): @pulumi/pulumi's cmd/run registers
// its own TypeScript loader (the vendored ts-node 7 with the project's typescript, type-checking) and reads
// tsconfig.json from the working directory only, falling back to its own non-strict defaults, under which the
// config schema's types do not check and the program never starts. This runs that registration, with run.js's
// options, from both directories Pulumi may start in, and loads every module the program imports.
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.join(__dirname, "..", "..");
const PROGRAM_MODULES = [
  "model/config.ts",
  "plan/index.ts",
  "plan/artifacts.ts",
  "render/index.ts",
  "render/dns.ts",
  "pulumi/index.ts",
];

/** What run.js does before it requires the program (its TypeScript branch for a CommonJS project). */
const driver = `
const fs = require("fs");
const path = require("path");
const tsutils = require(${JSON.stringify(path.join(root, "node_modules/@pulumi/pulumi/tsutils"))});
const tsConfigPath = process.env.PULUMI_NODEJS_TSCONFIG_PATH ?? "tsconfig.json";
const skipProject = !fs.existsSync(tsConfigPath);
const compilerOptions = tsutils.loadTypeScriptCompilerOptions(tsConfigPath);
const { tsnodeRequire, typescriptRequire } = tsutils.typeScriptRequireStrings();
require(tsnodeRequire).register({
  compiler: typescriptRequire,
  transpileOnly: compilerOptions.noCheck,
  project: tsConfigPath,
  skipProject,
  compilerOptions: { target: "ES2020", module: "nodenext", moduleResolution: "nodenext", sourceMap: "true", ...compilerOptions },
});
for (const m of ${JSON.stringify(PROGRAM_MODULES)}) require(path.join(${JSON.stringify(path.join(root, "infra"))}, m));
console.log(skipProject ? "defaults" : "project tsconfig");
`;

describe("the program under Pulumi's own TypeScript loader", () => {
  it.each([
    ["infra/ (the program's directory)", path.join(root, "infra")],
    ["the project root", root],
  ])(
    "type-checks and loads from %s with the repository's compiler options",
    (_where, cwd) => {
      const run = spawnSync(process.execPath, ["-e", driver], { cwd, encoding: "utf8", timeout: 120_000 });
      expect(run.stderr, run.stderr).not.toMatch(/TSError|Unable to compile/);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout.trim()).toBe("project tsconfig");
    },
    120_000,
  );
});
