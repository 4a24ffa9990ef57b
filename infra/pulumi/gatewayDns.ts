// GatewayDns: one cloudflare.DnsRecord per record dnsRecords() says this stack owns. No DNS knowledge here
// beyond how Cloudflare wants a record written.
import * as pulumi from "@pulumi/pulumi";
import * as cloudflare from "@pulumi/cloudflare";
import type { DnsRecord, GatewayNode } from "../model/types";
import { dnsRecords, txtCharacterStrings } from "../render/dns";
import { pathSlug } from "../plan/shell";

export interface GatewayDnsArgs {
  node: GatewayNode;
  /** The Cloudflare zone holding the records, e.g. brightchain.org. */
  zoneName: string;
  /**
   * opendkim-genkey's <selector>.txt as read back from the primary (GatewayHost.dkimRecordText). Absent on
   * relays: the primary's stack owns the DKIM record.
   */
  dkimRecordText?: pulumi.Input<string>;
}

/**
 * Cloudflare's API wants TXT content as quoted RFC 1035 character-strings of at most 255 bytes; given one long
 * unquoted string it splits it itself and reads back a different value, which every refresh reports as drift.
 */
export function cloudflareContent(record: DnsRecord): string {
  if (record.type !== "TXT") return record.content;
  return txtCharacterStrings(record.content)
    .map((chunk) => `"${chunk.replace(/[\\"]/g, (c) => `\\${c}`)}"`)
    .join(" ");
}

/** Stable child name: a record's identity is its type and owner name (a stack owns one MX, one SPF …). */
export function recordResourceName(record: Pick<DnsRecord, "type" | "name">): string {
  return `${record.type.toLowerCase()}-${pathSlug(record.name)}`;
}

function recordArgs(zoneId: pulumi.Input<string>, record: pulumi.Output<DnsRecord>): cloudflare.DnsRecordArgs {
  return {
    zoneId,
    name: record.name,
    type: record.type,
    content: record.apply(cloudflareContent),
    ttl: record.ttl,
    priority: record.apply((r) => r.priority),
    comment: record.purpose.apply((p) => p.slice(0, 100)),
    // Mail records must never go through Cloudflare's proxy: MX targets need the node's real address.
    proxied: record.type.apply((t) => (t === "A" || t === "AAAA" ? false : undefined)),
  };
}

export class GatewayDns extends pulumi.ComponentResource {
  readonly zoneId: pulumi.Output<string>;
  /** By child name (recordResourceName). */
  readonly records: Record<string, cloudflare.DnsRecord>;
  /** What was published, as data: name, type, content, priority. */
  readonly published: pulumi.Output<DnsRecord[]>;
  /** The DKIM record built from the key read back from the host; undefined when this stack owns none. */
  readonly dkimRecord?: pulumi.Output<DnsRecord>;

  constructor(name: string, args: GatewayDnsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("brightchain:gateway:GatewayDns", name, {}, opts);

    this.zoneId = cloudflare.getZoneOutput({ filter: { name: args.zoneName } }, { parent: this }).zoneId;

    const fixed = dnsRecords(args.node);
    this.records = {};
    const add = (record: pulumi.Output<DnsRecord>, childName: string) => {
      if (this.records[childName])
        throw new Error(`two DNS records map to the resource ${name}-${childName}; each type and name may appear once per stack`);
      this.records[childName] = new cloudflare.DnsRecord(`${name}-${childName}`, recordArgs(this.zoneId, record), {
        parent: this,
      });
    };
    for (const record of fixed) add(pulumi.output(record), recordResourceName(record));

    let published = pulumi.output(fixed);
    if (args.dkimRecordText !== undefined && args.node.role === "primary") {
      // The DKIM record is the one dnsRecords adds once it is given the key read back from the host.
      const withKey = pulumi.output(args.dkimRecordText).apply((text) => dnsRecords(args.node, text));
      const dkim = withKey.apply((records) => {
        const extra = records.filter((r) => !fixed.some((f) => f.type === r.type && f.name === r.name));
        if (extra.length !== 1) throw new Error(`expected exactly one DKIM record from the key read back, got ${extra.length}`);
        return extra[0]!;
      });
      add(dkim, "dkim");
      this.dkimRecord = dkim;
      published = withKey;
    }
    this.published = published;
    this.registerOutputs({ zoneId: this.zoneId, published: this.published });
  }
}
