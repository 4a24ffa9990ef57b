// The zone's DNSSEC chain, link by link, so a ✗ names the broken one: the zone serves a DNSKEY set signed by its
// own key (DNSKEY row), the parent's DS (or a trust anchor given instead) is the digest of a key that signs that
// set (DS row), the MX set is signed by a key of the set (RRSIG MX row), and the resolver asked says it validated
// (AD row). Doctor verifies the first three itself (dnssec-validate.ts), so they hold whatever the resolver; the
// AD bit is the resolver's word, and the only check here of the chain above the zone (the parent up to the root).
import type { GatewayNode } from "../model/types";
import {
  DnsWireError,
  dnskeyData,
  dsData,
  rrsigData,
  TYPE_DNSKEY,
  TYPE_DS,
  TYPE_MX,
  TYPE_RRSIG,
  type DnsRecordData,
  type DsData,
} from "./dns-wire";
import {
  algorithmName,
  dsMatches,
  dsRecordText,
  dsShort,
  FLAG_SEP,
  keyTag,
  verifyRrset,
  type SignatureVerdict,
  type TrustAnchor,
} from "./dnssec-validate";
import type { CheckResult, DnssecQuery, SecureAnswer } from "./types";

export interface DnssecCheckContext {
  /** DS records standing in for the parent's (--trust-anchor): the lab has no root and no TLD to ask. */
  trustAnchors: TrustAnchor[];
  now: Date;
  /** How to republish: "`pulumi up --stack primary` publishes it". */
  publishHint: string;
}

const RCODES: Record<number, string> = { 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED" };
const rcodeText = (rcode: number): string => RCODES[rcode] ?? `rcode ${rcode}`;
const day = (date: Date): string => date.toISOString().slice(0, 10);

/** The records of `type` at `zone` in an answer, and the RRSIGs over them. */
function rrsetOf(answer: SecureAnswer, zone: string, type: number): { rrset: DnsRecordData[]; rrsigs: DnsRecordData[] } {
  const atZone = answer.records.filter((r) => r.name === zone);
  return {
    rrset: atZone.filter((r) => r.type === type),
    rrsigs: atZone.filter((r) => {
      if (r.type !== TYPE_RRSIG) return false;
      try {
        return rrsigData(r.data).typeCovered === type;
      } catch {
        // Kept: verifyRrset names what is wrong with it.
        return r.data.length >= 2 && r.data.readUInt16BE(0) === type;
      }
    }),
  };
}

const verdictText = (v: SignatureVerdict): string => (v.kind === "valid" ? `by ${v.keyTag}, valid` : v.reason);

function keyLabel(record: DnsRecordData): string {
  const key = dnskeyData(record.data);
  return `${key.flags & FLAG_SEP ? "KSK" : "ZSK"} ${keyTag(record.data)}`;
}

/** Asks, turning a query that threw into the row's failure. */
async function ask(query: DnssecQuery, zone: string, type: number): Promise<SecureAnswer | { error: string }> {
  try {
    return await query(zone, type);
  } catch (error) {
    return { error: (error as Error).message };
  }
}

/**
 * The DNSSEC rows for a primary (its stack owns the zone's signing, gateway:dnssec): with DNSSEC off, one `!`
 * saying DANE cannot be validated; on, the chain DS → DNSKEY → MX, and the resolver's AD bit.
 */
export async function dnssecChecks(node: GatewayNode, query: DnssecQuery, context: DnssecCheckContext): Promise<CheckResult[]> {
  const zone = node.domain.toLowerCase().replace(/\.$/, "");
  if (node.dnssec !== true) {
    return [
      {
        group: "dnssec",
        subject: `DNSSEC ${zone}`,
        status: "warn",
        detail: `gateway:dnssec is false: doctor does not check the zone's signatures, and unless the zone is signed with a DS at the registrar, senders cannot validate DANE${node.dane ? ", so they ignore the TLSA records published" : ""}`,
        fix: `set gateway:dnssec: true, then \`pulumi up\` on the primary's stack, and give the registrar the DS record it outputs (docs/dnssec-dane.md)`,
      },
    ];
  }
  const results: CheckResult[] = [];
  const keysSubject = `DNSKEY ${zone}`;
  const turnOn = `sign the zone at the DNS provider: gateway:dnssec is true, so ${context.publishHint} (Cloudflare: DNS → Settings → DNSSEC)`;

  // DNSKEY: served, and signed by a key of its own.
  const keysAnswer = await ask(query, zone, TYPE_DNSKEY);
  let keys: DnsRecordData[] = [];
  /** False when the DNSKEY set could not be read at all: then no DS can be compared with it. */
  let keysRead = false;
  /** Tags of the keys whose signature over the DNSKEY set verified: a DS must name one of them. */
  const signingTags = new Set<number>();
  if ("error" in keysAnswer) {
    results.push({
      group: "dnssec",
      subject: keysSubject,
      status: "fail",
      detail: `DNSKEY query failed: ${keysAnswer.error}`,
      fix: "the zone's DNSKEY cannot be read: check that the resolver answers DNS over UDP and TCP with EDNS, or give another with --resolver",
    });
  } else if (keysAnswer.rcode !== 0) {
    results.push({
      group: "dnssec",
      subject: keysSubject,
      status: "fail",
      detail: `${keysAnswer.server} answered ${rcodeText(keysAnswer.rcode)} for DNSKEY ${zone}`,
      fix:
        keysAnswer.rcode === 2
          ? "a validating resolver answers SERVFAIL when the chain is broken (a DS at the registrar matching no key): ask an authoritative server of the zone with --resolver to see the keys, and compare the registrar's DS with the stack output `dnssec`"
          : "the zone does not answer: check its name servers at the registrar",
    });
  } else {
    const { rrset, rrsigs } = rrsetOf(keysAnswer, zone, TYPE_DNSKEY);
    try {
      keys = rrset.filter((r) => dnskeyData(r.data).protocol === 3);
      keysRead = true;
      const described = `${keys.map(keyLabel).join(", ")} (${[...new Set(keys.map((k) => algorithmName(dnskeyData(k.data).algorithm)))].join(", ")})`;
      if (keys.length === 0) {
        results.push({
          group: "dnssec",
          subject: keysSubject,
          status: "fail",
          detail: `no DNSKEY at ${zone} (${keysAnswer.server}): the zone is not signed`,
          fix: turnOn,
        });
      } else if (rrsigs.length === 0) {
        results.push({
          group: "dnssec",
          subject: keysSubject,
          status: "fail",
          detail: `${described}, but no RRSIG over them though asked with the DNSSEC OK bit (${keysAnswer.server})`,
          fix: "the zone's servers do not sign the key set, or the resolver strips signatures: ask an authoritative server of the zone with --resolver",
        });
      } else {
        const verdicts = verifyRrset(zone, rrset, rrsigs, keys, context.now);
        const valid = verdicts.filter((v) => v.kind === "valid");
        for (const v of valid) signingTags.add(v.keyTag);
        const until = valid.length > 0 ? valid.map((v) => v.expiration).sort((a, b) => b.getTime() - a.getTime())[0]! : undefined;
        if (until !== undefined) {
          results.push({
            group: "dnssec",
            subject: keysSubject,
            status: "ok",
            detail: `${described}; the set signed by ${[...signingTags].join(", ")}, valid until ${day(until)}`,
          });
        } else if (verdicts.every((v) => v.kind === "unsupported")) {
          results.push({
            group: "dnssec",
            subject: keysSubject,
            status: "warn",
            detail: `${described}; not verified: ${verdicts.map(verdictText).join("; ")}`,
            fix: "check the chain with a validating resolver: `dig +dnssec DNSKEY` at 1.1.1.1 shows flags: ad",
          });
        } else {
          results.push({
            group: "dnssec",
            subject: keysSubject,
            status: "fail",
            detail: `${described}; no valid signature over the set: ${verdicts.map(verdictText).join("; ")}`,
            fix: "validating resolvers fail the whole domain: the DNS provider signs the zone (an expired signature is theirs to renew); turn DNSSEC off and on again at the provider only after removing the DS at the registrar (docs/dnssec-dane.md)",
          });
        }
      }
    } catch (error) {
      if (!(error instanceof DnsWireError)) throw error;
      keys = [];
      keysRead = false;
      results.push({
        group: "dnssec",
        subject: keysSubject,
        status: "fail",
        detail: `the DNSKEY answer from ${keysAnswer.server} does not parse: ${error.message}`,
        fix: "ask another name server with --resolver",
      });
    }
  }

  results.push(...(await dsChecks(zone, keysRead ? keys : undefined, signingTags, query, context)));

  // MX: the records mail goes by, signed by a zone key; and the resolver's own verdict on them.
  if (keys.length === 0) return results;
  const mxSubject = `RRSIG MX ${zone}`;
  const mxAnswer = await ask(query, zone, TYPE_MX);
  if ("error" in mxAnswer) {
    results.push({
      group: "dnssec",
      subject: mxSubject,
      status: "fail",
      detail: `MX query failed: ${mxAnswer.error}`,
      fix: "give another name server with --resolver",
    });
    return results;
  }
  const { rrset, rrsigs } = rrsetOf(mxAnswer, zone, TYPE_MX);
  if (mxAnswer.rcode === 0 && rrset.length > 0) {
    const verdicts = rrsigs.length === 0 ? [] : verifyRrset(zone, rrset, rrsigs, keys, context.now);
    const valid = verdicts.find((v) => v.kind === "valid");
    results.push(
      valid?.kind === "valid"
        ? {
            group: "dnssec",
            subject: mxSubject,
            status: "ok",
            detail: `MX signed by ${valid.keyTag}, valid until ${day(valid.expiration)}`,
          }
        : verdicts.length > 0 && verdicts.every((v) => v.kind === "unsupported")
          ? {
              group: "dnssec",
              subject: mxSubject,
              status: "warn",
              detail: `not verified: ${verdicts.map(verdictText).join("; ")}`,
              fix: "check the chain with a validating resolver (--resolver 1.1.1.1)",
            }
          : {
              group: "dnssec",
              subject: mxSubject,
              status: "fail",
              detail:
                rrsigs.length === 0
                  ? `MX served without RRSIG (${mxAnswer.server}, asked with DNSSEC OK)`
                  : `no valid signature over MX: ${verdicts.map(verdictText).join("; ")}`,
              fix: "validating resolvers refuse the MX, and senders using DANE defer mail: the DNS provider signs the zone; ask an authoritative server with --resolver to see whether it or the resolver is at fault",
            },
    );
  }
  results.push(adCheck(zone, mxAnswer, context));
  return results;
}

/** The parent's DS set (or the trust anchors given) against the zone's keys. */
async function dsChecks(
  zone: string,
  /** Undefined: the zone's DNSKEY set could not be read (its row says why). */
  keys: DnsRecordData[] | undefined,
  signingTags: Set<number>,
  query: DnssecQuery,
  context: DnssecCheckContext,
): Promise<CheckResult[]> {
  const anchors = context.trustAnchors.filter((a) => a.zone === zone);
  const subject = anchors.length > 0 ? `DS ${zone} (trust anchor)` : `DS ${zone}`;
  let dsSet: DsData[];
  let source: string;
  if (anchors.length > 0) {
    dsSet = anchors;
    source = "the trust anchor given (--trust-anchor)";
  } else {
    const answer = await ask(query, zone, TYPE_DS);
    if ("error" in answer) {
      return [
        {
          group: "dnssec",
          subject,
          status: "fail",
          detail: `DS query failed: ${answer.error}`,
          fix: "give another name server with --resolver",
        },
      ];
    }
    if (answer.rcode !== 0) {
      return [
        {
          group: "dnssec",
          subject,
          status: "fail",
          detail: `${answer.server} answered ${rcodeText(answer.rcode)} for DS ${zone}`,
          fix: "the parent zone's servers cannot be asked through this resolver: give a recursive resolver with --resolver",
        },
      ];
    }
    try {
      dsSet = answer.records.filter((r) => r.name === zone && r.type === TYPE_DS).map((r) => dsData(r.data));
    } catch (error) {
      return [
        {
          group: "dnssec",
          subject,
          status: "fail",
          detail: `the DS answer does not parse: ${(error as Error).message}`,
          fix: "ask another name server with --resolver",
        },
      ];
    }
    source = `the parent (through ${answer.server})`;
  }

  if (keys === undefined) {
    return [
      {
        group: "dnssec",
        subject,
        status: "warn",
        detail: `${dsSet.length > 0 ? dsSet.map(dsShort).join(", ") : "no DS"} from ${source}; not compared: the zone's DNSKEY set could not be read (the row above)`,
        fix: "fix what the DNSKEY row says, then run doctor again",
      },
    ];
  }
  // The DS a registrar should publish: of the keys that sign the set, the key signing keys (SEP) first.
  const signers = keys.filter((k) => signingTags.has(keyTag(k.data)));
  const sep = signers.filter((k) => dnskeyData(k.data).flags & FLAG_SEP);
  const candidates =
    sep.length > 0 ? sep : signers.length > 0 ? signers : keys.filter((k) => dnskeyData(k.data).flags & FLAG_SEP);
  const wanted = candidates.map((k) => dsRecordText(zone, k.data, 2));
  const give =
    wanted.length > 0
      ? `add at the registrar's DNSSEC page: ${wanted.join(" and ")} (the same as \`pulumi stack output dnssec\` on the primary's stack)`
      : "";

  if (keys.length === 0) {
    if (dsSet.length === 0) return [];
    return [
      {
        group: "dnssec",
        subject,
        status: "fail",
        detail: `${source} has DS ${dsSet.map(dsShort).join(", ")}, but the zone serves no DNSKEY: validating resolvers fail the whole domain, web and mail`,
        fix: "turn DNSSEC back on at the DNS provider, or remove the DS at the registrar and wait twice its TTL (docs/dnssec-dane.md, Turning DNSSEC off)",
      },
    ];
  }
  if (dsSet.length === 0) {
    return [
      {
        group: "dnssec",
        subject,
        status: "fail",
        detail:
          "DNSSEC is on at the DNS provider but the registrar has no DS: nothing trusts the zone's signatures, so senders ignore its TLSA records",
        fix:
          give ||
          "the zone's keys sign nothing verifiable (DNSKEY row): fix that first, then give the registrar the DS of its key signing key",
      },
    ];
  }
  const matching = dsSet.filter((ds) => keys.some((k) => dsMatches(zone, ds, k.data)));
  const chained = matching.filter((ds) => signingTags.has(ds.keyTag));
  const others = dsSet.filter((ds) => !matching.includes(ds));
  if (chained.length > 0) {
    return [
      {
        group: "dnssec",
        subject,
        status: "ok",
        detail: `${chained.map(dsShort).join(", ")} from ${source} matches key ${chained.map((d) => d.keyTag).join(", ")}, which signs the DNSKEY set${others.length > 0 ? `; also ${others.map(dsShort).join(", ")}, matching no key (a rollover's leftover?)` : ""}`,
      },
    ];
  }
  if (matching.length > 0) {
    return [
      {
        group: "dnssec",
        subject,
        status: "fail",
        detail: `${matching.map(dsShort).join(", ")} from ${source} matches key ${matching.map((d) => d.keyTag).join(", ")}, but no valid signature by it covers the DNSKEY set: the chain breaks there`,
        fix: give
          ? `replace the DS at the registrar: ${wanted.join(" and ")}`
          : "the zone's keys sign nothing verifiable (DNSKEY row): the DNS provider must sign the key set",
      },
    ];
  }
  return [
    {
      group: "dnssec",
      subject,
      status: "fail",
      detail: `${dsSet.map(dsShort).join(", ")} from ${source} matches no DNSKEY of the zone (${keys.map(keyLabel).join(", ")}): validating resolvers fail the whole domain`,
      fix: give
        ? `replace the DS at the registrar with ${wanted.join(" and ")}`
        : "the zone's keys sign nothing verifiable (DNSKEY row): fix that first",
    },
  ];
}

/** The resolver's word: the AD bit on the MX answer. Meaningful only from a validating resolver. */
function adCheck(zone: string, answer: SecureAnswer, context: DnssecCheckContext): CheckResult {
  const subject = `AD MX ${zone}`;
  if (answer.authenticated) {
    return {
      group: "dnssec",
      subject,
      status: "ok",
      detail: `${answer.server} validated MX ${zone} (AD bit set): the chain holds up to the root it trusts`,
    };
  }
  if (answer.rcode === 2) {
    return {
      group: "dnssec",
      subject,
      status: "fail",
      detail: `${answer.server} answers SERVFAIL for MX ${zone}: a validating resolver finds the chain broken, and so do senders' resolvers`,
      fix: "the ✗ above says which link is wrong; if none is, the break is above the zone (the parent's own chain): `dig +dnssec DS` at 1.1.1.1 and https://dnsviz.net show it",
    };
  }
  const anchored = context.trustAnchors.some((a) => a.zone === zone);
  return {
    group: "dnssec",
    subject,
    status: "warn",
    detail: `${answer.server} did not set the AD bit (${answer.rcode === 0 ? "answered" : rcodeText(answer.rcode)}): it is not a validating resolver (an authoritative server, or one that does not validate)${anchored ? ", or does not know the trust anchor given" : ""}; the rows above are doctor's own validation`,
    fix:
      "to see what senders' resolvers see, run doctor with a validating resolver, e.g. --resolver 1.1.1.1, or `dig +dnssec MX " +
      zone +
      " @1.1.1.1` (flags: ad)",
  };
}
