// The DNS queries node:dns cannot make on Node 20: TLSA (RFC 6698), and any query with the DNSSEC OK bit, whose
// answer carries DNSKEY, DS and RRSIG records and the AD bit (RFC 4034/4035). A query is encoded and its answer
// decoded here, bounded like any hostile input: every length is checked against the packet, compression pointers
// may only point backwards, and a packet that does not parse is an error, never a partial answer. Only fixed-layout
// record data is taken apart (TLSA, DNSKEY, DS, RRSIG): a validator needs their bytes as served, not a library's
// re-encoding of them.

export const TYPE_NS = 2;
export const TYPE_CNAME = 5;
export const TYPE_SOA = 6;
export const TYPE_PTR = 12;
export const TYPE_MX = 15;
export const TYPE_DS = 43;
export const TYPE_RRSIG = 46;
export const TYPE_DNSKEY = 48;
export const TYPE_TLSA = 52;
const TYPE_OPT = 41;
const CLASS_IN = 1;
/** The EDNS buffer size DNS Flag Day 2020 settled on: no fragmented UDP; a larger answer comes with TC, over TCP. */
export const EDNS_UDP_SIZE = 1232;

export class DnsWireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DnsWireError";
  }
}

/** `name` in wire form, uncompressed, letters as given (`brightchain.org` → 0b brightchain 03 org 00). */
export function nameToWire(name: string): Buffer {
  const trimmed = name.replace(/\.$/, "");
  if (trimmed === "") return Buffer.from([0]);
  const parts: Buffer[] = [];
  for (const label of trimmed.split(".")) {
    const bytes = Buffer.from(label, "ascii");
    if (bytes.length === 0 || bytes.length > 63)
      throw new DnsWireError(`name ${JSON.stringify(name)} has a label of ${bytes.length} bytes; accepted: 1 to 63`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  const wire = Buffer.concat([...parts, Buffer.from([0])]);
  if (wire.length > 255) throw new DnsWireError(`name ${JSON.stringify(name)} is ${wire.length} bytes in wire form; at most 255`);
  return wire;
}

/** A name in wire form with its letters lower-cased: RFC 4034 §6.2's canonical form (length octets are < 64). */
export function canonicalName(wire: Buffer): Buffer {
  return Buffer.from(wire.map((byte) => (byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte)));
}

/**
 * A standard query (RD set) for `name`, class IN. With `dnssec`, an EDNS OPT record with the DO bit (send the
 * RRSIGs) and the AD bit in the header (say whether the answer was validated, RFC 6840 §5.7).
 */
export function encodeQuery(id: number, name: string, type: number, options: { dnssec?: boolean } = {}): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(options.dnssec ? 0x0120 : 0x0100, 2);
  header.writeUInt16BE(1, 4);
  if (options.dnssec) header.writeUInt16BE(1, 10);
  const question = Buffer.alloc(4);
  question.writeUInt16BE(type, 0);
  question.writeUInt16BE(CLASS_IN, 2);
  const parts = [header, nameToWire(name), question];
  if (options.dnssec) {
    // Root owner, type OPT, class = UDP payload size, TTL = extended rcode 0, version 0, flags DO; no options.
    const opt = Buffer.alloc(11);
    opt.writeUInt16BE(TYPE_OPT, 1);
    opt.writeUInt16BE(EDNS_UDP_SIZE, 3);
    opt.writeUInt32BE(0x00008000, 5);
    parts.push(opt);
  }
  return Buffer.concat(parts);
}

/**
 * The name starting at `offset`, pointers followed (each strictly backwards, so no loop), as uncompressed wire
 * form, and the offset after it in the packet. `end` bounds a name inside record data.
 */
export function readName(
  packet: Buffer,
  offset: number,
  end = packet.length,
  options: { pointers?: boolean } = {},
): { wire: Buffer; next: number } {
  const labels: Buffer[] = [];
  let size = 1;
  let next: number | undefined;
  let limit = end;
  for (let count = 0; count < 128; count++) {
    if (offset >= limit) throw new DnsWireError("name runs past the end of its data");
    const length = packet[offset]!;
    if (length === 0) {
      labels.push(Buffer.from([0]));
      return { wire: Buffer.concat(labels), next: next ?? offset + 1 };
    }
    if ((length & 0xc0) === 0xc0) {
      if (options.pointers === false) throw new DnsWireError("name is compressed where compression is not allowed");
      if (offset + 2 > limit) throw new DnsWireError("compression pointer runs past the end of its data");
      const target = packet.readUInt16BE(offset) & 0x3fff;
      if (target >= offset) throw new DnsWireError(`compression pointer at ${offset} points forward (to ${target})`);
      next ??= offset + 2;
      // A pointer leads back into the packet: the name may continue up to the packet's end, never past the pointer.
      limit = offset;
      offset = target;
      continue;
    }
    if ((length & 0xc0) !== 0) throw new DnsWireError(`label type 0x${length.toString(16)} is not supported`);
    if (offset + 1 + length > limit) throw new DnsWireError("label runs past the end of its data");
    size += 1 + length;
    if (size > 255) throw new DnsWireError("name is longer than 255 bytes");
    labels.push(packet.subarray(offset, offset + 1 + length));
    offset += 1 + length;
  }
  throw new DnsWireError("name has more than 128 labels");
}

/** `brightchain.org` (lower case, no trailing dot) from wire form. */
export function nameText(wire: Buffer): string {
  const labels: string[] = [];
  for (let offset = 0; offset < wire.length && wire[offset] !== 0; offset += 1 + wire[offset]!) {
    labels.push(wire.subarray(offset + 1, offset + 1 + wire[offset]!).toString("latin1"));
  }
  return labels.join(".").toLowerCase();
}

export interface DnsRecordData {
  /** Owner name, lower case, no trailing dot. */
  name: string;
  /** Owner name in wire form as served (uncompressed). */
  owner: Buffer;
  type: number;
  class: number;
  ttl: number;
  /** The record data as served: names in it may be compression pointers into the packet. */
  data: Buffer;
  /**
   * The record data standing alone and in RFC 4034 §6.2 canonical form, as a signature covers it: the names in
   * NS, CNAME, SOA, PTR and MX data expanded and lower-cased; other types' data as served.
   */
  canonical: Buffer;
}

export interface DnsAnswer {
  id: number;
  rcode: number;
  truncated: boolean;
  /** AD: the server validated the answer (only a validating resolver sets it, and only when asked to). */
  authenticated: boolean;
  /** The answer section's records. */
  records: DnsRecordData[];
}

/** The record data with the names of the RFC 4034 §6.2 types this decoder knows expanded and lower-cased. */
function canonicalData(packet: Buffer, type: number, start: number, end: number): Buffer {
  const name = (offset: number) => {
    const { wire, next } = readName(packet, offset, end);
    return { wire: canonicalName(wire), next };
  };
  switch (type) {
    case TYPE_NS:
    case TYPE_CNAME:
    case TYPE_PTR: {
      const target = name(start);
      if (target.next !== end)
        throw new DnsWireError(
          `${type === TYPE_NS ? "NS" : type === TYPE_CNAME ? "CNAME" : "PTR"} data has bytes after its name`,
        );
      return target.wire;
    }
    case TYPE_MX: {
      if (end - start < 3) throw new DnsWireError(`MX data of ${end - start} bytes; at least 3 expected`);
      const exchange = name(start + 2);
      if (exchange.next !== end) throw new DnsWireError("MX data has bytes after its exchange name");
      return Buffer.concat([packet.subarray(start, start + 2), exchange.wire]);
    }
    case TYPE_SOA: {
      const primary = name(start);
      const mailbox = name(primary.next);
      if (end - mailbox.next !== 20) throw new DnsWireError("SOA data does not end in its five 32-bit numbers");
      return Buffer.concat([primary.wire, mailbox.wire, packet.subarray(mailbox.next, end)]);
    }
    default:
      return packet.subarray(start, end);
  }
}

export function decodeAnswer(packet: Buffer): DnsAnswer {
  if (packet.length < 12) throw new DnsWireError(`answer of ${packet.length} bytes is shorter than a DNS header`);
  const flags = packet.readUInt16BE(2);
  if ((flags & 0x8000) === 0) throw new DnsWireError("packet is a query, not an answer");
  const questions = packet.readUInt16BE(4);
  const answers = packet.readUInt16BE(6);
  let offset = 12;
  for (let i = 0; i < questions; i++) {
    offset = readName(packet, offset).next + 4;
    if (offset > packet.length) throw new DnsWireError("question runs past the end of the packet");
  }
  const records: DnsAnswer["records"] = [];
  for (let i = 0; i < answers; i++) {
    const owner = readName(packet, offset);
    offset = owner.next;
    if (offset + 10 > packet.length) throw new DnsWireError("record header runs past the end of the packet");
    const type = packet.readUInt16BE(offset);
    const length = packet.readUInt16BE(offset + 8);
    const start = offset + 10;
    if (start + length > packet.length) throw new DnsWireError("record data runs past the end of the packet");
    records.push({
      name: nameText(owner.wire),
      owner: owner.wire,
      type,
      class: packet.readUInt16BE(offset + 2),
      ttl: packet.readUInt32BE(offset + 4),
      data: packet.subarray(start, start + length),
      canonical: canonicalData(packet, type, start, start + length),
    });
    offset = start + length;
  }
  return {
    id: packet.readUInt16BE(0),
    rcode: flags & 0x000f,
    truncated: (flags & 0x0200) !== 0,
    authenticated: (flags & 0x0020) !== 0,
    records,
  };
}

/** TLSA rdata as dig prints it: `3 1 1 <hex>`. */
export function tlsaText(data: Buffer): string {
  if (data.length < 4) throw new DnsWireError(`TLSA data of ${data.length} bytes; at least 4 expected`);
  return `${data[0]} ${data[1]} ${data[2]} ${data.subarray(3).toString("hex")}`;
}

export interface DnskeyData {
  flags: number;
  protocol: number;
  algorithm: number;
  publicKey: Buffer;
}

/** RFC 4034 §2.1: flags, protocol (3), algorithm, public key. */
export function dnskeyData(data: Buffer): DnskeyData {
  if (data.length < 5) throw new DnsWireError(`DNSKEY data of ${data.length} bytes; at least 5 expected`);
  return { flags: data.readUInt16BE(0), protocol: data[2]!, algorithm: data[3]!, publicKey: data.subarray(4) };
}

export interface DsData {
  keyTag: number;
  algorithm: number;
  digestType: number;
  digest: Buffer;
}

/** RFC 4034 §5.1: key tag, algorithm, digest type, digest. */
export function dsData(data: Buffer): DsData {
  if (data.length < 5) throw new DnsWireError(`DS data of ${data.length} bytes; at least 5 expected`);
  return { keyTag: data.readUInt16BE(0), algorithm: data[2]!, digestType: data[3]!, digest: data.subarray(4) };
}

export interface RrsigData {
  typeCovered: number;
  algorithm: number;
  labels: number;
  originalTtl: number;
  /** Seconds since the epoch modulo 2^32 (RFC 4034 §3.1.5): compare in serial number arithmetic. */
  expiration: number;
  inception: number;
  keyTag: number;
  /** Lower case, no trailing dot. */
  signerName: string;
  signature: Buffer;
  /** The RRSIG data without the signature, signer's name lower-cased: what the signature covers first (§3.1.8.1). */
  signedFields: Buffer;
}

/** RFC 4034 §3.1: eighteen bytes of fields, the signer's name (never compressed, §3.1.7), the signature. */
export function rrsigData(data: Buffer): RrsigData {
  if (data.length < 19) throw new DnsWireError(`RRSIG data of ${data.length} bytes; at least 19 expected`);
  let signer: Buffer;
  let next: number;
  try {
    ({ wire: signer, next } = readName(data, 18, data.length, { pointers: false }));
  } catch (error) {
    throw new DnsWireError(`RRSIG signer's name: ${(error as Error).message}`);
  }
  if (next >= data.length) throw new DnsWireError("RRSIG has no signature after its signer's name");
  return {
    typeCovered: data.readUInt16BE(0),
    algorithm: data[2]!,
    labels: data[3]!,
    originalTtl: data.readUInt32BE(4),
    expiration: data.readUInt32BE(8),
    inception: data.readUInt32BE(12),
    keyTag: data.readUInt16BE(16),
    signerName: nameText(signer),
    signature: data.subarray(next),
    signedFields: Buffer.concat([data.subarray(0, 18), canonicalName(signer)]),
  };
}
