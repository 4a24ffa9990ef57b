// Which distribution packages a node needs, and the command that installs them without a prompt.
import type { GatewayNode } from "../model/types";
import { nodeProfiles } from "../model/profiles";
import { shellQuote } from "./shell";

/** The exact package names for this node: every component profile it runs, on its release, in order. */
export function requiredPackages(node: GatewayNode): string[] {
  return [...new Set(nodeProfiles(node).flatMap((profile) => profile.packages))];
}

/**
 * apt with the postfix debconf answers preseeded (an unanswered "General type of mail configuration" question
 * blocks a non-interactive install or leaves postfix unconfigured); dnf after enabling EPEL (opendkim,
 * spamass-milter, certbot live there), Rspamd's own repository (not in EPEL) and Node 20 where RHEL 9
 * would otherwise install its default Node 16.
 */
export function packagesCommand(node: GatewayNode): string {
  const names = requiredPackages(node).join(" ");
  if (node.os.family === "debian") {
    // A package upgraded along the way must not stop on a conffile prompt over a file this plan rendered.
    const aptInstall =
      "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
    return [
      "set -eu",
      "export DEBIAN_FRONTEND=noninteractive",
      "echo 'postfix postfix/main_mailer_type select Internet Site' | debconf-set-selections",
      `echo ${shellQuote(`postfix postfix/mailname string ${node.domain}`)} | debconf-set-selections`,
      "apt-get update -q",
      // Postfix alone first: dpkg may otherwise configure spamass-milter before postfix, and its postinst
      // starts a service that chowns its socket directory to the postfix user, which does not exist yet (seen
      // on a fresh Debian 12 host: the whole install fails).
      `${aptInstall} postfix`,
      `${aptInstall} ${names}`,
    ].join("\n");
  }
  const lines = [
    "set -eu",
    'rpm -q epel-release >/dev/null 2>&1 || dnf install -y epel-release || dnf install -y "https://dl.fedoraproject.org/pub/epel/epel-release-latest-$(rpm -E %rhel).noarch.rpm"',
    "if dnf module list nodejs >/dev/null 2>&1; then dnf module enable -y nodejs:20; fi",
  ];
  if (node.spam.engine === "rspamd") {
    lines.push(
      "if [ ! -f /etc/yum.repos.d/rspamd.repo ]; then",
      '  curl -fsS -o /etc/yum.repos.d/rspamd.repo "https://rspamd.com/rpm-stable/centos-$(rpm -E %rhel)/rspamd.repo"',
      "  rpm --import https://rspamd.com/rpm-stable/gpg.key",
      "fi",
    );
  }
  lines.push(`dnf install -y ${names}`);
  return lines.join("\n");
}
