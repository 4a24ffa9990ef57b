// The drop spool: the Maildir Postfix delivers into and the InboundProcessor consumes, plus the guide's
// brightchain-maildrop script for nodes that choose the pipe transport.
// Every directory belongs to the brightchain user: virtual(8) delivers as its uid/gid (static maps in
// master.cf) and the pipe runs as it, so both writers and the runtime reader are the same account.
import type { GatewayNode, HostDirectory, HostFile } from "../model/types";

export const MAILDROP_SCRIPT_PATH = "/usr/local/bin/brightchain-maildrop";

function trimSlash(path: string): string {
  return path.replace(/\/+$/, "");
}

function requireAbsolute(field: string, path: string): string {
  if (!path.startsWith("/") || path.includes("\n") || path.includes("'")) {
    throw new Error(`${field}=${JSON.stringify(path)} is invalid; accepted: an absolute path without quotes or newlines`);
  }
  return trimSlash(path);
}

/** Primary only: a relay forwards everything it accepts and never delivers into a Maildir. */
export function spoolDirectories(node: GatewayNode): HostDirectory[] {
  if (node.role !== "primary") return [];
  const owner = { owner: node.drop.user, group: node.drop.group, mode: 0o750 };
  const dropDir = requireAbsolute("drop.mailDropDir", node.drop.mailDropDir);
  return [
    { path: requireAbsolute("drop.spoolDir", node.drop.spoolDir), ...owner },
    { path: dropDir, ...owner },
    { path: `${dropDir}/tmp`, ...owner },
    { path: `${dropDir}/new`, ...owner },
    { path: `${dropDir}/cur`, ...owner },
    { path: requireAbsolute("drop.errorDir", node.drop.errorDir), ...owner },
    // The inbound processor's embedded store: its unit may write nowhere else (ProtectSystem=strict), and
    // systemd refuses to start it if a ReadWritePaths= entry is missing.
    { path: requireAbsolute("runtime.storeDir", node.runtime.storeDir), ...owner },
  ];
}

/**
 * The guide's script made safe. Postfix's pipe flag D already prepends Delivered-To (with loop detection), so
 * the script does not add a second one. What it fixes: a unique Maildir name, fsync before the rename so a
 * crash cannot leave an empty file in new/, link() so an existing name is never overwritten, and exit 75
 * (EX_TEMPFAIL) on any failure so Postfix keeps the message queued and retries instead of bouncing it or
 * reporting a lost message as delivered.
 */
export function renderMaildropScript(node: GatewayNode): string {
  const dropDir = requireAbsolute("drop.mailDropDir", node.drop.mailDropDir);
  return `#!/bin/bash
# ${MAILDROP_SCRIPT_PATH}: Postfix pipe(8) delivery into the BrightChain drop Maildir.
# Rendered by brightchain-gateway. Called as: brightchain-maildrop SENDER RECIPIENT, message on stdin.
set -euo pipefail
umask 027

drop_dir='${dropDir}'
tmp_file=''

# Any failure (including set -u and signals) ends in EX_TEMPFAIL: Postfix defers and retries, nothing is lost.
finish() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    [ -n "$tmp_file" ] && rm -f -- "$tmp_file"
    exit 75
  fi
}
trap finish EXIT
trap 'exit 75' HUP INT TERM PIPE

if [ "$#" -ne 2 ] || [ -z "$2" ]; then
  echo "usage: brightchain-maildrop SENDER RECIPIENT" >&2
  exit 75
fi

# Maildir unique name: seconds.M<microseconds>P<pid>R<random>.<host>, with / and : escaped as Maildir requires.
host="$(uname -n)"
host="\${host//\\//\\\\057}"
host="\${host//:/\\\\072}"
now="$(date +%s.%N)"
random="$(od -An -N8 -tx8 /dev/urandom | tr -d ' \\n')"
name="\${now%.*}.M\${now#*.}P$$R\${random}.\${host}"

tmp_file="$drop_dir/tmp/$name"
cat > "$tmp_file"
sync -- "$tmp_file"
# link() refuses an existing name where mv would silently replace another message.
ln -- "$tmp_file" "$drop_dir/new/$name"
rm -f -- "$tmp_file"
tmp_file=''
sync -- "$drop_dir/new"
exit 0
`;
}

export function spoolFiles(node: GatewayNode): HostFile[] {
  if (node.role !== "primary" || node.drop.transport !== "pipe") return [];
  return [
    {
      path: MAILDROP_SCRIPT_PATH,
      mode: 0o755,
      owner: "root",
      group: "root",
      content: renderMaildropScript(node),
      notify: [],
    },
  ];
}
