// Spam engine configuration: SpamAssassin (spamd + spamass-milter) or Rspamd (proxy worker in milter mode).
// Both engines score at SMTP time: mail at or above definiteScore is refused with a 5xx before Postfix takes
// responsibility for it, mail at or above probableScore gets headers the InboundProcessor files by.
import { componentProfile } from "../model/profiles";
import type { GatewayNode, HostFile } from "../model/types";

/** Loopback endpoints the engines listen on; the firewall and the Postfix renderer use the same numbers. */
export const SPAMD_PORT = 783;
export const RSPAMD_PROXY_PORT = 11332;
export const RSPAMD_NORMAL_PORT = 11333;
export const RSPAMD_CONTROLLER_PORT = 11334;

/** Where Debian's spamass-milter init script creates its socket when Postfix is installed (inside the queue dir). */
export const DEBIAN_SPAMASS_SOCKET = "/var/spool/postfix/spamass/spamass.sock";
/** Fedora/RHEL's spamass-milter-postfix socket; RHEL's Postfix is not chrooted, so smtpd reaches it directly. */
export const RHEL_SPAMASS_SOCKET = "/run/spamass-milter/postfix/sock";

function formatScore(score: number): string {
  return Number.isInteger(score) ? score.toFixed(1) : String(score);
}

/**
 * spamass-milter's `-r` reads a whole number (atoi), so 9.5 would silently become 9 and reject mail the
 * operator meant to deliver; refuse such a node instead of rendering a different threshold.
 */
function spamassRejectScore(node: GatewayNode): number {
  const score = node.spam.definiteScore;
  if (!Number.isInteger(score)) {
    throw new Error(
      `spam.definiteScore=${score} cannot be used with spam.engine=spamassassin: spamass-milter -r takes a whole number; accepted: an integer score such as 10`,
    );
  }
  return score;
}

/**
 * The milter Postfix's smtpd_milters must name for this node's engine, or undefined when there is none.
 * Debian: a path relative to the queue directory — every Postfix daemon runs with the queue directory as its
 * working directory, so the same string works whether smtpd is chrooted (Debian's default) or not.
 */
export function spamMilterEndpoint(node: GatewayNode): string | undefined {
  switch (node.spam.engine) {
    case "spamassassin":
      return node.os.family === "debian" ? "unix:spamass/spamass.sock" : `unix:${RHEL_SPAMASS_SOCKET}`;
    case "rspamd":
      return `inet:127.0.0.1:${RSPAMD_PROXY_PORT}`;
    case "none":
      return undefined;
  }
}

/** Services to enable, start and restart when the spam files change: the engine's profile on this release. */
export function spamServices(node: GatewayNode): string[] {
  return node.spam.engine === "none" ? [] : componentProfile(node, node.spam.engine).services;
}

/**
 * SpamAssassin's site config. report_safe 0 keeps the original message intact (no MIME wrapping) and adds
 * X-Spam-* headers only; the Subject is left alone because BrightChain files by header, and a rewritten
 * Subject would also break the sender's DKIM signature for anything downstream.
 */
export function renderSpamassassinLocalCf(node: GatewayNode): string {
  return [
    "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
    `required_score ${formatScore(node.spam.probableScore)}`,
    "report_safe 0",
    // No extra add_header: spamass-milter copies only its fixed X-Spam-* set (Status, Flag, Level, Report,
    // Checker-Version); the InboundProcessor reads the score from X-Spam-Status's score=.
    "",
  ].join("\n");
}

/** spamass-milter flags shared by both OS families. */
function spamassMilterFlags(node: GatewayNode): string {
  const flags = [
    // Skip mail from the host itself: bounces and the runtime's own submissions.
    "-i 127.0.0.1",
    // Skip SASL-authenticated submissions on 587: they are BrightChain's outbound mail, not inbound spam.
    "-I",
    "-m",
    `-r ${spamassRejectScore(node)}`,
  ];
  return flags.join(" ");
}

/** spamd listens on loopback only: spamass-milter is its one client. */
function spamdListen(): string {
  return `--listen=127.0.0.1:${SPAMD_PORT}`;
}

function spamassassinFiles(node: GatewayNode): HostFile[] {
  const localCf: HostFile = {
    path: "/etc/spamassassin/local.cf",
    mode: 0o644,
    owner: "root",
    group: "root",
    content: renderSpamassassinLocalCf(node),
    notify: node.os.family === "debian" ? ["spamd"] : ["spamassassin"],
  };
  if (node.os.family === "debian") {
    return [
      localCf,
      {
        path: "/etc/default/spamd",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway. Read by spamd.service.",
          `OPTIONS="--create-prefs --max-children 5 --helper-home-dir ${spamdListen()}"`,
          'PIDFILE="/run/spamd.pid"',
          "",
        ].join("\n"),
        notify: ["spamd"],
      },
      {
        path: "/etc/default/spamass-milter",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway. Read by /etc/init.d/spamass-milter.",
          `OPTIONS="-u spamass-milter ${spamassMilterFlags(node)}"`,
          // Inside the Postfix queue directory so a chrooted smtpd can reach it; group postfix may connect.
          `SOCKET="${DEBIAN_SPAMASS_SOCKET}"`,
          'SOCKETOWNER="postfix:postfix"',
          'SOCKETMODE="0660"',
          "",
        ].join("\n"),
        notify: ["spamass-milter"],
      },
    ];
  }
  return [
    localCf,
    {
      path: "/etc/sysconfig/spamassassin",
      mode: 0o644,
      owner: "root",
      group: "root",
      content: [
        "# Rendered by brightchain-gateway. Read by spamassassin.service.",
        `SPAMDOPTIONS="-d -c -m5 -H ${spamdListen()}"`,
        "",
      ].join("\n"),
      notify: ["spamassassin"],
    },
    {
      path: "/etc/sysconfig/spamass-milter",
      mode: 0o644,
      owner: "root",
      group: "root",
      content: [
        "# Rendered by brightchain-gateway. Read by spamass-milter.service.",
        `SOCKET="${RHEL_SPAMASS_SOCKET}"`,
        'SOCKET_OPTIONS="-g postfix"',
        `EXTRA_FLAGS="${spamassMilterFlags(node)}"`,
        "",
      ].join("\n"),
      notify: ["spamass-milter"],
    },
  ];
}

/**
 * Rspamd's action thresholds. Greylisting is disabled: it needs Redis, and a greylist threshold below
 * reject would make legitimate mail from strict senders arrive hours late for no gain over the score.
 * rewrite_subject is left unset (the stock actions.conf does not set it either), not set to null: Rspamd 3.12
 * (Debian 13) compares the thresholds in order and a null one aborts its config transform with "attempt to
 * compare number with userdata" on every start.
 */
export function renderRspamdActions(node: GatewayNode): string {
  return [
    `reject = ${formatScore(node.spam.definiteScore)};`,
    `add_header = ${formatScore(node.spam.probableScore)};`,
    "greylist = null;",
    "",
  ].join("\n");
}

function rspamdLocalFile(name: string, content: string): HostFile {
  return {
    path: `/etc/rspamd/local.d/${name}`,
    mode: 0o644,
    owner: "root",
    group: "root",
    content: `# Rendered by brightchain-gateway from the node model.\n${content}`,
    notify: ["rspamd"],
  };
}

/**
 * Rspamd runs without Redis: the modules that need it (greylist, ratelimit, bayes autolearn, neural,
 * replies) disable themselves, and scoring by rules, DNS lists, SPF/DKIM/DMARC still works.
 */
function rspamdFiles(node: GatewayNode): HostFile[] {
  return [
    rspamdLocalFile("actions.conf", renderRspamdActions(node)),
    rspamdLocalFile(
      "worker-proxy.inc",
      [
        `bind_socket = "127.0.0.1:${RSPAMD_PROXY_PORT}";`,
        "milter = yes;",
        "timeout = 120s;",
        // Scan inside the proxy itself: one fewer hop, and no dependency on the normal worker being up.
        'upstream "local" {',
        "  default = yes;",
        "  self_scan = yes;",
        "}",
        "",
      ].join("\n"),
    ),
    rspamdLocalFile("worker-normal.inc", `bind_socket = "127.0.0.1:${RSPAMD_NORMAL_PORT}";\n`),
    rspamdLocalFile("worker-controller.inc", `bind_socket = "127.0.0.1:${RSPAMD_CONTROLLER_PORT}";\n`),
    rspamdLocalFile(
      "milter_headers.conf",
      [
        // x-spam-status carries "score=N" and x-spamd-result the full symbol list: the runtime reads the score.
        'use = ["x-spamd-result", "x-spam-status", "x-spam-level", "x-rspamd-queue-id", "authentication-results"];',
        // Headers on every message, not only spam: "no header" must mean "not scanned", never "clean".
        "skip_local = false;",
        "skip_authenticated = true;",
        "",
      ].join("\n"),
    ),
  ];
}

/** Every file the node's spam engine needs; empty for engine none. */
export function spamFiles(node: GatewayNode): HostFile[] {
  switch (node.spam.engine) {
    case "spamassassin":
      return spamassassinFiles(node);
    case "rspamd":
      return rspamdFiles(node);
    case "none":
      return [];
  }
}
