// docs/configuration.md's key tables and docs/stack-config.schema.json are generated from the schema: a change to
// the schema without `npm run docs:config` fails here, naming the file.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { generatedDocs, stackFileJsonSchema } from "../../infra/model/config-docs";
import { GATEWAY_CONFIG_KEYS } from "../../infra/model/config";

const repo = path.resolve(__dirname, "../..");

describe("generated configuration docs", () => {
  it("the checked-in docs/configuration.md and docs/stack-config.schema.json are current (else: npm run docs:config)", async () => {
    for (const [file, content] of await generatedDocs()) {
      expect(readFileSync(file, "utf8"), `${path.relative(repo, file)} is stale: run npm run docs:config`).toBe(content);
    }
  });

  it("every key has a description, and the JSON Schema lists every key and each example stack's keys", () => {
    for (const [name, description] of Object.entries(GATEWAY_CONFIG_KEYS)) expect(description, name).not.toBe("");
    const properties = (stackFileJsonSchema() as { properties: { config: { properties: Record<string, unknown> } } }).properties
      .config.properties;
    expect(Object.keys(properties)).toEqual(Object.keys(GATEWAY_CONFIG_KEYS).map((name) => `gateway:${name}`));
    for (const stack of ["primary", "relay"]) {
      const config = (parseYaml(readFileSync(path.join(repo, `Pulumi.${stack}.yaml`), "utf8")) as { config: object }).config;
      for (const key of Object.keys(config)) expect(properties, `${stack}: ${key}`).toHaveProperty([key]);
    }
  });
});
