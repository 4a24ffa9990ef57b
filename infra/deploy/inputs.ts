// What Pulumi's diff decides for a resource, reproduced for the lab engine: a resource whose inputs are
// unchanged since the last run is left alone (its recorded outputs are reused); a changed one is updated.
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";

export type ResourceAction = "create" | "update" | "same" | "delete";

export interface CanonicalInputs {
  /** The inputs with secrets replaced by "[secret sha256:…]", keys sorted: safe to store and to compare. */
  inputs: unknown;
  /** sha256 of `inputs` as JSON: equal exactly when every input, secrets included, is equal. */
  hash: string;
}

function isSecret(value: unknown): value is { value: unknown } {
  return Boolean(pulumi.runtime.isRpcSecret(value));
}

/** The plain value with every secret wrapper removed, at any depth (the provider sees plain values). */
export function unwrapSecrets(value: unknown): unknown {
  if (isSecret(value)) return unwrapSecrets(value.value);
  if (Array.isArray(value)) return value.map(unwrapSecrets);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, entry]) => [key, unwrapSecrets(entry)]));
  }
  return value;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function canonical(value: unknown): unknown {
  if (isSecret(value)) return `[secret sha256:${sha256(JSON.stringify(canonical(value.value)))}]`;
  if (Array.isArray(value)) return value.map(canonical);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
        .map((key) => [key, canonical((value as Record<string, unknown>)[key])]),
    );
  }
  return value;
}

/**
 * Inputs as the state file records them. Secrets are kept as hashes only: a changed key or password still
 * changes the hash (and so the diff), but the state file never holds the secret itself.
 */
export function canonicalInputs(inputs: Record<string, unknown>): CanonicalInputs {
  const value = canonical(inputs);
  return { inputs: value, hash: sha256(JSON.stringify(value)) };
}

/** Pulumi's decision: no record → create; same inputs → nothing to do; otherwise update. */
export function decideAction(previousHash: string | undefined, current: CanonicalInputs): ResourceAction {
  if (previousHash === undefined) return "create";
  return previousHash === current.hash ? "same" : "update";
}

/** The input names whose values differ between two recorded input sets (what `pulumi preview --diff` lists). */
export function changedInputNames(previous: unknown, current: unknown): string[] {
  const before = (previous ?? {}) as Record<string, unknown>;
  const after = (current ?? {}) as Record<string, unknown>;
  return [...new Set([...Object.keys(before), ...Object.keys(after)])]
    .filter((key) => JSON.stringify(before[key]) !== JSON.stringify(after[key]))
    .sort();
}
