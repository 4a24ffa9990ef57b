// DNS records as data. Each stack owns a disjoint set, so two stacks never fight over a record at Cloudflare:
// the primary owns its A/AAAA, MX 10 and the domain-wide SPF, DMARC, DKIM, MTA-STS, TLS-RPT and CAA; each relay
// owns its A/AAAA and MX.
import type { CaaSettings, DnsRecord, GatewayNode, PtrExpectation, TlsRptSettings } from "../model/types";
import { daneKeys, parseDaneKeys, tlsaContent, tlsaName } from "../plan/dane";
import { mtaStsPolicyText, mtaStsRecordText } from "./mta-sts";

/** One hour: long enough to cache, short enough that a re-addressed node is reachable the same day. */
export const RECORD_TTL = 3600;

/**
 * SPF lists every node by address (ip4:/ip6:) rather than `mx a:host …` as the guide does: receivers then need
 * no further DNS lookups (SPF allows ten, and `mx` alone costs one plus one per MX host), and the record cannot
 * silently widen when an MX or A record changes. The fleet is project configuration, so a new relay's address
 * reaches this record the next time the primary stack is updated (the drift check shows it until then).
 */
export function spfRecordText(node: GatewayNode): string {
  const mechanisms = node.fleet.flatMap((h) => [`ip4:${h.ipv4}`, ...(h.ipv6 ? [`ip6:${h.ipv6}`] : [])]);
  return ["v=spf1", ...mechanisms, "-all"].join(" ");
}

export function dmarcRecordText(node: GatewayNode): string {
  const tags = [`v=DMARC1`, `p=${node.dmarc.policy}`];
  if (node.dmarc.rua.length > 0) tags.push(`rua=${node.dmarc.rua.join(",")}`);
  tags.push(`pct=${node.dmarc.pct}`);
  return tags.join("; ");
}

/**
 * The DKIM TXT text from the public key read back from the host. Accepts either the bare base64 key or the
 * `<selector>.txt` file opendkim-genkey writes (a BIND fragment with the text split into quoted strings).
 */
export function dkimRecordText(publicKey: string): string {
  const quoted = [...publicKey.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
  const text = (quoted.length > 0 ? quoted.join("") : publicKey).replace(/\s+/g, "");
  const p = /(?:^|;)p=([A-Za-z0-9+/=]+)(?:;|$)/.exec(text)?.[1] ?? (/^[A-Za-z0-9+/=]+$/.test(text) ? text : undefined);
  if (p === undefined || p.length < 100) {
    throw new Error(
      `DKIM public key ${JSON.stringify(publicKey.slice(0, 60))} is not usable; expected the base64 key or opendkim-genkey's <selector>.txt`,
    );
  }
  return `v=DKIM1; h=sha256; k=rsa; p=${p}`;
}

export function tlsRptRecordText(settings: TlsRptSettings): string {
  return `v=TLSRPTv1; rua=${settings.rua.join(",")}`;
}

/** A CAA record's three fields (RFC 8659), as Cloudflare's API takes them. */
export interface CaaFields {
  flags: number;
  tag: string;
  value: string;
}

/** The presentation form a zone file and dig use: `0 issue "letsencrypt.org"`. */
export function caaContent(fields: CaaFields): string {
  return `${fields.flags} ${fields.tag} "${fields.value}"`;
}

export function caaFields(content: string): CaaFields {
  const match = /^(\d{1,3}) ([a-z0-9]+) "([^"]*)"$/i.exec(content);
  if (!match || Number(match[1]) > 255)
    throw new Error(`CAA content ${JSON.stringify(content)} is not accepted; accepted: <flags 0-255> <tag> "<value>"`);
  return { flags: Number(match[1]), tag: match[2]!, value: match[3]! };
}

/**
 * CAA on each node's own name, not the apex: a CA checks the name it issues for and then its parents, so an apex
 * record would also bind every other certificate of the domain (the website's, Cloudflare's edge certificate for
 * mta-sts.<domain>) to this one CA. Flags 0: a CA that does not know a property may still issue.
 */
export function caaRecordContents(settings: CaaSettings): string[] {
  const issue = settings.accountUri === undefined ? settings.issuer : `${settings.issuer}; accounturi=${settings.accountUri}`;
  const contents = [caaContent({ flags: 0, tag: "issue", value: issue })];
  if (settings.iodef !== undefined) contents.push(caaContent({ flags: 0, tag: "iodef", value: settings.iodef }));
  return contents;
}

/**
 * The accounturi binds only the primary's own name: each relay registers its own ACME account on its first
 * certificate, which the primary's account URI would refuse.
 */
function caaRecords(node: GatewayNode, settings: CaaSettings): DnsRecord[] {
  return node.fleet.flatMap((host) => {
    const own = host.hostname === node.host.hostname;
    const forHost = own ? settings : { ...settings, accountUri: undefined };
    return caaRecordContents(forHost).map((content) => ({
      name: host.hostname,
      type: "CAA" as const,
      content,
      ttl: RECORD_TTL,
      purpose: content.includes(" iodef ")
        ? `CAA: where a CA reports a refused certificate request for ${host.hostname}.`
        : `CAA: only ${settings.issuer}${forHost.accountUri ? " (this node's ACME account)" : ""} may issue certificates for ${host.hostname}.`,
    }));
  });
}

function addressRecords(node: GatewayNode): DnsRecord[] {
  const { hostname, ipv4, ipv6 } = node.host;
  const records: DnsRecord[] = [
    {
      name: hostname,
      type: "A",
      content: ipv4,
      ttl: RECORD_TTL,
      purpose: `Address of ${hostname}, the target of its MX record; must match the PTR of ${ipv4}.`,
    },
  ];
  if (ipv6) {
    records.push({
      name: hostname,
      type: "AAAA",
      content: ipv6,
      ttl: RECORD_TTL,
      purpose: `IPv6 address of ${hostname}; must match the PTR of ${ipv6}.`,
    });
  }
  return records;
}

export function dnsRecords(node: GatewayNode, dkimPublicKey?: string): DnsRecord[] {
  const records = addressRecords(node);
  records.push({
    name: node.domain,
    type: "MX",
    content: node.host.hostname,
    priority: node.mxPriority,
    ttl: RECORD_TTL,
    purpose:
      node.role === "primary"
        ? `Mail for ${node.domain} goes to the primary first.`
        : `Backup MX: accepts mail for ${node.domain} while the primary is unreachable and forwards it.`,
  });
  if (node.role !== "primary") return records;

  records.push(
    {
      name: node.domain,
      type: "TXT",
      content: spfRecordText(node),
      ttl: RECORD_TTL,
      purpose: "SPF: only the gateway nodes may send as this domain; everything else fails (-all).",
    },
    {
      name: `_dmarc.${node.domain}`,
      type: "TXT",
      content: dmarcRecordText(node),
      ttl: RECORD_TTL,
      purpose: `DMARC: what receivers do with mail failing SPF and DKIM alignment (p=${node.dmarc.policy}), and where reports go.`,
    },
  );
  if (node.mtaSts !== undefined) {
    records.push({
      name: `_mta-sts.${node.domain}`,
      type: "TXT",
      content: mtaStsRecordText(mtaStsPolicyText(node.fleet, node.mtaSts)),
      ttl: RECORD_TTL,
      purpose: `MTA-STS (mode ${node.mtaSts.mode}): its id changes with the policy served at https://mta-sts.${node.domain}, so senders refetch it.`,
    });
  }
  if (node.tlsRpt !== undefined) {
    records.push({
      name: `_smtp._tls.${node.domain}`,
      type: "TXT",
      content: tlsRptRecordText(node.tlsRpt),
      ttl: RECORD_TTL,
      purpose: "TLS-RPT: where senders report failed TLS (MTA-STS, DANE) deliveries to this domain.",
    });
  }
  if (node.caa !== undefined) records.push(...caaRecords(node, node.caa));
  if (dkimPublicKey !== undefined) {
    records.push({
      name: `${node.dkim.selector}._domainkey.${node.domain}`,
      type: "TXT",
      content: dkimRecordText(dkimPublicKey),
      ttl: RECORD_TTL,
      purpose: `DKIM public key for selector ${node.dkim.selector}; the private half never leaves ${node.host.hostname}.`,
    });
  }
  return records;
}

/**
 * A DKIM rotation's previous selector, its record kept through keepUntil so mail signed before the switch still
 * verifies wherever it is read late (a forwarded message, a mailbox re-checking it).
 */
export function dkimPreviousRecord(node: GatewayNode, previousTxt: string): DnsRecord {
  const previous = node.dkim.previous;
  if (previous === undefined)
    throw new Error(`gateway:dkimPrevious is not set on ${node.host.hostname}: no previous DKIM record`);
  return {
    name: `${previous.selector}._domainkey.${node.domain}`,
    type: "TXT",
    content: dkimRecordText(previousTxt),
    ttl: RECORD_TTL,
    purpose: `DKIM public key of the previous selector ${previous.selector}, kept until ${previous.keepUntil} for mail signed before the rotation.`,
  };
}

const DANE_ROLE_PURPOSE = {
  current: "the key Postfix serves on port 25",
  next: "the next key, published before Postfix serves it (rollover)",
  previous: "the key served before the rollover, kept until a later up removes it",
} as const;

/**
 * The node's `_25._tcp` TLSA records, one per lineage daneKeys names and in its order, from the DANE key step's
 * stdout (`<lineage> <sha256>` lines). Each stack owns its own node's records.
 */
export function tlsaRecords(node: GatewayNode, daneKeysText: string): DnsRecord[] {
  const hashes = parseDaneKeys(node, daneKeysText);
  return daneKeys(node).map(({ lineage, role }) => ({
    name: tlsaName(node),
    type: "TLSA" as const,
    content: tlsaContent(hashes.get(lineage)!),
    ttl: RECORD_TTL,
    purpose: `DANE: ${DANE_ROLE_PURPOSE[role]} (certbot lineage ${lineage}); valid only once the zone is DNSSEC-signed.`,
  }));
}

export function ipv4ReverseName(address: string): string {
  return `${address.split(".").reverse().join(".")}.in-addr.arpa`;
}

/** Full 32-nibble form: ip6.arpa has no shorthand for `::`. */
export function ipv6ReverseName(address: string): string {
  let text = address.toLowerCase();
  // An embedded IPv4 tail (::ffff:192.0.2.1) stands for the last two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const groups = (part: string): string[] => (part === "" ? [] : part.split(":"));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const zeros = Array<string>(8 - left.length - right.length).fill("0");
  const nibbles = [...left, ...zeros, ...right].map((g) => g.padStart(4, "0")).join("");
  return `${nibbles.split("").reverse().join(".")}.ip6.arpa`;
}

/** Reverse DNS is set at the address's provider, not Cloudflare: exported so operators (and `doctor`) can check it. */
export function ptrExpectations(node: GatewayNode): PtrExpectation[] {
  const { hostname, ipv4, ipv6 } = node.host;
  const expectations: PtrExpectation[] = [{ address: ipv4, reverseName: ipv4ReverseName(ipv4), expectedHostname: hostname }];
  if (ipv6) expectations.push({ address: ipv6, reverseName: ipv6ReverseName(ipv6), expectedHostname: hostname });
  return expectations;
}

/** A TXT character-string holds at most 255 bytes; longer texts (2048-bit DKIM keys) become several strings. */
export function txtCharacterStrings(text: string): string[] {
  const bytes = Buffer.from(text, "utf8");
  const chunks: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += 255) {
    chunks.push(bytes.subarray(offset, offset + 255).toString("utf8"));
  }
  return chunks.length > 0 ? chunks : [""];
}

function quoteTxt(chunk: string): string {
  return `"${chunk.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function ownerName(origin: string, name: string): string {
  if (name === origin) return "@";
  if (name.endsWith(`.${origin}`)) return name.slice(0, -origin.length - 1);
  return `${name}.`;
}

export interface ZoneFileOptions {
  /** Comment lines written after the header (what the file leaves out, and why). */
  notes?: string[];
}

/**
 * The records as a BIND master file for `origin`. Cloudflare owns the real SOA and NS; a stand-in pair
 * (pointing at the first MX target) is written so the file loads as-is into BIND, Knot or the lab's resolver.
 */
export function renderZoneFile(origin: string, records: DnsRecord[], options: ZoneFileOptions = {}): string {
  const nameserver = records.find((r) => r.type === "MX")?.content ?? `ns.${origin}`;
  const lines = [
    `; Zone fragment for ${origin}: the records this stack owns at Cloudflare.`,
    `; SOA and NS below are stand-ins so the file loads in BIND/Knot; Cloudflare serves the real ones.`,
    ...(options.notes ?? []).map((n) => `; ${n}`),
    `$ORIGIN ${origin}.`,
    `$TTL ${RECORD_TTL}`,
    `@\tIN\tSOA\t${nameserver}. hostmaster.${origin}. ( 1 7200 3600 1209600 300 )`,
    `@\tIN\tNS\t${nameserver}.`,
  ];
  for (const record of records) {
    lines.push(`; ${record.purpose}`);
    const owner = ownerName(origin, record.name);
    const head = `${owner}\t${record.ttl}\tIN\t${record.type}`;
    switch (record.type) {
      case "A":
      case "AAAA":
        lines.push(`${head}\t${record.content}`);
        break;
      case "MX":
        lines.push(`${head}\t${record.priority ?? 10}\t${record.content}.`);
        break;
      case "CAA":
      case "TLSA":
        lines.push(`${head}\t${record.content}`);
        break;
      case "TXT": {
        const strings = txtCharacterStrings(record.content).map(quoteTxt);
        lines.push(strings.length === 1 ? `${head}\t${strings[0]}` : `${head}\t( ${strings.join("\n\t\t\t\t")} )`);
        break;
      }
    }
  }
  return `${lines.join("\n")}\n`;
}
