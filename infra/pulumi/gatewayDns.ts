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
}

export interface MailRecordsArgs {
  /**
   * What must have finished before mail is pointed at the node: its final verification. An MX published while
   * the node still runs Debian's default Postfix would have senders' mail refused (550) for every recipient.
   */
  after: pulumi.Input<pulumi.Resource>[];
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

const isAddress = (record: Pick<DnsRecord, "type">): boolean => record.type === "A" || record.type === "AAAA";

/**
 * The stack's records in two phases, so Pulumi orders them against the host: the node's address records at
 * once (an http-01 certificate needs them: GatewayHost's certificate step waits for `addressRecords`), then
 * with `publishMailRecords` the MX, SPF, DMARC and DKIM records, after the node's verification passed.
 */
export class GatewayDns extends pulumi.ComponentResource {
  readonly zoneId: pulumi.Output<string>;
  /** By child name (recordResourceName). */
  readonly records: Record<string, cloudflare.DnsRecord>;
  /** The node's A/AAAA records: what an ACME http-01 validation resolves. */
  readonly addressRecords: cloudflare.DnsRecord[];
  /** What was published, as data: name, type, content, priority. */
  published: pulumi.Output<DnsRecord[]>;
  /** The DKIM record built from the key read back from the host; undefined when this stack owns none. */
  dkimRecord?: pulumi.Output<DnsRecord>;
  private readonly node: GatewayNode;
  private readonly componentName: string;

  constructor(name: string, args: GatewayDnsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("brightchain:gateway:GatewayDns", name, {}, opts);
    this.node = args.node;
    this.componentName = name;
    this.zoneId = cloudflare.getZoneOutput({ filter: { name: args.zoneName } }, { parent: this }).zoneId;
    this.records = {};
    const addresses = dnsRecords(args.node).filter(isAddress);
    this.addressRecords = addresses.map((record) => this.add(pulumi.output(record), recordResourceName(record), []));
    this.published = pulumi.output(addresses);
  }

  /** MX (and on the primary SPF, DMARC, DKIM), each created only after `args.after`. Call once. */
  publishMailRecords(args: MailRecordsArgs): void {
    const fixed = dnsRecords(this.node);
    for (const record of fixed.filter((r) => !isAddress(r)))
      this.add(pulumi.output(record), recordResourceName(record), args.after);
    let published = pulumi.output(fixed);
    if (args.dkimRecordText !== undefined && this.node.role === "primary") {
      // The DKIM record is the one dnsRecords adds once it is given the key read back from the host. Its name
      // and type are known before the key is: only its content waits for the host, so a preview shows an
      // unknown content, not a replaced record.
      const node = this.node;
      const withKey = pulumi.output(args.dkimRecordText).apply((text) => dnsRecords(node, text));
      const name = `${node.dkim.selector}._domainkey.${node.domain}`;
      const dkim = withKey.apply((records) => {
        const extra = records.filter((r) => !fixed.some((f) => f.type === r.type && f.name === r.name));
        if (extra.length !== 1 || extra[0]!.name !== name || extra[0]!.type !== "TXT")
          throw new Error(`expected exactly one DKIM record ${name} from the key read back, got ${extra.length}`);
        return extra[0]!;
      });
      const record = pulumi.output({ name, type: "TXT", content: dkim.content, ttl: dkim.ttl, purpose: dkim.purpose });
      this.add(record as pulumi.Output<DnsRecord>, "dkim", args.after);
      this.dkimRecord = dkim;
      published = withKey;
    }
    this.published = published;
    this.registerOutputs({ zoneId: this.zoneId, published: this.published });
  }

  private add(record: pulumi.Output<DnsRecord>, childName: string, after: pulumi.Input<pulumi.Resource>[]): cloudflare.DnsRecord {
    if (this.records[childName])
      throw new Error(
        `two DNS records map to the resource ${this.componentName}-${childName}; each type and name may appear once per stack`,
      );
    const resource = new cloudflare.DnsRecord(`${this.componentName}-${childName}`, recordArgs(this.zoneId, record), {
      parent: this,
      dependsOn: after,
    });
    this.records[childName] = resource;
    return resource;
  }
}
