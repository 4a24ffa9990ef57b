// DMARC aggregate reports sent to another domain (RFC 7489 §7.1): a receiver sends them only when that domain
// says it accepts reports for ours, with a TXT record `<our domain>._report._dmarc.<their domain>` starting
// with v=DMARC1. Without it the rua address silently gets nothing, and nothing else tells the admin why.
import type { GatewayNode } from "../model/types";
import type { CheckResult, DnsLookup } from "./types";

/** The domains of the DMARC rua addresses outside the mail domain (its subdomains need no authorization). */
export function foreignReportDomains(node: GatewayNode): string[] {
  const domains = node.dmarc.rua
    .map((uri) => uri.slice(uri.lastIndexOf("@") + 1).toLowerCase())
    .filter((domain) => domain !== node.domain && !domain.endsWith(`.${node.domain}`));
  return [...new Set(domains)];
}

export function reportAuthorizationName(node: GatewayNode, foreign: string): string {
  return `${node.domain}._report._dmarc.${foreign}`;
}

/** One check per foreign report domain; none when every rua is in the mail domain (or there is none). */
export async function dmarcReportAuthorizationChecks(node: GatewayNode, lookup: DnsLookup): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const foreign of foreignReportDomains(node)) {
    const name = reportAuthorizationName(node, foreign);
    const subject = `TXT ${name} (DMARC report authorization)`;
    const why = `gateway:dmarc.rua sends aggregate reports to ${foreign}; receivers send them only if ${foreign} authorizes ${node.domain}.`;
    let served: string[];
    try {
      served = await lookup(name, "TXT");
    } catch (error) {
      if ((error as Error).name === "ResolverUnreachableError") throw error;
      results.push({ group: "dns", subject, status: "fail", detail: `lookup failed: ${(error as Error).message}`, why });
      continue;
    }
    if (served.some((text) => /^v=DMARC1(;|\s|$)/i.test(text.trim()))) {
      results.push({ group: "dns", subject, status: "ok", detail: "present" });
      continue;
    }
    results.push({
      group: "dns",
      subject,
      status: "fail",
      detail:
        served.length === 0
          ? "no record: receivers send no aggregate reports there"
          : `served ${JSON.stringify(served)}, none is v=DMARC1`,
      fix: `ask whoever runs ${foreign}'s DNS to publish ${name} TXT "v=DMARC1", or send reports to an address in ${node.domain}`,
      why,
    });
  }
  return results;
}
