// The drift check's observation script run by /bin/sh over real files, with stand-in `systemctl` and `ufw` on
// PATH: the line it prints for each check on a host as deployed and on one changed by hand (content, mode,
// owner, a link, a directory where a file was, a unit not installed, ufw inactive or absent), what the drift
// report then says, and which steps a re-apply re-runs. host-state.test.ts checks the list of checks; this file
// checks what the script reads back from a host.
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import type { GatewayNode, HostDirectory, HostFile } from "../../infra/model/types";
import {
  formatDrift,
  hostDrift,
  hostStateSpec,
  parseObservation,
  repairSteps,
  type HostStateInput,
} from "../../infra/plan/hostState";
import type { HostStep } from "../../infra/plan/types";
import { releaseOs } from "../../infra/model/releases";
import { FIREWALL_SCRIPT } from "../../infra/render/firewall";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

const root = mkdtempSync(join(tmpdir(), "plan-host-state-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const bin = join(root, "bin");
const units = join(root, "units");
const ufwState = join(root, "ufw");
const host = join(root, "host");
mkdirSync(bin);

function tool(name: string, body: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}
// systemctl is-enabled|is-active UNIT: the word in units/<unit>.<verb>; nothing (and exit 1) for a unit not there.
tool("systemctl", `f="${units}/$2.$1"; if [ -f "$f" ]; then cat "$f"; else exit 1; fi`);
// ufw status | ufw show added: from ufw/status and ufw/added.
tool("ufw", `case "$1" in status) cat "${ufwState}/status" ;; show) cat "${ufwState}/added" ;; esac`);

const opendkimUid = Number(spawnSync("id", ["-u", "opendkim"], { encoding: "utf8" }).stdout.trim());
const opendkimGid = Number(spawnSync("getent", ["group", "opendkim"], { encoding: "utf8" }).stdout.split(":")[2]);

const node: GatewayNode = {
  ...examplePrimary,
  dkim: { ...examplePrimary.dkim, keyDir: join(host, "dkim") },
  metrics: { ...examplePrimary.metrics, scrapers: ["203.0.113.7/32", "2001:db8::1/128", "2001:db8::/64"] },
};
const mainCf = join(host, "main.cf");
const sasl = join(host, "sasl-passwd");
const spool = join(host, "spool");
const file = (path: string, mode: number, content: string, notify: string[] = []): HostFile => ({
  path,
  mode,
  owner: "root",
  group: "root",
  content,
  notify,
});
const files = [file(sasl, 0o600, "secret\n"), file(mainCf, 0o644, "myhostname = mail\n", ["postfix"])];
const directories: HostDirectory[] = [{ path: spool, mode: 0o750, owner: "root", group: "root" }];
const stepIds = [
  "directories",
  "file-main",
  "file-sasl",
  "dkim-key",
  "firewall",
  "postfix-check",
  "postfix-reload",
  "service-opendkim",
  "service-lookup",
  "verify",
];
const steps = stepIds.map((id) => ({ id }) as HostStep);
const input = (over: Partial<HostStateInput> = {}): HostStateInput => ({
  node,
  files,
  directories,
  steps,
  services: ["lookup"],
  sshPort: 2222,
  contentNotCompared: new Set([sasl]),
  stepIds: {
    fileStep: (path) => (path === mainCf ? "file-main" : "file-sasl"),
    serviceStep: (service) => `service-${service}`,
    directories: "directories",
    dkimKey: "dkim-key",
    firewall: "firewall",
    postfixCheck: "postfix-check",
    postfixReload: "postfix-reload",
    verify: "verify",
  },
  ...over,
});

const UFW_ADDED = [
  "Added user rules (see 'ufw status' for running firewall):",
  "ufw reject 9527/tcp comment 'brightchain-inbound metrics'",
  "ufw allow 2222/tcp comment 'ssh'",
  "ufw allow 25/tcp",
  "ufw allow 587/tcp",
  "ufw reject 11332:11334/tcp",
  "ufw reject 2526/tcp",
  "ufw reject 783/tcp",
  "ufw reject 8891/tcp",
  "ufw reject 9154/tcp",
  "ufw reject 9526/tcp",
  ...["9154", "9526", "9527"].flatMap((port) => [
    `ufw allow from 203.0.113.7 to any port ${port} proto tcp comment 'scraper'`,
    `ufw allow from 2001:db8::1 to any port ${port} proto tcp`,
    `ufw allow from 2001:db8::/64 to any port ${port} proto tcp`,
  ]),
].join("\n");

/** A host as deployed: the files, directory and key with their modes and owners, units up, ufw active. */
function deployedHost(): void {
  rmSync(host, { recursive: true, force: true });
  rmSync(units, { recursive: true, force: true });
  mkdirSync(join(host, "dkim"), { recursive: true });
  mkdirSync(units);
  mkdirSync(ufwState, { recursive: true });
  for (const f of files) {
    writeFileSync(f.path, f.content);
    chmodSync(f.path, f.mode);
  }
  mkdirSync(spool);
  chmodSync(spool, 0o750);
  const key = join(host, "dkim", "default.private");
  writeFileSync(key, "-----BEGIN PRIVATE KEY-----\n");
  chmodSync(key, 0o600);
  chownSync(key, opendkimUid, opendkimGid);
  for (const unit of ["postfix", "lookup"]) {
    writeFileSync(join(units, `${unit}.is-enabled`), "enabled\n");
    writeFileSync(join(units, `${unit}.is-active`), "active\n");
  }
  writeFileSync(join(ufwState, "status"), "Status: active\n\nTo Action From\n");
  writeFileSync(join(ufwState, "added"), `${UFW_ADDED}\n`);
}
beforeEach(deployedHost);

function observe(spec = hostStateSpec(input())): Record<string, string> {
  const result = spawnSync("/bin/sh", ["-c", spec.script], {
    input: spec.stdin,
    encoding: "utf8",
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
  });
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  return parseObservation(result.stdout);
}

const FIREWALL_AS_DEPLOYED =
  "active; allow 2222/tcp; allow 25/tcp; allow 587/tcp; " +
  ["9154", "9526", "9527"].map((p) => `allow from 2001:db8::/64 to any port ${p} proto tcp`).join("; ") +
  "; " +
  ["9154", "9526", "9527"].map((p) => `allow from 2001:db8::1 to any port ${p} proto tcp`).join("; ") +
  "; " +
  ["9154", "9526", "9527"].map((p) => `allow from 203.0.113.7 to any port ${p} proto tcp`).join("; ") +
  "; reject 11332:11334/tcp; reject 2526/tcp; reject 783/tcp; reject 8891/tcp; reject 9154/tcp; reject 9526/tcp; reject 9527/tcp";

describe("the observation script on a host as deployed", () => {
  it("prints one line per check, files by path first, each value the expected one: no drift", () => {
    const spec = hostStateSpec(input());
    const observed = observe(spec);
    expect(observed).toEqual({
      [`file ${mainCf}`]: "content as deployed, 0644 root:root",
      [`file ${sasl}`]: "content not compared, 0600 root:root",
      [`directory ${spool}`]: "0750 root:root",
      "service postfix": "enabled, active",
      "service lookup": "enabled, active",
      [`dkim key ${join(host, "dkim", "default.private")}`]: "present, 0600 opendkim:opendkim",
      firewall: FIREWALL_AS_DEPLOYED,
    });
    expect(spec.checks.map((check) => check.name)).toEqual(Object.keys(observed));
    expect(hostDrift(spec.checks, observed)).toEqual([]);
    expect(formatDrift([])).toBe("no drift: every managed file, directory, service, key and firewall rule is as deployed");
  });

  it("sends only the compared files' hashes, sorted, as `sha256  path` lines; the script holds none of them", () => {
    const spec = hostStateSpec(input());
    expect(spec.stdin).toBe(`${sha256Of("myhostname = mail\n")}  ${mainCf}\n`);
    expect(spec.script).not.toContain(sha256Of("myhostname = mail\n"));
    expect(spec.script).not.toContain(sha256Of("secret\n"));
    const both = hostStateSpec(input({ contentNotCompared: new Set() }));
    expect(both.stdin).toBe(
      [`${sha256Of("myhostname = mail\n")}  ${mainCf}`, `${sha256Of("secret\n")}  ${sasl}`].sort().join("\n") + "\n",
    );
  });
});

function sha256Of(text: string): string {
  return spawnSync("sha256sum", { input: text, encoding: "utf8" }).stdout.slice(0, 64);
}

describe("a host changed by hand", () => {
  it("content, mode and owner of a file; a link or a directory in its place; an absent one", () => {
    writeFileSync(mainCf, "myhostname = other\n");
    chmodSync(mainCf, 0o640);
    chownSync(sasl, opendkimUid, opendkimGid);
    expect(observe()[`file ${mainCf}`]).toBe("content changed, 0640 root:root");
    expect(observe()[`file ${sasl}`]).toBe("content not compared, 0600 opendkim:opendkim");

    rmSync(mainCf);
    expect(observe()[`file ${mainCf}`]).toBe("absent");
    symlinkSync(sasl, mainCf);
    expect(observe()[`file ${mainCf}`]).toBe("a symbolic link");
    rmSync(mainCf);
    mkdirSync(mainCf);
    expect(observe()[`file ${mainCf}`]).toBe("not a regular file");
  });

  it("a directory with another mode, replaced by a link, or gone; a DKIM key emptied, linked or gone", () => {
    const key = join(host, "dkim", "default.private");
    chmodSync(spool, 0o755);
    expect(observe()[`directory ${spool}`]).toBe("0755 root:root");
    rmSync(spool, { recursive: true });
    symlinkSync(host, spool);
    expect(observe()[`directory ${spool}`]).toBe("absent");
    rmSync(spool);
    expect(observe()[`directory ${spool}`]).toBe("absent");

    chmodSync(key, 0o640);
    expect(observe()[`dkim key ${key}`]).toBe("present, 0640 opendkim:opendkim");
    writeFileSync(key, "");
    expect(observe()[`dkim key ${key}`]).toBe("absent");
    rmSync(key);
    symlinkSync(mainCf, key);
    expect(observe()[`dkim key ${key}`]).toBe("absent");
  });

  it("a unit stopped, disabled, or not installed", () => {
    writeFileSync(join(units, "lookup.is-active"), "failed\n");
    writeFileSync(join(units, "postfix.is-enabled"), "disabled\n");
    let observed = observe();
    expect([observed["service lookup"], observed["service postfix"]]).toEqual(["enabled, failed", "disabled, active"]);
    rmSync(join(units, "lookup.is-active"));
    rmSync(join(units, "lookup.is-enabled"));
    observed = observe();
    expect(observed["service lookup"]).toBe("not installed, unknown");
  });

  it("ufw inactive with a rule added by hand, ufw without a status line, ufw not installed", () => {
    writeFileSync(join(ufwState, "status"), "Status: inactive\n");
    writeFileSync(join(ufwState, "added"), `${UFW_ADDED}\nufw allow 8080/tcp comment 'someone'\n`);
    // Sorted as ufw's rules are compared: byte order (LC_ALL=C), as the expected list is.
    expect(observe().firewall).toBe(
      FIREWALL_AS_DEPLOYED.replace("active; ", "inactive; ").replace("allow 587/tcp; ", "allow 587/tcp; allow 8080/tcp; "),
    );
    writeFileSync(join(ufwState, "status"), "ERROR: problem running\n");
    writeFileSync(join(ufwState, "added"), "Added user rules (see 'ufw status' for running firewall):\n");
    expect(observe().firewall).toBe("unknown; ");
    // No ufw on PATH: only the system's own tools (none of which is ufw in this PATH).
    const spec = hostStateSpec(input());
    const result = spawnSync("/bin/sh", ["-c", spec.script.replace("command -v ufw", "command -v ufw-that-is-not-there")], {
      input: spec.stdin,
      encoding: "utf8",
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    });
    expect(parseObservation(result.stdout).firewall).toBe("ufw not installed");
  });

  it("the report names each drifted check with what the host has and what the code wants; a re-apply re-runs its steps", () => {
    writeFileSync(mainCf, "myhostname = other\n");
    writeFileSync(join(units, "lookup.is-active"), "failed\n");
    const spec = hostStateSpec(input());
    const drifts = hostDrift(spec.checks, observe(spec));
    expect(formatDrift(drifts)).toBe(
      [
        `✗ file ${mainCf}: content changed, 0644 root:root (expected: content as deployed, 0644 root:root)`,
        "✗ service lookup: enabled, failed (expected: enabled, active)",
      ].join("\n"),
    );
    expect(repairSteps(spec.checks, drifts, steps)).toEqual([
      "file-main",
      "postfix-check",
      "postfix-reload",
      "service-lookup",
      "verify",
    ]);
    // A check the script printed no line for is drift too.
    expect(hostDrift(spec.checks, {}).map((d) => d.observed)).toEqual(spec.checks.map(() => "not reported"));
  });
});

describe("the checks a node has", () => {
  it("repairs name real steps, each once, in plan order; a repair not in the plan is refused naming it", () => {
    const spec = hostStateSpec(input());
    expect(spec.checks.find((c) => c.name === `file ${mainCf}`)?.repair).toEqual([
      "file-main",
      "postfix-check",
      "postfix-reload",
      "verify",
    ]);
    expect(spec.checks.find((c) => c.name.startsWith("dkim key"))?.repair).toEqual(["dkim-key", "service-opendkim", "verify"]);
    expect(spec.checks.find((c) => c.name === "firewall")?.repair).toEqual(["firewall", "verify"]);
    expect(spec.checks.find((c) => c.name === `directory ${spool}`)?.repair).toEqual(["directories", "verify"]);
    expect(() => hostStateSpec(input({ steps: steps.filter((s) => s.id !== "verify") }))).toThrow(
      'host state: repair step "verify" is not in the plan',
    );
  });

  it("files are checked in path order whatever the order given; the firewall script's repair re-runs the firewall step", () => {
    const script = file(FIREWALL_SCRIPT, 0o755, "#!/bin/sh\n");
    const spec = hostStateSpec(input({ files: [file(sasl, 0o600, "x"), script, file(mainCf, 0o644, "y")] }));
    expect(spec.checks.filter((c) => c.name.startsWith("file ")).map((c) => c.name)).toEqual(
      [FIREWALL_SCRIPT, mainCf, sasl].sort((a, b) => a.localeCompare(b)).map((path) => `file ${path}`),
    );
    expect(spec.checks.find((c) => c.name === `file ${FIREWALL_SCRIPT}`)?.repair).toEqual(["file-sasl", "firewall", "verify"]);
    // A drift the checks do not know (an older script's line) repairs nothing.
    expect(repairSteps(spec.checks, [{ check: "gone", expected: "x", observed: "y" }], steps)).toEqual([]);
  });

  it("a relay (no OpenDKIM) has no key check; a RHEL node (firewalld) no firewall check", () => {
    const relay = hostStateSpec(input({ node: { ...exampleRelay, metrics: node.metrics } }));
    expect(relay.checks.some((c) => c.name.startsWith("dkim key"))).toBe(false);
    expect(relay.checks.some((c) => c.name === "firewall")).toBe(true);
    const rhel = hostStateSpec(input({ node: { ...node, os: releaseOs("rhel-9") } }));
    expect(rhel.checks.some((c) => c.name === "firewall")).toBe(false);
    expect(rhel.script).not.toContain("\nprintf '%s\\t%s\\n' firewall ");
  });

  it("a line the script cannot have printed is refused, quoted; empty lines are skipped", () => {
    expect(parseObservation("a\tb\n\nc\td\te\n")).toEqual({ a: "b", c: "d\te" });
    expect(() => parseObservation("\tvalue\n")).toThrow(
      'host state: the observation printed "\\tvalue"; expected "name<TAB>value"',
    );
    expect(() => parseObservation("no tab\n")).toThrow('host state: the observation printed "no tab"; expected "name<TAB>value"');
  });
});
