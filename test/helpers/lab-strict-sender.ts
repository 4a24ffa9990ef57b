// outside as a strict sender, the receiver a gateway's mail security is for. DANE: unbound on outside validates the
// lab's DNSSEC-signed zones from the DS of brightchain.org (its trust anchor, as the parent zone's DS would be on
// the internet), and outside's Postfix looks up MX and TLSA through it with smtp_tls_security_level = dane.
// MTA-STS: Debian's postfix-mta-sts-resolver fetches the policy the program's Worker serves (the lab's Workers
// host, with a certificate from the lab CA every lab host trusts) and answers Postfix's smtp_tls_policy_maps.
// Each is undone afterwards, so the other scenarios find outside as setUpOutside left it.
import { labDnsPaths, labZoneTrustAnchor } from "../../infra/lab/dns";
import { LAB_GATEWAY_IP, LAB_STATE_DIR } from "../../infra/lab/constants";
import { readLabState } from "../../infra/lab/state";
import { on, waitOnHost } from "./lab-mail";

const UNBOUND_CONF = "/etc/unbound/unbound.conf.d/brightchain-lab.conf";
const RESOLV_BACKUP = "/root/resolv.conf.before-dane";

/** unbound's configuration: every lab zone from the lab's name server, brightchain.org's DS as the only anchor. */
export function renderOutsideUnbound(trustAnchor: string, zones: readonly string[]): string {
  return [
    "server:",
    "    interface: 127.0.0.1",
    "    access-control: 127.0.0.0/8 allow",
    `    trust-anchor: "${trustAnchor}"`,
    // Logs why an answer is bogus (a wrong DS, an expired signature): what a test failure needs to show.
    "    val-log-level: 2",
    ...zones.flatMap((zone) => ["stub-zone:", `    name: "${zone}"`, `    stub-addr: ${LAB_GATEWAY_IP}`]),
    "",
  ].join("\n");
}

export async function makeOutsideEnforceDane(domain: string): Promise<void> {
  const zones = Object.keys(readLabState()?.zones ?? {});
  const anchor = await labZoneTrustAnchor(labDnsPaths(LAB_STATE_DIR), domain);
  await on(
    "outside",
    [
      "set -eu",
      "export DEBIAN_FRONTEND=noninteractive",
      "apt-get install -y -q --no-install-recommends unbound dnsutils >/dev/null",
      // Debian's unbound trusts the root's key; the lab has no root zone, so a chain from it can never be built.
      "rm -f /etc/unbound/unbound.conf.d/root-auto-trust-anchor-file.conf",
      `cat > ${UNBOUND_CONF}`,
    ].join("\n"),
    renderOutsideUnbound(anchor, zones),
  );
  await on("outside", "unbound-checkconf && systemctl restart unbound");
  await waitOnHost(
    "outside",
    `unbound validating ${domain} (the ad flag)`,
    `dig +dnssec @127.0.0.1 ${domain} MX`,
    (out) => /;; flags: [^;]*\bad\b/.test(out),
    { deadlineMs: 60_000 },
  );
  await on(
    "outside",
    [
      `test -e ${RESOLV_BACKUP} || cp -p /etc/resolv.conf ${RESOLV_BACKUP}`,
      // trust-ad: glibc passes the resolver's AD bit on to Postfix only with it.
      "printf 'nameserver 127.0.0.1\\noptions trust-ad\\n' > /etc/resolv.conf",
      // smtp_tls_loglevel 1: Postfix logs "Verified TLS connection established" only from level 1 (default 0).
      "postconf -e smtp_dns_support_level=dnssec smtp_tls_security_level=dane smtp_tls_loglevel=1",
      // A restart, not a reload: Debian's Postfix copies resolv.conf into its chroot when it starts.
      "systemctl restart postfix",
    ].join(" && "),
  );
}

export async function undoOutsideDane(): Promise<void> {
  await on(
    "outside",
    [
      `if [ -e ${RESOLV_BACKUP} ]; then cp -p ${RESOLV_BACKUP} /etc/resolv.conf && rm ${RESOLV_BACKUP}; fi`,
      "postconf -e smtp_tls_security_level=may",
      "postconf -X smtp_dns_support_level smtp_tls_loglevel",
      "systemctl restart postfix",
    ].join(" && "),
  );
}

const MTA_STS_DAEMON_CONF = "/etc/mta-sts-daemon.yml";

/**
 * strict_testing: the lab stacks publish mode testing (a new deployment's recommended start), which the resolver
 * would otherwise only report on; with it the resolver enforces a testing policy as a sender in enforce would.
 */
const MTA_STS_DAEMON_CONFIG = [
  "host: 127.0.0.1",
  "port: 8461",
  "reuse_port: true",
  "shutdown_timeout: 20",
  "cache:",
  "  type: internal",
  "  options:",
  "    cache_size: 10000",
  "default_zone:",
  "  strict_testing: true",
  "  timeout: 4",
  "",
].join("\n");

export async function makeOutsideEnforceMtaSts(domain: string): Promise<void> {
  await on(
    "outside",
    [
      "set -eu",
      "export DEBIAN_FRONTEND=noninteractive",
      "apt-get install -y -q --no-install-recommends postfix-mta-sts-resolver >/dev/null",
      `cat > ${MTA_STS_DAEMON_CONF}`,
    ].join("\n"),
    MTA_STS_DAEMON_CONFIG,
  );
  await on("outside", "systemctl restart postfix-mta-sts-resolver");
  await waitOnHost(
    "outside",
    `the resolver answering with ${domain}'s policy`,
    `mta-sts-query ${domain} 2>&1`,
    (out) => /'mode': 'testing'|mode.*testing|secure/.test(out) && /mail\.brightchain\.org/.test(out),
    { deadlineMs: 60_000 },
  );
  await on(
    "outside",
    "postconf -e 'smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8461:postfix' smtp_tls_loglevel=1 && systemctl restart postfix",
  );
  // What Postfix will be told for the domain: an enforced policy naming the MX hosts.
  await waitOnHost(
    "outside",
    `the resolver's answer to Postfix for ${domain}`,
    `postmap -q ${domain} socketmap:inet:127.0.0.1:8461:postfix 2>&1`,
    (out) => /^secure match=/.test(out.trim()),
    { deadlineMs: 60_000 },
  );
}

export async function undoOutsideMtaSts(): Promise<void> {
  await on("outside", "postconf -X smtp_tls_policy_maps smtp_tls_loglevel && systemctl restart postfix");
}
