// The firewall script word for word, ufw and firewalld, with and without metrics scrapers: every rule an operator
// finds on the host (its port, its comment), the drift sweep, the scraper rules before the rejects. The other
// firewall tests check single lines; a rule or comment changed elsewhere in the script must fail here.
import { describe, expect, it } from "vitest";
import { releaseOs } from "../../infra/model/releases";
import type { GatewayNode } from "../../infra/model/types";
import { firewallFiles, loopbackOnlyPorts, renderFirewallScript } from "../../infra/render/firewall";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

const scrapers = { ...examplePrimary.metrics, scrapers: ["192.0.2.0/24", "2001:db8::/64"] };
const lines = (node: GatewayNode) => renderFirewallScript(node).split("\n");

describe("the firewall script, exactly", () => {
  it("ufw on a Debian primary with two scraper networks", () => {
    expect(lines({ ...examplePrimary, metrics: scrapers })).toEqual([
      "#!/bin/sh",
      "# Rendered by brightchain-gateway from the node model: the host firewall (ufw). Safe to run repeatedly.",
      "set -eu",
      "ufw default reject incoming",
      "ufw default allow outgoing",
      String.raw`ufw status numbered | sed -n 's/^\[ *\([0-9][0-9]*\)\].*/\1 &/p' | grep -v '# brightchain:' | cut -d' ' -f1 | sort -rn |`,
      '  while read -r rule; do ufw --force delete "$rule" >/dev/null; done',
      "ufw allow \"${BRIGHTCHAIN_SSH_PORT:-22}\"/tcp comment 'brightchain: SSH administration'",
      "ufw allow 25/tcp comment 'brightchain: SMTP from other mail servers'",
      "ufw allow 587/tcp comment 'brightchain: submission from the BrightChain node'",
      "ufw --force delete allow 80/tcp >/dev/null 2>&1 || true",
      String.raw`ufw status numbered | sed -n 's/^\[ *\([0-9][0-9]*\)\].*# brightchain: metrics scraper \(.*\)$/\1 \2/p' | sort -rn |`,
      "  while read -r rule wanted; do case \"$wanted\" in '192.0.2.0/24 port 9526'|'192.0.2.0/24 port 9527'|'192.0.2.0/24 port 9154'|'2001:db8::/64 port 9526'|'2001:db8::/64 port 9527'|'2001:db8::/64 port 9154') ;; *) ufw --force delete \"$rule\" >/dev/null ;; esac; done",
      "ufw prepend allow from 192.0.2.0/24 to any port 9526 proto tcp comment 'brightchain: metrics scraper 192.0.2.0/24 port 9526'",
      "ufw prepend allow from 192.0.2.0/24 to any port 9527 proto tcp comment 'brightchain: metrics scraper 192.0.2.0/24 port 9527'",
      "ufw prepend allow from 192.0.2.0/24 to any port 9154 proto tcp comment 'brightchain: metrics scraper 192.0.2.0/24 port 9154'",
      "ufw prepend allow from 2001:db8::/64 to any port 9526 proto tcp comment 'brightchain: metrics scraper 2001:db8::/64 port 9526'",
      "ufw prepend allow from 2001:db8::/64 to any port 9527 proto tcp comment 'brightchain: metrics scraper 2001:db8::/64 port 9527'",
      "ufw prepend allow from 2001:db8::/64 to any port 9154 proto tcp comment 'brightchain: metrics scraper 2001:db8::/64 port 9154'",
      "ufw reject 2526/tcp comment 'brightchain: recipient lookup socketmap, loopback only'",
      "ufw reject 783/tcp comment 'brightchain: spamd, loopback only'",
      "ufw reject 8891/tcp comment 'brightchain: OpenDKIM milter, loopback only'",
      "ufw reject 11332:11334/tcp comment 'brightchain: Rspamd proxy, normal and controller workers, loopback only'",
      "ufw reject 9526/tcp comment 'brightchain: brightchain-lookup metrics, loopback and metrics scrapers only'",
      "ufw reject 9527/tcp comment 'brightchain: brightchain-inbound metrics, loopback and metrics scrapers only'",
      "ufw reject 9154/tcp comment 'brightchain: prometheus-postfix-exporter (Postfix queues), loopback and metrics scrapers only'",
      "ufw --force enable",
      "",
    ]);
  });

  it("ufw without scrapers: the sweep keeps none of ours, no allow rule is prepended", () => {
    const text = renderFirewallScript(examplePrimary);
    expect(text).toContain(
      `  while read -r rule wanted; do case "$wanted" in *) ufw --force delete "$rule" >/dev/null ;; esac; done\n`,
    );
    expect(text).not.toContain("prepend");
  });

  it("firewalld on a RHEL relay with two scraper networks (its one metrics port): IPv4 and IPv6 rich rules", () => {
    expect(lines({ ...exampleRelay, os: releaseOs("rhel-9"), metrics: scrapers })).toEqual([
      "#!/bin/sh",
      "# Rendered by brightchain-gateway from the node model: the host firewall (firewalld). Safe to run repeatedly.",
      "set -eu",
      "if firewall-cmd --state >/dev/null 2>&1; then",
      '  fw() { firewall-cmd --permanent --zone=public "$@" >/dev/null; }',
      '  fw_list() { firewall-cmd --permanent --zone=public "$@"; }',
      "  running=yes",
      "else",
      '  fw() { firewall-offline-cmd --zone=public "$@" >/dev/null; }',
      '  fw_list() { firewall-offline-cmd --zone=public "$@"; }',
      "  running=no",
      "fi",
      'fw --add-port="${BRIGHTCHAIN_SSH_PORT:-22}"/tcp  # SSH administration',
      "fw --add-port=25/tcp  # SMTP from other mail servers",
      "fw --remove-port=587/tcp",
      "fw --remove-port=80/tcp",
      "fw_list --list-rich-rules | grep '^rule priority=\"-10\" ' |",
      '  while IFS= read -r rule; do case "$rule" in \'rule priority="-10" family="ipv4" source address="192.0.2.0/24" port port="9526" protocol="tcp" accept\'|\'rule priority="-10" family="ipv6" source address="2001:db8::/64" port port="9526" protocol="tcp" accept\') ;; *) fw --remove-rich-rule="$rule" ;; esac; done',
      'fw --add-rich-rule=\'rule priority="-10" family="ipv4" source address="192.0.2.0/24" port port="9526" protocol="tcp" accept\'  # metrics scraper',
      'fw --add-rich-rule=\'rule priority="-10" family="ipv6" source address="2001:db8::/64" port port="9526" protocol="tcp" accept\'  # metrics scraper',
      'fw --add-rich-rule=\'rule port port="2526" protocol="tcp" reject\'  # recipient lookup socketmap, loopback only',
      'fw --add-rich-rule=\'rule port port="783" protocol="tcp" reject\'  # spamd, loopback only',
      'fw --add-rich-rule=\'rule port port="8891" protocol="tcp" reject\'  # OpenDKIM milter, loopback only',
      'fw --add-rich-rule=\'rule port port="11332-11334" protocol="tcp" reject\'  # Rspamd proxy, normal and controller workers, loopback only',
      'fw --add-rich-rule=\'rule port port="9526" protocol="tcp" reject\'  # brightchain-lookup metrics, loopback and metrics scrapers only',
      'if [ "$running" = yes ]; then firewall-cmd --reload >/dev/null; fi',
      "",
    ]);
  });

  it("firewalld without scrapers: every priority -10 rule found is removed", () => {
    expect(lines({ ...exampleRelay, os: releaseOs("rhel-9") })).toEqual([
      "#!/bin/sh",
      "# Rendered by brightchain-gateway from the node model: the host firewall (firewalld). Safe to run repeatedly.",
      "set -eu",
      "if firewall-cmd --state >/dev/null 2>&1; then",
      '  fw() { firewall-cmd --permanent --zone=public "$@" >/dev/null; }',
      '  fw_list() { firewall-cmd --permanent --zone=public "$@"; }',
      "  running=yes",
      "else",
      '  fw() { firewall-offline-cmd --zone=public "$@" >/dev/null; }',
      '  fw_list() { firewall-offline-cmd --zone=public "$@"; }',
      "  running=no",
      "fi",
      'fw --add-port="${BRIGHTCHAIN_SSH_PORT:-22}"/tcp  # SSH administration',
      "fw --add-port=25/tcp  # SMTP from other mail servers",
      "fw --remove-port=587/tcp",
      "fw --remove-port=80/tcp",
      "fw_list --list-rich-rules | grep '^rule priority=\"-10\" ' |",
      '  while IFS= read -r rule; do case "$rule" in *) fw --remove-rich-rule="$rule" ;; esac; done',
      'fw --add-rich-rule=\'rule port port="2526" protocol="tcp" reject\'  # recipient lookup socketmap, loopback only',
      'fw --add-rich-rule=\'rule port port="783" protocol="tcp" reject\'  # spamd, loopback only',
      'fw --add-rich-rule=\'rule port port="8891" protocol="tcp" reject\'  # OpenDKIM milter, loopback only',
      'fw --add-rich-rule=\'rule port port="11332-11334" protocol="tcp" reject\'  # Rspamd proxy, normal and controller workers, loopback only',
      'fw --add-rich-rule=\'rule port port="9526" protocol="tcp" reject\'  # brightchain-lookup metrics, loopback and metrics scrapers only',
      'if [ "$running" = yes ]; then firewall-cmd --reload >/dev/null; fi',
      "",
    ]);
  });
});

describe("the firewall's other outputs", () => {
  it("an http-01 node opens 80 with the ACME comment and closes nothing it needs; firewalld keeps 587 and 80 open", () => {
    const http01: GatewayNode = { ...examplePrimary, tls: { ...examplePrimary.tls, challenge: "http-01" } };
    const ufw = renderFirewallScript(http01);
    expect(ufw).toContain("\nufw allow 80/tcp comment 'brightchain: ACME http-01 challenge (certbot standalone)'\n");
    expect(ufw).not.toContain("delete allow");
    const firewalld = renderFirewallScript({ ...http01, os: releaseOs("rhel-9") });
    expect(firewalld).toContain("\nfw --add-port=587/tcp  # submission from the BrightChain node\n");
    expect(firewalld).toContain("\nfw --add-port=80/tcp  # ACME http-01 challenge (certbot standalone)\n");
    expect(firewalld).not.toContain("--remove-port");
  });

  it("with a scraper network the metrics ports are no longer loopback-only (doctor stops probing them)", () => {
    const daemonPorts = [2526, 783, 8891, [11332, 11334]];
    expect(loopbackOnlyPorts({ ...examplePrimary, metrics: scrapers }).map((p) => p.port)).toEqual(daemonPorts);
    expect(loopbackOnlyPorts(examplePrimary).map((p) => p.port)).toEqual([...daemonPorts, 9526, 9527, 9154]);
  });

  it("the script is root's, 0755, and reloads nothing", () => {
    expect(firewallFiles(examplePrimary)).toEqual([
      {
        path: "/usr/local/sbin/brightchain-firewall",
        mode: 0o755,
        owner: "root",
        group: "root",
        content: renderFirewallScript(examplePrimary),
        notify: [],
      },
    ]);
  });
});
