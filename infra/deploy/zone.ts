// DNS for the lab engine: the cloudflare.DnsRecord resources the program registers become records of a zone
// the lab's DNS server serves. Each stack owns some of the zone's records (the primary its MX 10, SPF, DMARC,
// DKIM; a relay its MX 20 and A), so the zone is the union of every deployed stack's records.
import type { DnsRecord, DnsRecordType } from "../model/types";
import { caaContent, caaFields, renderZoneFile } from "../render/dns";

const RECORD_TYPES: readonly DnsRecordType[] = ["A", "AAAA", "MX", "TXT", "CAA", "TLSA"];

/** The lab DNS server's own name in every SOA/NS it serves (the lab's default zones use the same). */
export const LAB_NAMESERVER = "ns.lab.test";

/**
 * Cloudflare TXT content as GatewayDns writes it — quoted RFC 1035 character-strings — back to the text. Plain
 * unquoted content is taken as it is, as Cloudflare would.
 */
export function txtFromCloudflareContent(content: string): string {
  const trimmed = content.trim();
  if (!trimmed.startsWith('"')) return content;
  const strings: string[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"\s*/gy;
  let consumed = 0;
  let match: RegExpExecArray | null;
  while ((match = pattern.exec(trimmed)) !== null) {
    strings.push(match[1]!.replace(/\\(.)/g, "$1"));
    consumed = pattern.lastIndex;
  }
  if (consumed !== trimmed.length) {
    throw new Error(
      `TXT content ${JSON.stringify(content)} is not accepted; accepted: unquoted text or "…" "…" character-strings`,
    );
  }
  return strings.join("");
}

/** GatewayDns gives Cloudflare a CAA record as `data` {flags, tag, value}; the zone file wants its presentation form. */
function caaFromCloudflareData(resource: string, data: unknown): string {
  const { flags, tag, value } = (data ?? {}) as Record<string, unknown>;
  if (typeof flags !== "number" || typeof tag !== "string" || typeof value !== "string")
    throw new Error(`${resource}: CAA data is ${JSON.stringify(data)}; accepted: {flags: 0-255, tag, value}`);
  // Through caaFields, so a value the zone file could not hold is refused here, not by the DNS server.
  return caaContent(caaFields(caaContent({ flags, tag, value })));
}

/** GatewayDns gives Cloudflare a TLSA record as `data` {usage, selector, matchingType, certificate}. */
function tlsaFromCloudflareData(resource: string, data: unknown): string {
  const { usage, selector, matchingType, certificate } = (data ?? {}) as Record<string, unknown>;
  if (
    typeof usage !== "number" ||
    typeof selector !== "number" ||
    typeof matchingType !== "number" ||
    typeof certificate !== "string" ||
    !/^[0-9a-fA-F]+$/.test(certificate)
  )
    throw new Error(
      `${resource}: TLSA data is ${JSON.stringify(data)}; accepted: {usage, selector, matchingType, certificate: hex}`,
    );
  return `${usage} ${selector} ${matchingType} ${certificate.toLowerCase()}`;
}

/** A cloudflare.DnsRecord's inputs as the record the renderers know, named for the error a bad one gives. */
export function dnsRecordFromCloudflareInputs(resource: string, inputs: Record<string, unknown>): DnsRecord {
  const type = inputs.type;
  if (typeof type !== "string" || !(RECORD_TYPES as readonly string[]).includes(type)) {
    throw new Error(`${resource}: type is ${JSON.stringify(type)}; accepted: ${RECORD_TYPES.join(", ")}`);
  }
  const name = inputs.name;
  if (typeof name !== "string" || name === "")
    throw new Error(`${resource}: name is ${JSON.stringify(name)}; accepted: a fully qualified name`);
  const content =
    type === "CAA" && inputs.data !== undefined
      ? caaFromCloudflareData(resource, inputs.data)
      : type === "TLSA" && inputs.data !== undefined
        ? tlsaFromCloudflareData(resource, inputs.data)
        : inputs.content;
  if (typeof content !== "string" || content === "")
    throw new Error(`${resource}: content is ${JSON.stringify(content)}; accepted: the record's value`);
  const ttl = typeof inputs.ttl === "number" ? inputs.ttl : 1;
  const record: DnsRecord = {
    name: name.replace(/\.$/, ""),
    type: type as DnsRecordType,
    content: type === "TXT" ? txtFromCloudflareContent(content) : content.replace(/\.$/, ""),
    // Cloudflare's ttl 1 means "automatic" (300 s).
    ttl: ttl === 1 ? 300 : ttl,
    purpose: typeof inputs.comment === "string" ? inputs.comment : resource,
  };
  if (typeof inputs.priority === "number") record.priority = inputs.priority;
  return record;
}

/** Records of several stacks for one zone: those inside it, in a stable order, each type+name+content once. */
export function mergeZoneRecords(origin: string, recordsByStack: Record<string, DnsRecord[]>): DnsRecord[] {
  const inZone = (name: string) => name === origin || name.endsWith(`.${origin}`);
  const seen = new Set<string>();
  const merged: DnsRecord[] = [];
  for (const stack of Object.keys(recordsByStack).sort()) {
    for (const record of recordsByStack[stack]!) {
      const identity = `${record.name} ${record.type} ${record.priority ?? ""} ${record.content}`;
      if (!inZone(record.name) || seen.has(identity)) continue;
      seen.add(identity);
      merged.push(record);
    }
  }
  return merged;
}

/**
 * The zone file the lab DNS serves: renderZoneFile's records under the lab server's SOA and NS. The serial
 * must grow with every publish, or the server keeps answering from the zone it already loaded.
 */
export function renderLabZone(origin: string, records: DnsRecord[], serial: number): string {
  if (!Number.isInteger(serial) || serial < 1 || serial > 0xffffffff) {
    throw new Error(`zone serial ${serial} is not accepted; accepted: an integer from 1 to 4294967295`);
  }
  const rendered = renderZoneFile(origin, records, {
    notes: ["Published to the lab DNS by the lab deploy engine (infra/deploy)."],
  });
  return rendered
    .split("\n")
    .map((line) => {
      if (/^@\tIN\tSOA\t/.test(line))
        return `@\tIN\tSOA\t${LAB_NAMESERVER}. hostmaster.${origin}. ( ${serial} 3600 600 86400 300 )`;
      if (/^@\tIN\tNS\t/.test(line)) return `@\tIN\tNS\t${LAB_NAMESERVER}.`;
      return line;
    })
    .join("\n");
}
