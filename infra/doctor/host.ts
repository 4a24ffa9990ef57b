// Checks only the node itself can answer, run over SSH with the stack's pinned host key (--on-host): the DKIM
// key the host signs with (so the published p= is compared with it), the lookup service answering Postfix's own
// socketmap client, and whether mail is piling up in Postfix's queue or the drop Maildir.
import { dkimRecordText } from "../render/dns";
import { shellQuote } from "../plan/shell";
import type { GatewayNode } from "../model/types";
import type { CheckResult, HostCommand } from "./types";

/** More queued messages than this is a backlog worth a look (a relay holding mail for a down primary, a flood). */
export const QUEUE_WARN_COUNT = 100;
/** The inbound processor hands a message off within seconds; one waiting longer than this is stuck. */
export const DROP_WARN_AGE_SECONDS = 600;

/**
 * One trivial command first: when SSH itself fails (unreachable, the host key not the pinned one, no key
 * accepted), that is the one finding, not the same failure repeated by every host check.
 */
export async function hostReachCheck(node: GatewayNode, run: HostCommand): Promise<CheckResult | undefined> {
  const result = await run("true");
  if (result.exitCode === 0) return undefined;
  return {
    group: "host",
    subject: `ssh ${node.host.hostname}`,
    status: "fail",
    detail: `cannot run commands on the host (exit ${result.exitCode}): ${result.stderr.trim() || "no message"}; host checks skipped`,
    fix: 'check gateway:ssh (host, port, user), that the host still has the pinned gateway:ssh.hostKey (docs/deploy.md, "Pin the host key"), and --identity',
  };
}

export type HostKeyResult = { kind: "key"; recordText: string } | { kind: "check"; check: CheckResult };

/** The DKIM public key file opendkim-genkey wrote on the host, as the TXT text the zone must serve. */
export async function hostDkimKey(node: GatewayNode, run: HostCommand): Promise<HostKeyResult> {
  const file = `${node.dkim.keyDir}/${node.dkim.selector}.txt`;
  const subject = `DKIM key ${file}`;
  const result = await run(`cat ${shellQuote(file)}`);
  if (result.exitCode !== 0) {
    return {
      kind: "check",
      check: {
        group: "host",
        subject,
        status: "fail",
        detail: `cannot read it (exit ${result.exitCode}): ${result.stderr.trim()}`,
        fix: `\`pulumi up\` generates the key on ${node.host.hostname}; see docs/deploy.md`,
      },
    };
  }
  try {
    return { kind: "key", recordText: dkimRecordText(result.stdout) };
  } catch (error) {
    return {
      kind: "check",
      check: {
        group: "host",
        subject,
        status: "fail",
        detail: (error as Error).message,
        fix: "regenerate the key with opendkim-genkey",
      },
    };
  }
}

/**
 * `postmap -q` against the socketmap, as smtpd asks it at RCPT: exit 0 found, exit 1 with nothing on stderr not
 * found (both an answer), anything else the service did not answer and every RCPT gets 451.
 */
export async function lookupProbeCheck(node: GatewayNode, run: HostCommand): Promise<CheckResult> {
  const address =
    (node.lookup.registry.kind === "file" ? node.lookup.registry.addresses?.[0] : undefined) ?? `postmaster@${node.domain}`;
  const map = `socketmap:inet:127.0.0.1:${node.lookup.port}:virtual`;
  const subject = `lookup 127.0.0.1:${node.lookup.port}`;
  const result = await run(`postmap -q ${shellQuote(address)} ${shellQuote(map)}`);
  const stderr = result.stderr.trim();
  if (result.exitCode === 0) return { group: "host", subject, status: "ok", detail: `${address} → ${result.stdout.trim()}` };
  if (result.exitCode === 1 && stderr === "") {
    return { group: "host", subject, status: "ok", detail: `answered: ${address} is not a recipient` };
  }
  return {
    group: "host",
    subject,
    status: "fail",
    detail: `no answer for ${address} (exit ${result.exitCode}): ${stderr || "nothing on stderr"}; Postfix answers 451 to every RCPT`,
    fix: `\`systemctl status brightchain-lookup\` and \`journalctl -u brightchain-lookup\` on ${node.host.hostname}; docs/runtime.md`,
  };
}

/**
 * Counted on the host, so a relay holding 50,000 messages for a down primary sends three numbers back, not its
 * whole queue: messages, deferred ones, the oldest arrival (0 when empty).
 */
const QUEUE_SCRIPT = [
  "queue=$(postqueue -j) || exit $?",
  `printf '%s\\n' "$queue" | awk '/^[{]/ { n++ } /"queue_name": *"deferred"/ { d++ }`,
  `  match($0, /"arrival_time": *[0-9]+/) { t = substr($0, RSTART, RLENGTH); sub(/^[^0-9]*/, "", t); if (o == "" || t + 0 < o) o = t + 0 }`,
  `  END { printf "%d %d %d\\n", n, d, o }'`,
].join("\n");

/** Postfix's queue (`postqueue -j`): how many messages, how many deferred, the oldest. */
export async function queueCheck(node: GatewayNode, run: HostCommand, now: Date): Promise<CheckResult> {
  const subject = "postfix queue";
  const result = await run(QUEUE_SCRIPT);
  const counts = /^(\d+) (\d+) (\d+)$/.exec(result.stdout.trim());
  if (result.exitCode !== 0 || counts === null) {
    return {
      group: "host",
      subject,
      status: "fail",
      detail: `postqueue -j failed (exit ${result.exitCode}): ${result.stderr.trim() || result.stdout.trim()}`,
      fix: `is Postfix running on ${node.host.hostname}? \`systemctl status postfix\``,
    };
  }
  const [queued, deferred, oldest] = counts.slice(1).map(Number) as [number, number, number];
  const age = queued > 0 && oldest > 0 ? `, oldest ${Math.round((now.getTime() / 1000 - oldest) / 60)} min` : "";
  const detail = `${queued} queued, ${deferred} deferred${age}`;
  if (queued < QUEUE_WARN_COUNT) return { group: "host", subject, status: "ok", detail };
  return {
    group: "host",
    subject,
    status: "warn",
    detail,
    fix:
      node.role === "relay"
        ? `a backup MX holds mail while ${node.relay?.forwardTo ?? "the primary"} is unreachable: check the primary; \`postqueue -p\` on ${node.host.hostname} says why`
        : `\`postqueue -p\` on ${node.host.hostname} says why messages wait`,
  };
}

/** The drop Maildir's new/ (what the inbound processor has not handed off yet) and errors/ (what it gave up on). */
export async function dropBacklogCheck(node: GatewayNode, run: HostCommand, now: Date): Promise<CheckResult> {
  const subject = `drop ${node.drop.mailDropDir}/new`;
  const newDir = `${node.drop.mailDropDir}/new`;
  // Counted on the host (a backlog can be 100,000 files): "waiting COUNT OLDEST-MTIME", then "errors COUNT".
  const script = [
    `for d in ${shellQuote(newDir)} ${shellQuote(node.drop.errorDir)}; do [ -d "$d" ] || { echo "$d: no such directory" >&2; exit 1; }; done`,
    `find ${shellQuote(newDir)} -maxdepth 1 -type f ! -name '.*' -printf '%T@\\n' | sort -n | awk 'NR == 1 { o = $1 } END { printf "waiting %d %d\\n", NR, o }'`,
    `echo errors $(find ${shellQuote(node.drop.errorDir)} -type f | wc -l)`,
  ].join("\n");
  const result = await run(script);
  if (result.exitCode !== 0) {
    return {
      group: "host",
      subject,
      status: "fail",
      detail: `cannot list it (exit ${result.exitCode}): ${result.stderr.trim()}`,
      fix: "`pulumi up` creates the spool tree; `gateway drift` names what differs",
    };
  }
  const waiting = /^waiting (\d+) ([\d.]+)$/m.exec(result.stdout);
  const errors = Number(/^errors (\d+)$/m.exec(result.stdout)?.[1] ?? 0);
  const count = Number(waiting?.[1] ?? 0);
  const oldestSeconds = count > 0 ? Math.round(now.getTime() / 1000 - Number(waiting![2])) : 0;
  const detail = `${count} waiting${count > 0 ? `, oldest ${oldestSeconds} s` : ""}; ${errors} in ${node.drop.errorDir}`;
  if (oldestSeconds > DROP_WARN_AGE_SECONDS) {
    return {
      group: "host",
      subject,
      status: "fail",
      detail,
      fix: `the inbound processor is not handing mail off: \`systemctl status brightchain-inbound\`, \`journalctl -u brightchain-inbound\` on ${node.host.hostname}`,
    };
  }
  if (errors > 0) {
    return {
      group: "host",
      subject,
      status: "warn",
      detail,
      fix: `each file in ${node.drop.errorDir} has a journal line saying why; fix the cause and move it back into ${newDir} (docs/runtime.md)`,
    };
  }
  return { group: "host", subject, status: "ok", detail };
}
