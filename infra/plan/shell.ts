import { createHash } from "node:crypto";

/** One POSIX shell word, whatever the value holds. */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export function octalMode(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}

/** "/etc/postfix/main.cf" → "etc-postfix-main-cf": a resource-name-safe form of a path. */
export function pathSlug(path: string): string {
  return path.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "");
}
