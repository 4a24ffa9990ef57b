// The one DNS query node:dns cannot make on Node 20: TLSA (RFC 6698). A query is encoded and its answer decoded
// here, over UDP, bounded like any hostile input: every length is checked against the packet, compression
// pointers may only point backwards, and a packet that does not parse is an error, never a partial answer.

export const TYPE_TLSA = 52;

export class DnsWireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DnsWireError";
  }
}

/** A standard query (RD set) for `name`, class IN. */
export function encodeQuery(id: number, name: string, type: number): Buffer {
  const labels = name.replace(/\.$/, "").split(".");
  const parts: Buffer[] = [];
  for (const label of labels) {
    const bytes = Buffer.from(label, "ascii");
    if (bytes.length === 0 || bytes.length > 63)
      throw new DnsWireError(`name ${JSON.stringify(name)} has a label of ${bytes.length} bytes; accepted: 1 to 63`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const question = Buffer.alloc(4);
  question.writeUInt16BE(type, 0);
  question.writeUInt16BE(1, 2);
  return Buffer.concat([header, ...parts, Buffer.from([0]), question]);
}

/** The offset after the (possibly compressed) name starting at `offset`. */
function skipName(packet: Buffer, offset: number): number {
  for (let labels = 0; labels < 128; labels++) {
    if (offset >= packet.length) throw new DnsWireError("name runs past the end of the packet");
    const length = packet[offset]!;
    if (length === 0) return offset + 1;
    if ((length & 0xc0) === 0xc0) {
      if (offset + 2 > packet.length) throw new DnsWireError("compression pointer runs past the end of the packet");
      return offset + 2;
    }
    if ((length & 0xc0) !== 0) throw new DnsWireError(`label type 0x${length.toString(16)} is not supported`);
    offset += 1 + length;
  }
  throw new DnsWireError("name has more than 128 labels");
}

export interface DnsAnswer {
  id: number;
  rcode: number;
  truncated: boolean;
  /** The answer section's records: type and rdata. */
  records: { type: number; data: Buffer }[];
}

export function decodeAnswer(packet: Buffer): DnsAnswer {
  if (packet.length < 12) throw new DnsWireError(`answer of ${packet.length} bytes is shorter than a DNS header`);
  const flags = packet.readUInt16BE(2);
  if ((flags & 0x8000) === 0) throw new DnsWireError("packet is a query, not an answer");
  const questions = packet.readUInt16BE(4);
  const answers = packet.readUInt16BE(6);
  let offset = 12;
  for (let i = 0; i < questions; i++) offset = skipName(packet, offset) + 4;
  const records: DnsAnswer["records"] = [];
  for (let i = 0; i < answers; i++) {
    offset = skipName(packet, offset);
    if (offset + 10 > packet.length) throw new DnsWireError("record header runs past the end of the packet");
    const type = packet.readUInt16BE(offset);
    const length = packet.readUInt16BE(offset + 8);
    offset += 10;
    if (offset + length > packet.length) throw new DnsWireError("record data runs past the end of the packet");
    records.push({ type, data: packet.subarray(offset, offset + length) });
    offset += length;
  }
  return { id: packet.readUInt16BE(0), rcode: flags & 0x000f, truncated: (flags & 0x0200) !== 0, records };
}

/** TLSA rdata as dig prints it: `3 1 1 <hex>`. */
export function tlsaText(data: Buffer): string {
  if (data.length < 4) throw new DnsWireError(`TLSA data of ${data.length} bytes; at least 4 expected`);
  return `${data[0]} ${data[1]} ${data[2]} ${data.subarray(3).toString("hex")}`;
}
