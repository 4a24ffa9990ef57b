// docs/configuration.md's key tables and docs/stack-config.schema.json are generated from the schema: a change to
// the schema without `npm run docs:config` fails here, naming the file.
import { readFileSync } from "node:fs";
import { Ajv } from "ajv";
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

  it("the JSON Schema accepts the example stack files and refuses a misspelt key and a bad value, as an editor would", () => {
    // Formats (ipv4, ipv6) are the editor's business; the parser checks them anyway.
    const validate = new Ajv({ allErrors: true, validateFormats: false }).compile(stackFileJsonSchema());
    const stackFile = (stack: string) =>
      parseYaml(readFileSync(path.join(repo, `Pulumi.${stack}.yaml`), "utf8")) as { config: object };
    for (const stack of ["primary", "relay"]) expect(validate(stackFile(stack)), JSON.stringify(validate.errors)).toBe(true);
    const { config } = stackFile("primary");
    expect(validate({ config: { ...config, "gateway:spamEngin": "rspamd" } })).toBe(false);
    expect(validate({ config: { ...config, "gateway:os": "debian" } })).toBe(false);
    expect(validate({ config: { ...config, "gateway:sshPrivateKey": { secure: "v1:abc" }, "cloudflare:apiToken": "x" } })).toBe(
      true,
    );
  });
});
