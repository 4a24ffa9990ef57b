// Pulumi configuration → GatewayNode. The one place defaults are applied and values validated: renderers
// trust the model. `flat` is the merged configuration as `pulumi.runtime.allConfig()` returns it (keys such
// as "gateway:hostname", every value a string, objects and arrays JSON-encoded), so the Pulumi program, the
// CLI and the tests all parse exactly the same thing.
import { readFileSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { DEFAULT_OS_RELEASE, OS_RELEASES, releaseOs } from "./releases";
import type {
  AcmeChallenge,
  DmarcPolicy,
  DropTransport,
  GatewayHost,
  GatewayNode,
  GatewaySecrets,
  RecipientRegistry,
  SpamEngine,
} from "./types";

export class GatewayConfigError extends Error {
  constructor(
    readonly key: string,
    readonly value: string | undefined,
    readonly accepted: string,
  ) {
    super(
      value === undefined
        ? `${key} is not set; expected ${accepted}`
        : `${key}=${JSON.stringify(value)} is invalid; expected ${accepted}`,
    );
    this.name = "GatewayConfigError";
  }
}

export type FlatConfig = Record<string, string>;

const NS = "gateway:";

/** Every `gateway:` key a node's configuration may hold, with what it means (shown when a key is misspelt). */
export const GATEWAY_CONFIG_KEYS = {
  // Domain-wide: normally in Pulumi.yaml, shared by every stack of the project.
  domain: "mail domain served, e.g. brightchain.org",
  primaryHostname: "host name of the primary (MX 10); must be in gateway:fleet",
  fleet: "every gateway node: [{hostname, ipv4, ipv6?}], the primary first; SPF lists them all",
  dmarc: "{policy: none|quarantine|reject, rua: [mailto:…], pct: 0–100}",
  dkimSelector: 'DKIM selector (default "default")',
  dkimKeyBits: "2048 or 4096 (default 2048)",
  dkimKeyDir: "directory of the DKIM key on the host (default /etc/dkim)",
  spamProbableScore: "score tagged as spam (default 5.0)",
  spamDefiniteScore: "score rejected with 550 (default 10.0)",
  maxMessageSize: "bytes (default 26214400)",
  acmeEmail: "ACME account e-mail (default postmaster@<domain>)",
  acmeServer: "ACME directory URL (default Let's Encrypt production)",
  acmeChallenge: "dns-01 (default, through Cloudflare) or http-01 (opens port 80)",
  relayQueueLifetime: "how long a relay keeps mail for the primary, Postfix time (default 10d)",
  mynetworks: "networks trusted to relay, Postfix syntax (default loopback only)",
  lookupPort: "loopback port of the recipient socketmap (default 2526)",
  lookupCacheTtl: "seconds the lookup service caches an answer (default 300)",
  registry: "recipient registry: an absolute file path or the node API's http(s) URL",
  recipients: "file registry: the addresses the deploy writes into it on every node (absent: you maintain the file)",
  nodeUrl: "BrightChain node API URL (absent: embedded local store)",
  spoolDir: "home of the brightchain user, parent of incoming/ and errors/ (default /var/spool/brightchain)",
  brightchainUid: "fixed uid of the brightchain user (default 2526)",
  brightchainGid: "fixed gid of the brightchain group (default 2526)",
  runtimeInstallDir: "where the runtime is installed (default /opt/brightchain-gateway)",
  storeDir:
    "embedded content-addressed store (default <spoolDir>/store: on the drop's mount, so a message is hard-linked, not copied)",
  // Per node: in Pulumi.<stack>.yaml.
  role: "primary or relay",
  hostname: "this node's host name; its addresses come from its gateway:fleet entry",
  os: `the host's release: ${OS_RELEASES.join(", ")} (default ${DEFAULT_OS_RELEASE})`,
  spamEngine: "spamassassin, rspamd or none (default spamassassin)",
  dropTransport: "virtual (default) or pipe",
  mxPriority: "10 for the primary; relays above 10 (default 20, 30 … by fleet order)",
  submission: "true/false: port 587 with SASL, primary only (default true on the primary)",
  ssh: "{host, user, port, hostKey}: how Pulumi reaches the node (default host = hostname, root, 22); hostKey, the host's SSH public key, is required to deploy",
  // Secrets: `pulumi config set --secret`.
  sshPrivateKey: "secret: SSH private key for gateway:ssh",
  submissionUsers: "secret: [{username, password}] SASL accounts for port 587",
  certbotCloudflareToken: "secret: Cloudflare token certbot's dns-01 plugin uses on the host",
} as const;

export type GatewayConfigKey = keyof typeof GATEWAY_CONFIG_KEYS;

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const HOSTNAME_ACCEPTED = "a fully qualified lower-case host name such as mail.brightchain.org";
const EMAIL = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const POSTFIX_TIME = /^[1-9]\d*[smhdw]?$/;
const POSIX_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const SELECTOR = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

const key = (name: GatewayConfigKey): string => NS + name;

function raw(flat: FlatConfig, name: GatewayConfigKey): string | undefined {
  const value = flat[key(name)];
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

function requireRaw(flat: FlatConfig, name: GatewayConfigKey, accepted: string): string {
  const value = raw(flat, name);
  if (value === undefined) throw new GatewayConfigError(key(name), flat[key(name)], accepted);
  return value;
}

function json(flat: FlatConfig, name: GatewayConfigKey, accepted: string): unknown {
  const value = raw(flat, name);
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    throw new GatewayConfigError(key(name), value, accepted);
  }
}

function oneOf<T extends string>(label: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new GatewayConfigError(label, value, allowed.join(", "));
  }
  return value as T;
}

function integerIn(label: string, value: string, min: number, max: number): number {
  const accepted = `an integer from ${min} to ${max}`;
  if (!/^-?\d+$/.test(value)) throw new GatewayConfigError(label, value, accepted);
  const n = Number(value);
  if (n < min || n > max) throw new GatewayConfigError(label, value, accepted);
  return n;
}

/**
 * Positive, at most 1000, at most two decimals: a negative score renders `spamass-milter -r -1` (nearly every
 * message rejected), and a long one prints in exponent form (1e+23, 1e-7), which neither daemon parses.
 */
function score(label: string, value: string): number {
  const accepted = "a decimal score above 0 and at most 1000, such as 5.0 (at most two decimals)";
  if (!/^\d{1,4}(\.\d{1,2})?$/.test(value)) throw new GatewayConfigError(label, value, accepted);
  const n = Number(value);
  if (n <= 0 || n > 1000) throw new GatewayConfigError(label, value, accepted);
  return n;
}

export function validateHostname(label: string, value: string): string {
  if (!HOSTNAME.test(value)) throw new GatewayConfigError(label, value, HOSTNAME_ACCEPTED);
  return value;
}

export function validateIpv4(label: string, value: string): string {
  if (!isIPv4(value)) throw new GatewayConfigError(label, value, "an IPv4 address such as 203.0.113.10");
  return value;
}

export function validateIpv6(label: string, value: string): string {
  // A zone index (fe80::1%eth0) is meaningless in DNS and in Postfix maps; an IPv4-mapped address is an IPv4 one.
  if (!isIPv6(value) || value.includes("%") || /^::ffff:/i.test(value)) {
    throw new GatewayConfigError(label, value, "an IPv6 address such as 2001:db8::10");
  }
  // RFC 5952's canonical text (lower case, longest zero run compressed): the form Cloudflare reads an AAAA back
  // in, so 2001:DB8:0:0::10 in a stack file does not show as drift on every refresh.
  return new URL(`http://[${value}]/`).hostname.slice(1, -1);
}

/**
 * Paths reach shell steps and config files: only characters no shell or config syntax gives a meaning to, and no
 * `.`/`..` segment (`/etc/dkim/../../root/.ssh` would be chowned to opendkim).
 */
function absolutePath(label: string, value: string): string {
  const accepted = "an absolute path of letters, digits and . _ - / without . or .. segments, such as /var/spool/brightchain";
  if (!/^\/[A-Za-z0-9._/-]*$/.test(value) || value.split("/").some((segment) => segment === "." || segment === "..")) {
    throw new GatewayConfigError(label, value, accepted);
  }
  const trimmed = value.replace(/\/+$/, "") || "/";
  if (trimmed === "/" || trimmed.includes("//")) throw new GatewayConfigError(label, value, accepted);
  return trimmed;
}

function httpUrl(label: string, value: string, schemes: readonly string[]): string {
  const accepted = `a URL starting with ${schemes.map((s) => s + "//").join(" or ")}`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new GatewayConfigError(label, value, accepted);
  }
  if (!schemes.includes(url.protocol)) throw new GatewayConfigError(label, value, accepted);
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Object fields arrive as JSON; a number written in YAML stays a number, so accept both spellings. */
function fieldText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

/** Shown instead of an unknown key's value. */
export const UNKNOWN_KEY_VALUE = "(value not shown)";

function rejectUnknownFields(label: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const field of Object.keys(value)) {
    if (!allowed.includes(field)) {
      // Not its value: a secret put under the wrong field must not end up in a log.
      throw new GatewayConfigError(`${label}.${field}`, UNKNOWN_KEY_VALUE, `one of the fields ${allowed.join(", ")}`);
    }
  }
}

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

function rejectUnknownKeys(flat: FlatConfig): void {
  const known = Object.keys(GATEWAY_CONFIG_KEYS);
  for (const k of Object.keys(flat)) {
    if (!k.startsWith(NS)) continue;
    const name = k.slice(NS.length);
    if (known.includes(name)) continue;
    const likely = known.find((candidate) => editDistance(candidate.toLowerCase(), name.toLowerCase()) <= 2);
    const hint =
      name === "ipv4" || name === "ipv6"
        ? "addresses are set once, in this node's gateway:fleet entry; accepted keys: "
        : likely !== undefined
          ? `${NS}${likely} (the closest key); every key: `
          : "one of the keys ";
    // The value is never shown: a misspelt secret key (gateway:sshPrivatekey) arrives here decrypted, and
    // Pulumi's masking of secret values misses them once JSON-escaped in a message.
    throw new GatewayConfigError(k, UNKNOWN_KEY_VALUE, hint + known.map((n) => NS + n).join(", "));
  }
}

function parseFleet(flat: FlatConfig): GatewayHost[] {
  const accepted = 'a list of {hostname, ipv4, ipv6?}, e.g. [{"hostname":"mail.brightchain.org","ipv4":"203.0.113.10"}]';
  const value = json(flat, "fleet", accepted);
  if (value === undefined) throw new GatewayConfigError(key("fleet"), undefined, accepted);
  if (!Array.isArray(value) || value.length === 0) throw new GatewayConfigError(key("fleet"), flat[key("fleet")], accepted);
  const seenNames = new Set<string>();
  const seenAddresses = new Set<string>();
  return value.map((entry, i) => {
    const label = `${key("fleet")}[${i}]`;
    if (!isPlainObject(entry)) throw new GatewayConfigError(label, fieldText(entry), "an object {hostname, ipv4, ipv6?}");
    rejectUnknownFields(label, entry, ["hostname", "ipv4", "ipv6"]);
    const hostnameText = fieldText(entry.hostname);
    if (hostnameText === undefined) throw new GatewayConfigError(`${label}.hostname`, undefined, HOSTNAME_ACCEPTED);
    const hostname = validateHostname(`${label}.hostname`, hostnameText);
    if (seenNames.has(hostname))
      throw new GatewayConfigError(`${label}.hostname`, hostname, "a host name listed once in the fleet");
    seenNames.add(hostname);
    const ipv4Text = fieldText(entry.ipv4);
    if (ipv4Text === undefined)
      throw new GatewayConfigError(`${label}.ipv4`, undefined, "an IPv4 address such as 203.0.113.10 (every node needs one)");
    const host: GatewayHost = { hostname, ipv4: validateIpv4(`${label}.ipv4`, ipv4Text) };
    const ipv6Text = fieldText(entry.ipv6);
    if (ipv6Text !== undefined) host.ipv6 = validateIpv6(`${label}.ipv6`, ipv6Text);
    for (const [field, address] of [
      ["ipv4", host.ipv4],
      ["ipv6", host.ipv6],
    ] as const) {
      if (address === undefined) continue;
      if (seenAddresses.has(address))
        throw new GatewayConfigError(`${label}.${field}`, address, "an address no other fleet node uses");
      seenAddresses.add(address);
    }
    return host;
  });
}

function parseDmarc(flat: FlatConfig, domain: string): GatewayNode["dmarc"] {
  const accepted = '{"policy":"none|quarantine|reject","rua":["mailto:…"],"pct":100}';
  const value = json(flat, "dmarc", accepted) ?? {};
  if (!isPlainObject(value)) throw new GatewayConfigError(key("dmarc"), flat[key("dmarc")], accepted);
  rejectUnknownFields(key("dmarc"), value, ["policy", "rua", "pct"]);
  // Monitoring first, as the guide advises: p=none until the reports show every legitimate source aligned.
  const policy = oneOf<DmarcPolicy>(`${key("dmarc")}.policy`, fieldText(value.policy) ?? "none", [
    "none",
    "quarantine",
    "reject",
  ]);
  const ruaValue = value.rua ?? [];
  const ruaList = typeof ruaValue === "string" ? [ruaValue] : ruaValue;
  if (!Array.isArray(ruaList)) throw new GatewayConfigError(`${key("dmarc")}.rua`, fieldText(ruaValue), "a list of mailto: URIs");
  const rua = ruaList.map((uri, i) => {
    const text = fieldText(uri) ?? "";
    const mailbox = text.startsWith("mailto:") ? text.slice("mailto:".length) : "";
    // Commas and '!' separate URIs and size limits in DMARC; an address holding them would change the record.
    if (!EMAIL.test(mailbox) || /[,!;]/.test(mailbox)) {
      throw new GatewayConfigError(`${key("dmarc")}.rua[${i}]`, text, `a mailto: URI such as mailto:dmarc-reports@${domain}`);
    }
    return text;
  });
  const pct = integerIn(`${key("dmarc")}.pct`, fieldText(value.pct) ?? "100", 0, 100);
  return { policy, rua, pct };
}

function parseRegistry(flat: FlatConfig, domain: string): RecipientRegistry {
  const value = raw(flat, "registry") ?? "/etc/brightchain/recipients";
  const addresses = parseRecipients(flat, domain);
  if (value.startsWith("/")) {
    const path = absolutePath(key("registry"), value);
    return addresses === undefined ? { kind: "file", path } : { kind: "file", path, addresses };
  }
  if (/^https?:\/\//.test(value)) {
    if (addresses !== undefined) {
      throw new GatewayConfigError(
        key("recipients"),
        flat[key("recipients")],
        "no value while gateway:registry is the node API's URL (the node answers for its users)",
      );
    }
    return { kind: "http", url: httpUrl(key("registry"), value, ["http:", "https:"]) };
  }
  throw new GatewayConfigError(key("registry"), value, "an absolute file path or an http:// or https:// URL of the node API");
}

/** Dot-atom local part, as the lookup service accepts it (runtime/src/lookup/address.ts). */
const LOCAL_PART = /^[a-z0-9!#$%&'*/=?^_`{|}~+-]+(\.[a-z0-9!#$%&'*/=?^_`{|}~+-]+)*$/;

function parseRecipients(flat: FlatConfig, domain: string): string[] | undefined {
  const accepted = `a list of addresses in ${domain}, e.g. ["alice@${domain}"]`;
  const value = json(flat, "recipients", accepted);
  if (value === undefined) return undefined;
  // An empty list would deploy an empty registry everywhere: every recipient refused. Say so instead.
  if (!Array.isArray(value) || value.length === 0) {
    throw new GatewayConfigError(key("recipients"), flat[key("recipients")], `${accepted}; at least one`);
  }
  const addresses = value.map((entry, i) => {
    const text = (fieldText(entry) ?? "").trim().toLowerCase();
    const at = text.lastIndexOf("@");
    // A leading # would make the registry line a comment; longer than 254 the lookup service never matches it.
    const local = text.slice(0, at);
    if (
      at <= 0 ||
      at > 64 ||
      text.length > 254 ||
      local.startsWith("#") ||
      text.slice(at + 1) !== domain ||
      !LOCAL_PART.test(local)
    ) {
      throw new GatewayConfigError(`${key("recipients")}[${i}]`, fieldText(entry), `an address in ${domain}`);
    }
    return text;
  });
  return [...new Set(addresses)].sort();
}

function parseMynetworks(flat: FlatConfig): string[] {
  const accepted = 'a list of networks in Postfix syntax, e.g. ["127.0.0.0/8","[::1]/128"]';
  const value = json(flat, "mynetworks", accepted) ?? ["127.0.0.0/8", "[::1]/128"];
  if (!Array.isArray(value) || value.length === 0)
    throw new GatewayConfigError(key("mynetworks"), flat[key("mynetworks")], accepted);
  return value.map((entry, i) => {
    const label = `${key("mynetworks")}[${i}]`;
    const text = fieldText(entry) ?? "";
    // Networks this wide (0.0.0.0/0 above all) let much of the Internet relay through the node: an open relay.
    const openRelay = (prefix: number, narrowest: number): never => {
      throw new GatewayConfigError(
        label,
        text,
        `a network no wider than /${narrowest}: every address in mynetworks may relay mail anywhere through this node, so /${prefix} makes it an open relay`,
      );
    };
    const v4 = /^([\d.]+)\/(\d{1,2})$/.exec(text);
    if (v4 && isIPv4(v4[1]!) && Number(v4[2]) <= 32) return Number(v4[2]) < 8 ? openRelay(Number(v4[2]), 8) : text;
    // Postfix needs IPv6 networks bracketed in mynetworks, or it reads the colons as a table type.
    const v6 = /^\[([0-9a-fA-F:.]+)\]\/(\d{1,3})$/.exec(text);
    if (v6 && isIPv6(v6[1]!) && Number(v6[2]) <= 128) return Number(v6[2]) < 16 ? openRelay(Number(v6[2]), 16) : text;
    throw new GatewayConfigError(
      label,
      text,
      "an IPv4 network such as 127.0.0.0/8 or a bracketed IPv6 network such as [::1]/128",
    );
  });
}

function parseBoolean(label: string, value: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw new GatewayConfigError(label, value, "true or false");
}

/** Builds the node model from merged configuration; throws GatewayConfigError naming the first bad key. */
export function parseGatewayConfig(flat: FlatConfig): GatewayNode {
  rejectUnknownKeys(flat);

  const domain = validateHostname(key("domain"), requireRaw(flat, "domain", "a mail domain such as brightchain.org"));
  const fleetAsListed = parseFleet(flat);
  const primaryHostname = validateHostname(key("primaryHostname"), requireRaw(flat, "primaryHostname", HOSTNAME_ACCEPTED));
  const names = fleetAsListed.map((h) => h.hostname);
  if (!names.includes(primaryHostname)) {
    throw new GatewayConfigError(
      key("primaryHostname"),
      primaryHostname,
      `a host name listed in gateway:fleet (${names.join(", ")})`,
    );
  }
  // Primary first is what the model promises (and what default relay priorities count from).
  const fleet = [
    ...fleetAsListed.filter((h) => h.hostname === primaryHostname),
    ...fleetAsListed.filter((h) => h.hostname !== primaryHostname),
  ];

  const role = oneOf(key("role"), requireRaw(flat, "role", "primary or relay"), ["primary", "relay"] as const);
  const hostname = validateHostname(key("hostname"), requireRaw(flat, "hostname", HOSTNAME_ACCEPTED));
  const host = fleet.find((h) => h.hostname === hostname);
  if (host === undefined) {
    throw new GatewayConfigError(key("hostname"), hostname, `a host name listed in gateway:fleet (${names.join(", ")})`);
  }
  if (role === "primary" && hostname !== primaryHostname) {
    throw new GatewayConfigError(
      key("hostname"),
      hostname,
      `the primary's host name gateway:primaryHostname (${primaryHostname}) when gateway:role is primary`,
    );
  }
  if (role === "relay" && hostname === primaryHostname) {
    throw new GatewayConfigError(
      key("hostname"),
      hostname,
      `a fleet host other than the primary (${primaryHostname}) when gateway:role is relay`,
    );
  }

  const defaultPriority = role === "primary" ? 10 : 10 + 10 * fleet.indexOf(host);
  const mxPriorityText = raw(flat, "mxPriority");
  const mxPriority = mxPriorityText === undefined ? defaultPriority : integerIn(key("mxPriority"), mxPriorityText, 0, 65535);
  if (role === "primary" && mxPriority !== 10) {
    throw new GatewayConfigError(key("mxPriority"), String(mxPriority), "10 for the primary (the most preferred MX)");
  }
  if (role === "relay" && mxPriority <= 10) {
    throw new GatewayConfigError(
      key("mxPriority"),
      String(mxPriority),
      "a priority above 10 for a relay (20, 30 …), so senders prefer the primary",
    );
  }

  const osText = raw(flat, "os") ?? DEFAULT_OS_RELEASE;
  if ((["debian", "ubuntu", "rhel"] as const).some((family) => family === osText)) {
    // A bare family name meant "whatever Debian" when it was written; guessing a release now could render
    // Dovecot 2.4 syntax for a 2.3 host. The deploy's first step would refuse the mismatch anyway.
    throw new GatewayConfigError(
      key("os"),
      osText,
      `a release, not a family: ${OS_RELEASES.filter((release) => release.startsWith(`${osText}-`)).join(" or ")} (every release: ${OS_RELEASES.join(", ")})`,
    );
  }
  const release = oneOf(key("os"), osText, OS_RELEASES);
  const engine = oneOf<SpamEngine>(key("spamEngine"), raw(flat, "spamEngine") ?? "spamassassin", [
    "spamassassin",
    "rspamd",
    "none",
  ]);
  const probableScore = score(key("spamProbableScore"), raw(flat, "spamProbableScore") ?? "5.0");
  const definiteScore = score(key("spamDefiniteScore"), raw(flat, "spamDefiniteScore") ?? "10.0");
  if (definiteScore < probableScore) {
    throw new GatewayConfigError(
      key("spamDefiniteScore"),
      String(definiteScore),
      `a score at or above gateway:spamProbableScore (${probableScore})`,
    );
  }

  const transport = oneOf<DropTransport>(key("dropTransport"), raw(flat, "dropTransport") ?? "virtual", ["virtual", "pipe"]);
  const spoolDir = absolutePath(key("spoolDir"), raw(flat, "spoolDir") ?? "/var/spool/brightchain");
  const uid = integerIn(key("brightchainUid"), raw(flat, "brightchainUid") ?? "2526", 1, 65534);
  const gid = integerIn(key("brightchainGid"), raw(flat, "brightchainGid") ?? "2526", 1, 65534);

  const selector = raw(flat, "dkimSelector") ?? "default";
  if (!SELECTOR.test(selector)) {
    throw new GatewayConfigError(
      key("dkimSelector"),
      selector,
      "a DNS label of lower-case letters, digits and hyphens, such as default or mail2026",
    );
  }
  const keyBitsText = raw(flat, "dkimKeyBits") ?? "2048";
  const keyBits = Number(oneOf(key("dkimKeyBits"), keyBitsText, ["2048", "4096"] as const)) as 2048 | 4096;

  const challenge = oneOf<AcmeChallenge>(key("acmeChallenge"), raw(flat, "acmeChallenge") ?? "dns-01", ["dns-01", "http-01"]);
  const acmeEmail = raw(flat, "acmeEmail") ?? `postmaster@${domain}`;
  if (!EMAIL.test(acmeEmail))
    throw new GatewayConfigError(key("acmeEmail"), acmeEmail, "an e-mail address such as postmaster@brightchain.org");
  const acmeServer = httpUrl(key("acmeServer"), raw(flat, "acmeServer") ?? "https://acme-v02.api.letsencrypt.org/directory", [
    "https:",
  ]);

  const submissionText = raw(flat, "submission");
  const submissionEnabled = submissionText === undefined ? role === "primary" : parseBoolean(key("submission"), submissionText);
  if (role === "relay" && submissionEnabled) {
    throw new GatewayConfigError(
      key("submission"),
      submissionText,
      "false (or unset) on a relay: submission on 587 is served by the primary only",
    );
  }

  const queueLifetime = raw(flat, "relayQueueLifetime") ?? "10d";
  if (!POSTFIX_TIME.test(queueLifetime)) {
    throw new GatewayConfigError(key("relayQueueLifetime"), queueLifetime, "a Postfix time such as 10d, 240h or 5w");
  }

  const nodeUrlText = raw(flat, "nodeUrl");
  const node: GatewayNode = {
    role,
    domain,
    host,
    os: releaseOs(release),
    mxPriority,
    fleet,
    primaryHostname,
    spam: { engine, probableScore, definiteScore },
    drop: {
      transport,
      spoolDir,
      mailDropDir: `${spoolDir}/incoming`,
      errorDir: `${spoolDir}/errors`,
      uid,
      gid,
      user: "brightchain",
      group: "brightchain",
    },
    dkim: { selector, keyDir: absolutePath(key("dkimKeyDir"), raw(flat, "dkimKeyDir") ?? "/etc/dkim"), keyBits },
    dmarc: parseDmarc(flat, domain),
    tls: {
      challenge,
      acmeEmail,
      acmeServer,
      certFile: `/etc/letsencrypt/live/${hostname}/fullchain.pem`,
      keyFile: `/etc/letsencrypt/live/${hostname}/privkey.pem`,
    },
    lookup: {
      port: integerIn(key("lookupPort"), raw(flat, "lookupPort") ?? "2526", 1, 65535),
      cacheTtlSeconds: integerIn(key("lookupCacheTtl"), raw(flat, "lookupCacheTtl") ?? "300", 0, 86_400),
      registry: parseRegistry(flat, domain),
    },
    maxMessageSize: integerIn(key("maxMessageSize"), raw(flat, "maxMessageSize") ?? "26214400", 1024, 2_147_483_647),
    mynetworks: parseMynetworks(flat),
    runtime: {
      installDir: absolutePath(key("runtimeInstallDir"), raw(flat, "runtimeInstallDir") ?? "/opt/brightchain-gateway"),
      envFile: "/etc/brightchain/gateway.env",
      storeDir: absolutePath(key("storeDir"), raw(flat, "storeDir") ?? `${spoolDir}/store`),
    },
  };
  if (nodeUrlText !== undefined)
    node.runtime.nodeUrl = httpUrl(key("nodeUrl"), nodeUrlText, ["http:", "https:"]).replace(/\/+$/, "");
  if (role === "primary") node.submission = { enabled: submissionEnabled, saslBackend: "dovecot" };
  else node.relay = { forwardTo: primaryHostname, queueLifetime };
  return node;
}

/** Secret values, when the configuration holds them (Pulumi decrypts `secure:` values before the program sees them). */
export function parseGatewaySecrets(flat: FlatConfig): GatewaySecrets {
  const accepted = 'a list of {username, password}, e.g. [{"username":"brightchain-node","password":"…"}]';
  const text = raw(flat, "submissionUsers");
  let value: unknown = [];
  if (text !== undefined) {
    try {
      value = JSON.parse(text);
    } catch {
      // The value itself is never echoed: this message may reach CI logs.
      throw new GatewayConfigError(key("submissionUsers"), "(secret)", accepted);
    }
  }
  if (!Array.isArray(value)) throw new GatewayConfigError(key("submissionUsers"), "(secret)", accepted);
  const seen = new Set<string>();
  const submissionUsers = value.map((entry, i) => {
    const label = `${key("submissionUsers")}[${i}]`;
    if (!isPlainObject(entry)) throw new GatewayConfigError(label, "(secret)", "an object {username, password}");
    const unknownField = Object.keys(entry).find((f) => f !== "username" && f !== "password");
    if (unknownField !== undefined) {
      throw new GatewayConfigError(`${label}.${unknownField}`, "(secret)", "only the fields username and password");
    }
    const username = fieldText(entry.username) ?? "";
    // Dovecot's passwd-file splits on ':' and Postfix logs the name: keep it to a plain login name.
    if (!/^[A-Za-z0-9._@+-]{1,64}$/.test(username) || seen.has(username)) {
      throw new GatewayConfigError(`${label}.username`, username, "a unique login name of letters, digits and . _ @ + -");
    }
    seen.add(username);
    const password = typeof entry.password === "string" ? entry.password : "";
    if (password.length < 12 || /[\n\r:]/.test(password)) {
      // The value itself is never echoed: this message may reach CI logs.
      throw new GatewayConfigError(
        `${label}.password`,
        "(secret)",
        "a password of at least 12 characters without ':' or line breaks",
      );
    }
    return { username, password };
  });
  const secrets: GatewaySecrets = { submissionUsers };
  const token = raw(flat, "certbotCloudflareToken");
  if (token !== undefined) {
    if (!/^[A-Za-z0-9_-]{8,}$/.test(token)) {
      throw new GatewayConfigError(
        key("certbotCloudflareToken"),
        "(secret)",
        "a Cloudflare API token (letters, digits, - and _)",
      );
    }
    secrets.certbotCloudflareToken = token;
  }
  return secrets;
}

/** How the Pulumi program reaches the node over SSH. Not part of the node model: it describes the operator's access. */
export interface SshConnection {
  host: string;
  user: string;
  port: number;
  /** Present when the (secret) key is in the configuration; otherwise the SSH agent is used. */
  privateKey?: string;
  /** The host's SSH public key, `type base64` (gateway:ssh.hostKey): the only key a deploy accepts. */
  hostKey?: string;
}

const HOST_KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"] as const;

/** How to get a host key without trusting the network that carries it; shown whenever one is missing or wrong. */
export const HOST_KEY_HOWTO =
  "the host's SSH public key as `type base64`, e.g. `ssh-ed25519 AAAAC3Nza…` — read it on the host's console " +
  "(`cat /etc/ssh/ssh_host_ed25519_key.pub`) or take `ssh-keyscan -t ed25519 <address>` and compare its " +
  "fingerprint (`ssh-keygen -lf -`) with the one the host's console or provider shows";

/**
 * A host key as authorized_keys (`type base64 [comment]`) or known_hosts (`host type base64`) writes it,
 * reduced to `type base64`. The base64 must decode to an SSH key blob of the named type: a truncated paste is
 * refused here, not found out as "host key mismatch" on the first step.
 */
export function parseHostKey(label: string, text: string): string {
  const fields = text.trim().split(/\s+/);
  const at = fields.findIndex((field) => (HOST_KEY_TYPES as readonly string[]).includes(field));
  const type = fields[at];
  const blob = at >= 0 ? fields[at + 1] : undefined;
  if (type === undefined || blob === undefined || at > 1 || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) {
    throw new GatewayConfigError(label, text, HOST_KEY_HOWTO);
  }
  const bytes = Buffer.from(blob, "base64");
  const nameLength = bytes.length >= 4 ? bytes.readUInt32BE(0) : -1;
  if (nameLength < 0 || bytes.subarray(4, 4 + nameLength).toString("latin1") !== type || bytes.length < 4 + nameLength + 20) {
    throw new GatewayConfigError(label, text, `a complete ${type} key: ${HOST_KEY_HOWTO}`);
  }
  return `${type} ${blob}`;
}

export function parseSshConnection(flat: FlatConfig): SshConnection {
  const accepted = '{"host":"203.0.113.10","user":"root","port":22}';
  const value = json(flat, "ssh", accepted) ?? {};
  if (!isPlainObject(value)) throw new GatewayConfigError(key("ssh"), flat[key("ssh")], accepted);
  rejectUnknownFields(key("ssh"), value, ["host", "user", "port", "hostKey"]);
  const hostText = fieldText(value.host) ?? requireRaw(flat, "hostname", HOSTNAME_ACCEPTED);
  if (!HOSTNAME.test(hostText) && !isIPv4(hostText) && !isIPv6(hostText)) {
    throw new GatewayConfigError(`${key("ssh")}.host`, hostText, "a host name or an IPv4/IPv6 address");
  }
  const user = fieldText(value.user) ?? "root";
  if (!POSIX_USER.test(user)) throw new GatewayConfigError(`${key("ssh")}.user`, user, "a login name such as root or deploy");
  const connection: SshConnection = {
    host: hostText,
    user,
    port: integerIn(`${key("ssh")}.port`, fieldText(value.port) ?? "22", 1, 65535),
  };
  const hostKey = fieldText(value.hostKey);
  if (hostKey !== undefined) connection.hostKey = parseHostKey(`${key("ssh")}.hostKey`, hostKey);
  const privateKey = flat[key("sshPrivateKey")];
  if (privateKey !== undefined && privateKey.trim() !== "") {
    if (!/^-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privateKey.trim())) {
      throw new GatewayConfigError(
        key("sshPrivateKey"),
        "(secret)",
        "a PEM or OpenSSH private key (-----BEGIN … PRIVATE KEY-----)",
      );
    }
    connection.privateKey = privateKey;
  }
  return connection;
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
  const doc: unknown = parseYaml(text);
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
