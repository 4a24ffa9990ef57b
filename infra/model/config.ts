// Pulumi configuration → GatewayNode. `flat` is the merged configuration as `pulumi.runtime.allConfig()` returns
// it (keys such as "gateway:hostname", every value a string, objects and arrays JSON-encoded), so the Pulumi
// program, the CLI and the tests all parse exactly the same thing. What each key accepts, its default and the
// rules between keys are the schema in schema.ts; this file decodes Pulumi's strings for it and turns its issues
// into one error listing every problem.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as v from "valibot";
import { parse as parseYaml, YAMLError } from "yaml";
import {
  GatewayConfigSchema,
  GatewayDeploySchema,
  gatewayEntries,
  SECRET_KEYS,
  STRUCTURED_KEYS,
  type GatewayConfigKey,
  type GatewayStack,
  type SshConnection,
} from "./schema";
import type { GatewayNode, GatewaySecrets } from "./types";

export { HOST_KEY_HOWTO, type GatewayConfigKey, type GatewayStack, type SshConnection } from "./schema";

/** One bad key: its name as written (gateway:fleet[2].ipv4), its value (never a secret's), what is accepted. */
export interface ConfigProblem {
  key: string;
  /** undefined: the key is not set. */
  value: string | undefined;
  accepted: string;
}

const problemText = ({ key, value, accepted }: ConfigProblem): string =>
  value === undefined
    ? `${key} is not set; expected ${accepted}`
    : `${key}=${JSON.stringify(value)} is invalid; expected ${accepted}`;

/**
 * Every problem of a configuration at once, so a stack with five mistakes is fixed in one pass. The message holds
 * the whole list (one problem: the line alone); key, value and accepted are the first problem's.
 */
export class GatewayConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  readonly key: string;
  readonly value: string | undefined;
  readonly accepted: string;

  constructor(key: string, value: string | undefined, accepted: string);
  constructor(problems: readonly ConfigProblem[]);
  constructor(keyOrProblems: string | readonly ConfigProblem[], value?: string, accepted = "") {
    const problems = typeof keyOrProblems === "string" ? [{ key: keyOrProblems, value, accepted }] : keyOrProblems;
    super(
      problems.length === 1
        ? problemText(problems[0]!)
        : `${problems.length} configuration problems:\n${problems.map((p) => `  - ${problemText(p)}`).join("\n")}`,
    );
    this.name = "GatewayConfigError";
    this.problems = problems;
    ({ key: this.key, value: this.value, accepted: this.accepted } = problems[0]!);
  }
}

export type FlatConfig = Record<string, string>;

const NS = "gateway:";

/** Every `gateway:` key a node's configuration may hold, with what it means (descriptions live in the schema). */
export const GATEWAY_CONFIG_KEYS = Object.fromEntries(
  Object.entries(gatewayEntries).map(([name, schema]) => [name, v.getDescription(schema) ?? ""]),
) as Record<GatewayConfigKey, string>;

/** Shown instead of an unknown key's value. */
export const UNKNOWN_KEY_VALUE = "(value not shown)";
/** Shown instead of a secret's value. */
const SECRET_VALUE = "(secret)";

/** Levenshtein distance, for "the closest key" in an unknown-key error. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

const KNOWN_KEYS = Object.keys(gatewayEntries) as GatewayConfigKey[];
const isKnownKey = (name: string): name is GatewayConfigKey => (KNOWN_KEYS as string[]).includes(name);

function unknownKeyProblem(key: string): ConfigProblem {
  const name = key.slice(NS.length);
  const likely = KNOWN_KEYS.find((candidate) => editDistance(candidate.toLowerCase(), name.toLowerCase()) <= 2);
  const hint =
    name === "ipv4" || name === "ipv6"
      ? "addresses are set once, in this node's gateway:fleet entry; accepted keys: "
      : likely !== undefined
        ? `${NS}${likely} (the closest key); every key: `
        : "one of the keys ";
  // The value is never shown: a misspelt secret key (gateway:sshPrivatekey) arrives here decrypted, and
  // Pulumi's masking of secret values misses them once JSON-escaped in a message.
  return { key, value: UNKNOWN_KEY_VALUE, accepted: hint + KNOWN_KEYS.map((n) => NS + n).join(", ") };
}

/** What a list or object key accepts, for a value that is not JSON at all. */
const STRUCTURED_ACCEPTED: Record<(typeof STRUCTURED_KEYS)[number], string> = {
  fleet: 'a list of {hostname, ipv4, ipv6?}, e.g. [{"hostname":"mail.brightchain.org","ipv4":"203.0.113.10"}]',
  dmarc: '{"policy":"none|quarantine|reject","rua":["mailto:…"],"pct":100}',
  mtaSts: '{"mode":"testing|enforce|none","maxAge":604800}',
  tlsRpt: '{"rua":["mailto:tls-reports@brightchain.org"]}',
  caa: '{"issuer":"letsencrypt.org","accountUri":"https://…/acme/acct/…","iodef":"mailto:…"}',
  dane: '{"enabled":true,"lineage":"mail.brightchain.org","nextLineage":"…","previousLineage":"…"}',
  dkimPrevious: '{"selector":"default","keepUntil":"2026-03-31"}',
  mynetworks: 'a list of networks in Postfix syntax, e.g. ["127.0.0.0/8","[::1]/128"]',
  recipients: 'a list of addresses in gateway:domain, e.g. ["alice@brightchain.org"]',
  ssh: '{"host":"203.0.113.10","user":"root","port":22,"hostKey":"ssh-ed25519 …"}',
  submissionUsers: 'a list of {username, password}, e.g. [{"username":"brightchain-node","password":"…"}]',
  metrics: '{"lookupPort":9526,"inboundPort":9527,"postfixPort":9154,"scrapers":["203.0.113.0/24"]}',
};

/**
 * The schema's input from Pulumi's strings: `gateway:` keys only (providers' own namespaces are theirs), blank
 * values as unset, lists and objects parsed from JSON. Unknown keys and unparsable JSON are problems already.
 */
function decode(
  flat: FlatConfig,
  only?: readonly GatewayConfigKey[],
): { input: Record<string, unknown>; problems: ConfigProblem[] } {
  const input: Record<string, unknown> = {};
  const problems: ConfigProblem[] = [];
  for (const [key, raw] of Object.entries(flat)) {
    if (!key.startsWith(NS)) continue;
    const name = key.slice(NS.length);
    if (!isKnownKey(name)) {
      if (only === undefined) problems.push(unknownKeyProblem(key));
      continue;
    }
    if (only !== undefined && !only.includes(name)) continue;
    // A private key keeps its final newline (OpenSSH refuses a key file without it); every other value is trimmed.
    const text = name === "sshPrivateKey" ? raw : raw.trim();
    if (text.trim() === "") continue;
    if (!(STRUCTURED_KEYS as readonly string[]).includes(name)) {
      input[name] = text;
      continue;
    }
    try {
      input[name] = JSON.parse(text);
    } catch {
      const accepted = STRUCTURED_ACCEPTED[name as keyof typeof STRUCTURED_ACCEPTED];
      problems.push({ key, value: SECRET_KEYS.includes(name) ? SECRET_VALUE : text, accepted });
    }
  }
  return { input, problems };
}

/** A valibot issue as the operator reads it: the key as written in the stack file, the value, what is accepted. */
function issueProblem(issue: v.BaseIssue<unknown>): ConfigProblem {
  const keys = (issue.path ?? []).map((item) => item.key as string | number);
  const key = keys.reduce<string>(
    (label, k, i) => (i === 0 ? NS + String(k) : typeof k === "number" ? `${label}[${k}]` : `${label}.${k}`),
    "",
  );
  const unknownField = issue.type.endsWith("strict_object") && issue.expected === "never";
  const secret = SECRET_KEYS.includes(keys[0] as GatewayConfigKey) && keys[keys.length - 1] !== "username";
  const input = issue.input;
  const value =
    input === undefined
      ? undefined
      : unknownField
        ? UNKNOWN_KEY_VALUE
        : secret
          ? SECRET_VALUE
          : typeof input === "string"
            ? input
            : JSON.stringify(input);
  return { key: key || "gateway:", value, accepted: issue.message };
}

const ORDER = new Map(KNOWN_KEYS.map((name, i) => [NS + name, i]));
/** Problems in the docs' key order (unknown keys first, as they are usually typos of the rest). */
const byKey = (a: ConfigProblem, b: ConfigProblem): number =>
  (ORDER.get(a.key.replace(/[[.].*$/, "")) ?? -1) - (ORDER.get(b.key.replace(/[[.].*$/, "")) ?? -1);

function parseWith<S extends v.GenericSchema>(schema: S, flat: FlatConfig, only?: readonly GatewayConfigKey[]): v.InferOutput<S> {
  const { input, problems } = decode(flat, only);
  const result = v.safeParse(schema, input, { abortEarly: false });
  problems.push(...(result.issues ?? []).map(issueProblem));
  if (problems.length > 0 || !result.success) throw new GatewayConfigError(problems.sort(byKey));
  return result.output;
}

export interface ParseOptions {
  /** `pulumi up`: also require what only a deploy needs (the pinned host key, the secrets the files carry). */
  deploy?: boolean;
}

/** The node model, its secrets and the SSH access, from merged configuration; throws GatewayConfigError listing every problem. */
export function parseGatewayStack(flat: FlatConfig, options: ParseOptions = {}): GatewayStack {
  return parseWith(options.deploy ? GatewayDeploySchema : GatewayConfigSchema, flat);
}

/** Builds the node model from merged configuration; throws GatewayConfigError listing every problem. */
export function parseGatewayConfig(flat: FlatConfig): GatewayNode {
  return parseGatewayStack(flat).node;
}

const secretsSchema = v.object({
  submissionUsers: gatewayEntries.submissionUsers,
  certbotCloudflareToken: gatewayEntries.certbotCloudflareToken,
});

/**
 * Secret values, when the configuration holds them (Pulumi decrypts `secure:` values before the program sees
 * them). Only the secret keys are read: `gateway render` passes them alone, from its environment.
 */
export function parseGatewaySecrets(flat: FlatConfig): GatewaySecrets {
  const { submissionUsers, certbotCloudflareToken } = parseWith(secretsSchema, flat, [
    "submissionUsers",
    "certbotCloudflareToken",
  ]);
  return certbotCloudflareToken === undefined ? { submissionUsers } : { submissionUsers, certbotCloudflareToken };
}

/** How the Pulumi program reaches the node over SSH. */
export function parseSshConnection(flat: FlatConfig): SshConnection {
  return parseGatewayStack(flat).ssh;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fieldText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Pulumi's flattening of one configuration value: strings as they are, everything else as JSON. */
function flattenValue(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

const PROJECT_CONFIG_FIELDS = ["type", "items", "description", "secret", "default", "value"];

function namespaced(project: string, configKey: string): string {
  return configKey.includes(":") ? configKey : `${project}:${configKey}`;
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new GatewayConfigError(file, undefined, `a readable file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    // The parser's first line says what is wrong; its code frame is left out, the line itself is the value.
    const reason = err instanceof Error ? err.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "") : String(err);
    const line = err instanceof YAMLError ? err.linePos?.[0].line : undefined;
    if (line === undefined) throw new GatewayConfigError(file, undefined, `valid YAML (${reason})`);
    throw new GatewayConfigError(`${file} line ${line}`, text.split("\n")[line - 1] ?? "", `valid YAML (${reason})`);
  }
  if (!isPlainObject(doc)) throw new GatewayConfigError(file, text.slice(0, 40), "a YAML mapping");
  return doc;
}

export interface StackConfigFiles {
  /** Merged plain values, keyed as allConfig() keys them. */
  values: FlatConfig;
  /** Keys whose values are `secure:` ciphertext only Pulumi can decrypt; absent from `values`. */
  secureKeys: string[];
}

/**
 * Pulumi.yaml's project-level config (its `value`/`default` per key) overlaid by Pulumi.<stack>.yaml, flattened as
 * Pulumi would hand it to the program. `secure:` values are left out: only Pulumi holds the key to decrypt them.
 */
export function readStackConfigFiles(dir: string, stack: string): StackConfigFiles {
  const projectFile = path.join(dir, "Pulumi.yaml");
  const project = readYaml(projectFile);
  const projectName = typeof project.name === "string" ? project.name : "";
  const values: FlatConfig = {};
  const secureKeys: string[] = [];
  const projectConfig = project.config ?? {};
  if (!isPlainObject(projectConfig))
    throw new GatewayConfigError(`${projectFile}: config`, undefined, "a mapping of config keys");
  for (const [k, entry] of Object.entries(projectConfig)) {
    const name = namespaced(projectName, k);
    if (isPlainObject(entry)) {
      // Pulumi reads a mapping here as a declaration (its project.json schema): only these fields, and `default`
      // only for the project's own namespace; other namespaces such as gateway: set `value`.
      const unknownField = Object.keys(entry).find((f) => !PROJECT_CONFIG_FIELDS.includes(f));
      if (unknownField !== undefined) {
        throw new GatewayConfigError(
          `${projectFile}: config.${k}.${unknownField}`,
          fieldText(entry[unknownField]),
          `one of ${PROJECT_CONFIG_FIELDS.join(", ")} (write an object value under value:)`,
        );
      }
      if ("default" in entry && !name.startsWith(`${projectName}:`)) {
        throw new GatewayConfigError(
          `${projectFile}: config.${k}.default`,
          fieldText(entry.default),
          `value: instead of default: (Pulumi allows default only for keys of the project's own namespace, ${projectName}:)`,
        );
      }
      const chosen = "value" in entry ? entry.value : entry.default;
      if (chosen !== undefined && chosen !== null) values[name] = flattenValue(chosen);
    } else if (entry !== null && entry !== undefined) {
      values[name] = flattenValue(entry);
    }
  }

  const stackFile = path.join(dir, `Pulumi.${stack}.yaml`);
  const stackDoc = readYaml(stackFile);
  const stackConfig = stackDoc.config ?? {};
  if (!isPlainObject(stackConfig)) throw new GatewayConfigError(`${stackFile}: config`, undefined, "a mapping of config keys");
  for (const [k, entry] of Object.entries(stackConfig)) {
    const name = namespaced(projectName, k);
    if (isPlainObject(entry) && Object.keys(entry).length === 1 && typeof entry.secure === "string") {
      delete values[name];
      secureKeys.push(name);
      continue;
    }
    if (entry !== null && entry !== undefined) values[name] = flattenValue(entry);
  }
  return { values, secureKeys };
}

export function readStackConfig(dir: string, stack: string): FlatConfig {
  return readStackConfigFiles(dir, stack).values;
}
