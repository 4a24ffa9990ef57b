// GatewayDns: one cloudflare.DnsRecord per record dnsRecords() says this stack owns, and on the primary the
// Worker serving the MTA-STS policy those records announce. No DNS knowledge here beyond how Cloudflare wants a
// record written.
import * as pulumi from "@pulumi/pulumi";
import * as cloudflare from "@pulumi/cloudflare";
import type { DnsRecord, GatewayNode } from "../model/types";
import { caaFields, dkimPreviousRecord, dnsRecords, tlsaRecords, txtCharacterStrings, type CaaFields } from "../render/dns";
import { dkimRotating } from "../plan/dkim-rotation";
import { daneKeys } from "../plan/dane";
import { mtaStsPolicyText } from "../render/mta-sts";
import { pathSlug } from "../plan/shell";
import { MtaStsWorker } from "./mtaStsWorker";

export interface GatewayDnsArgs {
  node: GatewayNode;
  /** The Cloudflare zone holding the records, e.g. brightchain.org. */
  zoneName: string;
  /** The component's name in stacks deployed before: each record is aliased from `<previousName>-<record>`. */
  previousName?: string;
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
  /** Mid-rotation: the previous selector's `<selector>.txt` as read back from the primary (its kept record). */
  dkimPreviousText?: pulumi.Input<string>;
  /** The DANE key step's stdout (`<lineage> <sha256>` lines, GatewayHost.daneKeysText): this node's TLSA records. */
  daneKeysText?: pulumi.Input<string>;
}

/** A TLSA record's four fields, as Cloudflare's API takes them. */
export interface TlsaFields {
  usage: number;
  selector: number;
  matchingType: number;
  certificate: string;
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

/** Cloudflare takes CAA and TLSA records as their fields, not as text; every other type has none. */
export function cloudflareData(record: DnsRecord): CaaFields | TlsaFields | undefined {
  if (record.type === "CAA") return caaFields(record.content);
  if (record.type !== "TLSA") return undefined;
  const match = /^(\d) (\d) (\d) ([0-9a-f]+)$/.exec(record.content);
  if (!match)
    throw new Error(
      `TLSA content ${JSON.stringify(record.content)} is not accepted; accepted: <usage> <selector> <matching> <hex>`,
    );
  return { usage: Number(match[1]), selector: Number(match[2]), matchingType: Number(match[3]), certificate: match[4]! };
}

const hasFields = (type: string): boolean => type === "CAA" || type === "TLSA";

/**
 * Stable child name: a record's identity is its type and owner name (a stack owns one MX, one SPF …), and for
 * CAA its tag as well (a name holds an `issue` and an `iodef` record).
 */
export function recordResourceName(record: Pick<DnsRecord, "type" | "name" | "content">): string {
  const tag = record.type === "CAA" ? `${caaFields(record.content).tag}-` : "";
  return `${record.type.toLowerCase()}-${tag}${pathSlug(record.name)}`;
}

function recordArgs(zoneId: pulumi.Input<string>, record: pulumi.Output<DnsRecord>): cloudflare.DnsRecordArgs {
  return {
    zoneId,
    name: record.name,
    type: record.type,
    content: record.apply((r) => (hasFields(r.type) ? undefined : cloudflareContent(r))),
    // Decided by the type alone for every other record: the DKIM record's content is unknown until the host
    // answers, and an unknown `data` would preview as a change of a field that record never has.
    data: record.type.apply((t) =>
      hasFields(t) ? record.apply(cloudflareData) : pulumi.output<CaaFields | TlsaFields | undefined>(undefined),
    ),
    ttl: record.ttl,
    priority: record.apply((r) => r.priority),
    comment: record.purpose.apply((p) => p.slice(0, 100)),
    // Mail records must never go through Cloudflare's proxy: MX targets need the node's real address.
    proxied: record.type.apply((t) => (t === "A" || t === "AAAA" ? false : undefined)),
  };
}

/**
 * A DKIM record's child name: one per selector, so a rotation adds the new selector's record beside the old one
 * instead of renaming it (which would remove the old record at once). The oldest record published carries the
 * alias of the name stacks used before, `dkim`, so upgrading renames nothing at Cloudflare.
 */
export function dkimChildName(selector: string): string {
  return `dkim-${pathSlug(selector)}`;
}

/**
 * What a certificate's issuance reads: the node's A/AAAA (an http-01 validation resolves them) and CAA (the CA
 * checks it). Published first, so a CAA naming the wrong CA or account fails the deploy's certificate step
 * instead of the renewal two months later.
 */
const beforeCertificate = (record: Pick<DnsRecord, "type">): boolean =>
  record.type === "A" || record.type === "AAAA" || record.type === "CAA";

/**
 * The stack's records in two phases, so Pulumi orders them against the host: the records a certificate needs at
 * once (GatewayHost's certificate step waits for `addressRecords`), then with `publishMailRecords` the MX, SPF,
 * DMARC, DKIM, MTA-STS and TLS-RPT records, after the node's verification passed.
 */
export class GatewayDns extends pulumi.ComponentResource {
  readonly zoneId: pulumi.Output<string>;
  /** By child name (recordResourceName). */
  readonly records: Record<string, cloudflare.DnsRecord>;
  /** The records the certificate step waits for: the node's A/AAAA and (primary) the fleet's CAA. */
  readonly addressRecords: cloudflare.DnsRecord[];
  /**
   * DNSSEC on the zone (primary stack, gateway:dnssec): Cloudflare signs it and computes the DS record the
   * registrar must publish; undefined on relays and when turned off.
   */
  readonly dnssec?: cloudflare.ZoneDnssec;
  /** The Worker serving the MTA-STS policy; undefined when this stack publishes none (relays). */
  mtaStsWorker?: MtaStsWorker;
  /** What was published, as data: name, type, content, priority. */
  published: pulumi.Output<DnsRecord[]>;
  /** The DKIM record built from the key read back from the host; undefined when this stack owns none. */
  dkimRecord?: pulumi.Output<DnsRecord>;
  private readonly node: GatewayNode;
  private readonly componentName: string;
  private readonly previousName?: string;
  /** Mid-rotation: the new selector's record, published early (publishDkimEarly). */
  private earlyDkim?: pulumi.Output<DnsRecord>;
  /** The zone's account, which owns Workers. */
  private readonly accountId: pulumi.Output<string>;

  constructor(name: string, args: GatewayDnsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("brightchain:gateway:GatewayDns", name, {}, opts);
    this.node = args.node;
    this.componentName = name;
    if (args.previousName !== undefined) this.previousName = args.previousName;
    const zone = cloudflare.getZoneOutput({ filter: { name: args.zoneName } }, { parent: this });
    this.zoneId = zone.zoneId;
    this.accountId = zone.account.id;
    this.records = {};
    if (args.node.role === "primary" && args.node.dnssec === true) {
      this.dnssec = new cloudflare.ZoneDnssec(
        `${name}-dnssec`,
        { zoneId: this.zoneId, status: "active" },
        // Never turned off by a delete (a destroy, or gateway:dnssec false): while the registrar still publishes
        // the DS record, an unsigned zone is bogus to every validating resolver and the whole domain, mail and
        // web, stops resolving for them. Turning it off is the registrar's step first (docs/dnssec-dane.md).
        { parent: this, retainOnDelete: true },
      );
    }
    const addresses = dnsRecords(args.node).filter(beforeCertificate);
    this.addressRecords = addresses.map((record) => this.add(pulumi.output(record), recordResourceName(record), []));
    this.published = pulumi.output(addresses);
  }

  /**
   * MX (and on the primary SPF, DMARC, DKIM, MTA-STS, TLS-RPT), each created only after `args.after`; the
   * MTA-STS record also after the Worker serving its policy, so its id never announces a policy not yet served.
   * Call once.
   */
  publishMailRecords(args: MailRecordsArgs): void {
    const fixed = dnsRecords(this.node);
    if (this.node.mtaSts !== undefined) {
      this.mtaStsWorker = new MtaStsWorker(
        `${this.componentName}-mta-sts`,
        {
          accountId: this.accountId,
          zoneId: this.zoneId,
          domain: this.node.domain,
          policy: mtaStsPolicyText(this.node.fleet, this.node.mtaSts),
        },
        { parent: this },
      );
    }
    const mtaStsName = `_mta-sts.${this.node.domain}`;
    for (const record of fixed.filter((r) => !beforeCertificate(r))) {
      const after =
        record.name === mtaStsName && this.mtaStsWorker
          ? [...args.after, this.mtaStsWorker.script, this.mtaStsWorker.customDomain]
          : args.after;
      this.add(pulumi.output(record), recordResourceName(record), after);
    }
    let published = pulumi.output(fixed);
    const node = this.node;
    if (this.earlyDkim !== undefined) {
      // Mid-rotation: the new selector's record went out with publishDkimEarly; the previous one's stays.
      published = pulumi.all([published, this.earlyDkim]).apply(([records, dkim]) => [...records, dkim]);
      if (args.dkimPreviousText !== undefined) {
        const previous = pulumi.output(args.dkimPreviousText).apply((text) => dkimPreviousRecord(node, text));
        const name = `${node.dkim.previous!.selector}._domainkey.${node.domain}`;
        const record = pulumi.output({
          name,
          type: "TXT",
          content: previous.content,
          ttl: previous.ttl,
          purpose: previous.purpose,
        });
        // The record the stack published before the rotation: it keeps its resource (alias of the old name).
        this.add(record as pulumi.Output<DnsRecord>, dkimChildName(node.dkim.previous!.selector), args.after, ["dkim"]);
        published = pulumi.all([published, previous]).apply(([records, kept]) => [...records, kept]);
      }
    } else if (args.dkimRecordText !== undefined && this.node.role === "primary") {
      // The DKIM record is the one dnsRecords adds once it is given the key read back from the host. Its name
      // and type are known before the key is: only its content waits for the host, so a preview shows an
      // unknown content, not a replaced record.
      const withKey = pulumi.output(args.dkimRecordText).apply((text) => dnsRecords(node, text));
      const name = `${node.dkim.selector}._domainkey.${node.domain}`;
      const dkim = withKey.apply((records) => {
        const extra = records.filter((r) => !fixed.some((f) => f.type === r.type && f.name === r.name));
        if (extra.length !== 1 || extra[0]!.name !== name || extra[0]!.type !== "TXT")
          throw new Error(`expected exactly one DKIM record ${name} from the key read back, got ${extra.length}`);
        return extra[0]!;
      });
      const record = pulumi.output({ name, type: "TXT", content: dkim.content, ttl: dkim.ttl, purpose: dkim.purpose });
      this.add(record as pulumi.Output<DnsRecord>, dkimChildName(node.dkim.selector), args.after, ["dkim"]);
      this.dkimRecord = dkim;
      published = withKey;
    }
    if (args.daneKeysText !== undefined && daneKeys(this.node).length > 0) {
      // One resource per lineage, named after it: a rollover adds and removes records, and the switch itself
      // changes none of them (only their purpose), so the set served never passes through a state without the
      // key Postfix shows. Their content waits for the host; their names and type do not.
      const node = this.node;
      const tlsa = pulumi.output(args.daneKeysText).apply((text) => tlsaRecords(node, text));
      daneKeys(node).forEach(({ lineage }, index) => {
        const record = tlsa.apply((records) => records[index]!);
        const known = pulumi.output({
          name: `_25._tcp.${node.host.hostname}`,
          type: "TLSA",
          content: record.content,
          ttl: record.ttl,
          purpose: record.purpose,
        });
        this.add(known as pulumi.Output<DnsRecord>, `tlsa-${pathSlug(lineage)}`, args.after);
      });
      published = pulumi.all([published, tlsa]).apply(([records, extra]) => [...records, ...extra]);
    }
    this.published = published;
    this.registerOutputs({ zoneId: this.zoneId, published: this.published });
  }

  /**
   * Mid-rotation (gateway:dkimPrevious kept): the new selector's record from the key step's stdout, published at
   * once rather than after the node verified, because the host waits for the zone to serve it before OpenDKIM
   * signs with it (dkim-selector-served). Returns the record that wait depends on; undefined when not rotating.
   */
  publishDkimEarly(dkimKeyText: pulumi.Input<string>): cloudflare.DnsRecord | undefined {
    if (!dkimRotating(this.node)) return undefined;
    const node = this.node;
    const name = `${node.dkim.selector}._domainkey.${node.domain}`;
    const dkim = pulumi.output(dkimKeyText).apply((text) => {
      const found = dnsRecords(node, text).find((r) => r.type === "TXT" && r.name === name);
      if (found === undefined) throw new Error(`expected the DKIM record ${name} from the key read back`);
      return found;
    });
    const record = pulumi.output({ name, type: "TXT", content: dkim.content, ttl: dkim.ttl, purpose: dkim.purpose });
    this.earlyDkim = dkim;
    this.dkimRecord = dkim;
    return this.add(record as pulumi.Output<DnsRecord>, dkimChildName(node.dkim.selector), []);
  }

  private add(
    record: pulumi.Output<DnsRecord>,
    childName: string,
    after: pulumi.Input<pulumi.Resource>[],
    formerNames: string[] = [],
  ): cloudflare.DnsRecord {
    if (this.records[childName])
      throw new Error(
        `two DNS records map to the resource ${this.componentName}-${childName}; each type and name (and CAA tag) may appear once per stack`,
      );
    const aliases = [
      ...formerNames.map((former) => ({ name: `${this.componentName}-${former}` })),
      ...(this.previousName !== undefined
        ? [childName, ...formerNames].map((former) => ({ name: `${this.previousName}-${former}` }))
        : []),
    ];
    const resource = new cloudflare.DnsRecord(`${this.componentName}-${childName}`, recordArgs(this.zoneId, record), {
      parent: this,
      dependsOn: after,
      ...(aliases.length > 0 ? { aliases } : {}),
    });
    this.records[childName] = resource;
    return resource;
  }
}
