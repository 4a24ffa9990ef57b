// How a socketmap key becomes the registry address it stands for. Pure, so the rules Postfix users rely on
// (case, served domains, +tag extensions) are tested without a socket.

/**
 * Postfix does not strip address extensions before a socketmap lookup (socketmap_table(5): no partial keys),
 * so the service itself must do what recipient_delimiter=+ does for hash/ldap maps.
 */
export const RECIPIENT_DELIMITER = "+";

/** RFC 5321 limits: a longer key cannot be a deliverable address, so it is answered NOTFOUND, not looked up. */
const MAX_LOCAL_PART = 64;
const MAX_ADDRESS = 254;
/** RFC 5322 atext (lowercase letters only: keys are lowercased first), as a table: every lookup checks it. */
const ATEXT = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*/=?^_`{|}~+-") ATEXT[c.charCodeAt(0)] = 1;
const DOT = 0x2e;

/**
 * Whether text[0, end) is a dot-atom. Dot-atom local parts only: quoted or whitespace-bearing local parts are
 * never registered BrightChain users.
 */
function isDotAtom(text: string, end: number): boolean {
  let previousDot = true;
  for (let i = 0; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code === DOT) {
      if (previousDot) return false;
      previousDot = true;
    } else if (code < 128 && ATEXT[code] === 1) {
      previousDot = false;
    } else {
      return false;
    }
  }
  return !previousDot;
}
const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

/**
 * Lowercased local@domain when `text` is a syntactically plain address, otherwise undefined. With `onlyDomains`,
 * an address outside them is undefined too, and a domain in the set skips the syntax check (every lookup pays it).
 */
export function normalizeAddress(
  text: string,
  onlyDomains?: ReadonlySet<string>,
): { address: string; local: string; domain: string } | undefined {
  const key = parseRecipientKey(text, onlyDomains);
  if (key === undefined) return undefined;
  return { address: key.address, local: key.address.slice(0, key.at), domain: key.address.slice(key.at + 1) };
}

export interface RecipientKey {
  /** The key as Postfix sent it, lowercased: local+ext@domain. */
  address: string;
  /** Index of the @ in address. */
  at: number;
  /** The address without its +extension, when the key has one. */
  withoutExtension?: string;
}

/** The served domain `lower` ends in after its @, compared in place: every lookup pays this, so no slicing. */
function endsInServedDomain(lower: string, at: number, domains: ReadonlySet<string>): boolean {
  const length = lower.length - at - 1;
  for (const domain of domains) if (domain.length === length && lower.endsWith(domain)) return true;
  return false;
}

/**
 * The registry addresses a key may match, most specific first; undefined when the key is malformed or not in a
 * served domain (answered NOTFOUND: a TEMP would make Postfix defer such mail forever). Without `servedDomains`,
 * any syntactically valid domain.
 */
export function parseRecipientKey(text: string, servedDomains?: ReadonlySet<string>): RecipientKey | undefined {
  let lower = text.trim().toLowerCase();
  // A trailing dot is the DNS root: user@example.org. is user@example.org.
  if (lower.endsWith(".")) lower = lower.slice(0, -1);
  if (lower.length === 0 || lower.length > MAX_ADDRESS) return undefined;
  const at = lower.lastIndexOf("@");
  if (at <= 0 || at > MAX_LOCAL_PART || !isDotAtom(lower, at)) return undefined;
  if (servedDomains !== undefined ? !endsInServedDomain(lower, at, servedDomains) : !DOMAIN.test(lower.slice(at + 1))) {
    return undefined;
  }
  const delimiter = lower.indexOf(RECIPIENT_DELIMITER);
  // "+tag@domain" has no user part to fall back to; Postfix leaves such a local part unsplit as well.
  if (delimiter <= 0) return { address: lower, at };
  return { address: lower, at, withoutExtension: `${lower.slice(0, delimiter)}${lower.slice(at)}` };
}
