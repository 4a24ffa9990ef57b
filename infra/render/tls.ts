// TLS certificates from ACME via certbot: dns-01 through Cloudflare by default (nothing has to listen on
// port 80), http-01 with certbot's standalone server as the option. A deploy hook makes Postfix serve a
// renewed certificate, refusing to reload into a configuration `postfix check` rejects.
import { componentProfile } from "../model/profiles";
import type { GatewayNode, GatewaySecrets, HostFile } from "../model/types";

export const CLOUDFLARE_CREDENTIALS = "/etc/letsencrypt/cloudflare.ini";
export const DEPLOY_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/brightchain-postfix";
/** Cloudflare usually serves a new TXT within seconds; the plugin's 10 s default is occasionally too short. */
const DNS_PROPAGATION_SECONDS = 30;

/** Quotes a value for sh when it holds anything beyond a conservative set of characters. */
function shellWord(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The only inbound port the TLS setup needs: 80 for http-01's standalone server; none for dns-01. */
export function acmeInboundPorts(node: GatewayNode): number[] {
  return node.tls.challenge === "http-01" ? [80] : [];
}

/** The renewal timer to enable (its release's name, from the certbot profile). */
export function certbotRenewTimer(node: GatewayNode): string {
  return componentProfile(node, "certbot").services[0]!;
}

/**
 * The exact `certbot certonly` a host step runs. Idempotent: --keep-until-expiring leaves a valid certificate
 * alone, and --cert-name pins the lineage directory to /etc/letsencrypt/live/<lineage> (default the host name),
 * the path main.cf names. --reuse-key: every renewal keeps the lineage's key, so the DANE TLSA record published
 * for it stays true (docs/dnssec-dane.md); a new key is a new lineage, published before it is served.
 */
export function certbotIssueCommand(node: GatewayNode, lineage: string = node.tls.certName): string {
  const host = node.host.hostname;
  const common = [
    "certbot certonly",
    "--non-interactive",
    "--agree-tos",
    `-m ${shellWord(node.tls.acmeEmail)}`,
    `--server ${shellWord(node.tls.acmeServer)}`,
    `--cert-name ${shellWord(lineage)}`,
    "--keep-until-expiring",
    "--reuse-key",
    `-d ${shellWord(host)}`,
  ];
  const challenge =
    node.tls.challenge === "dns-01"
      ? [
          "--preferred-challenges dns",
          "--dns-cloudflare",
          `--dns-cloudflare-credentials ${CLOUDFLARE_CREDENTIALS}`,
          `--dns-cloudflare-propagation-seconds ${DNS_PROPAGATION_SECONDS}`,
        ]
      : ["--preferred-challenges http", "--standalone"];
  return [...common, ...challenge].join(" ");
}

/** Where certbot keeps a lineage's renewal settings, the ones `certbot renew` (the timer) reads. */
export function renewalConfPath(lineage: string): string {
  return `/etc/letsencrypt/renewal/${lineage}.conf`;
}

/**
 * Makes the lineage's renewal settings say reuse_key = True. certbot writes --reuse-key into them only when it
 * issues or renews; a lineage issued before, and still valid (--keep-until-expiring does nothing), would renew
 * onto a fresh key at the timer's next run and leave its TLSA record naming a key no longer served.
 */
export function reuseKeyCommand(lineage: string): string {
  const conf = shellWord(renewalConfPath(lineage));
  return [
    `if ! grep -qx 'reuse_key = True' ${conf}; then`,
    `  sed -i '/^reuse_key *=/d' ${conf}`,
    `  grep -q '^\\[renewalparams\\]' ${conf} || printf '\\n[renewalparams]\\n' >> ${conf}`,
    `  sed -i '/^\\[renewalparams\\]/a reuse_key = True' ${conf}`,
    "fi",
  ].join("\n");
}

/**
 * Runs after each renewal (certbot renew) with RENEWED_LINEAGE set. Postfix reads its certificate only when
 * a process starts, so without the reload the old certificate is served until it expires. A failing
 * `postfix check` exits non-zero: certbot reports the hook failure and the timer's unit fails visibly,
 * instead of reloading Postfix into a broken configuration. MAIL_CONFIG, when set, selects the instance.
 */
export function renderDeployHook(node: GatewayNode): string {
  return `#!/bin/sh
# Rendered by brightchain-gateway: reload Postfix after certbot renews ${node.host.hostname}.
set -u
if ! postfix check; then
  echo "brightchain-postfix: 'postfix check' failed; not reloading, Postfix still serves the old certificate for \${RENEWED_LINEAGE:-${node.host.hostname}}" >&2
  exit 1
fi
if ! postfix reload; then
  echo "brightchain-postfix: 'postfix reload' failed; the renewed certificate is not served yet" >&2
  exit 1
fi
echo "brightchain-postfix: Postfix reloaded for \${RENEWED_LINEAGE:-${node.host.hostname}}"
`;
}

export function renderCloudflareCredentials(token: string): string {
  return `# Rendered by brightchain-gateway. Cloudflare API token with Zone:DNS:Edit on the mail domain only.\ndns_cloudflare_api_token = ${token}\n`;
}

export function tlsFiles(node: GatewayNode, secrets: GatewaySecrets): HostFile[] {
  const files: HostFile[] = [
    {
      path: DEPLOY_HOOK,
      mode: 0o755,
      owner: "root",
      group: "root",
      content: renderDeployHook(node),
      notify: [],
    },
  ];
  if (node.tls.challenge === "dns-01") {
    const token = secrets.certbotCloudflareToken;
    if (token === undefined || token.trim() === "" || /\s/.test(token)) {
      // The token itself never appears in the message: errors get logged.
      const problem = token === undefined ? "is not set" : token.trim() === "" ? "is empty" : "contains whitespace";
      throw new Error(
        `secrets.certbotCloudflareToken ${problem}, but tls.challenge=dns-01 needs it; accepted: a Cloudflare API token without whitespace, or tls.challenge=http-01`,
      );
    }
    files.push({
      path: CLOUDFLARE_CREDENTIALS,
      // certbot warns about, and a future version refuses, credentials others can read.
      mode: 0o600,
      owner: "root",
      group: "root",
      content: renderCloudflareCredentials(token),
      secret: true,
      notify: [],
    });
  }
  return files;
}
