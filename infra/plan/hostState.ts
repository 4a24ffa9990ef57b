// The host state a deployed node must be in, as a list of named checks, and one read-only script that reads it
// back from the host. Drift is any check whose observed value differs from the expected one: a hand-edited
// main.cf, a stopped or disabled service, a changed mode or owner, a removed DKIM key, a firewall rule added.
// Each check names the plan steps that bring it back, so a re-apply re-runs exactly those.
//
// Pure: the Pulumi adapter (a dynamic resource whose Read runs the script), the lab engine and `gateway drift`
// all use these functions, and none of them adds a check of its own.
import { dkimKeyPaths, opendkimEnabled } from "../render/opendkim";
import { FIREWALL_SCRIPT, openPorts, rejectedPorts, scraperRules, type FirewallPort } from "../render/firewall";
import type { GatewayNode, HostDirectory, HostFile } from "../model/types";
import { octalMode, sha256, shellQuote } from "./shell";
import type { HostStep } from "./types";

export interface HostCheck {
  /** What the admin reads in a drift report: "file /etc/postfix/main.cf", "service brightchain-lookup". */
  name: string;
  /** The value the observation script prints for this check on a host in the wanted state. */
  expected: string;
  /** Plan steps (in plan order) that bring the check back, rerun by a re-apply after drift. */
  repair: string[];
}

export interface HostStateSpec {
  checks: HostCheck[];
  /** Read-only POSIX shell: one `name<TAB>value` line per check. Needs root (it hashes 0600 files). */
  script: string;
  /**
   * The script's stdin: `sha256  path` per managed file. Secret, as a whole: a secret file's hash lets anyone
   * who can read it test guessed passwords offline, so hashes are compared on the host and never printed.
   */
  stdin: string;
}

/** The words of a file check: its content compared on the host, then mode and owner as `stat` shows them. */
export const CONTENT_AS_DEPLOYED = "content as deployed";
export const CONTENT_CHANGED = "content changed";
export const CONTENT_NOT_COMPARED = "content not compared";

function fileExpectation(file: Pick<HostFile, "mode" | "owner" | "group">, compared: boolean): string {
  return `${compared ? CONTENT_AS_DEPLOYED : CONTENT_NOT_COMPARED}, ${octalMode(file.mode)} ${file.owner}:${file.group}`;
}

function ufwRule(action: "allow" | "reject", port: FirewallPort["port"]): string {
  return `${action} ${typeof port === "number" ? port : `${port[0]}:${port[1]}`}/tcp`;
}

/** The user rules the ufw script adds, as `ufw show added` lists them (comments stripped), sorted. */
export function expectedUfwRules(node: GatewayNode, sshPort: number): string[] {
  return [
    ufwRule("allow", sshPort),
    ...openPorts(node).map((p) => ufwRule("allow", p.port)),
    ...rejectedPorts(node).map((p) => ufwRule("reject", p.port)),
    // ufw lists a single host without its /32 (IPv4) or /128 (IPv6).
    ...scraperRules(node).map(
      (rule) =>
        `allow from ${rule.network.replace(rule.network.includes(":") ? /\/128$/ : /\/32$/, "")} to any port ${rule.port} proto tcp`,
    ),
  ].sort();
}

export interface HostStateInput {
  node: GatewayNode;
  /** Every file the plan installs, runtime artifacts included (planFiles). */
  files: HostFile[];
  directories: HostDirectory[];
  steps: HostStep[];
  /** Units the plan runs (service steps), without postfix. */
  services: string[];
  sshPort: number;
  /** Paths whose content is not known here (a secret not given): no hash is sent, mode and owner are compared. */
  contentNotCompared: ReadonlySet<string>;
  /** Ids of the plan's steps by role, so repairs name real steps. */
  stepIds: {
    fileStep: (path: string) => string;
    serviceStep: (service: string) => string;
    directories: string;
    dkimKey: string;
    firewall: string;
    postfixCheck: string;
    postfixReload: string;
    verify: string;
  };
}

/** The checks, the script that observes them and its stdin, for one node's plan. */
export function hostStateSpec(input: HostStateInput): HostStateSpec {
  const { node, steps, stepIds } = input;
  const order = new Map(steps.map((step, index) => [step.id, index]));
  const inPlanOrder = (ids: string[]): string[] =>
    [...new Set(ids)]
      .filter((id) => {
        if (!order.has(id)) throw new Error(`host state: repair step ${JSON.stringify(id)} is not in the plan`);
        return true;
      })
      .sort((a, b) => order.get(a)! - order.get(b)!);
  const afterService = (service: string): string[] =>
    service === "postfix" ? [stepIds.postfixCheck, stepIds.postfixReload] : [stepIds.serviceStep(service)];

  const checks: HostCheck[] = [];
  const probes: string[] = [];
  const probe = (check: HostCheck, command: string): void => {
    checks.push({ ...check, repair: inPlanOrder([...check.repair, stepIds.verify]) });
    probes.push(`printf '%s\\t%s\\n' ${shellQuote(check.name)} "$(${command})"`);
  };

  for (const file of [...input.files].sort((a, b) => a.path.localeCompare(b.path))) {
    probe(
      {
        name: `file ${file.path}`,
        expected: fileExpectation(file, !input.contentNotCompared.has(file.path)),
        repair: [
          stepIds.fileStep(file.path),
          ...(file.path === FIREWALL_SCRIPT ? [stepIds.firewall] : []),
          ...file.notify.flatMap(afterService),
        ],
      },
      `file_state ${shellQuote(file.path)}`,
    );
  }
  for (const dir of input.directories) {
    probe(
      {
        name: `directory ${dir.path}`,
        expected: `${octalMode(dir.mode)} ${dir.owner}:${dir.group}`,
        repair: [stepIds.directories],
      },
      `dir_state ${shellQuote(dir.path)}`,
    );
  }
  for (const service of ["postfix", ...input.services]) {
    probe(
      { name: `service ${service}`, expected: "enabled, active", repair: afterService(service) },
      `unit_state ${shellQuote(service)}`,
    );
  }
  if (opendkimEnabled(node)) {
    // Generated on the host, so its content is not ours to compare: present, and readable by opendkim only.
    const { privateKey } = dkimKeyPaths(node);
    probe(
      // OpenDKIM reads its key only at start: a key generated again must be loaded before mail is signed with it.
      {
        name: `dkim key ${privateKey}`,
        expected: "present, 0600 opendkim:opendkim",
        repair: [stepIds.dkimKey, stepIds.serviceStep("opendkim")],
      },
      `key_state ${shellQuote(privateKey)}`,
    );
  }
  // firewalld (RHEL) keeps its rules in zones this check does not read yet; ufw is Debian's and Ubuntu's.
  if (node.os.family === "debian") {
    probe(
      { name: "firewall", expected: `active; ${expectedUfwRules(node, input.sshPort).join("; ")}`, repair: [stepIds.firewall] },
      "firewall_state",
    );
  }

  const script = [
    "set -u",
    'hashes=$(mktemp); trap \'rm -f "$hashes"\' EXIT; cat > "$hashes"',
    // stat's %a has no leading zero; the plan writes modes as four octal digits.
    `mode_owner() { stat -c '%a %U:%G' "$1" | awk '{ printf "%04d %s", $1, $2 }'; }`,
    "file_state() {",
    '  if [ -L "$1" ]; then echo "a symbolic link"; return; fi',
    '  if [ ! -e "$1" ]; then echo absent; return; fi',
    '  if [ ! -f "$1" ]; then echo "not a regular file"; return; fi',
    '  want=$(awk -v p="$1" \'$2 == p { print $1 }\' "$hashes")',
    '  have=$(sha256sum < "$1" | cut -c1-64)',
    `  if [ -z "$want" ]; then c=${shellQuote(CONTENT_NOT_COMPARED)}`,
    `  elif [ "$have" = "$want" ]; then c=${shellQuote(CONTENT_AS_DEPLOYED)}; else c=${shellQuote(CONTENT_CHANGED)}; fi`,
    '  echo "$c, $(mode_owner "$1")"',
    "}",
    'dir_state() { if [ -d "$1" ] && [ ! -L "$1" ]; then mode_owner "$1"; else echo absent; fi; }',
    'key_state() { if [ -s "$1" ] && [ ! -L "$1" ]; then echo "present, $(mode_owner "$1")"; else echo absent; fi; }',
    // is-enabled prints nothing on stdout for a unit that does not exist.
    'unit_state() { e=$(systemctl is-enabled "$1" 2>/dev/null); a=$(systemctl is-active "$1" 2>/dev/null); echo "${e:-not installed}, ${a:-unknown}"; }',
    "firewall_state() {",
    "  command -v ufw >/dev/null || { echo 'ufw not installed'; return; }",
    "  status=$(ufw status | sed -n 's/^Status: //p')",
    `  rules=$(ufw show added | sed -n "s/^ufw //p" | sed "s/ comment '.*'$//" | LC_ALL=C sort | awk 'NR > 1 { printf "; " } { printf "%s", $0 }')`,
    '  echo "${status:-unknown}; $rules"',
    "}",
    ...probes,
  ].join("\n");

  const stdin = input.files
    .filter((file) => !input.contentNotCompared.has(file.path))
    .map((file) => `${sha256(file.content)}  ${file.path}\n`)
    .sort()
    .join("");
  return { checks, script, stdin };
}

export interface HostDrift {
  check: string;
  expected: string;
  /** What the host showed; "not reported" when the script printed no line for it. */
  observed: string;
}

/** The script's stdout as check name → observed value. A line the script could not have printed is an error. */
export function parseObservation(stdout: string): Record<string, string> {
  const observed: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    if (line === "") continue;
    const tab = line.indexOf("\t");
    if (tab < 1) throw new Error(`host state: the observation printed ${JSON.stringify(line)}; expected "name<TAB>value"`);
    observed[line.slice(0, tab)] = line.slice(tab + 1);
  }
  return observed;
}

/** Every check whose observed value is not the expected one, in check order. */
export function hostDrift(checks: HostCheck[], observed: Record<string, string>): HostDrift[] {
  return checks
    .filter((check) => observed[check.name] !== check.expected)
    .map((check) => ({ check: check.name, expected: check.expected, observed: observed[check.name] ?? "not reported" }));
}

/** The steps a re-apply re-runs for these drifts, in plan order, each once. */
export function repairSteps(checks: HostCheck[], drifts: HostDrift[], steps: HostStep[]): string[] {
  const wanted = new Set(drifts.flatMap((drift) => checks.find((check) => check.name === drift.check)?.repair ?? []));
  return steps.map((step) => step.id).filter((id) => wanted.has(id));
}

/** A drift report a person reads at a glance: one line per drifted check, what it should be and what it is. */
export function formatDrift(drifts: HostDrift[]): string {
  if (drifts.length === 0) return "no drift: every managed file, directory, service, key and firewall rule is as deployed";
  return drifts.map((d) => `✗ ${d.check}: ${d.observed} (expected: ${d.expected})`).join("\n");
}
