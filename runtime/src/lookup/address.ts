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
/** Dot-atom local parts only: quoted or whitespace-bearing local parts are never registered BrightChain users. */
const LOCAL_PART = /^[a-z0-9!#$%&'*/=?^_`{|}~+-]+(?:\.[a-z0-9!#$%&'*/=?^_`{|}~+-]+)*$/;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

export interface RecipientKey {
  /** The key as Postfix sent it, lowercased: local+ext@domain. */
  address: string;
  /** The address without its +extension, when the key has one. */
  withoutExtension?: string;
}

/** Lowercased local@domain when `text` is a syntactically plain address, otherwise undefined. */
export function normalizeAddress(text: string): { local: string; domain: string } | undefined {
  const lower = text.trim().toLowerCase();
  if (lower.length === 0 || lower.length > MAX_ADDRESS) return undefined;
  const at = lower.lastIndexOf("@");
  if (at <= 0) return undefined;
  const local = lower.slice(0, at);
  const domain = lower.slice(at + 1).replace(/\.$/, "");
  if (local.length > MAX_LOCAL_PART || !LOCAL_PART.test(local) || !DOMAIN.test(domain)) return undefined;
  return { local, domain };
}

/**
 * The registry addresses a key may match, most specific first; undefined when the key is malformed or not in a
 * served domain (answered NOTFOUND: a TEMP would make Postfix defer such mail forever).
 */
export function parseRecipientKey(key: string, servedDomains: ReadonlySet<string>): RecipientKey | undefined {
  const parsed = normalizeAddress(key);
  if (parsed === undefined || !servedDomains.has(parsed.domain)) return undefined;
  const address = `${parsed.local}@${parsed.domain}`;
  const delimiter = parsed.local.indexOf(RECIPIENT_DELIMITER);
  // "+tag@domain" has no user part to fall back to; Postfix leaves such a local part unsplit as well.
  if (delimiter <= 0) return { address };
  return { address, withoutExtension: `${parsed.local.slice(0, delimiter)}@${parsed.domain}` };
}
