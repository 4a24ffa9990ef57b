// The published records against the renderer's list: the same DnsRecord[] the stack publishes at Cloudflare is
// what is checked here, so a record kind the renderer learns is checked without a change in this file.
// Rules by shape, not by record name: an address set is exact; a TXT whose text starts with a version tag
// (v=spf1, v=DMARC1, v=DKIM1, v=STSv1 …) must be the only one of its tag at its name and equal the expected text,
// because receivers treat two SPF (or DMARC) records as none; anything else must be among the served values.
import { ipv6ReverseName, ptrExpectations } from "../render/dns";
import type { DnsRecord, GatewayNode } from "../model/types";
import type { CheckResult, DnsLookup } from "./types";

/** How a record is written in a fix: `TXT brightchain.org "v=spf1 …"`. */
function recordText(record: Pick<DnsRecord, "type" | "name">, value: string): string {
  return record.type === "TXT" ? `${record.type} ${record.name} "${value}"` : `${record.type} ${record.name} ${value}`;
}

/** The expected value in resolver.ts's canonical form. */
export function expectedValue(record: DnsRecord): string {
  return record.type === "MX" ? `${record.priority ?? 10} ${record.content.toLowerCase()}` : record.content;
}

/** Values compared as a resolver may write them: AAAA in any compression, names in any case, TXT exactly. */
function sameValue(type: string, a: string, b: string): boolean {
  if (type === "AAAA") return ipv6ReverseName(a) === ipv6ReverseName(b);
  if (type === "TXT") return a === b;
  return a.replace(/\s+/g, " ").toLowerCase() === b.replace(/\s+/g, " ").toLowerCase();
}

const versionTag = (text: string): string | undefined => /^v=([A-Za-z0-9]+)/.exec(text)?.[1]?.toLowerCase();

const show = (values: string[]): string => (values.length === 0 ? "none" : values.join(", "));

export interface RecordCheckContext {
  /** How to repair what the stack publishes: "`pulumi up --stack primary` publishes it". */
  publishHint: string;
}

async function addressCheck(records: DnsRecord[], lookup: DnsLookup, context: RecordCheckContext): Promise<CheckResult> {
  const { type, name } = records[0]!;
  const served = await lookup(name, type);
  const expected = records.map(expectedValue);
  const missing = expected.filter((e) => !served.some((s) => sameValue(type, e, s)));
  const extra = served.filter((s) => !expected.some((e) => sameValue(type, e, s)));
  const subject = `${type} ${name}`;
  if (missing.length === 0 && extra.length === 0) return { group: "dns", subject, status: "ok", detail: show(served) };
  return {
    group: "dns",
    subject,
    status: "fail",
    detail: `served ${show(served)}; expected ${show(expected)}`,
    fix: [
      ...(missing.length > 0 ? [`publish ${missing.map((m) => recordText(records[0]!, m)).join(", ")}`] : []),
      ...(extra.length > 0 ? [`remove ${extra.map((m) => recordText(records[0]!, m)).join(", ")} (not this node's)`] : []),
    ]
      .join("; ")
      .concat(`: ${context.publishHint}`),
  };
}

/**
 * The domain's MX set must be exactly the fleet: this stack's own MX with its priority, and one MX per fleet
 * host (each relay's stack publishes its own), nothing else.
 */
async function mxCheck(
  node: GatewayNode,
  records: DnsRecord[],
  lookup: DnsLookup,
  context: RecordCheckContext,
): Promise<CheckResult> {
  const name = records[0]!.name;
  const served = await lookup(name, "MX");
  const subject = `MX ${name}`;
  const problems: string[] = [];
  const fixes: string[] = [];
  for (const record of records) {
    if (!served.some((s) => sameValue("MX", s, expectedValue(record)))) {
      problems.push(`${expectedValue(record)} missing`);
      fixes.push(`publish MX ${name} ${expectedValue(record)}: ${context.publishHint}`);
    }
  }
  const fleet = node.fleet.map((h) => h.hostname.toLowerCase());
  const hostOf = (value: string): string => (value.split(" ")[1] ?? "").toLowerCase();
  const servedHosts = served.map(hostOf);
  const own = new Set(records.map((r) => r.content.toLowerCase()));
  for (const host of fleet.filter((h) => !own.has(h) && !servedHosts.includes(h))) {
    problems.push(`no MX for fleet node ${host}`);
    fixes.push(`deploy ${host}'s stack (\`pulumi up\` on its stack publishes its MX), or remove it from gateway:fleet`);
  }
  for (const value of served.filter((s) => !fleet.includes(hostOf(s)))) {
    problems.push(`${value} is not a fleet node`);
    fixes.push(`remove MX ${name} ${value} at the DNS provider: mail sent to it bypasses the gateway`);
  }
  if (problems.length === 0) return { group: "dns", subject, status: "ok", detail: show(served) };
  return {
    group: "dns",
    subject,
    status: "fail",
    detail: `${problems.join("; ")} (served: ${show(served)})`,
    fix: fixes.join("; "),
  };
}

/** A versioned TXT (SPF, DMARC, DKIM, MTA-STS …): exactly one of its tag at the name, equal to the expected text. */
async function versionedTxtCheck(
  record: DnsRecord,
  tag: string,
  lookup: DnsLookup,
  context: RecordCheckContext,
): Promise<CheckResult> {
  const served = (await lookup(record.name, "TXT")).filter((text) => versionTag(text) === tag);
  const subject = `TXT ${record.name} (v=${record.content.slice(2).split(/[;\s]/)[0]})`;
  const set = `set ${recordText(record, record.content)}`;
  if (served.length === 1 && served[0] === record.content) return { group: "dns", subject, status: "ok", detail: served[0] };
  if (served.length === 0) {
    return { group: "dns", subject, status: "fail", detail: "missing", fix: `${set}: ${context.publishHint}` };
  }
  if (served.length > 1) {
    return {
      group: "dns",
      subject,
      status: "fail",
      detail: `${served.length} records of this kind (receivers treat several as none): ${served.map((s) => `"${s}"`).join(", ")}`,
      fix: `keep only ${recordText(record, record.content)}; delete the others at the DNS provider`,
    };
  }
  return {
    group: "dns",
    subject,
    status: "fail",
    detail: `served "${served[0]}"; expected "${record.content}"`,
    fix: `${set}: ${context.publishHint}`,
  };
}

/** Any other record: the expected value among those served (other values may be someone else's, e.g. a second CAA). */
async function presenceCheck(
  record: DnsRecord,
  subject: string,
  lookup: DnsLookup,
  context: RecordCheckContext,
): Promise<CheckResult> {
  const served = await lookup(record.name, record.type);
  const value = expectedValue(record);
  if (served.some((s) => sameValue(record.type, s, value))) {
    return { group: "dns", subject, status: "ok", detail: subject.endsWith(value) ? "present" : value };
  }
  return {
    group: "dns",
    subject,
    status: "fail",
    detail: `expected ${value}; served ${show(served)}`,
    fix: `publish ${recordText(record, value)}: ${context.publishHint}`,
  };
}

/** Runs one check, turning a lookup that failed (SERVFAIL …) into a failed check naming the error. */
async function guarded(
  subject: string,
  check: () => Promise<CheckResult>,
  group: CheckResult["group"] = "dns",
): Promise<CheckResult> {
  try {
    return await check();
  } catch (error) {
    if ((error as Error).name === "ResolverUnreachableError") throw error;
    return {
      group,
      subject,
      status: "fail",
      detail: `lookup failed: ${(error as Error).message}`,
      fix: "the zone does not answer for this name: check the zone's name servers and DNSSEC at the DNS provider",
    };
  }
}

/** Every record of `records` (dnsRecords(node, …)) checked against `lookup`, in the renderer's order. */
export async function recordChecks(
  node: GatewayNode,
  records: DnsRecord[],
  lookup: DnsLookup,
  context: RecordCheckContext,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const done = new Set<string>();
  for (const record of records) {
    const key = `${record.type} ${record.name}`;
    // A problem row says why the record exists: the renderer's purpose, as Mail-in-a-Box's status page does.
    const push = (result: CheckResult) => results.push(result.status === "ok" ? result : { ...result, why: record.purpose });
    const tag = record.type === "TXT" ? versionTag(record.content) : undefined;
    if (tag !== undefined) {
      push(await guarded(key, () => versionedTxtCheck(record, tag, lookup, context)));
      continue;
    }
    if (done.has(key)) continue;
    const sameSet = records.filter((r) => r.type === record.type && r.name === record.name);
    if (record.type === "A" || record.type === "AAAA") {
      done.add(key);
      push(await guarded(key, () => addressCheck(sameSet, lookup, context)));
    } else if (record.type === "MX") {
      done.add(key);
      push(await guarded(key, () => mxCheck(node, sameSet, lookup, context)));
    } else {
      // Several values at one name (CAA issue and iodef) are told apart by their value.
      const subject = sameSet.length > 1 ? `${key} ${expectedValue(record)}` : key;
      push(await guarded(subject, () => presenceCheck(record, subject, lookup, context)));
    }
  }
  return results;
}

/**
 * Without the host's key (no --on-host) the DKIM record's value is unknown here: it must exist, be the only
 * DKIM record of the selector, and carry a key.
 */
export async function dkimPresenceCheck(node: GatewayNode, lookup: DnsLookup, context: RecordCheckContext): Promise<CheckResult> {
  const name = `${node.dkim.selector}._domainkey.${node.domain}`;
  const subject = `TXT ${name} (v=DKIM1)`;
  return guarded(subject, async () => {
    const served = (await lookup(name, "TXT")).filter((text) => versionTag(text) === "dkim1" || /(^|;)\s*p=/.test(text));
    const key = served.length === 1 ? /(?:^|;)\s*p=([A-Za-z0-9+/=]*)/.exec(served[0]!)?.[1] : undefined;
    if (key !== undefined && key.length >= 100) {
      return {
        group: "dns",
        subject,
        status: "ok",
        detail: `key present (${key.slice(0, 12)}…); --on-host compares it with the host's`,
      };
    }
    return {
      group: "dns",
      subject,
      status: "fail",
      detail: served.length === 0 ? "missing" : served.length > 1 ? `${served.length} records` : `no usable key: "${served[0]}"`,
      fix: `publish the DKIM record from ${node.dkim.keyDir}/${node.dkim.selector}.txt on ${node.host.hostname}: ${context.publishHint}`,
    };
  });
}

/**
 * Forward-confirmed reverse DNS, for every address of the node: the PTR names the host, and the host name's
 * A/AAAA has the address. Receivers (Gmail, Microsoft) refuse or junk mail from an address failing either half.
 */
export async function ptrChecks(node: GatewayNode, lookup: DnsLookup): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const { address, reverseName, expectedHostname } of ptrExpectations(node)) {
    const subject = `PTR ${address}`;
    const family = address.includes(":") ? "AAAA" : "A";
    const atProvider = `set the reverse DNS (PTR) of ${address} to ${expectedHostname} at the provider of the address (not at Cloudflare)`;
    results.push(
      await guarded(
        subject,
        async () => {
          const names = await lookup(reverseName, "PTR");
          if (names.length === 0) return { group: "ptr", subject, status: "fail", detail: "no PTR record", fix: atProvider };
          if (!names.includes(expectedHostname.toLowerCase())) {
            return {
              group: "ptr",
              subject,
              status: "fail",
              detail: `PTR names ${show(names)}; expected ${expectedHostname}`,
              fix: atProvider,
            };
          }
          const forward = await lookup(expectedHostname, family);
          if (!forward.some((a) => sameValue(family, a, address))) {
            return {
              group: "ptr",
              subject,
              status: "fail",
              detail: `PTR ${expectedHostname}, but ${family} ${expectedHostname} is ${show(forward)}: not forward-confirmed`,
              fix: `publish ${family} ${expectedHostname} ${address} (the address record check above says how)`,
            };
          }
          return { group: "ptr", subject, status: "ok", detail: `${expectedHostname}, forward-confirmed` };
        },
        "ptr",
      ),
    );
  }
  return results;
}
