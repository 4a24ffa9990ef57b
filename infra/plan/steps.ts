// The shell commands behind each host step. Each one converges: re-running it on a host already in the
// wanted state changes nothing and exits 0.
import { posix } from "node:path";
import { OS_RELEASES, releaseFacts } from "../model/releases";
import type { GatewayNode, HostDirectory, HostFile } from "../model/types";
import { dkimKeyPaths, dkimKeygenCommand, dkimMilterEndpoint } from "../render/opendkim";
import { spamMilterEndpoint } from "../render/spam";
import { certbotIssueCommand, reuseKeyCommand } from "../render/tls";
import { octalMode, sha256, shellQuote } from "./shell";

/**
 * The first step: the host must run the release the node was rendered for. Debian 13's Dovecot refuses
 * Debian 12's config and the package lists differ, so a mismatch would otherwise fail halfway through a deploy,
 * or worse, succeed with the wrong defaults. /etc/os-release is read, not sourced: it is data, not a script.
 */
export function osReleaseCommand(node: GatewayNode): string {
  const facts = releaseFacts(node.os);
  const wanted = `${node.os.release} (${facts.title})`;
  // Ubuntu's VERSION_ID is year.month and names the release; elsewhere the minor part (RHEL 9.4) does not.
  const version = facts.osReleaseId === "ubuntu" ? '"$version"' : '"${version%%.*}"';
  return [
    "set -eu",
    `field() { sed -n "s/^$1=//p" /etc/os-release | tr -d '"' | head -n 1; }`,
    `id=$(field ID);${node.os.family === "rhel" ? " like=$(field ID_LIKE);" : ""} version=$(field VERSION_ID); pretty=$(field PRETTY_NAME)`,
    // RHEL's rebuilds (Rocky, Alma) say ID_LIKE="rhel …"; a Debian or Ubuntu derivative is not the release.
    `case " $id${node.os.family === "rhel" ? " $like" : ""} " in *" ${facts.osReleaseId} "*) family=yes ;; *) family=no ;; esac`,
    `if [ "$family" != yes ] || [ ${version} != ${shellQuote(facts.versionId)} ]; then`,
    `  echo "host runs \${pretty:-$id $version}, gateway:os says ${wanted}: set gateway:os to the host's release (${OS_RELEASES.join(", ")}) or deploy to a ${node.os.release} host" >&2`,
    "  exit 1",
    "fi",
    `echo "host runs \${pretty:-$id $version}, as gateway:os says (${node.os.release})"`,
  ].join("\n");
}

/** The brightchain system user and group with the model's fixed ids (virtual(8) is told them in main.cf). */
export function systemUserCommand(node: GatewayNode): string {
  const { user, group, uid, gid, spoolDir } = node.drop;
  const u = shellQuote(user);
  const g = shellQuote(group);
  return [
    "set -eu",
    `getent group ${g} >/dev/null || groupadd --system --gid ${gid} ${g}`,
    `getent passwd ${u} >/dev/null || useradd --system --uid ${uid} --gid ${g} --home-dir ${shellQuote(spoolDir)} --no-create-home --shell /usr/sbin/nologin ${u}`,
    // An existing account with other ids would make virtual(8) write files the runtime cannot read.
    `[ "$(id -u ${u})" = ${uid} ] || { echo "user ${user} has uid $(id -u ${u}); the node model (drop.uid) says ${uid}" >&2; exit 1; }`,
    `[ "$(getent group ${g} | cut -d: -f3)" = ${gid} ] || { echo "group ${group} has another gid; the node model (drop.gid) says ${gid}" >&2; exit 1; }`,
  ].join("\n");
}

/** Directories in the order given (parents first), each with exactly its owner and mode. */
export function directoriesCommand(directories: HostDirectory[]): string {
  const lines = ["set -eu"];
  for (const dir of directories) {
    const path = shellQuote(dir.path);
    lines.push(
      `mkdir -p ${path}`,
      `chown ${shellQuote(`${dir.owner}:${dir.group}`)} ${path}`,
      `chmod ${octalMode(dir.mode)} ${path}`,
    );
  }
  return lines.join("\n");
}

/**
 * Installs stdin at `file.path` with exact mode and owner, atomically: a 0600 temp file in the same directory
 * (so a secret is never readable by others, not even for a moment), checked against the expected hash (a
 * truncated transfer fails the step instead of installing half a main.cf), then renamed over the target.
 * A secret file's hash travels in stdin's first line, never in the command: a failing step's error prints its
 * command, and a hash of a password file lets anyone who reads the log test guesses offline.
 */
export function installFileCommand(file: Pick<HostFile, "path" | "mode" | "owner" | "group" | "content" | "secret">): string {
  const dir = shellQuote(posix.dirname(file.path));
  const target = shellQuote(file.path);
  return [
    "set -eu",
    `mkdir -p ${dir}`,
    `tmp=$(mktemp ${shellQuote(`${posix.dirname(file.path)}/.${posix.basename(file.path)}.`)}XXXXXX)`,
    `trap 'rm -f "$tmp"' EXIT`,
    file.secret ? "IFS= read -r expected" : `expected=${sha256(file.content)}`,
    `cat > "$tmp"`,
    `echo "$expected  $tmp" | sha256sum -c --status || { echo "${file.path}: content arrived damaged" >&2; exit 1; }`,
    `chown ${shellQuote(`${file.owner}:${file.group}`)} "$tmp"`,
    `chmod ${octalMode(file.mode)} "$tmp"`,
    `mv -f "$tmp" ${target}`,
    "trap - EXIT",
  ].join("\n");
}

/** What installFileCommand reads on stdin: the content, after its hash line for a secret file. */
export function installFileStdin(file: Pick<HostFile, "content" | "secret">): string {
  return file.secret ? `${sha256(file.content)}\n${file.content}` : file.content;
}

/**
 * An empty recipient registry file when none exists yet: the lookup service refuses to start without it
 * (every RCPT TO would then be deferred), while an empty list answers "unknown" (550) until the node syncs it.
 * An existing file is the node's data and is never touched.
 */
export function recipientRegistryCommand(node: GatewayNode, registryPath: string): string {
  const file = shellQuote(registryPath);
  return [
    "set -eu",
    `if [ ! -e ${file} ]; then`,
    `  mkdir -p ${shellQuote(posix.dirname(registryPath))}`,
    `  install -m 0640 -o root -g ${shellQuote(node.drop.group)} /dev/null ${file}`,
    "fi",
  ].join("\n");
}

/** The opendkim renderer's key generation, then <selector>.txt on stdout: the public half, read back for DNS. */
export function dkimKeyCommand(node: GatewayNode): string {
  return ["set -eu", dkimKeygenCommand(node), `cat ${shellQuote(dkimKeyPaths(node).txtRecord)}`].join("\n");
}

/** The DKIM step's stdout again, generating nothing. */
export function dkimRecordReadCommand(node: GatewayNode): string {
  return `cat ${shellQuote(dkimKeyPaths(node).txtRecord)}`;
}

/**
 * The TLS renderer's certbot issue (a no-op while the certificate is valid), then a check that the files
 * main.cf names exist: a certbot that "succeeds" into another lineage must not let Postfix start without them.
 * A DANE rollover's next lineage is issued here too, so its key exists (and its TLSA is published) before any
 * configuration serves it. Every lineage renews onto its own key (reuse_key), whatever issued it.
 */
export function certificateCommand(node: GatewayNode): string {
  const next = node.dane?.nextLineage;
  return [
    "set -eu",
    certbotIssueCommand(node),
    reuseKeyCommand(node.tls.certName),
    `test -s ${shellQuote(node.tls.certFile)}`,
    `test -s ${shellQuote(node.tls.keyFile)}`,
    ...(next !== undefined
      ? [
          certbotIssueCommand(node, next),
          reuseKeyCommand(next),
          `test -s ${shellQuote(`/etc/letsencrypt/live/${next}/fullchain.pem`)}`,
          `test -s ${shellQuote(`/etc/letsencrypt/live/${next}/privkey.pem`)}`,
        ]
      : []),
  ].join("\n");
}

/** Loopback-only services: reachable from the host itself, refused from anywhere else. */
/**
 * Enables a service and restarts it onto its current files. A restart, not a reload: OpenDKIM reads its socket
 * and key, spamass-milter its flags and the runtime its program only at start. Postfix has its own reload step.
 */
export function serviceCommand(service: string): string {
  const name = shellQuote(service);
  return ["set -eu", "systemctl daemon-reload", `systemctl enable ${name}`, `systemctl restart ${name}`].join("\n");
}

export const POSTFIX_CHECK_COMMAND = "set -eu\npostfix check";
/**
 * `postfix reload` rereads main.cf but cannot rebind listeners: a changed inet_protocols or inet_interfaces
 * (Debian installs with `all`; an IPv4-only node renders `ipv4`) makes master fail on reload with "Address
 * family not supported" while Debian's postfix.service wrapper still reports active. So the listener settings
 * Postfix was last (re)started with are remembered, and a change of them, or a master that is not running,
 * means a restart; anything else is a reload, which keeps connections in flight.
 */
export const POSTFIX_LISTENERS_STAMP = "/var/lib/brightchain/postfix-listeners";
export const POSTFIX_RELOAD_COMMAND = [
  "set -eu",
  "systemctl enable postfix",
  `stamp=${POSTFIX_LISTENERS_STAMP}`,
  "listeners=\"$(postconf -h inet_protocols inet_interfaces | tr '\\n' ' ')\"",
  'if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$listeners" ] && postfix status >/dev/null 2>&1; then',
  "  systemctl reload postfix",
  "else",
  "  systemctl restart postfix",
  "fi",
  'mkdir -p "$(dirname "$stamp")"',
  'printf %s "$listeners" > "$stamp"',
].join("\n");

/**
 * The guide's section 10 checks as one step that waits (with a deadline) for Postfix to listen on 25
 * (and 587 on a primary), for the recipient lookup service to answer a real socketmap query, and for every
 * service to be active without an automatic restart since the service steps started it (a unit that
 * crash-loops is "active" for a moment between restarts).
 */
/**
 * What each milter Postfix calls must show before mail is accepted: with milter_default_action = tempfail, a
 * milter still starting (Rspamd takes seconds) answers every sender 451 (seen on a relay just deployed).
 */
function milterReadyChecks(node: GatewayNode): string[] {
  return [spamMilterEndpoint(node), dkimMilterEndpoint(node)]
    .filter((endpoint): endpoint is string => endpoint !== undefined)
    .map((endpoint) => {
      const inet = /^inet:[^:]+:(\d+)$/.exec(endpoint);
      if (inet) return `listening ${inet[1]}`;
      // An unchrooted daemon (every one here: render/postfix.ts) takes a relative unix: path from its working
      // directory, the queue directory, and an absolute one as it is (RHEL's spamass-milter socket in /run).
      const unix = /^unix:(.+)$/.exec(endpoint);
      if (unix) return `[ -S ${shellQuote(posix.resolve("/var/spool/postfix", unix[1]!))} ]`;
      throw new Error(`milter endpoint ${JSON.stringify(endpoint)} is neither inet:HOST:PORT nor unix:PATH`);
    });
}

export function verifyCommand(node: GatewayNode, services: string[]): string {
  const ports = node.submission?.enabled ? [25, 587] : [25];
  const milters = milterReadyChecks(node);
  const table = `socketmap:inet:127.0.0.1:${node.lookup.port}:virtual`;
  const probe = shellQuote(`postmaster@${node.domain}`);
  const units = services.map(shellQuote).join(" ");
  const conditions = [
    ...ports.map((p) => `listening ${p}`),
    ...milters,
    "lookup_answers",
    ...(services.length > 0 ? ["services_up"] : []),
  ];
  return [
    "set -eu",
    `listening() { ss -Htln "sport = :$1" | grep -q .; }`,
    // postmap exits 1 for "not found" too; only an error message means the service did not answer.
    `lookup_answers() { err=$(postmap -q ${probe} ${table} 2>&1 >/dev/null) || true; [ -z "$err" ]; }`,
    // Timers have no NRestarts: an empty value counts as none.
    `services_up() { for u in ${units}; do systemctl is-active --quiet "$u" || return 1; n=$(systemctl show -P NRestarts "$u"); [ "\${n:-0}" = 0 ] || return 1; done; }`,
    "deadline=$(( $(date +%s) + 60 ))",
    `until ${conditions.join(" && ")}; do`,
    `  if [ "$(date +%s)" -ge "$deadline" ]; then`,
    `    echo "not ready after 60s: need ${ports.join(", ")} listening, the milters (${milters.join("; ")}) up, ${table} answering${services.length > 0 ? " and these services up without restarts: " + services.join(" ") : ""}" >&2`,
    "    ss -Htln >&2",
    `    postmap -q ${probe} ${table} >&2 || true`,
    ...(services.length > 0
      ? [
          `    for u in ${units}; do echo "$u: $(systemctl is-active "$u") restarts=$(systemctl show -P NRestarts "$u")" >&2; done`,
        ]
      : []),
    "    exit 1",
    "  fi",
    "  sleep 1",
    "done",
    `echo "listening on ${ports.join(", ")}; recipient lookup answers${services.length > 0 ? "; services up: " + services.join(" ") : ""}"`,
  ].join("\n");
}

/**
 * Stops and disables one unit for good, and fails if it still runs. A unit systemd generates from a SysV script
 * (spamass-milter on Debian) runs with KillMode=process: when the script's stop misses its daemon, the unit stays
 * active (seen on a Debian 12 node switched to Rspamd), so every process left in the unit is killed too.
 */
const STOP_UNIT_FUNCTION = [
  "stop_unit() {",
  '  systemctl cat "$1" >/dev/null 2>&1 || return 0',
  '  systemctl disable --now "$1" >/dev/null 2>&1 || true',
  '  if systemctl is-active --quiet "$1"; then systemctl kill "$1" 2>/dev/null || true; systemctl stop "$1" 2>/dev/null || true; fi',
  '  n=0; while systemctl is-active --quiet "$1" && [ "$n" -lt 20 ]; do sleep 1; n=$((n + 1)); done',
  '  if systemctl is-active --quiet "$1"; then echo "$1 still runs after stop and kill" >&2; return 1; fi',
  "}",
].join("\n");

/**
 * What `pulumi destroy` runs on the host (the teardown resource's delete): our services stopped and disabled,
 * every file the plan installed removed, secrets shredded first, our certificate's lineage deleted so certbot
 * stops renewing it. Kept on purpose: the spool and the store (they may hold mail not yet handed on), the firewall
 * rules (a decommissioned host must not be left open), the packages, and the DKIM key when asked to.
 */
export function teardownCommand(node: GatewayNode, files: HostFile[], services: string[], keepDkimKey: boolean): string {
  // certbot's timer belongs to the package and renews whatever else the host holds; only our lineage goes.
  const units = ["postfix", ...new Set(services.filter((unit) => !unit.endsWith(".timer")))];
  const secret = files.filter((file) => file.secret).map((file) => shellQuote(file.path));
  const plain = files.filter((file) => !file.secret).map((file) => shellQuote(file.path));
  const { privateKey, txtRecord } = dkimKeyPaths(node);
  const lines = [
    "set -u",
    STOP_UNIT_FUNCTION,
    // Every unit is tried even when one fails; the step fails at the end if any still runs.
    `failed=""; for unit in ${units.map(shellQuote).join(" ")}; do stop_unit "$unit" || failed="$failed $unit"; done`,
    ...(secret.length > 0 ? [`for f in ${secret.join(" ")}; do [ -e "$f" ] && shred -u "$f"; done`] : []),
    `rm -f ${plain.join(" ")}`,
    ...(keepDkimKey
      ? []
      : [
          `[ -e ${shellQuote(privateKey)} ] && shred -u ${shellQuote(privateKey)}`,
          `rm -f ${shellQuote(txtRecord)}`,
          // Mid-rotation the previous selector's key is on the host too.
          ...(node.dkim.previous !== undefined
            ? [
                `[ -e ${shellQuote(`${dkimKeyPaths(node).keyDir}/${node.dkim.previous.selector}.private`)} ] && shred -u ${shellQuote(`${dkimKeyPaths(node).keyDir}/${node.dkim.previous.selector}.private`)}`,
                `rm -f ${shellQuote(`${dkimKeyPaths(node).keyDir}/${node.dkim.previous.selector}.txt`)}`,
              ]
            : []),
        ]),
    `certbot delete --non-interactive --cert-name ${shellQuote(node.host.hostname)} >/dev/null 2>&1 || true`,
    "systemctl daemon-reload",
    'if [ -n "$failed" ]; then echo "still running:$failed" >&2; exit 1; fi',
    `echo "stopped and disabled ${units.join(" ")}; removed ${files.length} files${keepDkimKey ? "; kept the DKIM key" : ""}; kept the spool, the store, the firewall rules and the packages"`,
  ];
  return lines.join("\n");
}

/**
 * Turning a component off (another spam engine, submission off, http-01 instead of dns-01) must not leave it
 * running or its files behind: its units stopped and disabled where they exist, the files only it was rendered
 * with shredded (the dns-01 token among them). Its packages stay: removing them is slow and buys nothing once
 * nothing runs them.
 */
export function retireCommand(units: string[], files: string[]): string {
  const lines = ["set -eu"];
  if (units.length > 0)
    lines.push(STOP_UNIT_FUNCTION, `for unit in ${units.map(shellQuote).join(" ")}; do stop_unit "$unit"; done`);
  if (files.length > 0)
    lines.push(`for f in ${files.map(shellQuote).join(" ")}; do if [ -e "$f" ]; then shred -u "$f"; fi; done`);
  return lines.join("\n");
}
