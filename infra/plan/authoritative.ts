// A host step that asks the zone's authoritative servers, not a cache, whether they serve a record: what a
// switch waits for (DKIM signing with a new selector, Postfix serving a new DANE key). A resolver's cache could
// answer "yes" from an old copy, or "no" for an hour after a negative answer; the zone's own servers say what
// every resolver will see once its cache expires.
import { shellQuote } from "./shell";

export type AuthoritativeType = "TXT" | "TLSA";

export interface AuthoritativeCheck {
  /** The zone whose NS records name the servers asked (the Cloudflare zone: the mail domain). */
  zone: string;
  /** The record's owner name. */
  name: string;
  type: AuthoritativeType;
  /**
   * Shell commands printing, one per line, every value that must be served, normalised as the answers are:
   * TXT as one string (the character-strings joined), TLSA as `usage selector matching hex` with lower-case hex.
   */
  wanted: string;
  /** Said when the deadline passes: what is missing is named first, then this (the fix). */
  hint: string;
  /** How long to wait for the servers to catch up (a record published seconds ago). */
  deadlineSeconds: number;
}

/** dig +short's answer lines in the normalised form `wanted` prints. */
function normaliser(type: AuthoritativeType): string {
  return type === "TXT"
    ? // "v=DKIM1; k=rsa; " "p=MIIB…": one line per record, its strings joined.
      `sed -e 's/" "//g' -e 's/^"//' -e 's/"$//'`
    : // dig splits long hex into groups: "3 1 1 6CB2…AB CD01…".
      `awk '{ printf "%s %s %s ", $1, $2, $3; for (i = 4; i <= NF; i++) printf "%s", tolower($i); print "" }'`;
}

/**
 * Exits 0 once every server named by the zone's NS records serves every wanted value for the name, and 1 after
 * the deadline naming each server and what it answered. Nothing but `zone`, `name` and the fixed type reaches
 * the shell from configuration, each as one quoted word.
 */
export function authoritativeCheckCommand(check: AuthoritativeCheck): string {
  return [
    "set -eu",
    `zone=${shellQuote(check.zone)}`,
    `name=${shellQuote(check.name)}`,
    `wanted=$(${check.wanted})`,
    `[ -n "$wanted" ] || { echo "$name ${check.type}: nothing to look for (the host printed no value)" >&2; exit 1; }`,
    `servers=$(dig +short NS "$zone" | sed 's/\\.$//' | sort -u)`,
    `[ -n "$servers" ] || { echo "$zone: this host's resolver returns no NS records, so its authoritative servers cannot be asked" >&2; exit 1; }`,
    "answers=$(mktemp); trap 'rm -f \"$answers\"' EXIT",
    `deadline=$(( $(date +%s) + ${check.deadlineSeconds} ))`,
    "while :; do",
    '  missing=""',
    "  for ns in $servers; do",
    `    dig +short +norec +time=3 +tries=2 "@$ns" "$name" ${check.type} 2>/dev/null | ${normaliser(check.type)} > "$answers" || true`,
    `    if printf '%s\\n' "$wanted" | grep -Fxvq -f "$answers"; then missing="$missing $ns(answered: $(tr '\\n' '|' < "$answers"))"; fi`,
    "  done",
    '  [ -z "$missing" ] && break',
    '  if [ "$(date +%s)" -ge "$deadline" ]; then',
    `    echo "$name ${check.type}: not served by every authoritative server of $zone after ${check.deadlineSeconds}s; wanted: $(printf '%s\\n' "$wanted" | tr '\\n' '|') missing at:$missing. ${check.hint.replace(/["`$\\]/g, "\\$&")}" >&2`,
    "    exit 1",
    "  fi",
    "  sleep 5",
    "done",
    `echo "$name ${check.type}: served by every authoritative server of $zone ($(echo $servers))"`,
  ].join("\n");
}
