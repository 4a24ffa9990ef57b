// docs/configuration.md's key tables and docs/stack-config.schema.json, generated from the schema (schema.ts),
// so neither can drift from what the parser accepts. `npm run docs:config` writes them; a unit test fails when
// the checked-in files are not what this module generates.
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { toJsonSchema } from "@valibot/to-json-schema";
import { format, resolveConfig } from "prettier";
import * as v from "valibot";
import { gatewayEntries, type FieldMetadata, type GatewayConfigKey } from "./schema";

type Json = Record<string, unknown>;

/** The markers around the generated part of docs/configuration.md: the rest of the page is written by hand. */
export const DOC_BEGIN =
  "<!-- generated from infra/model/schema.ts by `npm run docs:config`: edit the schema, not this table -->";
export const DOC_END = "<!-- end of generated tables -->";

/**
 * valibot's converter gives each leaf as the scalar it reads (a string, or a number from JSON); the stack file
 * holds the YAML value the leaf's `json` metadata describes, so that replaces the converted leaf. The docs-only
 * metadata (scope, defaultText) is dropped.
 */
function yamlShape(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(yamlShape);
  if (typeof node !== "object" || node === null) return node;
  const { json, ...rest } = node as Json & FieldMetadata;
  const converted = Object.fromEntries(
    Object.entries(rest)
      .filter(([k]) => !DOCS_ONLY.includes(k))
      .map(([k, value]) => [k, yamlShape(value)]),
  );
  if (json === undefined) return converted;
  const kept = Object.fromEntries(["description", "default"].filter((k) => k in converted).map((k) => [k, converted[k]]));
  return { ...json, ...kept };
}
const DOCS_ONLY = ["scope", "defaultText", "accepted"];

function fieldJson(name: GatewayConfigKey): Json {
  const json = yamlShape(toJsonSchema(gatewayEntries[name], { errorMode: "ignore" })) as Json;
  // Each field is converted on its own; only the document's root names the draft.
  delete json.$schema;
  return json;
}

const metadataOf = (name: GatewayConfigKey): FieldMetadata => v.getMetadata(gatewayEntries[name]) as FieldMetadata;

/** A `secure:` value, as `pulumi config set --secret` writes any key. */
const SECURE_VALUE = {
  type: "object",
  properties: { secure: { type: "string" } },
  required: ["secure"],
  additionalProperties: false,
};

/** JSON Schema of a Pulumi.<stack>.yaml: its `config:` block, for editors to complete and check. */
export function stackFileJsonSchema(): Json {
  const names = Object.keys(gatewayEntries) as GatewayConfigKey[];
  const properties = Object.fromEntries(
    names.map((name) => {
      const { description, ...shape } = fieldJson(name);
      // Every key may be stored encrypted; a secret is normally nothing else.
      return [`gateway:${name}`, { description, anyOf: [shape, SECURE_VALUE] }];
    }),
  );
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    title: "BrightChain Email Gateway stack file (Pulumi.<stack>.yaml)",
    description:
      "Generated from infra/model/schema.ts by `npm run docs:config`. Rules between keys (the primary in the fleet, MX order, scores) are checked by `gateway render` and `pulumi preview`, not here.",
    type: "object",
    properties: {
      config: {
        type: "object",
        properties,
        // Other namespaces (cloudflare:, the project's own) are theirs; a gateway: key must be one of ours.
        propertyNames: { anyOf: [{ not: { pattern: "^gateway:" } }, { enum: Object.keys(properties) }] },
      },
    },
  };
}

/** The accepted text of the leaf inside a field (its error message), looking through pipes and optional(). */
function leafAccepted(schema: v.GenericSchema): string | undefined {
  const own = (v.getMetadata(schema as v.SchemaWithPipe<[v.GenericSchema]>) as FieldMetadata).accepted;
  if (own !== undefined) return own;
  const inner = schema as { pipe?: v.GenericSchema[]; type: string; wrapped?: v.GenericSchema; item?: v.GenericSchema };
  if (inner.pipe !== undefined && inner.pipe[0] !== schema) return leafAccepted(inner.pipe[0]!);
  if (inner.type === "optional" && inner.wrapped) return leafAccepted(inner.wrapped);
  if (inner.type === "array" && inner.item) {
    const item = leafAccepted(inner.item);
    return item === undefined ? "a list" : `a list, each ${item}`;
  }
  if (inner.type.endsWith("object")) return "a mapping";
  return undefined;
}

function defaultText(name: GatewayConfigKey): string {
  const schema = gatewayEntries[name];
  const { defaultText } = metadataOf(name);
  if (defaultText !== undefined) return defaultText;
  if (schema.type !== "optional") return "required";
  const value = v.getDefault(schema as v.OptionalSchema<v.GenericSchema, unknown>);
  if (value === undefined) return "none";
  return `\`${typeof value === "string" ? value : JSON.stringify(value)}\``;
}

const escapeCell = (text: string): string => text.replace(/\|/g, "\\|");

function table(scope: NonNullable<FieldMetadata["scope"]>): string {
  const rows = (Object.keys(gatewayEntries) as GatewayConfigKey[])
    .filter((name) => metadataOf(name).scope === scope)
    .map((name) => {
      const accepted = leafAccepted(gatewayEntries[name]) ?? "";
      const description = v.getDescription(gatewayEntries[name]) ?? "";
      return `| \`gateway:${name}\` | ${escapeCell(defaultText(name))} | ${escapeCell(accepted)} | ${escapeCell(description)} |`;
    });
  return ["| key | default | accepted | what it is |", "|---|---|---|---|", ...rows].join("\n");
}

/** The generated part of docs/configuration.md, markers included. */
export function configurationTables(): string {
  return [
    DOC_BEGIN,
    "",
    "## Domain-wide keys (Pulumi.yaml)",
    "",
    table("domain"),
    "",
    "## Per-node keys (Pulumi.<stack>.yaml)",
    "",
    table("node"),
    "",
    "## Secrets",
    "",
    "Set them with `pulumi config set --secret`; the stack file then holds only ciphertext. A problem with one",
    "names the key and shows `(secret)`, never the value.",
    "",
    table("secret"),
    "",
    DOC_END,
  ].join("\n");
}

/** docs/configuration.md with its generated part replaced: the text a checked-in copy must equal. */
export function withGeneratedTables(doc: string): string {
  const begin = doc.indexOf(DOC_BEGIN);
  const end = doc.indexOf(DOC_END);
  if (begin < 0 || end < begin) throw new Error(`docs/configuration.md has lost its markers ${DOC_BEGIN} … ${DOC_END}`);
  return doc.slice(0, begin) + configurationTables() + doc.slice(end + DOC_END.length);
}

const REPO = path.resolve(__dirname, "../..");
export const CONFIGURATION_DOC = path.join(REPO, "docs/configuration.md");
export const STACK_SCHEMA_FILE = path.join(REPO, "docs/stack-config.schema.json");

/** Both generated files as they must be checked in: path → content (the JSON as the repository's prettier writes it). */
export async function generatedDocs(): Promise<Map<string, string>> {
  const prettier = (await resolveConfig(STACK_SCHEMA_FILE)) ?? {};
  const schema = await format(JSON.stringify(stackFileJsonSchema()), { ...prettier, parser: "json" });
  return new Map([
    [CONFIGURATION_DOC, withGeneratedTables(readFileSync(CONFIGURATION_DOC, "utf8"))],
    [STACK_SCHEMA_FILE, schema],
  ]);
}

if (require.main === module) {
  void generatedDocs().then((files) => {
    for (const [file, content] of files) writeFileSync(file, content);
    process.stdout.write(`wrote ${[...files.keys()].map((f) => path.relative(REPO, f)).join(" and ")}\n`);
  });
}
