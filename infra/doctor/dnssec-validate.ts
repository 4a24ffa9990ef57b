// DNSSEC validation as doctor does it, on its own and with node:crypto only, so the DNSSEC rows do not depend on
// the resolver validating: a DS against a DNSKEY (RFC 4034 §5.1.4), an RRSIG over an RRset (§3.1.8.1 and §6's
// canonical form), key tags (Appendix B). The parent's own signatures over its DS set are not checked here: that
// chain goes up to the root, and a validating resolver's AD bit is the check for it.
import { createHash, createPublicKey, verify, type KeyObject } from "node:crypto";
import {
  canonicalName,
  DnsWireError,
  dnskeyData,
  nameToWire,
  rrsigData,
  type DnskeyData,
  type DnsRecordData,
  type DsData,
  type RrsigData,
} from "./dns-wire";

/** Zone Key flag (bit 7): the key may sign the zone's records; SEP (bit 15): a key signing key, the DS's. */
export const FLAG_ZONE = 0x0100;
export const FLAG_SEP = 0x0001;

/** Algorithms doctor verifies, by number (RFC 8624's MUST and RECOMMENDED ones, Cloudflare's 13 among them). */
const ALGORITHMS: Record<
  number,
  { name: string; hash: string | null; kind: "rsa" | "ec" | "okp"; curve?: string; size?: number }
> = {
  8: { name: "RSA/SHA-256", hash: "sha256", kind: "rsa" },
  10: { name: "RSA/SHA-512", hash: "sha512", kind: "rsa" },
  13: { name: "ECDSA P-256/SHA-256", hash: "sha256", kind: "ec", curve: "P-256", size: 32 },
  14: { name: "ECDSA P-384/SHA-384", hash: "sha384", kind: "ec", curve: "P-384", size: 48 },
  15: { name: "Ed25519", hash: null, kind: "okp", curve: "Ed25519", size: 32 },
  16: { name: "Ed448", hash: null, kind: "okp", curve: "Ed448", size: 57 },
};

/** DS digest types: 1 SHA-1 (still accepted by validators), 2 SHA-256, 4 SHA-384. */
const DIGESTS: Record<number, { hash: string; size: number }> = {
  1: { hash: "sha1", size: 20 },
  2: { hash: "sha256", size: 32 },
  4: { hash: "sha384", size: 48 },
};

export const algorithmName = (algorithm: number): string => ALGORITHMS[algorithm]?.name ?? `algorithm ${algorithm}`;
export const isSupportedAlgorithm = (algorithm: number): boolean => ALGORITHMS[algorithm] !== undefined;
export const isSupportedDigest = (digestType: number): boolean => DIGESTS[digestType] !== undefined;

/** RFC 4034 Appendix B: the key tag of a DNSKEY's data (algorithm 1's special case is not supported anywhere here). */
export function keyTag(dnskey: Buffer): number {
  let sum = 0;
  for (let i = 0; i < dnskey.length; i++) sum += i & 1 ? dnskey[i]! : dnskey[i]! << 8;
  sum += (sum >>> 16) & 0xffff;
  return sum & 0xffff;
}

/** RFC 4034 §5.1.4: digest(owner name in canonical wire form | DNSKEY data). */
export function dsDigest(zone: string, dnskey: Buffer, digestType: number): Buffer {
  const digest = DIGESTS[digestType];
  if (digest === undefined) throw new DnsWireError(`DS digest type ${digestType} is not supported; accepted: 1, 2, 4`);
  return createHash(digest.hash)
    .update(canonicalName(nameToWire(zone)))
    .update(dnskey)
    .digest();
}

/** The DS record of `dnskey` in presentation form, as a registrar's form and `dig DS` show it. */
export function dsRecordText(zone: string, dnskey: Buffer, digestType = 2): string {
  const key = dnskeyData(dnskey);
  return `${zone}. IN DS ${keyTag(dnskey)} ${key.algorithm} ${digestType} ${dsDigest(zone, dnskey, digestType).toString("hex").toUpperCase()}`;
}

/** `2371 13 2 C2B5…` */
export const dsShort = (ds: DsData): string =>
  `${ds.keyTag} ${ds.algorithm} ${ds.digestType} ${ds.digest.toString("hex").toUpperCase()}`;

export interface TrustAnchor extends DsData {
  /** Lower case, no trailing dot. */
  zone: string;
  /** As given. */
  text: string;
}

const TRUST_ANCHOR = /^\s*(\S+)\s+(?:\d+\s+)?(?:IN\s+)?(?:\d+\s+)?DS\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9A-Fa-f\s]+?)\s*$/i;

/**
 * A DS record in presentation form standing in for the parent's DS set (a lab without a root or a TLD):
 * `brightchain.org. IN DS 2371 13 2 C2B5…`, the TTL and class optional, as `keymgr … ds` and `dig DS` print it.
 */
export function parseTrustAnchor(text: string): TrustAnchor {
  const fail = (why: string): never => {
    throw new DnsWireError(
      `--trust-anchor ${JSON.stringify(text)} ${why}; accepted: a DS record, '<zone>. IN DS <key tag> <algorithm> <digest type> <hex digest>', e.g. 'brightchain.org. IN DS 2371 13 2 C2B5…' (digest type 1, 2 or 4)`,
    );
  };
  const match = TRUST_ANCHOR.exec(text);
  if (match === null) return fail("is not a DS record");
  const [, zone, tag, algorithm, digestType, hex] = match;
  const digest = hex!.replace(/\s+/g, "");
  const numbers = [Number(tag), Number(algorithm), Number(digestType)] as const;
  if (numbers[0] > 0xffff || numbers[1] > 0xff || numbers[2] > 0xff) return fail("has a key tag over 65535 or a number over 255");
  const expected = DIGESTS[numbers[2]];
  if (expected === undefined) return fail(`has digest type ${numbers[2]}`);
  if (digest.length !== expected.size * 2)
    return fail(`has a digest of ${digest.length} hex digits; digest type ${numbers[2]} has ${expected.size * 2}`);
  try {
    nameToWire(zone!);
  } catch (error) {
    return fail(`names no zone: ${(error as Error).message}`);
  }
  return {
    zone: zone!.replace(/\.$/, "").toLowerCase(),
    keyTag: numbers[0],
    algorithm: numbers[1],
    digestType: numbers[2],
    digest: Buffer.from(digest, "hex"),
    text,
  };
}

/** Whether `ds` is the DS of the DNSKEY `dnskey` (its data) at `zone`. */
export function dsMatches(zone: string, ds: DsData, dnskey: Buffer): boolean {
  const key = dnskeyData(dnskey);
  if (ds.keyTag !== keyTag(dnskey) || ds.algorithm !== key.algorithm || !isSupportedDigest(ds.digestType)) return false;
  return dsDigest(zone, dnskey, ds.digestType).equals(ds.digest);
}

const base64url = (bytes: Buffer): string => bytes.toString("base64url");

/** The DNSKEY's public key for node:crypto: RFC 3110 (RSA), RFC 6605 (ECDSA: x | y), RFC 8080 (EdDSA). */
export function publicKeyOf(key: DnskeyData): KeyObject {
  const algorithm = ALGORITHMS[key.algorithm];
  if (algorithm === undefined) throw new DnsWireError(`${algorithmName(key.algorithm)} is not one doctor verifies`);
  const bytes = key.publicKey;
  if (algorithm.kind === "rsa") {
    if (bytes.length < 3) throw new DnsWireError(`RSA key of ${bytes.length} bytes`);
    const long = bytes[0] === 0;
    const exponentLength = long ? bytes.readUInt16BE(1) : bytes[0]!;
    const start = long ? 3 : 1;
    if (exponentLength === 0 || start + exponentLength >= bytes.length)
      throw new DnsWireError(`RSA key's exponent length ${exponentLength} leaves no modulus in ${bytes.length} bytes`);
    const e = bytes.subarray(start, start + exponentLength);
    const n = bytes.subarray(start + exponentLength);
    return createPublicKey({ key: { kty: "RSA", n: base64url(n), e: base64url(e) }, format: "jwk" });
  }
  const size = algorithm.size!;
  if (algorithm.kind === "ec") {
    if (bytes.length !== size * 2) throw new DnsWireError(`${algorithm.name} key of ${bytes.length} bytes; ${size * 2} expected`);
    const jwk = { kty: "EC", crv: algorithm.curve!, x: base64url(bytes.subarray(0, size)), y: base64url(bytes.subarray(size)) };
    return createPublicKey({ key: jwk, format: "jwk" });
  }
  if (bytes.length !== size) throw new DnsWireError(`${algorithm.name} key of ${bytes.length} bytes; ${size} expected`);
  return createPublicKey({ key: { kty: "OKP", crv: algorithm.curve!, x: base64url(bytes) }, format: "jwk" });
}

/** Seconds in serial number arithmetic (RFC 1982, RFC 4034 §3.1.5): `a` before or at `b`. */
const serialAtOrBefore = (a: number, b: number): boolean => (b - a) >>> 0 < 0x80000000;

/** An RRSIG time as a date: the instant nearest `now` with these 32 bits. */
export function signatureTime(value: number, now: Date): Date {
  const nowSeconds = Math.floor(now.getTime() / 1000);
  const delta = (value - (nowSeconds >>> 0)) | 0;
  return new Date((nowSeconds + delta) * 1000);
}

/**
 * The bytes an RRSIG signs (§3.1.8.1): its own fields, then each RR of the set in canonical form (owner lower
 * case, or the wildcard it was expanded from; the RRSIG's original TTL; data in §6.2 form), sorted by data,
 * duplicates once.
 */
export function signedData(sig: RrsigData, rrset: DnsRecordData[]): Buffer {
  const first = rrset[0];
  if (first === undefined) throw new DnsWireError("no records to verify");
  let owner = canonicalName(first.owner);
  const labels = first.name === "" ? 0 : first.name.split(".").length;
  if (sig.labels > labels) throw new DnsWireError(`RRSIG labels ${sig.labels} exceed the owner's ${labels}`);
  if (sig.labels < labels)
    owner = Buffer.concat([
      Buffer.from([1, 0x2a]),
      canonicalName(nameToWire(first.name.split(".").slice(-sig.labels).join("."))),
    ]);
  const datas = [...rrset.map((r) => r.canonical)].sort(Buffer.compare).filter((d, i, all) => i === 0 || !d.equals(all[i - 1]!));
  const parts: Buffer[] = [sig.signedFields];
  for (const data of datas) {
    const header = Buffer.alloc(10);
    header.writeUInt16BE(first.type, 0);
    header.writeUInt16BE(first.class, 2);
    header.writeUInt32BE(sig.originalTtl, 4);
    header.writeUInt16BE(data.length, 8);
    parts.push(owner, header, data);
  }
  return Buffer.concat(parts);
}

export type SignatureVerdict =
  | { kind: "valid"; keyTag: number; algorithm: number; expiration: Date }
  /** Why this RRSIG does not make the set valid: a person reads it in the row. */
  | { kind: "invalid"; keyTag: number; reason: string }
  /** An algorithm doctor does not verify: neither valid nor proven invalid. */
  | { kind: "unsupported"; keyTag: number; reason: string };

/**
 * Every RRSIG over `rrset` (the records of one name and type) checked against `keys` (DNSKEY records of
 * `zone`): the signer is the zone, a key with the RRSIG's tag and algorithm is a zone key, now is within the
 * validity period, and the signature verifies.
 */
export function verifyRrset(
  zone: string,
  rrset: DnsRecordData[],
  rrsigs: DnsRecordData[],
  keys: DnsRecordData[],
  now: Date,
): SignatureVerdict[] {
  const nowSeconds = Math.floor(now.getTime() / 1000) >>> 0;
  return rrsigs.map((record): SignatureVerdict => {
    let sig: RrsigData;
    try {
      sig = rrsigData(record.data);
    } catch (error) {
      return { kind: "invalid", keyTag: -1, reason: (error as Error).message };
    }
    const tag = sig.keyTag;
    if (sig.signerName !== zone)
      return { kind: "invalid", keyTag: tag, reason: `signed by ${sig.signerName}, not the zone ${zone}` };
    if (!serialAtOrBefore(sig.inception, nowSeconds))
      return { kind: "invalid", keyTag: tag, reason: `not valid before ${signatureTime(sig.inception, now).toISOString()}` };
    if (!serialAtOrBefore(nowSeconds, sig.expiration))
      return { kind: "invalid", keyTag: tag, reason: `expired ${signatureTime(sig.expiration, now).toISOString()}` };
    if (!isSupportedAlgorithm(sig.algorithm))
      return { kind: "unsupported", keyTag: tag, reason: `${algorithmName(sig.algorithm)} is not one doctor verifies` };
    const candidates = keys.filter((key) => {
      const data = dnskeyData(key.data);
      return (
        keyTag(key.data) === tag && data.algorithm === sig.algorithm && (data.flags & FLAG_ZONE) !== 0 && data.protocol === 3
      );
    });
    if (candidates.length === 0)
      return {
        kind: "invalid",
        keyTag: tag,
        reason: `by key ${tag} (${algorithmName(sig.algorithm)}), which the zone's DNSKEY set does not have`,
      };
    let signed: Buffer;
    try {
      signed = signedData(sig, rrset);
    } catch (error) {
      return { kind: "invalid", keyTag: tag, reason: (error as Error).message };
    }
    const algorithm = ALGORITHMS[sig.algorithm]!;
    const problems: string[] = [];
    for (const key of candidates) {
      try {
        const publicKey = publicKeyOf(dnskeyData(key.data));
        const ok = verify(
          algorithm.hash,
          signed,
          algorithm.kind === "ec" ? { key: publicKey, dsaEncoding: "ieee-p1363" } : publicKey,
          sig.signature,
        );
        if (ok) return { kind: "valid", keyTag: tag, algorithm: sig.algorithm, expiration: signatureTime(sig.expiration, now) };
        problems.push(`the signature by key ${tag} does not verify`);
      } catch (error) {
        problems.push(`key ${tag}: ${(error as Error).message}`);
      }
    }
    return { kind: "invalid", keyTag: tag, reason: problems.join("; ") };
  });
}
