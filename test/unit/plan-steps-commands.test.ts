// The plan's step commands an operator reads when a step fails or finishes: the verification's wait, its failure
// report and its success line; the teardown `pulumi destroy` runs; the retire step; the system user's id checks;
// the release check, the service restart and the certificate's next lineage. Compared line by line, and where the
// script can run here, run by /bin/sh with stand-in `ss`, `postmap`, `systemctl`, `certbot`, `date`, `sleep`,
// `getent` and `id` on PATH (the real `shred` and `rm` work on files in a temporary folder).
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import type { GatewayNode, HostFile } from "../../infra/model/types";
import {
  certificateCommand,
  osReleaseCommand,
  retireCommand,
  serviceCommand,
  systemUserCommand,
  teardownCommand,
  verifyCommand,
} from "../../infra/plan/steps";
import { examplePrimary, exampleRelay, nodeMatrix } from "../fixtures/nodes";

const root = mkdtempSync(join(tmpdir(), "plan-steps-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const bin = join(root, "bin");
const state = join(root, "state");
mkdirSync(bin);

function tool(name: string, body: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}
// Every stand-in logs its arguments to state/calls.
const log = `echo "$(basename "$0") $*" >> "${state}/calls"`;
// ss -Htln ["sport = :PORT"]: a socket line per port in state/listen (all of them without a filter).
tool(
  "ss",
  `${log}
if [ $# -ge 2 ]; then p=\${2##*:}; grep -qx "$p" "${state}/listen" 2>/dev/null && echo "LISTEN 0 100 127.0.0.1:$p 0.0.0.0:*"; exit 0; fi
while read -r p; do echo "LISTEN 0 100 127.0.0.1:$p 0.0.0.0:*"; done < "${state}/listen"`,
);
// postmap -q KEY TABLE: state/lookup-error on stderr (exit 1) when present; else "not found" (exit 1, silent).
tool(
  "postmap",
  `${log}
if [ -f "${state}/lookup-error" ]; then cat "${state}/lookup-error" >&2; exit 1; fi
exit 1`,
);
// systemctl: units are state/units/<unit> (exists = installed) with .active ("active" or another word) and
// .restarts; .stuck keeps a unit active through disable, kill and stop.
tool(
  "systemctl",
  `${log}
u="${state}/units"
case "$1" in
  cat) [ -f "$u/$2" ] ;;
  is-active) if [ "$2" = --quiet ]; then [ "$(cat "$u/$3.active" 2>/dev/null)" = active ]; else w=$(cat "$u/$2.active" 2>/dev/null || echo inactive); echo "$w"; [ "$w" = active ]; fi ;;
  show) cat "$u/$4.restarts" 2>/dev/null || true ;;
  disable|kill|stop) last=""; for a in "$@"; do last=$a; done; [ -f "$u/$last.stuck" ] || echo inactive > "$u/$last.active" ;;
  *) exit 0 ;;
esac`,
);
tool("certbot", log);
// date +%s: a clock that moves state/step seconds on every reading.
tool("date", `t=$(cat "${state}/clock"); echo "$t"; echo $((t + $(cat "${state}/step"))) > "${state}/clock"`);
tool("sleep", log);

beforeEach(() => {
  rmSync(state, { recursive: true, force: true });
  mkdirSync(join(state, "units"), { recursive: true });
  writeFileSync(join(state, "clock"), "1000\n");
  writeFileSync(join(state, "step"), "1\n");
  writeFileSync(join(state, "calls"), "");
  writeFileSync(join(state, "listen"), "");
});

function unit(name: string, active: string, restarts = "0", extra: { stuck?: boolean } = {}): void {
  writeFileSync(join(state, "units", name), "");
  writeFileSync(join(state, "units", `${name}.active`), `${active}\n`);
  writeFileSync(join(state, "units", `${name}.restarts`), `${restarts}\n`);
  if (extra.stuck) writeFileSync(join(state, "units", `${name}.stuck`), "");
}

function run(command: string) {
  const result = spawnSync("/bin/sh", ["-c", command], {
    encoding: "utf8",
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
  });
  const calls = readFileSync(join(state, "calls"), "utf8").split("\n").filter(Boolean);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls };
}

const matrixNode = (name: string): GatewayNode => nodeMatrix.find((m) => m.name === name)!.node;
const TABLE = "socketmap:inet:127.0.0.1:2526:virtual";
const LISTENING = `listening() { ss -Htln "sport = :$1" | grep -q .; }`;
const LOOKUP = `lookup_answers() { err=$(postmap -q postmaster@brightchain.org ${TABLE} 2>&1 >/dev/null) || true; [ -z "$err" ]; }`;
const servicesUp = (units: string) =>
  `services_up() { for u in ${units}; do systemctl is-active --quiet "$u" || return 1; n=$(systemctl show -P NRestarts "$u"); [ "\${n:-0}" = 0 ] || return 1; done; }`;

describe("verifyCommand: the lines", () => {
  it("RHEL with SpamAssassin: waits for spamass-milter-postfix's socket where it is, not under the queue directory", () => {
    // The endpoint is absolute (unix:/run/...) and every Postfix daemon runs unchrooted: /run is where smtpd looks.
    const node = nodeMatrix.find((m) => m.name === "relay-rhel-spamassassin-ipv4only")!.node;
    const until = verifyCommand(node, [])
      .split("\n")
      .find((line) => line.startsWith("until "));
    expect(until).toBe("until listening 25 && [ -S /run/spamass-milter/postfix/sock ] && lookup_answers; do");
  });

  it("primary (SpamAssassin on Debian, OpenDKIM): 25 and 587, the milter socket and port, the lookup, the services", () => {
    expect(verifyCommand(examplePrimary, ["brightchain-lookup", "certbot.timer"]).split("\n")).toEqual([
      "set -eu",
      LISTENING,
      LOOKUP,
      servicesUp("brightchain-lookup certbot.timer"),
      "deadline=$(( $(date +%s) + 60 ))",
      "until listening 25 && listening 587 && [ -S /var/spool/postfix/spamass/spamass.sock ] && listening 8891 && lookup_answers && services_up; do",
      '  if [ "$(date +%s)" -ge "$deadline" ]; then',
      `    echo "not ready after 60s: need 25, 587 listening, the milters ([ -S /var/spool/postfix/spamass/spamass.sock ]; listening 8891) up, ${TABLE} answering and these services up without restarts: brightchain-lookup certbot.timer" >&2`,
      "    ss -Htln >&2",
      `    postmap -q postmaster@brightchain.org ${TABLE} >&2 || true`,
      '    for u in brightchain-lookup certbot.timer; do echo "$u: $(systemctl is-active "$u") restarts=$(systemctl show -P NRestarts "$u")" >&2; done',
      "    exit 1",
      "  fi",
      "  sleep 1",
      "done",
      'echo "listening on 25, 587; recipient lookup answers; services up: brightchain-lookup certbot.timer"',
    ]);
  });

  it("relay without a spam engine and no services: port 25 and the lookup only, no services_up, no per-unit report", () => {
    expect(verifyCommand(matrixNode("relay-ubuntu-none-mx30"), []).split("\n")).toEqual([
      "set -eu",
      LISTENING,
      LOOKUP,
      servicesUp(""),
      "deadline=$(( $(date +%s) + 60 ))",
      "until listening 25 && lookup_answers; do",
      '  if [ "$(date +%s)" -ge "$deadline" ]; then',
      `    echo "not ready after 60s: need 25 listening, the milters () up, ${TABLE} answering" >&2`,
      "    ss -Htln >&2",
      `    postmap -q postmaster@brightchain.org ${TABLE} >&2 || true`,
      "    exit 1",
      "  fi",
      "  sleep 1",
      "done",
      'echo "listening on 25; recipient lookup answers"',
    ]);
  });

  it("relay with Rspamd: the proxy worker's port is the milter waited for; a unit name is shell-quoted", () => {
    const lines = verifyCommand(exampleRelay, ["rspamd", "odd unit"]).split("\n");
    expect(lines[3]).toBe(servicesUp("rspamd 'odd unit'"));
    expect(lines[5]).toBe("until listening 25 && listening 11332 && lookup_answers && services_up; do");
    expect(lines.at(-1)).toBe('echo "listening on 25; recipient lookup answers; services up: rspamd odd unit"');
  });

  it("the lookup port and the domain come from the node", () => {
    const node: GatewayNode = { ...exampleRelay, domain: "example.net", lookup: { ...exampleRelay.lookup, port: 3000 } };
    const lines = verifyCommand(node, []).split("\n");
    expect(lines[2]).toBe(
      'lookup_answers() { err=$(postmap -q postmaster@example.net socketmap:inet:127.0.0.1:3000:virtual 2>&1 >/dev/null) || true; [ -z "$err" ]; }',
    );
  });
});

describe("verifyCommand: run by /bin/sh", () => {
  // A primary without a spam engine: 25, 587 and OpenDKIM's 8891 to wait for, no unix socket outside the test.
  const primary: GatewayNode = { ...examplePrimary, spam: { ...examplePrimary.spam, engine: "none" } };
  const services = ["brightchain-lookup", "opendkim"];

  it("everything up at once: the success line, no wait", () => {
    writeFileSync(join(state, "listen"), "25\n587\n8891\n");
    unit("brightchain-lookup", "active");
    unit("opendkim", "active", "");
    const result = run(verifyCommand(primary, services));
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe("listening on 25, 587; recipient lookup answers; services up: brightchain-lookup opendkim\n");
    expect(result.status).toBe(0);
    expect(result.calls.filter((c) => c.startsWith("sleep"))).toEqual([]);
  });

  it("waits a second at a time until the milter listens", () => {
    writeFileSync(join(state, "listen"), "25\n587\n");
    unit("brightchain-lookup", "active");
    unit("opendkim", "active");
    // The third sleep brings OpenDKIM up.
    tool("sleep", `${log}; n=$(grep -c '^sleep' "${state}/calls"); [ "$n" -lt 3 ] || echo 8891 >> "${state}/listen"`);
    try {
      const result = run(verifyCommand(primary, services));
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      expect(result.calls.filter((c) => c.startsWith("sleep"))).toEqual(["sleep 1", "sleep 1", "sleep 1"]);
    } finally {
      tool("sleep", log);
    }
  });

  it("gives up after 60 s: what it needed, the sockets, the lookup's error, each unit's state and restarts", () => {
    writeFileSync(join(state, "listen"), "25\n8891\n");
    writeFileSync(join(state, "lookup-error"), "postmap: fatal: socketmap:inet:127.0.0.1:2526: connection refused\n");
    writeFileSync(join(state, "step"), "30\n");
    unit("brightchain-lookup", "activating", "3");
    unit("opendkim", "active", "");
    const result = run(verifyCommand(primary, services));
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr.split("\n")).toEqual([
      `not ready after 60s: need 25, 587 listening, the milters (listening 8891) up, ${TABLE} answering and these services up without restarts: brightchain-lookup opendkim`,
      "LISTEN 0 100 127.0.0.1:25 0.0.0.0:*",
      "LISTEN 0 100 127.0.0.1:8891 0.0.0.0:*",
      "postmap: fatal: socketmap:inet:127.0.0.1:2526: connection refused",
      "brightchain-lookup: activating restarts=3",
      "opendkim: active restarts=",
      "",
    ]);
    // Clock 1000 → deadline 1060; readings at 1030 and 1060: one sleep between them.
    expect(result.calls.filter((c) => c.startsWith("sleep"))).toEqual(["sleep 1"]);
  });

  it("a unit that restarted since the service steps is not up, though active", () => {
    writeFileSync(join(state, "listen"), "25\n587\n8891\n");
    writeFileSync(join(state, "step"), "61\n");
    unit("brightchain-lookup", "active", "1");
    unit("opendkim", "active");
    const result = run(verifyCommand(primary, services));
    expect(result.status).toBe(1);
    expect(result.stderr.split("\n").slice(-3)).toEqual([
      "brightchain-lookup: active restarts=1",
      "opendkim: active restarts=0",
      "",
    ]);
  });

  it("postmap's 'not found' (exit 1, no message) counts as an answer", () => {
    writeFileSync(join(state, "listen"), "25\n");
    const result = run(verifyCommand(matrixNode("relay-ubuntu-none-mx30"), []));
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe("listening on 25; recipient lookup answers\n");
    expect(result.calls).toContain(`postmap -q postmaster@brightchain.org ${TABLE}`);
  });
});

describe("teardownCommand", () => {
  const stopUnit = [
    "stop_unit() {",
    '  systemctl cat "$1" >/dev/null 2>&1 || return 0',
    '  systemctl disable --now "$1" >/dev/null 2>&1 || true',
    '  if systemctl is-active --quiet "$1"; then systemctl kill "$1" 2>/dev/null || true; systemctl stop "$1" 2>/dev/null || true; fi',
    '  n=0; while systemctl is-active --quiet "$1" && [ "$n" -lt 20 ]; do sleep 1; n=$((n + 1)); done',
    '  if systemctl is-active --quiet "$1"; then echo "$1 still runs after stop and kill" >&2; return 1; fi',
    "}",
  ];
  const hostFile = (path: string, secret = false): HostFile => ({
    path,
    mode: 0o600,
    owner: "root",
    group: "root",
    content: "x\n",
    notify: [],
    ...(secret ? { secret } : {}),
  });

  it("Postfix first, timers left to their package, each unit once; secrets shredded, the rest removed, the key too", () => {
    const node: GatewayNode = {
      ...examplePrimary,
      dkim: { ...examplePrimary.dkim, previous: { selector: "old2025", keepUntil: "2027-01-01" } },
    };
    const files = [hostFile("/etc/brightchain/gateway.env", true), hostFile("/etc/a b"), hostFile("/etc/postfix/main.cf")];
    expect(teardownCommand(node, files, ["opendkim", "certbot.timer", "spamd", "opendkim"], false).split("\n")).toEqual([
      "set -u",
      ...stopUnit,
      'failed=""; for unit in postfix opendkim spamd; do stop_unit "$unit" || failed="$failed $unit"; done',
      'for f in /etc/brightchain/gateway.env; do [ -e "$f" ] && shred -u "$f"; done',
      "rm -f '/etc/a b' /etc/postfix/main.cf",
      "[ -e /etc/dkim/default.private ] && shred -u /etc/dkim/default.private",
      "rm -f /etc/dkim/default.txt",
      "[ -e /etc/dkim/old2025.private ] && shred -u /etc/dkim/old2025.private",
      "rm -f /etc/dkim/old2025.txt",
      "certbot delete --non-interactive --cert-name mail.brightchain.org >/dev/null 2>&1 || true",
      "systemctl daemon-reload",
      'if [ -n "$failed" ]; then echo "still running:$failed" >&2; exit 1; fi',
      'echo "stopped and disabled postfix opendkim spamd; removed 3 files; kept the spool, the store, the firewall rules and the packages"',
    ]);
  });

  it("keeping the DKIM key: no key line, and the final line says so; no secret file, no shred loop", () => {
    const lines = teardownCommand(exampleRelay, [hostFile("/etc/postfix/main.cf")], [], true).split("\n");
    expect(lines.slice(stopUnit.length + 1)).toEqual([
      'failed=""; for unit in postfix; do stop_unit "$unit" || failed="$failed $unit"; done',
      "rm -f /etc/postfix/main.cf",
      "certbot delete --non-interactive --cert-name mail2.brightchain.org >/dev/null 2>&1 || true",
      "systemctl daemon-reload",
      'if [ -n "$failed" ]; then echo "still running:$failed" >&2; exit 1; fi',
      'echo "stopped and disabled postfix; removed 1 files; kept the DKIM key; kept the spool, the store, the firewall rules and the packages"',
    ]);
  });

  function teardownHost() {
    const host = join(root, "teardown");
    rmSync(host, { recursive: true, force: true });
    mkdirSync(join(host, "dkim"), { recursive: true });
    const node: GatewayNode = {
      ...examplePrimary,
      dkim: { ...examplePrimary.dkim, keyDir: join(host, "dkim"), previous: { selector: "old2025", keepUntil: "2027-01-01" } },
    };
    const files = [
      hostFile(join(host, "gateway.env"), true),
      hostFile(join(host, "absent.secret"), true),
      hostFile(join(host, "main.cf")),
    ];
    for (const name of [
      "gateway.env",
      "main.cf",
      "dkim/default.private",
      "dkim/default.txt",
      "dkim/old2025.private",
      "dkim/old2025.txt",
    ])
      writeFileSync(join(host, name), "x\n");
    return { host, node, files };
  }

  it("run: stops the installed units (an absent one is skipped), removes every file and key, deletes the lineage", () => {
    const { host, node, files } = teardownHost();
    unit("postfix", "active");
    unit("opendkim", "active");
    const result = run(teardownCommand(node, files, ["opendkim", "rspamd"], false));
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe(
      "stopped and disabled postfix opendkim rspamd; removed 3 files; kept the spool, the store, the firewall rules and the packages\n",
    );
    expect(result.status).toBe(0);
    for (const name of [
      "gateway.env",
      "main.cf",
      "dkim/default.private",
      "dkim/default.txt",
      "dkim/old2025.private",
      "dkim/old2025.txt",
    ])
      expect(existsSync(join(host, name)), name).toBe(false);
    expect(result.calls).toEqual([
      "systemctl cat postfix",
      "systemctl disable --now postfix",
      "systemctl is-active --quiet postfix",
      "systemctl is-active --quiet postfix",
      "systemctl is-active --quiet postfix",
      "systemctl cat opendkim",
      "systemctl disable --now opendkim",
      "systemctl is-active --quiet opendkim",
      "systemctl is-active --quiet opendkim",
      "systemctl is-active --quiet opendkim",
      "systemctl cat rspamd",
      "certbot delete --non-interactive --cert-name mail.brightchain.org",
      "systemctl daemon-reload",
    ]);
  });

  it("run: a unit that survives disable, kill and stop is waited for 20 s, then named; everything else still goes", () => {
    const { host, node, files } = teardownHost();
    unit("postfix", "active");
    unit("opendkim", "active", "0", { stuck: true });
    const result = run(teardownCommand(node, files, ["opendkim"], true));
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe("opendkim still runs after stop and kill\nstill running: opendkim\n");
    expect(result.calls.filter((c) => c.startsWith("sleep"))).toHaveLength(20);
    expect(result.calls).toContain("systemctl kill opendkim");
    expect(result.calls).toContain("systemctl stop opendkim");
    expect(result.calls).toContain("certbot delete --non-interactive --cert-name mail.brightchain.org");
    expect(existsSync(join(host, "gateway.env"))).toBe(false);
    expect(existsSync(join(host, "main.cf"))).toBe(false);
    // Kept on request.
    expect(existsSync(join(host, "dkim/default.private"))).toBe(true);
    expect(existsSync(join(host, "dkim/old2025.private"))).toBe(true);
  });
});

describe("retireCommand", () => {
  it("nothing to retire: only set -eu", () => {
    expect(retireCommand([], []).split("\n")).toEqual(["set -eu"]);
  });

  it("files only: shredded where they exist, each path quoted", () => {
    expect(retireCommand([], ["/etc/letsencrypt/cloudflare.ini", "/etc/a b"]).split("\n")).toEqual([
      "set -eu",
      `for f in /etc/letsencrypt/cloudflare.ini '/etc/a b'; do if [ -e "$f" ]; then shred -u "$f"; fi; done`,
    ]);
  });

  it("units only: the stop function and one loop", () => {
    const lines = retireCommand(["spamd", "spamass-milter"], []).split("\n");
    expect(lines[0]).toBe("set -eu");
    expect(lines[1]).toBe("stop_unit() {");
    expect(lines.at(-1)).toBe('for unit in spamd spamass-milter; do stop_unit "$unit"; done');
    expect(lines).toHaveLength(9);
  });

  it("run: stops an installed unit, skips one not installed, shreds the files that exist", () => {
    const dir = join(root, "retire");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    writeFileSync(join(dir, "cloudflare.ini"), "dns_cloudflare_api_token = t\n");
    unit("spamd", "active");
    const result = run(retireCommand(["spamd", "spamass-milter"], [join(dir, "cloudflare.ini"), join(dir, "absent")]));
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe("");
    expect(result.status).toBe(0);
    expect(existsSync(join(dir, "cloudflare.ini"))).toBe(false);
    expect(result.calls).toEqual([
      "systemctl cat spamd",
      "systemctl disable --now spamd",
      "systemctl is-active --quiet spamd",
      "systemctl is-active --quiet spamd",
      "systemctl is-active --quiet spamd",
      "systemctl cat spamass-milter",
    ]);
  });

  it("run: a unit that will not stop fails the step with its name", () => {
    unit("rspamd", "active", "0", { stuck: true });
    const result = run(retireCommand(["rspamd"], []));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("rspamd still runs after stop and kill\n");
  });
});

describe("systemUserCommand", () => {
  const lines = [
    "set -eu",
    "getent group brightchain >/dev/null || groupadd --system --gid 2526 brightchain",
    "getent passwd brightchain >/dev/null || useradd --system --uid 2526 --gid brightchain --home-dir /var/spool/brightchain --no-create-home --shell /usr/sbin/nologin brightchain",
    '[ "$(id -u brightchain)" = 2526 ] || { echo "user brightchain has uid $(id -u brightchain); the node model (drop.uid) says 2526" >&2; exit 1; }',
    '[ "$(getent group brightchain | cut -d: -f3)" = 2526 ] || { echo "group brightchain has another gid; the node model (drop.gid) says 2526" >&2; exit 1; }',
  ];

  it("the lines", () => {
    expect(systemUserCommand(examplePrimary).split("\n")).toEqual(lines);
  });

  // getent and id answer from state/uid and state/gid; groupadd and useradd are logged only.
  function accounts(uid: string, gid: string): void {
    writeFileSync(join(state, "uid"), uid);
    writeFileSync(join(state, "gid"), gid);
  }
  const withAccountTools = (command: string) => {
    tool(
      "getent",
      `${log}; case "$1" in group) echo "$2:x:$(cat "${state}/gid"):" ;; passwd) echo "$2:x:$(cat "${state}/uid"):$(cat "${state}/gid")::/:/bin/false" ;; esac`,
    );
    tool("id", `${log}; cat "${state}/uid"`);
    tool("groupadd", log);
    tool("useradd", log);
    try {
      return run(command);
    } finally {
      for (const name of ["getent", "id", "groupadd", "useradd"]) rmSync(join(bin, name));
    }
  };

  it("run: existing account with the model's ids: nothing created, nothing printed", () => {
    accounts("2526", "2526");
    const result = withAccountTools(systemUserCommand(examplePrimary));
    expect(result).toMatchObject({ status: 0, stdout: "", stderr: "" });
    expect(result.calls.filter((c) => /^(groupadd|useradd)/.test(c))).toEqual([]);
  });

  it("run: another uid names the user, both uids and the field", () => {
    accounts("1001", "2526");
    const result = withAccountTools(systemUserCommand(examplePrimary));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("user brightchain has uid 1001; the node model (drop.uid) says 2526\n");
  });

  it("run: another gid names the group and the field", () => {
    accounts("2526", "1001");
    const result = withAccountTools(systemUserCommand(examplePrimary));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("group brightchain has another gid; the node model (drop.gid) says 2526\n");
  });
});

describe("serviceCommand, osReleaseCommand, certificateCommand", () => {
  it("a service: daemon-reload, enable, restart, the unit quoted", () => {
    expect(serviceCommand("certbot.timer").split("\n")).toEqual([
      "set -eu",
      "systemctl daemon-reload",
      "systemctl enable certbot.timer",
      "systemctl restart certbot.timer",
    ]);
    expect(serviceCommand("a b").split("\n").at(-1)).toBe("systemctl restart 'a b'");
  });

  it("RHEL: ID_LIKE read too (Rocky, Alma), the major version compared", () => {
    expect(osReleaseCommand(matrixNode("primary-rhel-rspamd-pipe")).split("\n").slice(2, 5)).toEqual([
      "id=$(field ID); like=$(field ID_LIKE); version=$(field VERSION_ID); pretty=$(field PRETTY_NAME)",
      'case " $id $like " in *" rhel "*) family=yes ;; *) family=no ;; esac',
      'if [ "$family" != yes ] || [ "${version%%.*}" != 9 ]; then',
    ]);
  });

  it("Ubuntu: no ID_LIKE, the whole year.month version compared", () => {
    expect(osReleaseCommand(matrixNode("primary-ubuntu-none-http01")).split("\n").slice(2, 5)).toEqual([
      "id=$(field ID); version=$(field VERSION_ID); pretty=$(field PRETTY_NAME)",
      'case " $id " in *" ubuntu "*) family=yes ;; *) family=no ;; esac',
      'if [ "$family" != yes ] || [ "$version" != 24.04 ]; then',
    ]);
  });

  it("a DANE rollover's next lineage is issued and its two files checked after the current one's", () => {
    const node: GatewayNode = { ...examplePrimary, dane: { nextLineage: "mail.brightchain.org-next" } };
    const lines = certificateCommand(node).split("\n");
    expect(lines).toHaveLength(17);
    expect(lines.slice(7, 9)).toEqual([
      "test -s /etc/letsencrypt/live/mail.brightchain.org/fullchain.pem",
      "test -s /etc/letsencrypt/live/mail.brightchain.org/privkey.pem",
    ]);
    expect(lines[9]).toContain("--cert-name mail.brightchain.org-next ");
    expect(lines[10]).toBe("if ! grep -qx 'reuse_key = True' /etc/letsencrypt/renewal/mail.brightchain.org-next.conf; then");
    expect(lines.slice(15)).toEqual([
      "test -s /etc/letsencrypt/live/mail.brightchain.org-next/fullchain.pem",
      "test -s /etc/letsencrypt/live/mail.brightchain.org-next/privkey.pem",
    ]);
    expect(certificateCommand(examplePrimary).split("\n")).toEqual(lines.slice(0, 9));
  });
});
