// DANE (RFC 7672) for port 25: each node publishes `_25._tcp.<host> TLSA 3 1 1 <SHA-256 of its key>`. The
// record names the key, not the certificate, so it must outlive every renewal: certbot issues each lineage with
// --reuse-key and its renewal config keeps reuse_key = True. A new key is another lineage, issued and published
// beside the current one first (nextLineage), served only once both records are at the zone's authoritative
// servers (lineage ← the next one, previousLineage ← the old one), and its old record removed by a later up
// (previousLineage unset). docs/dnssec-dane.md.
import type { GatewayNode } from "../model/types";
import { authoritativeCheckCommand } from "./authoritative";
import { shellQuote } from "./shell";

/** A lineage's role in a rollover, for the record's purpose and the order records are listed in. */
export type DaneKeyRole = "current" | "next" | "previous";

export interface DaneKey {
  lineage: string;
  role: DaneKeyRole;
}

/** Every lineage whose key has a TLSA record while this configuration stands: served, next, previous. */
export function daneKeys(node: GatewayNode): DaneKey[] {
  if (node.dane === undefined) return [];
  const keys: DaneKey[] = [{ lineage: node.tls.certName, role: "current" }];
  if (node.dane.nextLineage !== undefined) keys.push({ lineage: node.dane.nextLineage, role: "next" });
  if (node.dane.previousLineage !== undefined) keys.push({ lineage: node.dane.previousLineage, role: "previous" });
  return keys;
}

/** Where certbot keeps a lineage's current private key (a link into archive/, the same key across renewals). */
export function lineageKeyPath(lineage: string): string {
  return `/etc/letsencrypt/live/${lineage}/privkey.pem`;
}

/** The owner name of a node's port-25 TLSA records. */
export function tlsaName(node: GatewayNode): string {
  return `_25._tcp.${node.host.hostname}`;
}

/**
 * Shell: the hex SHA-256 of the SubjectPublicKeyInfo (DER) of the key file $1 — TLSA selector 1, matching type 1.
 * Fails, naming the file, when it is missing: a key published before it exists would be a record for nothing.
 */
export const SPKI_SHA256_FUNCTION = [
  "spki_sha256() {",
  '  [ -s "$1" ] || { echo "$1: no such key; the lineage has not been issued on this host" >&2; return 1; }',
  '  openssl pkey -in "$1" -pubout -outform DER | openssl dgst -sha256 -r | cut -d" " -f1',
  "}",
].join("\n");

/**
 * Prints `<lineage> <sha256>` for every key daneKeys names, one per line: the step's stdout the TLSA records are
 * built from. Read-only, so it is also what the step runs on an update.
 */
export function daneKeysCommand(node: GatewayNode): string {
  const lines = ["set -eu", SPKI_SHA256_FUNCTION];
  for (const { lineage } of daneKeys(node)) {
    lines.push(`h=$(spki_sha256 ${shellQuote(lineageKeyPath(lineage))}); echo ${shellQuote(lineage)} "$h"`);
  }
  return lines.join("\n");
}

/** The step's stdout as lineage → hash; a line that is not `<lineage> <64 hex>` for a lineage asked for fails. */
export function parseDaneKeys(node: GatewayNode, stdout: string): Map<string, string> {
  const wanted = new Set(daneKeys(node).map((k) => k.lineage));
  const hashes = new Map<string, string>();
  for (const line of stdout.split("\n").filter((l) => l.trim() !== "")) {
    const match = /^(\S+) ([0-9a-f]{64})$/.exec(line.trim());
    if (!match || !wanted.has(match[1]!))
      throw new Error(
        `DANE key line ${JSON.stringify(line)} from ${node.host.hostname} is not accepted; accepted: "<lineage> <64 lower-case hex>" for ${[...wanted].join(", ")}`,
      );
    hashes.set(match[1]!, match[2]!);
  }
  for (const lineage of wanted)
    if (!hashes.has(lineage)) throw new Error(`no DANE key hash for lineage ${lineage} in the output of ${node.host.hostname}`);
  return hashes;
}

/** `3 1 1 <hash>`: DANE-EE (the server's own key, no CA), SubjectPublicKeyInfo, SHA-256. */
export function tlsaContent(sha256Hex: string): string {
  return `3 1 1 ${sha256Hex.toLowerCase()}`;
}

/**
 * With previousLineage set, Postfix is about to serve (or serves) the current lineage's key in place of the
 * previous one. Before main.cf names it, every authoritative server must serve the TLSA records of both keys:
 * a DANE sender holding a cached copy of either set must find the key it is shown. Undefined when no switch is
 * configured.
 */
export function daneSwitchCheckCommand(node: GatewayNode): string | undefined {
  if (node.dane?.previousLineage === undefined) return undefined;
  const current = node.tls.certName;
  const previous = node.dane.previousLineage;
  const wanted = [
    SPKI_SHA256_FUNCTION,
    // An assignment from a failing substitution stops the script (set -e): a missing key is named, not waited for.
    `a=$(spki_sha256 ${shellQuote(lineageKeyPath(current))}) && b=$(spki_sha256 ${shellQuote(lineageKeyPath(previous))}) && printf '3 1 1 %s\\n' "$a" "$b"`,
  ].join("\n");
  return authoritativeCheckCommand({
    zone: node.domain,
    name: tlsaName(node),
    type: "TLSA",
    wanted,
    hint:
      `Postfix keeps serving the key of ${previous}. Publish ${current}'s key first: set gateway:dane.nextLineage to ${current} ` +
      `(lineage ${previous}, no previousLineage), pulumi up, wait two TTLs of the TLSA records, then switch again.`,
    deadlineSeconds: 60,
  });
}
