// Postfix main.cf and master.cf for both roles, rendered from a key/value model per role.
// A primary validates recipients at RCPT time through the lookup service's socketmap and delivers every
// accepted copy into the drop Maildir; a relay is a real backup MX: same validation, then it holds and
// forwards to the primary. Services listen on every interface; the firewall decides who reaches them.
import { posix } from "node:path";
import { releaseFacts } from "../model/releases";
import type { GatewayNode, HostFile } from "../model/types";
import { dkimMilterEndpoint } from "./opendkim";
import { spamMilterEndpoint } from "./spam";
import { MAILDROP_SCRIPT_PATH } from "./spool";

/** Dovecot's auth listener, relative to the queue directory (the only form smtpd_sasl_path takes for dovecot). */
export const DOVECOT_AUTH_SOCKET = "private/auth";
export const DROP_SERVICE = "brightchain-drop";
export const MAIN_CF_PATH = "/etc/postfix/main.cf";
export const MASTER_CF_PATH = "/etc/postfix/master.cf";

/** One main.cf parameter; `why` becomes a comment above it when the line avoids a pitfall. */
export interface PostfixParam {
  key: string;
  value: string;
  why?: string;
}

export interface PostfixSection {
  title: string;
  params: PostfixParam[];
}

/** One master.cf service line plus its `-o name=value` overrides (or pipe/argv arguments). */
export interface MasterService {
  service: string;
  type: "inet" | "unix" | "unix-dgram" | "fifo" | "pass";
  private: "y" | "n" | "-";
  unpriv: "y" | "n" | "-";
  chroot: "y" | "n" | "-";
  wakeup: string;
  maxproc: string;
  command: string;
  args?: string[];
  why?: string;
}

const TLS_1_2_OR_LATER = "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1";

function socketmap(node: GatewayNode): string {
  return `socketmap:inet:127.0.0.1:${node.lookup.port}:virtual`;
}

/**
 * The same compatibility level on every release that can parse it, so a Debian 12 and a Debian 13 node behave
 * alike; RHEL 9's Postfix 3.5 predates level 3.6, and every default 3.6 changes is set explicitly below.
 */
function compatibilityLevel(node: GatewayNode): PostfixParam {
  const postfix = releaseFacts(node.os).postfix;
  return postfix === "3.5"
    ? {
        key: "compatibility_level",
        value: "2",
        why: "RHEL 9 ships Postfix 3.5, which cannot parse the 3.6 level; every default level 3.6 changes is set explicitly below.",
      }
    : {
        key: "compatibility_level",
        value: "3.6",
        why: `Current defaults without backwards-compatibility logging; the highest level Postfix ${postfix} knows.`,
      };
}

/**
 * Two defaults Postfix 3.9 changed (Debian 13 has them, Debian 12's 3.7.11 and Ubuntu's 3.8.6 have the settings
 * but the old defaults): SMTP smuggling (CVE-2023-51764) protection and refusing unauthorised pipelining. Set on
 * every release that has them, so a Debian 12 node behaves as a Debian 13 one. RHEL 9's 3.5.9 is left to its
 * vendor defaults (the settings exist only in some of its builds).
 */
function postfix39Defaults(node: GatewayNode): PostfixParam[] {
  if (releaseFacts(node.os).postfix === "3.5") return [];
  return [
    {
      key: "smtpd_forbid_bare_newline",
      value: "normalize",
      why: "SMTP smuggling: a bare LF must not end a line (Debian 12's Postfix defaults to no; 3.9+ to normalize).",
    },
    { key: "smtpd_forbid_bare_newline_exclusions", value: "$mynetworks" },
    {
      key: "smtpd_forbid_unauth_pipelining",
      value: "yes",
      why: "Spambots send commands before the greeting or the reply; real MTAs wait (3.9+ default).",
    },
  ];
}

function identitySection(node: GatewayNode): PostfixSection {
  return {
    title: "Identity",
    params: [
      compatibilityLevel(node),
      { key: "myhostname", value: node.host.hostname },
      { key: "mydomain", value: node.domain },
      { key: "myorigin", value: "$mydomain" },
      {
        key: "mydestination",
        value: "",
        why: "The domain is virtual (primary) or relayed (relay), never local: listing it here would deliver to Unix accounts.",
      },
      { key: "inet_interfaces", value: "all" },
      {
        key: "inet_protocols",
        value: node.host.ipv6 === undefined ? "ipv4" : "all",
        why:
          node.host.ipv6 === undefined
            ? "No IPv6 address on this node: trying IPv6 MX hosts would only add timeouts before every IPv4 fallback."
            : undefined,
      },
      { key: "mynetworks", value: node.mynetworks.join(" ") },
      {
        key: "alias_maps",
        value: "",
        why: "Nothing is delivered locally; the compiled-in default would also query NIS and warn on every start.",
      },
      { key: "alias_database", value: "" },
      { key: "biff", value: "no" },
      { key: "append_dot_mydomain", value: "no" },
      ...postfix39Defaults(node),
    ],
  };
}

function tlsSection(node: GatewayNode): PostfixSection {
  return {
    title: "TLS",
    params: [
      { key: "smtpd_tls_cert_file", value: node.tls.certFile },
      { key: "smtpd_tls_key_file", value: node.tls.keyFile },
      {
        key: "smtpd_tls_security_level",
        value: "may",
        why: "A public MX cannot require TLS (RFC 3207); port 587 requires it per service in master.cf.",
      },
      {
        key: "smtpd_tls_protocols",
        value: TLS_1_2_OR_LATER,
        why: "Opportunistic and mandatory lists both: setting only the mandatory one leaves TLS 1.0/1.1 open on port 25. Exclusion syntax, not >=TLSv1.2, because Postfix 3.5 (RHEL 9) lacks the latter.",
      },
      { key: "smtpd_tls_mandatory_protocols", value: TLS_1_2_OR_LATER },
      { key: "smtpd_tls_mandatory_ciphers", value: "high" },
      {
        key: "smtpd_tls_auth_only",
        value: "yes",
        why: "Never offer AUTH before STARTTLS: passwords must not cross in plaintext.",
      },
      { key: "smtpd_tls_received_header", value: "yes" },
      { key: "smtpd_tls_loglevel", value: "1" },
      { key: "smtpd_tls_session_cache_database", value: "btree:${data_directory}/smtpd_scache" },
      { key: "smtp_tls_security_level", value: "may" },
      { key: "smtp_tls_protocols", value: TLS_1_2_OR_LATER },
      { key: "smtp_tls_mandatory_protocols", value: TLS_1_2_OR_LATER },
      { key: "smtp_tls_loglevel", value: "1" },
      { key: "smtp_tls_session_cache_database", value: "btree:${data_directory}/smtp_scache" },
    ],
  };
}

function sizeSection(node: GatewayNode): PostfixSection {
  // A delivered file is the queued message plus what delivery prepends (Delivered-To, Return-Path), so a
  // message accepted at exactly message_size_limit must still fit: the per-file limit gets 1 MiB headroom.
  const perFileLimit = String(node.maxMessageSize + 1_048_576);
  return {
    title: "Sizes (GATEWAY_MAX_MESSAGE_SIZE)",
    params: [
      { key: "message_size_limit", value: String(node.maxMessageSize) },
      {
        key: "mailbox_size_limit",
        value: perFileLimit,
        why: "Postfix refuses to start when a mailbox limit is below message_size_limit; headroom covers delivery headers.",
      },
      { key: "virtual_mailbox_limit", value: perFileLimit },
    ],
  };
}

function smtpdPolicySection(node: GatewayNode): PostfixSection {
  const trusted = node.role === "primary" ? "permit_mynetworks, permit_sasl_authenticated" : "permit_mynetworks";
  return {
    title: "SMTP server policy",
    params: [
      { key: "smtpd_banner", value: "$myhostname ESMTP" },
      { key: "smtpd_helo_required", value: "yes" },
      { key: "disable_vrfy_command", value: "yes", why: "VRFY would let anyone enumerate BrightChain users." },
      { key: "strict_rfc821_envelopes", value: "yes" },
      {
        key: "smtpd_relay_restrictions",
        value: `${trusted}, reject_unauth_destination`,
        why: "Only the served domain is accepted from strangers: this is what keeps the node from being an open relay.",
      },
      {
        key: "smtpd_recipient_restrictions",
        value: "reject_non_fqdn_recipient, reject_unlisted_recipient",
      },
      { key: "smtpd_sender_restrictions", value: "reject_non_fqdn_sender" },
      {
        key: "unknown_virtual_mailbox_reject_code",
        value: "550",
        why: "Unknown users are refused at RCPT with a permanent code: the sender's MTA bounces, not this node.",
      },
      { key: "unknown_relay_recipient_reject_code", value: "550" },
    ],
  };
}

function milterSection(node: GatewayNode): PostfixSection {
  // OpenDKIM runs on the primary only (see opendkim.ts); a relay scans for spam but signs nothing.
  const dkim = dkimMilterEndpoint(node);
  const smtpdMilters = [spamMilterEndpoint(node), dkim].filter((milter): milter is string => milter !== undefined);
  const params: PostfixParam[] = [];
  if (smtpdMilters.length > 0) {
    params.push({
      key: "smtpd_milters",
      value: smtpdMilters.join(", "),
      why: "One list, spam engine first: a second smtpd_milters line would silently replace the first.",
    });
  }
  if (dkim !== undefined) {
    params.push({
      key: "non_smtpd_milters",
      value: dkim,
      why: "Mail injected with sendmail(1) on the host is signed too; it is not spam-scanned (it is our own).",
    });
  }
  if (params.length > 0) {
    params.push(
      { key: "milter_protocol", value: "6" },
      {
        key: "milter_default_action",
        value: "tempfail",
        why: "A dead milter means 4xx and a retry, never a pass: a dead spam filter must not wave everything in, and a dead DKIM signer must not send unsigned mail that fails DMARC.",
      },
    );
  }
  return { title: "Milters", params };
}

function primaryDeliverySection(node: GatewayNode): PostfixSection {
  return {
    title: "Delivery into the BrightChain drop Maildir",
    params: [
      { key: "relayhost", value: "" },
      { key: "virtual_mailbox_domains", value: node.domain },
      {
        key: "virtual_mailbox_maps",
        value: socketmap(node),
        why: "The lookup service answers at RCPT time; the drop service overrides this map for delivery only (master.cf).",
      },
      { key: "virtual_transport", value: DROP_SERVICE },
      {
        key: "recipient_delimiter",
        value: "+",
        why: "Postfix hands the socketmap the full user+tag address (seen with 3.7): the lookup service strips the tag itself.",
      },
      ...(node.drop.transport === "pipe"
        ? [
            {
              key: `${DROP_SERVICE}_destination_recipient_limit`,
              value: "1",
              why: "The pipe gets one ${recipient}: with several recipients per delivery only one would be named.",
            },
          ]
        : []),
    ],
  };
}

function relayDeliverySection(node: GatewayNode): PostfixSection {
  const relay = node.relay;
  if (relay === undefined) {
    throw new Error(
      `node ${node.host.hostname}: role=relay needs relay settings (relay.forwardTo, relay.queueLifetime); got none`,
    );
  }
  return {
    title: "Backup MX: validate, hold, forward to the primary",
    params: [
      { key: "relay_domains", value: node.domain },
      {
        key: "relay_recipient_maps",
        value: socketmap(node),
        why: "Unknown users get 550 here too; a backup MX that accepts them would later bounce to forged senders.",
      },
      {
        key: "relay_transport",
        value: `relay:[${relay.forwardTo}]:25`,
        why: "Only the relayed domain goes to the primary. relayhost would route everything through it, this node's DSNs to the internet too.",
      },
      { key: "relayhost", value: "" },
      { key: "maximal_queue_lifetime", value: relay.queueLifetime },
    ],
  };
}

/** The main.cf model for this node's role, in file order. */
export function mainCfSections(node: GatewayNode): PostfixSection[] {
  if (node.role !== "primary" && node.role !== "relay") {
    throw new Error(`role=${String(node.role)} is not supported; accepted: primary, relay`);
  }
  const delivery = node.role === "primary" ? primaryDeliverySection(node) : relayDeliverySection(node);
  const sections = [
    identitySection(node),
    delivery,
    smtpdPolicySection(node),
    tlsSection(node),
    sizeSection(node),
    milterSection(node),
  ];
  return sections.filter((section) => section.params.length > 0);
}

function renderParam(param: PostfixParam): string {
  const line = param.value === "" ? `${param.key} =` : `${param.key} = ${param.value}`;
  return param.why === undefined ? line : `# ${param.why}\n${line}`;
}

export function renderMainCf(node: GatewayNode): string {
  const header = `# Postfix main.cf for ${node.host.hostname} (${node.role} of ${node.domain}). Rendered by brightchain-gateway; local edits are overwritten.\n`;
  const body = mainCfSections(node)
    .map((section) => `\n# --- ${section.title}\n${section.params.map(renderParam).join("\n")}\n`)
    .join("");
  return header + body;
}

// Every daemon runs unchrooted: the same on Debian (chroot y by default) and RHEL (n), and Debian's chroot
// needs its init script to copy resolv.conf and friends in, which nothing does on a non-systemd start.
function service(
  service: string,
  type: MasterService["type"],
  command: string,
  fields: Partial<Pick<MasterService, "private" | "unpriv" | "wakeup" | "maxproc" | "args" | "why">> = {},
): MasterService {
  return {
    service,
    type,
    private: fields.private ?? "-",
    unpriv: fields.unpriv ?? "-",
    chroot: "n",
    wakeup: fields.wakeup ?? "-",
    maxproc: fields.maxproc ?? "-",
    command,
    args: fields.args,
    why: fields.why,
  };
}

/**
 * Our own authenticated mail is signed, not scored: the spam engines' inbound rules would mark the BrightChain
 * node's outbound mail (and spamass-milter -r would reject it), so 587 runs OpenDKIM alone.
 */
function submissionMilters(node: GatewayNode): string[] {
  const dkim = dkimMilterEndpoint(node);
  return dkim === undefined ? [] : [`-o smtpd_milters=${dkim}`];
}

function submissionService(node: GatewayNode): MasterService[] {
  if (node.submission === undefined || !node.submission.enabled) return [];
  return [
    service("submission", "inet", "smtpd", {
      private: "n",
      why: "Authenticated outbound from the BrightChain node: TLS first, then SASL, nothing else relays.",
      args: [
        "-o syslog_name=postfix/submission",
        "-o smtpd_tls_security_level=encrypt",
        "-o smtpd_tls_auth_only=yes",
        "-o smtpd_sasl_auth_enable=yes",
        `-o smtpd_sasl_type=${node.submission.saslBackend}`,
        `-o smtpd_sasl_path=${DOVECOT_AUTH_SOCKET}`,
        "-o smtpd_sasl_security_options=noanonymous",
        "-o smtpd_client_restrictions=permit_sasl_authenticated,reject",
        "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject",
        "-o smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
        "-o milter_macro_daemon_name=ORIGINATING",
        ...submissionMilters(node),
      ],
    }),
  ];
}

function dropService(node: GatewayNode): MasterService {
  if (node.drop.transport === "pipe") {
    return service(DROP_SERVICE, "unix", "pipe", {
      unpriv: "n",
      why: "The guide's script: D prepends Delivered-To (and detects loops), R Return-Path; one recipient per call.",
      args: [`flags=DRhu user=${node.drop.user}`, `argv=${MAILDROP_SCRIPT_PATH} \${sender} \${recipient}`],
    });
  }
  if (node.drop.transport !== "virtual") {
    throw new Error(`drop.transport=${String(node.drop.transport)} is not supported; accepted: virtual, pipe`);
  }
  const dropDir = node.drop.mailDropDir.replace(/\/+$/, "");
  return service(DROP_SERVICE, "unix", "virtual", {
    unpriv: "n",
    why: "virtual(8) writes every accepted recipient into the one drop Maildir (trailing / = Maildir) and adds Delivered-To; the static map applies to delivery only, smtpd keeps validating with the socketmap.",
    args: [
      `-o virtual_mailbox_base=${posix.dirname(dropDir)}`,
      `-o virtual_mailbox_maps=static:${posix.basename(dropDir)}/`,
      `-o virtual_uid_maps=static:${node.drop.uid}`,
      `-o virtual_gid_maps=static:${node.drop.gid}`,
      `-o virtual_minimum_uid=${node.drop.uid}`,
    ],
  });
}

/** The master.cf model: Postfix's stock services, plus submission and the drop transport on a primary. */
export function masterCfServices(node: GatewayNode): MasterService[] {
  const isPrimary = node.role === "primary";
  return [
    service("smtp", "inet", "smtpd", { private: "n" }),
    ...(isPrimary ? submissionService(node) : []),
    service("pickup", "unix", "pickup", { private: "n", wakeup: "60", maxproc: "1" }),
    service("cleanup", "unix", "cleanup", { private: "n", maxproc: "0" }),
    service("qmgr", "unix", "qmgr", { private: "n", wakeup: "300", maxproc: "1" }),
    service("tlsmgr", "unix", "tlsmgr", { wakeup: "1000?", maxproc: "1" }),
    service("rewrite", "unix", "trivial-rewrite"),
    service("bounce", "unix", "bounce", { maxproc: "0" }),
    service("defer", "unix", "bounce", { maxproc: "0" }),
    service("trace", "unix", "bounce", { maxproc: "0" }),
    service("verify", "unix", "verify", { maxproc: "1" }),
    service("flush", "unix", "flush", { private: "n", wakeup: "1000?", maxproc: "0" }),
    service("proxymap", "unix", "proxymap", { unpriv: "n" }),
    service("proxywrite", "unix", "proxymap", { unpriv: "n", maxproc: "1" }),
    service("smtp", "unix", "smtp"),
    service("relay", "unix", "smtp", { args: ["-o syslog_name=postfix/$service_name"] }),
    service("showq", "unix", "showq", { private: "n" }),
    service("error", "unix", "error"),
    service("retry", "unix", "error"),
    service("discard", "unix", "discard"),
    service("local", "unix", "local", { unpriv: "n" }),
    service("virtual", "unix", "virtual", { unpriv: "n" }),
    service("lmtp", "unix", "lmtp"),
    service("anvil", "unix", "anvil", { maxproc: "1" }),
    service("scache", "unix", "scache", { maxproc: "1" }),
    service("postlog", "unix-dgram", "postlogd", { private: "n", maxproc: "1" }),
    ...(isPrimary ? [dropService(node)] : []),
  ];
}

function renderService(entry: MasterService): string {
  const columns = [
    entry.service,
    entry.type,
    entry.private,
    entry.unpriv,
    entry.chroot,
    entry.wakeup,
    entry.maxproc,
    entry.command,
  ];
  const line = columns.join(" ");
  const args = (entry.args ?? []).map((arg) => `  ${arg}`);
  const comment = entry.why === undefined ? [] : [`# ${entry.why}`];
  return [...comment, line, ...args].join("\n");
}

export function renderMasterCf(node: GatewayNode): string {
  const header = [
    `# Postfix master.cf for ${node.host.hostname} (${node.role} of ${node.domain}). Rendered by brightchain-gateway; local edits are overwritten.`,
    "# service type private unpriv chroot wakeup maxproc command + args",
  ].join("\n");
  return `${header}\n${masterCfServices(node).map(renderService).join("\n")}\n`;
}

export function postfixFiles(node: GatewayNode): HostFile[] {
  const common = { mode: 0o644, owner: "root", group: "root", notify: ["postfix"] };
  return [
    { path: MAIN_CF_PATH, content: renderMainCf(node), ...common },
    { path: MASTER_CF_PATH, content: renderMasterCf(node), ...common },
  ];
}
