// The MTA-STS policy a sender fetches, against the one the stack announces: when the renderer's list holds an
// `_mta-sts` record, the policy it announces (every fleet MX, the mode, max_age) must be served at
// https://mta-sts.<domain>/.well-known/mta-sts.txt with a trusted certificate for that name, as text/plain.
// A policy listing a wrong MX makes an enforcing sender defer mail for the domain.
import type { DnsRecord, GatewayNode } from "../model/types";
import { MTA_STS_POLICY_PATH, mtaStsPolicyHost, mtaStsPolicyText } from "../render/mta-sts";
import type { CheckResult, DnsLookup, DoctorNetwork } from "./types";

const policyField = (policy: string, key: string): string[] =>
  policy
    .split(/\r?\n/)
    .map((line) => /^([a-z_]+):\s*(.*?)\s*$/i.exec(line))
    .filter((m): m is RegExpExecArray => m !== null && m[1]!.toLowerCase() === key)
    .map((m) => m[2]!);

/** What differs between two policies, field by field, in words. */
function policyDifference(served: string, expected: string): string {
  const differences: string[] = [];
  for (const key of ["version", "mode", "mx", "max_age"]) {
    const got = policyField(served, key).sort();
    const want = policyField(expected, key).sort();
    if (got.join(",") !== want.join(",")) differences.push(`${key}: ${got.join(", ") || "(none)"} instead of ${want.join(", ")}`);
  }
  return differences.length > 0 ? differences.join("; ") : "the same fields, written differently (line ends, spacing)";
}

/** Undefined when the stack announces no MTA-STS policy. */
export async function mtaStsPolicyCheck(
  node: GatewayNode,
  records: DnsRecord[],
  lookup: DnsLookup,
  network: DoctorNetwork,
  context: { publishHint: string },
): Promise<CheckResult | undefined> {
  const announced = records.some((r) => r.type === "TXT" && r.name === `_mta-sts.${node.domain}`);
  if (!announced || node.mtaSts === undefined) return undefined;
  const host = mtaStsPolicyHost(node.domain);
  const url = `https://${host}${MTA_STS_POLICY_PATH}`;
  const subject = `MTA-STS ${url}`;
  const expected = mtaStsPolicyText(node.fleet, node.mtaSts);
  const fail = (detail: string, fix: string): CheckResult => ({ group: "policy", subject, status: "fail", detail, fix });
  let addresses: string[];
  try {
    addresses = [...(await lookup(host, "A")), ...(await lookup(host, "AAAA"))];
  } catch (error) {
    if ((error as Error).name === "ResolverUnreachableError") throw error;
    return fail(`lookup failed: ${(error as Error).message}`, "check the zone's name servers at the DNS provider");
  }
  if (addresses.length === 0) {
    return fail(
      `${host} has no address: senders cannot fetch the policy`,
      `the policy's Worker and its custom domain ${host}: ${context.publishHint}`,
    );
  }
  const answer = await network.httpsGet(addresses[0]!, host, MTA_STS_POLICY_PATH);
  if (answer.kind === "failed")
    return fail(`no answer from ${addresses[0]}: ${answer.reason}`, `${context.publishHint} (it deploys the policy's Worker)`);
  if (!answer.authorized) {
    return fail(
      `certificate not trusted for ${host} (${answer.authorizationError ?? "unknown reason"}): senders ignore the policy`,
      `serve ${host} with a publicly trusted certificate (Cloudflare issues one for the Worker's custom domain)`,
    );
  }
  if (answer.status !== 200) return fail(`HTTP ${answer.status}`, `${context.publishHint} (it deploys the policy's Worker)`);
  if (!/^text\/plain\b/i.test(answer.contentType)) {
    return fail(
      `served as ${answer.contentType || "no Content-Type"}; RFC 8461 requires text/plain`,
      `${context.publishHint} (it deploys the policy's Worker)`,
    );
  }
  if (answer.body !== expected) {
    return fail(
      `served policy differs: ${policyDifference(answer.body, expected)}`,
      `${context.publishHint}: the Worker serves the policy the _mta-sts id announces`,
    );
  }
  return {
    group: "policy",
    subject,
    status: "ok",
    detail: `mode ${node.mtaSts.mode}, mx ${policyField(expected, "mx").join(", ")}, max_age ${node.mtaSts.maxAgeSeconds}`,
  };
}
