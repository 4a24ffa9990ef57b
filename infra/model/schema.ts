// The node's Pulumi configuration (every gateway: key) as one declarative schema: what each key accepts, its
// default, its description, and the rules between keys. config.ts decodes Pulumi's flat strings into the input
// this schema reads and maps its output into the GatewayNode the renderers take; the docs tables and the stack
// file's JSON Schema are generated from it (config-docs.ts).
//
// valibot rather than zod: every valibot function is its own export, so a bundle holds only the ones this schema
// uses, where zod's classic API hangs its methods off classes that come whole; and each valibot issue carries the
// path and the failing input, while a parse with abortEarly off goes on past the first one, so every problem is
// reported at once, each naming gateway:fleet[2].ipv4 and its value. Its JSON Schema converter is kept by the
// same project.
//
// Each leaf is one check with one message saying what is accepted, so a bad value gives exactly one problem.
// Values arrive as Pulumi flattens them: scalars as strings (a YAML 2600 arrives as "2600"), lists and objects
// parsed from JSON, where a number stays a number; leaves take both.
import { isIPv4, isIPv6 } from "node:net";
import * as v from "valibot";
import { DEFAULT_OS_RELEASE, OS_RELEASES, releaseOs, type OsRelease } from "./releases";
import type { GatewayNode, GatewaySecrets } from "./types";

/** How a key is documented and described in the stack file's JSON Schema: filled in beside each field. */
export interface FieldMetadata {
  /** Where the key is normally set: Pulumi.yaml (domain), Pulumi.<stack>.yaml (node), or as a secret. */
  scope?: "domain" | "node" | "secret";
  /** The default as the docs show it, for defaults computed from other keys. */
  defaultText?: string;
  /** The value as the stack file's YAML may hold it (the JSON Schema fragment editors check). */
  json?: Record<string, unknown>;
  /** What a leaf accepts: its error message, and the docs' "accepted" column. */
  accepted?: string;
}

type Scalar = string | number | boolean;
/** Control characters are refused in every value: a newline in a URL or path would split a config line. */
const CONTROL = /\p{Cc}/u;

/** A leaf: a string (or a number or boolean, from YAML or JSON) checked once, then transformed. */
function leaf<T>(
  accepted: string,
  accept: (text: string) => boolean,
  output: (text: string) => T,
  json: Record<string, unknown>,
) {
  return v.pipe(
    v.union([v.string(), v.number(), v.boolean()], accepted),
    v.transform((value: Scalar) => String(value)),
    v.check((text) => !CONTROL.test(text) && accept(text), accepted),
    v.transform(output),
    v.metadata({ json, accepted } satisfies FieldMetadata),
  );
}

const text = (accepted: string, pattern: RegExp, json: Record<string, unknown> = { type: "string", pattern: pattern.source }) =>
  leaf(
    accepted,
    (s) => pattern.test(s),
    (s) => s,
    json,
  );

function integer(min: number, max: number, accepted = `an integer from ${min} to ${max}`) {
  return leaf(accepted, (s) => /^-?\d+$/.test(s) && Number(s) >= min && Number(s) <= max, Number, {
    type: ["integer", "string"],
    minimum: min,
    maximum: max,
    pattern: "^-?\\d+$",
  });
}

function oneOf<const T extends readonly string[]>(options: T, accepted = options.join(", ")) {
  return leaf(
    accepted,
    (s) => options.includes(s),
    (s) => s as T[number],
    { enum: [...options] },
  );
}

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const HOSTNAME_ACCEPTED = "a fully qualified lower-case host name such as mail.brightchain.org";
const EMAIL = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const POSIX_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
/** Dot-atom local part, as the lookup service accepts it (runtime/src/lookup/address.ts). */
const LOCAL_PART = /^[a-z0-9!#$%&'*/=?^_`{|}~+-]+(\.[a-z0-9!#$%&'*/=?^_`{|}~+-]+)*$/;

const hostname = (accepted = HOSTNAME_ACCEPTED) => text(accepted, HOSTNAME);

const ipv4 = (accepted = "an IPv4 address such as 203.0.113.10") =>
  leaf(
    accepted,
    (s) => isIPv4(s),
    (s) => s,
    { type: "string", format: "ipv4" },
  );

// A zone index (fe80::1%eth0) is meaningless in DNS and in Postfix maps; an IPv4-mapped address is an IPv4 one.
// Kept in RFC 5952's canonical text (lower case, longest zero run compressed): the form Cloudflare reads an AAAA
// back in, so 2001:DB8:0:0::10 in a stack file does not show as drift on every refresh.
const ipv6 = leaf(
  "an IPv6 address such as 2001:db8::10",
  (s) => isIPv6(s) && !s.includes("%") && !/^::ffff:/i.test(s),
  (s) => new URL(`http://[${s}]/`).hostname.slice(1, -1),
  { type: "string", format: "ipv6" },
);

const PATH_ACCEPTED = "an absolute path of letters, digits and . _ - / without . or .. segments, such as /var/spool/brightchain";
/**
 * Paths reach shell steps and config files: only characters no shell or config syntax gives a meaning to, and no
 * `.`/`..` segment (`/etc/dkim/../../root/.ssh` would be chowned to opendkim). A trailing slash is dropped.
 */
function isPlainPath(s: string): boolean {
  if (!/^\/[A-Za-z0-9._/-]*$/.test(s) || s.split("/").some((segment) => segment === "." || segment === "..")) return false;
  const trimmed = s.replace(/\/+$/, "");
  return trimmed !== "" && !trimmed.includes("//");
}
const PATH_PATTERN = "^/[A-Za-z0-9._/-]*$";
const absolutePath = () =>
  leaf(PATH_ACCEPTED, isPlainPath, (s) => s.replace(/\/+$/, ""), { type: "string", pattern: PATH_PATTERN });

/** new URL() drops tabs and line breaks silently; anything but printable ASCII is refused before it parses. */
function isUrl(s: string, schemes: readonly string[]): boolean {
  if (!/^[\x21-\x7e]+$/.test(s) || !URL.canParse(s)) return false;
  return schemes.includes(new URL(s).protocol);
}
const urlAccepted = (schemes: readonly string[]) => `a URL starting with ${schemes.map((s) => s + "//").join(" or ")}`;
const url = (schemes: readonly string[]) =>
  leaf(
    urlAccepted(schemes),
    (s) => isUrl(s, schemes),
    (s) => s,
    {
      type: "string",
      pattern: `^(${schemes.map((s) => s.slice(0, -1)).join("|")})://\\S+$`,
    },
  );

/**
 * Positive, at most 1000, at most two decimals: a negative score renders `spamass-milter -r -1` (nearly every
 * message rejected), and a long one prints in exponent form (1e+23, 1e-7), which neither daemon parses.
 */
const score = leaf(
  "a decimal score above 0 and at most 1000, such as 5.0 (at most two decimals)",
  (s) => /^\d{1,4}(\.\d{1,2})?$/.test(s) && Number(s) > 0 && Number(s) <= 1000,
  Number,
  { type: ["number", "string"], exclusiveMinimum: 0, maximum: 1000, pattern: "^\\d{1,4}(\\.\\d{1,2})?$" },
);

const boolean = leaf(
  "true or false",
  (s) => s === "true" || s === "false",
  (s) => s === "true",
  {
    type: ["boolean", "string"],
    enum: [true, false, "true", "false"],
  },
);

/** Networks this wide let much of the Internet relay through the node: an open relay. */
function networkProblem(s: string): string | undefined {
  const openRelay = (prefix: number, narrowest: number) =>
    `a network no wider than /${narrowest}: every address in mynetworks may relay mail anywhere through this node, so /${prefix} makes it an open relay`;
  const v4 = /^([\d.]+)\/(\d{1,2})$/.exec(s);
  if (v4 && isIPv4(v4[1]!) && Number(v4[2]) <= 32) return Number(v4[2]) < 8 ? openRelay(Number(v4[2]), 8) : undefined;
  // Postfix needs IPv6 networks bracketed in mynetworks, or it reads the colons as a table type.
  const v6 = /^\[([0-9a-fA-F:.]+)\]\/(\d{1,3})$/.exec(s);
  if (v6 && isIPv6(v6[1]!) && Number(v6[2]) <= 128) return Number(v6[2]) < 16 ? openRelay(Number(v6[2]), 16) : undefined;
  return "an IPv4 network such as 127.0.0.0/8 or a bracketed IPv6 network such as [::1]/128";
}
const network = v.pipe(
  v.union([v.string(), v.number()], "a network in Postfix syntax"),
  v.transform(String),
  v.check(
    (s) => networkProblem(s) === undefined,
    (issue) => networkProblem(String(issue.input)) ?? "",
  ),
  v.metadata({
    json: { type: "string", pattern: "^(\\d+\\.\\d+\\.\\d+\\.\\d+/\\d+|\\[[0-9a-fA-F:.]+\\]/\\d+)$" },
    accepted: "a network such as 127.0.0.0/8 or [::1]/128, none wider than /8 (IPv6 /16)",
  } satisfies FieldMetadata),
);

const FAMILIES = ["debian", "ubuntu", "rhel"] as const;
const osAccepted = (input: unknown): string => {
  const family = FAMILIES.find((f) => f === input);
  // A bare family name meant "whatever Debian" when it was written; guessing a release now could render
  // Dovecot 2.4 syntax for a 2.3 host. The deploy's first step would refuse the mismatch anyway.
  return family === undefined
    ? OS_RELEASES.join(", ")
    : `a release, not a family: ${OS_RELEASES.filter((r) => r.startsWith(`${family}-`)).join(" or ")} (every release: ${OS_RELEASES.join(", ")})`;
};
const os = v.pipe(
  v.union([v.string(), v.number()], OS_RELEASES.join(", ")),
  v.transform(String),
  v.check(
    (s) => (OS_RELEASES as readonly string[]).includes(s),
    (issue) => osAccepted(issue.input),
  ),
  v.transform((s) => s as OsRelease),
  v.metadata({ json: { enum: [...OS_RELEASES] }, accepted: OS_RELEASES.join(", ") } satisfies FieldMetadata),
);

const FLEET_ACCEPTED = 'a list of {hostname, ipv4, ipv6?}, e.g. [{"hostname":"mail.brightchain.org","ipv4":"203.0.113.10"}]';
/**
 * An object's own message: for an unknown field, the fields accepted; for a missing one, what that field accepts
 * (its schema's message for no value); for something not an object at all, `shape`.
 */
function objectMessage(entries: v.ObjectEntries, shape: string): (issue: v.BaseIssue<unknown>) => string {
  return (issue) => {
    if (issue.expected === "never") return `one of the fields ${Object.keys(entries).join(", ")}`;
    const key = issue.path?.[issue.path.length - 1]?.key;
    const entry = typeof key === "string" ? entries[key] : undefined;
    if (issue.kind === "schema" && issue.input === undefined && entry !== undefined) {
      return v.safeParse(entry, undefined).issues?.[0]?.message ?? shape;
    }
    return shape;
  };
}
function object<const E extends v.ObjectEntries>(entries: E, shape: string) {
  return v.strictObject(entries, objectMessage(entries, shape));
}

type Path = [v.IssuePathItem, ...v.IssuePathItem[]];
const at = (input: unknown, ...keys: (string | number)[]): Path => {
  const path: v.IssuePathItem[] = [];
  let value = input;
  for (const key of keys) {
    const next = (value as Record<string | number, unknown>)[key];
    path.push({ type: "unknown", origin: "value", input: value, key, value: next });
    value = next;
  }
  return path as Path;
};

const fleetHost = object(
  {
    hostname: hostname(),
    ipv4: ipv4("an IPv4 address such as 203.0.113.10 (every node needs one)"),
    ipv6: v.optional(ipv6),
  },
  "an object {hostname, ipv4, ipv6?}",
);

const fleet = v.pipe(
  v.array(fleetHost, FLEET_ACCEPTED),
  v.check((list) => list.length > 0, FLEET_ACCEPTED),
  v.rawCheck(({ dataset, addIssue }) => {
    const names = new Set<unknown>();
    const addresses = new Set<unknown>();
    if (!Array.isArray(dataset.value)) return;
    (dataset.value as Record<string, unknown>[]).forEach((host, i) => {
      if (typeof host !== "object" || host === null) return;
      if (typeof host.hostname === "string") {
        if (names.has(host.hostname))
          addIssue({
            message: "a host name listed once in the fleet",
            input: host.hostname,
            path: at(dataset.value, i, "hostname"),
          });
        names.add(host.hostname);
      }
      for (const field of ["ipv4", "ipv6"] as const) {
        const address = host[field];
        if (typeof address !== "string") continue;
        if (addresses.has(address))
          addIssue({ message: "an address no other fleet node uses", input: address, path: at(dataset.value, i, field) });
        addresses.add(address);
      }
    });
  }),
);

const MAILTO_ACCEPTED = "a mailto: URI such as mailto:dmarc-reports@brightchain.org";
const mailto = leaf(
  MAILTO_ACCEPTED,
  // Commas and '!' separate URIs and size limits in DMARC; an address holding them would change the record.
  (s) => s.startsWith("mailto:") && EMAIL.test(s.slice("mailto:".length)) && !/[,!;]/.test(s.slice("mailto:".length)),
  (s) => s,
  { type: "string", pattern: "^mailto:[^,!;\\s]+@[a-z0-9.-]+$" },
);

const dmarc = object(
  {
    // Monitoring first, as the guide advises: p=none until the reports show every legitimate source aligned.
    policy: v.optional(oneOf(["none", "quarantine", "reject"] as const), "none"),
    // One URI or a list; each is checked on its own so a message names rua[1].
    rua: v.optional(
      v.pipe(
        v.unknown(),
        v.transform((value) => (typeof value === "string" ? [value] : value)),
        v.array(mailto, "a list of mailto: URIs"),
        v.metadata({
          json: { type: ["array", "string"], items: { type: "string", pattern: "^mailto:" } },
        } satisfies FieldMetadata),
      ),
      [],
    ),
    pct: v.optional(integer(0, 100), "100"),
  },
  '{"policy":"none|quarantine|reject","rua":["mailto:…"],"pct":100}',
);

/**
 * A report address for TLS-RPT or a CA's iodef: mailto: or https:. Commas and semicolons separate URIs and tags
 * in those records, and a double quote would end a CAA value: an address holding one would change the record.
 */
const REPORT_URI_ACCEPTED = 'a mailto: or https:// URI such as mailto:tls-reports@brightchain.org, without , ; or "';
const reportUri = leaf(
  REPORT_URI_ACCEPTED,
  (s) => !/[,;"]/.test(s) && (s.startsWith("mailto:") ? EMAIL.test(s.slice("mailto:".length)) : isUrl(s, ["https:"])),
  (s) => s,
  { type: "string", pattern: '^(mailto:[^,;"\\s]+@[a-z0-9.-]+|https://[^,;"\\s]+)$' },
);

const mtaSts = object(
  {
    // testing first: failures are reported (TLS-RPT) while mail still flows, until the reports are clean.
    mode: v.optional(oneOf(["testing", "enforce", "none"] as const), "testing"),
    // RFC 8461 caps max_age at 31557600 (a year); a week is what its examples and large senders use.
    maxAge: v.optional(integer(86_400, 31_557_600, "seconds from 86400 (a day) to 31557600 (a year)"), "604800"),
  },
  '{"mode":"testing|enforce|none","maxAge":604800}',
);

const tlsRpt = object(
  {
    rua: v.optional(
      v.pipe(
        v.unknown(),
        v.transform((value) => (typeof value === "string" ? [value] : value)),
        v.array(reportUri, "a list of mailto: or https:// URIs"),
        v.metadata({
          json: { type: ["array", "string"], items: { type: "string", pattern: "^(mailto:|https://)" } },
        } satisfies FieldMetadata),
      ),
      [],
    ),
  },
  '{"rua":["mailto:tls-reports@brightchain.org"]}',
);

const caa = object(
  {
    issuer: v.optional(hostname("the CA's issuer domain name from its CPS, lower case, such as letsencrypt.org or sectigo.com")),
    // A double quote or semicolon would end the CAA value or add a parameter to it.
    accountUri: v.optional(
      leaf(
        "the https:// URL of your ACME account, such as https://acme-v02.api.letsencrypt.org/acme/acct/123456789",
        (s) => isUrl(s, ["https:"]) && !/[;"]/.test(s),
        (s) => s,
        { type: "string", pattern: '^https://[^;"\\s]+$' },
      ),
    ),
    iodef: v.optional(reportUri),
  },
  '{"issuer":"letsencrypt.org","accountUri":"https://…/acme/acct/…","iodef":"mailto:…"}',
);

const SELECTOR_ACCEPTED = "a DNS label of lower-case letters, digits and hyphens, such as default or mail2026";
const SELECTOR = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** A calendar day that exists: 2026-02-30 is refused, not rolled over into March. */
function isDay(s: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(s)) return false;
  const day = new Date(`${s}T00:00:00Z`);
  return !Number.isNaN(day.getTime()) && day.toISOString().slice(0, 10) === s;
}

const dkimPrevious = object(
  {
    selector: text(SELECTOR_ACCEPTED, SELECTOR),
    keepUntil: leaf("a day as YYYY-MM-DD (UTC), such as 2026-03-31: the last day the previous record is kept", isDay, (s) => s, {
      type: "string",
      format: "date",
    }),
  },
  '{"selector":"default","keepUntil":"2026-03-31"}',
);

const LINEAGE_ACCEPTED =
  "a certbot lineage name of lower-case letters, digits, dots and hyphens, such as mail.brightchain.org-2027";
const lineage = text(LINEAGE_ACCEPTED, /^[a-z0-9](?:[a-z0-9.-]{0,98}[a-z0-9])?$/);

const dane = object(
  {
    enabled: v.optional(boolean, "true"),
    // The lineage Postfix serves; its key is the one DANE senders check. Default: the host name.
    lineage: v.optional(lineage),
    nextLineage: v.optional(lineage),
    previousLineage: v.optional(lineage),
  },
  '{"enabled":true,"lineage":"mail.brightchain.org","nextLineage":"…","previousLineage":"…"}',
);

/** Let's Encrypt's production and staging ACME servers both check CAA for the issuer name letsencrypt.org. */
function isLetsEncrypt(acmeServer: string): boolean {
  return new URL(acmeServer).hostname.endsWith(".api.letsencrypt.org");
}

const HOST_KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"] as const;

/** How to get a host key without trusting the network that carries it; shown whenever one is missing or wrong. */
export const HOST_KEY_HOWTO =
  "the host's SSH public key as `type base64`, e.g. `ssh-ed25519 AAAAC3Nza…` — read it on the host's console " +
  "(`cat /etc/ssh/ssh_host_ed25519_key.pub`) or take `ssh-keyscan -t ed25519 <address>` and compare its " +
  "fingerprint (`ssh-keygen -lf -`) with the one the host's console or provider shows";

/** A host key line as authorized_keys (`type base64 [comment]`) or known_hosts (`host type base64`) writes it. */
function hostKeyFields(text: string): { type?: string; blob?: string; at: number } {
  const fields = text.trim().split(/\s+/);
  const at = fields.findIndex((field) => (HOST_KEY_TYPES as readonly string[]).includes(field));
  return { type: fields[at], blob: at >= 0 ? fields[at + 1] : undefined, at };
}

/**
 * The base64 must decode to an SSH key blob of the named type: a truncated paste is refused here, not found out
 * as "host key mismatch" on the first step.
 */
function hostKeyProblem(text: string): string | undefined {
  const { type, blob, at } = hostKeyFields(text);
  if (type === undefined || blob === undefined || at > 1 || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) return HOST_KEY_HOWTO;
  const bytes = Buffer.from(blob, "base64");
  const nameLength = bytes.length >= 4 ? bytes.readUInt32BE(0) : -1;
  if (nameLength < 0 || bytes.subarray(4, 4 + nameLength).toString("latin1") !== type || bytes.length < 4 + nameLength + 20)
    return `a complete ${type} key: ${HOST_KEY_HOWTO}`;
  return undefined;
}

/** Reduced to `type base64`: the only key a deploy accepts. */
function reducedHostKey(text: string): string {
  const { type, blob } = hostKeyFields(text);
  return `${type} ${blob}`;
}

const SCRAPER_ACCEPTED =
  "an IPv4 or IPv6 network in CIDR form with no host bits set, such as 203.0.113.0/24, 203.0.113.7/32 or 2001:db8::/64";

/** The address as bits, most significant first: 32 for IPv4, 128 for IPv6. */
function addressBits(address: string): bigint {
  if (isIPv4(address)) return address.split(".").reduce((bits, octet) => (bits << 8n) | BigInt(octet), 0n);
  const [head = "", tail] = address.split("::");
  const words = (part: string) => (part === "" ? [] : part.split(":"));
  const written = [
    ...words(head),
    ...(tail === undefined ? [] : [...Array(8 - words(head).length - words(tail).length).fill("0"), ...words(tail)]),
  ];
  return written.reduce((bits, word) => (bits << 16n) | BigInt(`0x${word}`), 0n);
}

/**
 * A network as ufw and firewalld take it in a source rule: unbracketed, the prefix length written, no host bits
 * (ufw would silently widen 203.0.113.7/24 to the /24; refusing says so), IPv4 only in dotted form.
 */
function isScraperNetwork(s: string): boolean {
  const match = /^([0-9A-Fa-f:.]+)\/(\d{1,3})$/.exec(s);
  if (match === null) return false;
  const [address, prefix] = [match[1]!, Number(match[2])];
  const width = isIPv4(address) ? 32 : isIPv6(address) && !address.includes(".") ? 128 : 0;
  if (width === 0 || prefix > width) return false;
  const hostBits = (1n << BigInt(width - prefix)) - 1n;
  return (addressBits(address) & hostBits) === 0n;
}
/** IPv6 in RFC 5952's canonical text, as ufw, firewalld and ip6tables print it. */
const canonicalNetwork = (s: string) => {
  const [address, prefix] = s.split("/") as [string, string];
  return isIPv4(address) ? s : `${new URL(`http://[${address}]/`).hostname.slice(1, -1)}/${prefix}`;
};
const scraperNetwork = leaf(SCRAPER_ACCEPTED, isScraperNetwork, canonicalNetwork, {
  type: "string",
  pattern: "^[0-9A-Fa-f:.]+/\\d{1,3}$",
});
/** A /0 admits the whole Internet to the metrics, which name every queue size and error count of the node. */
const isEverywhere = (network: string) => network.endsWith("/0");

const METRICS_ACCEPTED =
  '{"lookupPort":9526,"inboundPort":9527,"postfixPort":9154,"scrapers":["203.0.113.0/24"],"allowAnyScraper":false}';
const metrics = v.pipe(
  object(
    {
      lookupPort: v.optional(integer(1, 65535), "9526"),
      inboundPort: v.optional(integer(1, 65535), "9527"),
      // prometheus-postfix-exporter's own default port, as every Postfix dashboard expects it.
      postfixPort: v.optional(integer(1, 65535), "9154"),
      scrapers: v.optional(
        v.pipe(
          v.array(scraperNetwork, `a list of networks, e.g. ["203.0.113.0/24"]`),
          v.metadata({ json: { type: "array", items: { type: "string" } } } satisfies FieldMetadata),
        ),
        [],
      ),
      allowAnyScraper: v.optional(boolean, "false"),
    },
    METRICS_ACCEPTED,
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const value = dataset.value;
    value.scrapers.forEach((network, i) => {
      if (isEverywhere(network) && !value.allowAnyScraper)
        addIssue({
          message: `a network narrower than /0 (${network} lets anyone on the Internet read the node's metrics; set gateway:metrics.allowAnyScraper true to mean it)`,
          input: network,
          path: at(value, "scrapers", i),
        });
    });
    const ports: [string, number][] = [
      ["lookupPort", value.lookupPort],
      ["inboundPort", value.inboundPort],
      ["postfixPort", value.postfixPort],
    ];
    ports.forEach(([key, port], i) => {
      const clash = ports.slice(0, i).find(([, other]) => other === port);
      if (clash !== undefined)
        addIssue({ message: `a port other than gateway:metrics.${clash[0]} (${port})`, input: port, path: at(value, key) });
    });
  }),
);

const ssh = object(
  {
    host: v.optional(
      leaf(
        "a host name or an IPv4/IPv6 address",
        (s) => HOSTNAME.test(s) || isIPv4(s) || isIPv6(s),
        (s) => s,
        {
          type: "string",
        },
      ),
    ),
    user: v.optional(text("a login name such as root or deploy", POSIX_USER), "root"),
    port: v.optional(integer(1, 65535), "22"),
    hostKey: v.optional(
      v.pipe(
        v.union([v.string(), v.number()], HOST_KEY_HOWTO),
        v.transform(String),
        v.check(
          (s) => hostKeyProblem(s) === undefined,
          (issue) => hostKeyProblem(String(issue.input)) ?? "",
        ),
        v.transform(reducedHostKey),
        v.metadata({
          json: {
            type: "string",
            pattern: "^(\\S+ )?(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,2}( .*)?$",
          },
        } satisfies FieldMetadata),
      ),
    ),
  },
  '{"host":"203.0.113.10","user":"root","port":22,"hostKey":"ssh-ed25519 …"}',
);

const PASSWORD_ACCEPTED =
  "a password of at least 12 characters without ':', line breaks, control characters or leading/trailing spaces";
const submissionUser = object(
  {
    // Dovecot's passwd-file splits on ':' and Postfix logs the name: keep it to a plain login name.
    username: text("a unique login name of letters, digits and . _ @ + -", /^[A-Za-z0-9._@+-]{1,64}$/),
    // Leading or trailing spaces: Dovecot would hash them and brightchain-send would trim them, so it could
    // never log in. Refusing is simpler than keeping both sides exact.
    password: leaf(
      PASSWORD_ACCEPTED,
      (s) => s.length >= 12 && !/[:]/.test(s) && s === s.trim(),
      (s) => s,
      { type: "string", minLength: 12 },
    ),
  },
  "an object {username, password}",
);
const submissionUsers = v.pipe(
  v.array(submissionUser, 'a list of {username, password}, e.g. [{"username":"brightchain-node","password":"…"}]'),
  v.rawCheck(({ dataset, addIssue }) => {
    const seen = new Set<unknown>();
    if (!Array.isArray(dataset.value)) return;
    (dataset.value as { username?: unknown }[]).forEach((user, i) => {
      if (typeof user?.username !== "string") return;
      if (seen.has(user.username))
        addIssue({
          message: "a unique login name of letters, digits and . _ @ + -",
          input: user.username,
          path: at(dataset.value, i, "username"),
        });
      seen.add(user.username);
    });
  }),
);

const RECIPIENTS_ACCEPTED = 'a list of addresses in gateway:domain, e.g. ["alice@brightchain.org"]; at least one';

/** A field with its description beside it (and, for computed defaults, how the docs show the default). */
function describe<S extends v.GenericSchema>(
  schema: S,
  scope: FieldMetadata["scope"],
  description: string,
  defaultText?: string,
) {
  return v.pipe(schema, v.description(description), v.metadata({ scope, ...(defaultText ? { defaultText } : {}) }));
}

const opt = v.optional;

/**
 * Every `gateway:` key, in the order the docs list them. Defaults are given here and only here: as the value a
 * key takes when unset, or, when it is computed from other keys, in mapToNode (config.ts) with defaultText here.
 */
export const gatewayEntries = {
  // Domain-wide: normally in Pulumi.yaml, shared by every stack of the project.
  domain: describe(
    hostname("a mail domain, a fully qualified lower-case host name such as brightchain.org"),
    "domain",
    "mail domain served, e.g. brightchain.org",
  ),
  primaryHostname: describe(hostname(), "domain", "host name of the primary (MX 10); must be in gateway:fleet"),
  fleet: describe(
    fleet,
    "domain",
    "every gateway node: [{hostname, ipv4, ipv6?}], each host name and address once; the primary is put first whatever the order; SPF lists them all",
  ),
  dmarc: describe(
    opt(dmarc, {}),
    "domain",
    "{policy: none|quarantine|reject, rua: [mailto:…], pct: 0–100}",
    "`{policy: none, rua: [], pct: 100}`",
  ),
  mtaSts: describe(
    opt(mtaSts, {}),
    "domain",
    "{mode: testing|enforce|none, maxAge: seconds}: the MTA-STS policy the primary's stack serves from a Cloudflare Worker at `mta-sts.<domain>` (docs/mta-sts.md)",
    "`{mode: testing, maxAge: 604800}`",
  ),
  tlsRpt: describe(
    opt(tlsRpt, {}),
    "domain",
    "{rua: [mailto:… or https://…]}: where senders send TLS-RPT reports of failed TLS deliveries; no record without one",
    "`{rua: []}`: no TLS-RPT record",
  ),
  caa: describe(
    opt(caa, {}),
    "domain",
    "{issuer, accountUri?, iodef?}: CAA on each node's name: the one CA allowed to issue for it (with accountUri, on the primary's name, only the primary's ACME account), and where the CA reports a refused request",
    "issuer `letsencrypt.org` when gateway:acmeServer is Let's Encrypt's; otherwise none and no CAA record",
  ),
  dnssec: describe(
    opt(boolean, "true"),
    "domain",
    "sign the zone at Cloudflare (DNSSEC) from the primary's stack; the DS record to give the registrar is the stack output `dnssec.ds` (docs/dnssec-dane.md). Turning it off later leaves the zone signed: remove the DS at the registrar first",
  ),
  dane: describe(
    opt(dane, {}),
    "node",
    "{enabled, lineage, nextLineage?, previousLineage?}: DANE TLSA `3 1 1` at `_25._tcp.<hostname>` for the key of the certbot lineage Postfix serves (issued with --reuse-key, so renewals keep it); a key rollover publishes nextLineage's first, then serves it (lineage) with the old one as previousLineage until a later up (docs/dnssec-dane.md)",
    "`{enabled: true, lineage: <hostname>}`",
  ),
  dkimSelector: describe(
    opt(
      text(
        "a DNS label of lower-case letters, digits and hyphens, such as default or mail2026",
        /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/,
      ),
      "default",
    ),
    "domain",
    "DKIM selector",
  ),
  dkimPrevious: describe(
    opt(dkimPrevious),
    "domain",
    "{selector, keepUntil}: a DKIM rotation's previous selector; its record stays published through keepUntil (YYYY-MM-DD, UTC) and the first up after removes it. Signing switches to gateway:dkimSelector only once every authoritative server serves its record (docs/dkim-rotation.md)",
    "none: no rotation under way",
  ),
  dkimKeyBits: describe(opt(oneOf(["2048", "4096"] as const), "2048"), "domain", "RSA key size: 2048 or 4096"),
  dkimKeyDir: describe(opt(absolutePath(), "/etc/dkim"), "domain", "directory of the DKIM key on the host"),
  dkimKeepKeyOnDestroy: describe(
    opt(boolean),
    "node",
    "keep the DKIM private key on the host when `pulumi destroy` takes the node down (a node rebuilt there under the same selector keeps its published record valid)",
    "`false`: the key is shredded with the node's other secrets",
  ),
  spamProbableScore: describe(opt(score, "5.0"), "domain", "score tagged and filed as spam"),
  spamDefiniteScore: describe(
    opt(score, "10.0"),
    "domain",
    "score rejected with 550 at SMTP time; at or above the probable score, and whole with SpamAssassin (spamass-milter -r reads an integer)",
  ),
  maxMessageSize: describe(opt(integer(1024, 2_147_483_647), "26214400"), "domain", "largest message accepted, bytes"),
  acmeEmail: describe(
    opt(text("an e-mail address such as postmaster@brightchain.org", EMAIL)),
    "domain",
    "ACME account e-mail",
    "`postmaster@<domain>`",
  ),
  acmeServer: describe(
    opt(url(["https:"]), "https://acme-v02.api.letsencrypt.org/directory"),
    "domain",
    "ACME directory URL (Let's Encrypt production by default; the lab points it at pebble)",
  ),
  acmeChallenge: describe(
    opt(oneOf(["dns-01", "http-01"] as const), "dns-01"),
    "domain",
    "dns-01 (through Cloudflare; port 80 stays closed) or http-01 (opens port 80)",
  ),
  relayQueueLifetime: describe(
    opt(text("a Postfix time such as 10d, 240h or 5w", /^[1-9]\d*[smhdw]?$/), "10d"),
    "domain",
    "how long a relay keeps mail for a primary that is down, Postfix time",
  ),
  mynetworks: describe(
    opt(
      v.pipe(
        v.array(network, 'a list of networks in Postfix syntax, e.g. ["127.0.0.0/8","[::1]/128"]'),
        v.check((l) => l.length > 0, 'a list of networks in Postfix syntax, e.g. ["127.0.0.0/8","[::1]/128"]'),
      ),
      ["127.0.0.0/8", "[::1]/128"],
    ),
    "domain",
    "networks trusted to relay without authentication, Postfix syntax, IPv6 bracketed; none wider than /8 (IPv6 /16)",
  ),
  lookupPort: describe(opt(integer(1, 65535), "2526"), "domain", "loopback port of the recipient socketmap"),
  lookupCacheTtl: describe(opt(integer(0, 86_400), "300"), "domain", "seconds the lookup service caches an answer"),
  metrics: describe(
    opt(metrics, {}),
    "domain",
    "{lookupPort, inboundPort, postfixPort, scrapers, allowAnyScraper}: the Prometheus endpoints of brightchain-lookup, brightchain-inbound and prometheus-postfix-exporter (docs/monitoring.md). They listen on 127.0.0.1 and the firewall refuses them from outside, unless scrapers lists the networks allowed to scrape (a /0 also needs allowAnyScraper: true)",
    "`{lookupPort: 9526, inboundPort: 9527, postfixPort: 9154, scrapers: []}`: loopback only",
  ),
  registry: describe(
    opt(
      leaf(
        "an absolute file path or an http:// or https:// URL of the node API",
        (s) => (s.startsWith("/") ? isPlainPath(s) : isUrl(s, ["http:", "https:"])),
        (s) => (s.startsWith("/") ? { kind: "file" as const, path: s.replace(/\/+$/, "") } : { kind: "http" as const, url: s }),
        { type: "string", anyOf: [{ pattern: PATH_PATTERN }, { pattern: "^https?://\\S+$" }] },
      ),
      "/etc/brightchain/recipients",
    ),
    "domain",
    "recipient registry: an absolute file path or the node API's http(s) URL",
  ),
  recipients: describe(
    opt(
      v.pipe(
        v.array(
          v.pipe(v.union([v.string(), v.number()], "an address in gateway:domain"), v.transform(String)),
          RECIPIENTS_ACCEPTED,
        ),
        v.check((l) => l.length > 0, RECIPIENTS_ACCEPTED),
        v.metadata({ json: { type: "array", minItems: 1, items: { type: "string" } } } satisfies FieldMetadata),
      ),
    ),
    "domain",
    "file registry only: addresses in gateway:domain the deploy writes into the registry file on every node, relays included (a relay checks recipients against its own copy while the primary is down)",
    "none: the registry file is yours to maintain on every node",
  ),
  nodeUrl: describe(opt(url(["http:", "https:"])), "domain", "BrightChain node API URL", "absent: the embedded local store"),
  spoolDir: describe(
    opt(absolutePath(), "/var/spool/brightchain"),
    "domain",
    "home of the brightchain user, parent of incoming/ (the drop Maildir) and errors/",
  ),
  brightchainUid: describe(opt(integer(1, 65534), "2526"), "domain", "fixed uid of the brightchain user, given to virtual(8)"),
  brightchainGid: describe(opt(integer(1, 65534), "2526"), "domain", "fixed gid of the brightchain group"),
  runtimeInstallDir: describe(opt(absolutePath(), "/opt/brightchain-gateway"), "domain", "where the runtime is installed"),
  storeDir: describe(
    opt(absolutePath()),
    "domain",
    "embedded content-addressed store: keep it on the spool's filesystem, where a message is hard-linked, not copied",
    "`<spoolDir>/store`",
  ),
  // Per node: in Pulumi.<stack>.yaml.
  role: describe(
    oneOf(["primary", "relay"] as const),
    "node",
    "what this node is: the primary (MX 10; SPF, DMARC and DKIM; submission on 587) or a relay (backup MX)",
  ),
  hostname: describe(hostname(), "node", "this node's host name, listed in gateway:fleet; its addresses come from there"),
  os: describe(opt(os, DEFAULT_OS_RELEASE), "node", "the host's exact release (a bare debian, ubuntu or rhel is refused)"),
  spamEngine: describe(
    opt(oneOf(["spamassassin", "rspamd", "none"] as const), "spamassassin"),
    "node",
    "the spam filter that scores mail at SMTP time",
  ),
  dropTransport: describe(
    opt(oneOf(["virtual", "pipe"] as const), "virtual"),
    "node",
    "virtual (Postfix's virtual(8), no process per message) or pipe (the brightchain-maildrop script)",
  ),
  mxPriority: describe(
    opt(integer(0, 65535)),
    "node",
    "10 for the primary; relays above 10",
    "primary 10; relay 10 × its place in the fleet (20, 30 …)",
  ),
  submission: describe(opt(boolean), "node", "port 587 with SASL; the primary only", "`true` on the primary"),
  ssh: describe(
    opt(ssh, {}),
    "node",
    "{host, user, port, hostKey}: how Pulumi reaches the node; hostKey, the host's SSH public key, is required to deploy",
    "`{host: <hostname>, user: root, port: 22}`",
  ),
  // Secrets: `pulumi config set --secret`.
  sshPrivateKey: describe(
    opt(
      v.pipe(
        v.string("a PEM or OpenSSH private key (-----BEGIN … PRIVATE KEY-----)"),
        v.check(
          (s) => /^-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(s.trim()),
          "a PEM or OpenSSH private key (-----BEGIN … PRIVATE KEY-----)",
        ),
        v.metadata({ json: { type: "string" }, accepted: "a PEM or OpenSSH private key" } satisfies FieldMetadata),
      ),
    ),
    "secret",
    "SSH private key for gateway:ssh",
    "absent: the SSH agent",
  ),
  submissionUsers: describe(
    opt(submissionUsers, []),
    "secret",
    "[{username, password}]: SASL accounts for port 587 (passwords ≥ 12 characters, no ':', no leading/trailing spaces)",
    "none",
  ),
  certbotCloudflareToken: describe(
    opt(text("a Cloudflare API token (letters, digits, - and _)", /^[A-Za-z0-9_-]{8,}$/)),
    "secret",
    "Cloudflare token certbot's dns-01 plugin uses on the host (DNS edit on the zone only)",
    "none",
  ),
};

export type GatewayConfigKey = keyof typeof gatewayEntries;
export const SECRET_KEYS: readonly GatewayConfigKey[] = ["sshPrivateKey", "submissionUsers", "certbotCloudflareToken"];
/** Keys whose value is a list or an object: Pulumi hands them to the program as JSON. */
export const STRUCTURED_KEYS = [
  "fleet",
  "dmarc",
  "mtaSts",
  "tlsRpt",
  "caa",
  "dane",
  "dkimPrevious",
  "mynetworks",
  "recipients",
  "ssh",
  "submissionUsers",
  "metrics",
] as const satisfies readonly GatewayConfigKey[];

type Entries = v.InferOutput<v.ObjectSchema<typeof gatewayEntries, undefined>>;

/** Which keys came out without a problem: a rule between keys only speaks when its inputs are valid. */
function validKeys(issues: readonly v.BaseIssue<unknown>[] | undefined, keys: readonly GatewayConfigKey[]): boolean {
  return !issues?.some((issue) => keys.includes(issue.path?.[0]?.key as GatewayConfigKey));
}

/** The rules between keys, each reported at the key the operator should change. */
const crossFieldRules = v.rawCheck<Entries>(({ dataset, addIssue }) => {
  // Untyped when some key failed: each rule reads only keys that came out valid (ok()).
  const c = dataset.value as Entries;
  const ok = (...keys: GatewayConfigKey[]) => validKeys(dataset.issues, keys);
  const problem = (message: string, ...keys: (string | number)[]) => {
    const path = at(c, ...keys);
    addIssue({ message, input: path[path.length - 1]!.value, path });
  };
  const names = ok("fleet") ? c.fleet.map((h) => h.hostname) : undefined;
  const inFleet = names && `a host name listed in gateway:fleet (${names.join(", ")})`;

  if (names && ok("primaryHostname") && !names.includes(c.primaryHostname)) problem(inFleet!, "primaryHostname");
  if (names && ok("hostname") && !names.includes(c.hostname)) problem(inFleet!, "hostname");
  else if (ok("role", "hostname", "primaryHostname")) {
    if (c.role === "primary" && c.hostname !== c.primaryHostname)
      problem(`the primary's host name gateway:primaryHostname (${c.primaryHostname}) when gateway:role is primary`, "hostname");
    if (c.role === "relay" && c.hostname === c.primaryHostname)
      problem(`a fleet host other than the primary (${c.primaryHostname}) when gateway:role is relay`, "hostname");
  }

  if (ok("metrics", "lookupPort")) {
    for (const key of ["lookupPort", "inboundPort", "postfixPort"] as const)
      if (c.metrics[key] === c.lookupPort)
        problem(`a port other than gateway:lookupPort (${c.lookupPort}), which the socketmap listens on`, "metrics", key);
  }

  if (ok("role", "mxPriority") && c.mxPriority !== undefined) {
    if (c.role === "primary" && c.mxPriority !== 10) problem("10 for the primary (the most preferred MX)", "mxPriority");
    if (c.role === "relay" && c.mxPriority <= 10)
      problem("a priority above 10 for a relay (20, 30 …), so senders prefer the primary", "mxPriority");
  }

  if (ok("spamProbableScore", "spamDefiniteScore") && c.spamDefiniteScore < c.spamProbableScore)
    problem(`a score at or above gateway:spamProbableScore (${c.spamProbableScore})`, "spamDefiniteScore");
  // spamass-milter's -r reads a whole number (atoi): 9.5 would silently become 9 and reject mail the operator
  // meant to deliver.
  else if (ok("spamEngine", "spamDefiniteScore") && c.spamEngine === "spamassassin" && !Number.isInteger(c.spamDefiniteScore))
    problem(
      "a whole score such as 10 with gateway:spamEngine spamassassin (spamass-milter -r takes an integer)",
      "spamDefiniteScore",
    );

  // An accounturi from another ACME server names no account the configured one knows: every issuance would fail.
  // Checked only where a CAA record is published (the CA is known): with another ACME server and no
  // gateway:caa.issuer (the lab's pebble) there is none, and the domain-wide caa keys are left unused.
  if (ok("caa", "acmeServer") && c.caa.accountUri !== undefined && (c.caa.issuer !== undefined || isLetsEncrypt(c.acmeServer))) {
    const server = new URL(c.acmeServer).origin;
    if (new URL(c.caa.accountUri).origin !== server)
      problem(`an account URL on the ACME server gateway:acmeServer (${server}/…)`, "caa", "accountUri");
  }

  if (ok("dkimPrevious", "dkimSelector") && c.dkimPrevious !== undefined && c.dkimPrevious.selector === c.dkimSelector)
    problem(
      `a selector other than gateway:dkimSelector (${c.dkimSelector}): the one signed with before the rotation`,
      "dkimPrevious",
      "selector",
    );

  if (ok("dane", "hostname")) {
    const served = c.dane.lineage ?? c.hostname;
    if (c.dane.nextLineage === served)
      problem(`a lineage other than the one served (${served}): the next key's own lineage`, "dane", "nextLineage");
    if (c.dane.previousLineage === served)
      problem(`a lineage other than the one served (${served}): the lineage served before the switch`, "dane", "previousLineage");
    else if (c.dane.previousLineage !== undefined && c.dane.previousLineage === c.dane.nextLineage)
      problem(
        "a lineage other than gateway:dane.nextLineage: a key is either about to be served or was served",
        "dane",
        "previousLineage",
      );
  }

  if (ok("role", "submission") && c.role === "relay" && c.submission === true)
    problem("false (or unset) on a relay: submission on 587 is served by the primary only", "submission");

  if (ok("recipients", "registry") && c.recipients !== undefined && c.registry.kind === "http")
    problem("no value while gateway:registry is the node API's URL (the node answers for its users)", "recipients");
  else if (ok("recipients", "domain") && c.recipients !== undefined) {
    c.recipients.forEach((address, i) => {
      const text = address.trim().toLowerCase();
      const at = text.lastIndexOf("@");
      const local = text.slice(0, at);
      // A leading # would make the registry line a comment; longer than 254 the lookup service never matches it.
      const fits =
        at > 0 &&
        at <= 64 &&
        text.length <= 254 &&
        !local.startsWith("#") &&
        text.slice(at + 1) === c.domain &&
        LOCAL_PART.test(local);
      if (!fits) problem(`an address in ${c.domain}`, "recipients", i);
    });
  }
});

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

export interface GatewayStack {
  node: GatewayNode;
  secrets: GatewaySecrets;
  ssh: SshConnection;
}

/** The validated keys as the renderers' model: the one place defaults computed from other keys are applied. */
function toStack(c: Entries): GatewayStack {
  // Primary first is what the model promises (and what default relay priorities count from).
  const fleet = [
    ...c.fleet.filter((h) => h.hostname === c.primaryHostname),
    ...c.fleet.filter((h) => h.hostname !== c.primaryHostname),
  ];
  const host = fleet.find((h) => h.hostname === c.hostname)!;
  const spoolDir = c.spoolDir;
  const node: GatewayNode = {
    role: c.role,
    domain: c.domain,
    host,
    os: releaseOs(c.os),
    mxPriority: c.mxPriority ?? (c.role === "primary" ? 10 : 10 + 10 * fleet.indexOf(host)),
    fleet,
    primaryHostname: c.primaryHostname,
    spam: { engine: c.spamEngine, probableScore: c.spamProbableScore, definiteScore: c.spamDefiniteScore },
    drop: {
      transport: c.dropTransport,
      spoolDir,
      mailDropDir: `${spoolDir}/incoming`,
      errorDir: `${spoolDir}/errors`,
      uid: c.brightchainUid,
      gid: c.brightchainGid,
      user: "brightchain",
      group: "brightchain",
    },
    dkim: {
      selector: c.dkimSelector,
      keyDir: c.dkimKeyDir,
      keyBits: Number(c.dkimKeyBits) as 2048 | 4096,
      ...(c.dkimKeepKeyOnDestroy === true ? { keepKeyOnDestroy: true } : {}),
      ...(c.dkimPrevious !== undefined ? { previous: c.dkimPrevious } : {}),
    },
    dmarc: c.dmarc,
    tls: {
      challenge: c.acmeChallenge,
      acmeEmail: c.acmeEmail ?? `postmaster@${c.domain}`,
      acmeServer: c.acmeServer,
      certName: c.dane.lineage ?? c.hostname,
      certFile: `/etc/letsencrypt/live/${c.dane.lineage ?? c.hostname}/fullchain.pem`,
      keyFile: `/etc/letsencrypt/live/${c.dane.lineage ?? c.hostname}/privkey.pem`,
    },
    lookup: {
      port: c.lookupPort,
      cacheTtlSeconds: c.lookupCacheTtl,
      registry:
        c.registry.kind === "file" && c.recipients !== undefined
          ? { ...c.registry, addresses: [...new Set(c.recipients.map((a) => a.trim().toLowerCase()))].sort() }
          : c.registry,
    },
    maxMessageSize: c.maxMessageSize,
    mynetworks: c.mynetworks,
    metrics: {
      listenHost:
        c.metrics.scrapers.length === 0 ? "127.0.0.1" : c.metrics.scrapers.some((n) => n.includes(":")) ? "::" : "0.0.0.0",
      lookupPort: c.metrics.lookupPort,
      inboundPort: c.metrics.inboundPort,
      postfixPort: c.metrics.postfixPort,
      scrapers: c.metrics.scrapers,
    },
    runtime: {
      installDir: c.runtimeInstallDir,
      envFile: "/etc/brightchain/gateway.env",
      storeDir: c.storeDir ?? `${spoolDir}/store`,
    },
  };
  if (c.dane.enabled) {
    node.dane = {};
    if (c.dane.nextLineage !== undefined) node.dane.nextLineage = c.dane.nextLineage;
    if (c.dane.previousLineage !== undefined) node.dane.previousLineage = c.dane.previousLineage;
  }
  if (c.nodeUrl !== undefined) node.runtime.nodeUrl = c.nodeUrl.replace(/\/+$/, "");
  if (c.role === "primary") node.submission = { enabled: c.submission ?? true, saslBackend: "dovecot" };
  else node.relay = { forwardTo: c.primaryHostname, queueLifetime: c.relayQueueLifetime };
  // The domain-wide mail security records are the primary stack's, like SPF and DMARC.
  if (c.role === "primary") {
    node.mtaSts = { mode: c.mtaSts.mode, maxAgeSeconds: c.mtaSts.maxAge };
    node.dnssec = c.dnssec;
    if (c.tlsRpt.rua.length > 0) node.tlsRpt = { rua: c.tlsRpt.rua };
    const issuer = c.caa.issuer ?? (isLetsEncrypt(c.acmeServer) ? "letsencrypt.org" : undefined);
    if (issuer !== undefined) {
      node.caa = { issuer };
      if (c.caa.accountUri !== undefined) node.caa.accountUri = c.caa.accountUri;
      if (c.caa.iodef !== undefined) node.caa.iodef = c.caa.iodef;
    }
  }

  const secrets: GatewaySecrets = { submissionUsers: c.submissionUsers };
  if (c.certbotCloudflareToken !== undefined) secrets.certbotCloudflareToken = c.certbotCloudflareToken;
  const ssh: SshConnection = { host: c.ssh.host ?? c.hostname, user: c.ssh.user, port: c.ssh.port };
  if (c.ssh.hostKey !== undefined) ssh.hostKey = c.ssh.hostKey;
  if (c.sshPrivateKey !== undefined) ssh.privateKey = c.sshPrivateKey;
  return { node, secrets, ssh };
}

const entries = v.object(gatewayEntries, objectMessage(gatewayEntries, "a mapping of gateway: keys"));

/** The whole stack configuration: every key, the rules between them, then the model. */
export const GatewayConfigSchema = v.pipe(entries, crossFieldRules, v.transform(toStack));

/**
 * What a deploy needs beyond a renderable model (`gateway render` withholds the files instead): a pinned host
 * key — without one the command provider accepts whatever answers on the address, and hands it root, the SASL
 * password and the Cloudflare token — and the secrets the node's files are rendered from.
 */
const deployRules = v.rawCheck<Entries>(({ dataset, addIssue }) => {
  const c = dataset.value as Entries;
  const ok = (...keys: GatewayConfigKey[]) => validKeys(dataset.issues, keys);
  const missing = (message: string, ...keys: string[]) =>
    addIssue({
      message,
      input: undefined,
      path: keys.map((key) => ({ type: "unknown", origin: "value", input: undefined, key, value: undefined })) as Path,
    });
  if (ok("ssh") && c.ssh.hostKey === undefined) missing(HOST_KEY_HOWTO, "ssh", "hostKey");
  if (
    ok("role", "submission", "submissionUsers") &&
    c.role === "primary" &&
    c.submission !== false &&
    c.submissionUsers.length === 0
  )
    missing("at least one {username, password} while gateway:submission is on (the primary's default)", "submissionUsers");
  if (ok("acmeChallenge", "certbotCloudflareToken") && c.acmeChallenge === "dns-01" && c.certbotCloudflareToken === undefined)
    missing("a Cloudflare API token while gateway:acmeChallenge is dns-01 (or set it to http-01)", "certbotCloudflareToken");
});
export const GatewayDeploySchema = v.pipe(entries, crossFieldRules, deployRules, v.transform(toStack));
