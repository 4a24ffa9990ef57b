// DKIM rotation as configuration: gateway:dkimSelector names the new selector, gateway:dkimPrevious the one it
// replaces and the day its record may go. While the previous record is kept, one `pulumi up` generates the new
// key on the primary, publishes its record at once, waits until every authoritative server of the zone serves
// it (dkim-selector-served) and only then installs the opendkim.conf that signs with it; the previous selector's
// record stays published, so mail signed before the switch still verifies. The first `up` after keepUntil
// removes it. docs/dkim-rotation.md.
import type { DkimPrevious, GatewayNode } from "../model/types";
import { dkimKeyPaths } from "../render/opendkim";
import { authoritativeCheckCommand } from "./authoritative";
import { shellQuote } from "./shell";

/** The first instant the previous record is no longer kept: the day after keepUntil, 00:00 UTC. */
export function dkimPreviousExpiry(previous: DkimPrevious): Date {
  const day = new Date(`${previous.keepUntil}T00:00:00Z`);
  return new Date(day.getTime() + 86_400_000);
}

/**
 * The node as a deploy at `now` sees it: gateway:dkimPrevious dropped once its keepUntil day has passed, so the
 * plan, the records and the docs' zone all follow from one decision taken once per run.
 */
export function dkimRotationAt(node: GatewayNode, now: Date): GatewayNode {
  const previous = node.dkim.previous;
  if (previous === undefined || now < dkimPreviousExpiry(previous)) return node;
  const dkim = { ...node.dkim };
  delete dkim.previous;
  return { ...node, dkim };
}

/** Whether this node is mid-rotation: a previous selector whose record is still kept (after dkimRotationAt). */
export function dkimRotating(node: GatewayNode): boolean {
  return node.role === "primary" && node.dkim.previous !== undefined;
}

/** `<keyDir>/<previous selector>.txt`: the public record opendkim-genkey wrote when that key was made. */
export function dkimPreviousTxtPath(node: GatewayNode): string {
  return `${dkimKeyPaths(node).keyDir}/${node.dkim.previous!.selector}.txt`;
}

/**
 * Prints the previous selector's record file (read-only), the stdout its kept DNS record is built from. A key
 * that is not there cannot be kept published: the message says so rather than publishing nothing.
 */
export function dkimPreviousRecordCommand(node: GatewayNode): string {
  const txt = shellQuote(dkimPreviousTxtPath(node));
  const selector = node.dkim.previous!.selector;
  return [
    "set -eu",
    `[ -s ${txt} ] || { echo "${dkimPreviousTxtPath(node)}: no record file for the previous selector ${selector}; gateway:dkimPrevious.selector must be the selector this host signed with" >&2; exit 1; }`,
    `cat ${txt}`,
  ].join("\n");
}

/**
 * Shell printing the record text dnsRecords publishes for the key in `txtFile` (render/dns.ts dkimRecordText):
 * opendkim-genkey's quoted strings joined, its p= taken.
 */
function publishedDkimText(txtFile: string): string {
  return [
    `p=$(tr -d '\\n' < ${shellQuote(txtFile)} | grep -o '"[^"]*"' | tr -d '"\\n' | tr -d ' \\t' | sed -n 's/.*p=\\([A-Za-z0-9+/=]*\\).*/\\1/p')`,
    // Inside $(…) under set -e a failing test ends the step: say why, or the deploy fails without a word.
    `[ -n "$p" ] || { echo ${shellQuote(`${txtFile}: no p= key in it, so there is no record to wait for`)} >&2; exit 1; }`,
    `printf 'v=DKIM1; h=sha256; k=rsa; p=%s\\n' "$p"`,
  ].join("\n");
}

/**
 * Waits (up to five minutes: Cloudflare serves a new record within seconds) until every NS of the zone serves
 * the new selector's record with the key generated on this host. opendkim.conf, which switches signing to the
 * new selector, is installed only after it: a receiver would otherwise fail every message signed in between.
 */
export function dkimServedCheckCommand(node: GatewayNode): string {
  const { txtRecord } = dkimKeyPaths(node);
  return authoritativeCheckCommand({
    zone: node.domain,
    name: `${node.dkim.selector}._domainkey.${node.domain}`,
    type: "TXT",
    wanted: publishedDkimText(txtRecord),
    hint:
      `OpenDKIM keeps signing with ${node.dkim.previous?.selector ?? "the previous selector"}; ` +
      "pulumi up publishes the record itself (check it at Cloudflare); with the Ansible playbook, publish the record the " +
      "key task printed at your DNS provider. Then run again.",
    deadlineSeconds: 300,
  });
}
