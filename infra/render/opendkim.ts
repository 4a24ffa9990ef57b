// OpenDKIM: the primary signs the domain's outbound mail and verifies inbound mail.
//
// Relays run no OpenDKIM. The private key is generated on the primary and never leaves it, so a relay could
// only sign with a second key of its own; the only mail a relay originates is its own DSNs (null sender,
// From: MAILER-DAEMON@<relay host>), which DMARC does not evaluate against the domain's DKIM key. Inbound mail
// a relay forwards keeps its original signatures, and the primary verifies them when it arrives there.
import { runsComponent } from "../model/profiles";
import type { GatewayNode, HostFile } from "../model/types";

export const OPENDKIM_PORT = 8891;
export const OPENDKIM_CONF_PATH = "/etc/opendkim.conf";

export interface DkimKeyPaths {
  keyDir: string;
  /** <keyDir>/<selector>.private — the signing key, opendkim:opendkim 0600. */
  privateKey: string;
  /** <keyDir>/<selector>.txt — the BIND-style TXT record opendkim-genkey writes beside the key. */
  txtRecord: string;
}

export function dkimKeyPaths(node: GatewayNode): DkimKeyPaths {
  const keyDir = node.dkim.keyDir.replace(/\/+$/, "");
  return {
    keyDir,
    privateKey: `${keyDir}/${node.dkim.selector}.private`,
    txtRecord: `${keyDir}/${node.dkim.selector}.txt`,
  };
}

/** Whether this node runs OpenDKIM at all (the primary only, see the header comment). */
export function opendkimEnabled(node: GatewayNode): boolean {
  return runsComponent(node, "opendkim");
}

/** The milter Postfix's smtpd_milters/non_smtpd_milters must name for DKIM, or undefined on a relay. */
export function dkimMilterEndpoint(node: GatewayNode): string | undefined {
  return opendkimEnabled(node) ? `inet:127.0.0.1:${OPENDKIM_PORT}` : undefined;
}

/**
 * The idempotent shell command a host step runs to create the key on the host: an existing key is kept
 * (regenerating it would invalidate the published DNS record), and the key file is made readable by
 * opendkim only, which OpenDKIM's RequireSafeKeys insists on.
 */
export function dkimKeygenCommand(node: GatewayNode): string {
  const { keyDir, privateKey, txtRecord } = dkimKeyPaths(node);
  return [
    `install -d -m 0750 -o opendkim -g opendkim ${keyDir}`,
    `{ test -s ${privateKey} || opendkim-genkey -b ${node.dkim.keyBits} -h sha256 -s ${node.dkim.selector} -d ${node.domain} -D ${keyDir}; }`,
    `chown opendkim:opendkim ${privateKey} ${txtRecord}`,
    `chmod 0600 ${privateKey}`,
    `chmod 0644 ${txtRecord}`,
  ].join(" && ");
}

/** Postfix writes IPv6 networks as [addr]/len; OpenDKIM datasets want addr/len. */
function toOpendkimNetwork(postfixNetwork: string): string {
  return postfixNetwork.replace(/^\[([^\]]+)\]/, "$1");
}

/**
 * Debian ships the DNSSEC root anchor in dns-root-data, a dependency of its opendkim package. RHEL's opendkim
 * brings no anchor file, and naming a missing file stops opendkim from starting, so it is left out there.
 */
function trustAnchorFile(node: GatewayNode): string | undefined {
  return node.os.family === "debian" ? "/usr/share/dns/root.key" : undefined;
}

export function renderOpendkimConf(node: GatewayNode): string {
  if (!opendkimEnabled(node)) {
    throw new Error(
      `role=${node.role}: OpenDKIM runs on the primary only (the signing key never leaves it); accepted: role=primary`,
    );
  }
  const { privateKey } = dkimKeyPaths(node);
  // Mail from these networks is signed rather than verified. SASL-authenticated submissions on 587 are
  // signed whatever their address: Postfix passes {auth_type} and OpenDKIM treats such mail as originated here.
  const internal = node.mynetworks.map(toOpendkimNetwork).join(", ");
  const anchor = trustAnchorFile(node);
  const lines: [string, string][] = [
    ["Syslog", "yes"],
    ["SyslogSuccess", "yes"],
    // 007: the pid file and any socket stay private to opendkim and its group.
    ["UMask", "007"],
    ["UserID", "opendkim"],
    ["PidFile", "/run/opendkim/opendkim.pid"],
    // Loopback TCP rather than a unix socket: reachable from a chrooted smtpd without a socket in the spool.
    ["Socket", `inet:${OPENDKIM_PORT}@127.0.0.1`],
    // s: sign mail from InternalHosts and authenticated senders; v: verify everything else.
    ["Mode", "sv"],
    ["Domain", node.domain],
    ["Selector", node.dkim.selector],
    ["KeyFile", privateKey],
    ["SubDomains", "no"],
    // relaxed headers survive the header rewrapping relays do; simple body catches any body change.
    ["Canonicalization", "relaxed/simple"],
    // Signing one more From than present stops a second From header being added after signing.
    ["OversignHeaders", "From"],
    ["InternalHosts", internal],
    ["ExternalIgnoreList", internal],
  ];
  if (anchor !== undefined) lines.push(["TrustAnchorFile", anchor]);
  return [
    "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
    ...lines.map(([key, value]) => `${key.padEnd(20)}${value}`),
    "",
  ].join("\n");
}

export function opendkimFiles(node: GatewayNode): HostFile[] {
  if (!opendkimEnabled(node)) return [];
  return [
    {
      path: OPENDKIM_CONF_PATH,
      mode: 0o644,
      owner: "root",
      group: "root",
      content: renderOpendkimConf(node),
      // Socket and key changes are only read at start: a restart, not a reload.
      notify: ["opendkim"],
    },
  ];
}

/**
 * Turns the `<selector>.txt` opendkim-genkey writes — a BIND record whose value is split into several quoted
 * strings inside parentheses, followed by a `;` comment — into the one string a DNS API publishes.
 */
export function parseDkimTxtRecord(text: string): string {
  const chunks: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ";") {
      // A zone-file comment runs to the end of the line.
      const end = text.indexOf("\n", i);
      i = end === -1 ? text.length : end + 1;
    } else if (c === '"') {
      let chunk = "";
      i += 1;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === "\\" && i + 1 < text.length) i += 1;
        chunk += text[i];
        i += 1;
      }
      if (i >= text.length) {
        throw new Error(`DKIM TXT record has an unterminated quoted string: ${JSON.stringify(text.slice(0, 120))}`);
      }
      chunks.push(chunk);
      i += 1;
    } else {
      i += 1;
    }
  }
  const value = chunks.join("");
  if (!/^v=DKIM1;/.test(value) || !/(^|;)\s*p=[A-Za-z0-9+/=]+\s*$/.test(value)) {
    throw new Error(
      `DKIM TXT record ${JSON.stringify(value || text.slice(0, 120))} is not a DKIM key record; expected the <selector>.txt opendkim-genkey writes, holding "v=DKIM1; … p=<base64 key>"`,
    );
  }
  return value;
}
