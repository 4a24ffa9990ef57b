// The drift check's contract, without a host: which checks a node has, what each expects, which steps repair
// it, that nothing secret-derived is in the script or a check, and that the HostState provider still runs
// after Pulumi serializes it (as the dynamic provider host loads it: plain Node, no TypeScript, no vitest).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { formatDrift, hostDrift, hostPlan, hostState, parseObservation } from "../../infra/plan";
import { sha256 } from "../../infra/plan/shell";
import { hostStateProvider } from "../../infra/pulumi/hostState";
import { hostDirectories, hostFiles } from "../../infra/render";
import { examplePrimary, exampleRelay, exampleSecrets } from "../fixtures/nodes";

const artifacts = [{ name: "brightchain-lookup.cjs", content: "// lookup\n" }];
const primaryFiles = hostFiles(examplePrimary, exampleSecrets);
const primary = hostState(examplePrimary, primaryFiles, hostDirectories(examplePrimary), artifacts, { sshPort: 2222 });
const byName = (name: string) => primary.checks.find((check) => check.name === name);

describe("the checks a node has", () => {
  it("checks every managed file's content, mode and owner, and re-runs its install and what reads it", () => {
    expect(byName("file /etc/postfix/main.cf")).toEqual({
      name: "file /etc/postfix/main.cf",
      expected: "content as deployed, 0644 root:root",
      repair: ["file-etc-postfix-main-cf", "postfix-check", "postfix-reload", "verify"],
    });
    for (const file of primaryFiles) expect(byName(`file ${file.path}`), file.path).toBeDefined();
    expect(byName("file /opt/brightchain-gateway/brightchain-lookup.cjs")?.repair).toEqual([
      "file-opt-brightchain-gateway-brightchain-lookup-cjs",
      "service-brightchain-lookup",
      "verify",
    ]);
  });

  it("checks postfix and every service the plan starts, enabled and active", () => {
    const services = primary.checks.filter((check) => check.name.startsWith("service ")).map((check) => check.name);
    expect(services).toEqual(expect.arrayContaining(["service postfix", "service brightchain-lookup", "service opendkim"]));
    expect(byName("service brightchain-lookup")).toMatchObject({
      expected: "enabled, active",
      repair: ["service-brightchain-lookup", "verify"],
    });
    expect(byName("service postfix")?.repair).toEqual(["postfix-check", "postfix-reload", "verify"]);
  });

  it("checks the DKIM key on the primary only, and the ufw rules the firewall script adds with the deploy's SSH port", () => {
    expect(byName("dkim key /etc/dkim/default.private")).toMatchObject({ expected: "present, 0600 opendkim:opendkim" });
    expect(byName("firewall")?.expected).toMatch(
      /^active; allow 2222\/tcp; allow 25\/tcp; allow 587\/tcp; .*reject 11332:11334\/tcp/,
    );
    const relay = hostState(exampleRelay, hostFiles(exampleRelay, exampleSecrets), hostDirectories(exampleRelay));
    expect(relay.checks.some((check) => check.name.startsWith("dkim key"))).toBe(false);
    expect(relay.checks.find((check) => check.name === "firewall")?.expected).toContain("allow 22/tcp");
  });

  it("names only real plan steps as repairs", () => {
    const ids = new Set(hostPlan(examplePrimary, primaryFiles, hostDirectories(examplePrimary), artifacts).map((s) => s.id));
    for (const check of primary.checks) for (const id of check.repair) expect(ids.has(id), `${check.name}: ${id}`).toBe(true);
  });
});

describe("secrets", () => {
  it("sends the files' hashes on stdin only: no hash and no secret in the script or any check", () => {
    const secretFiles = primaryFiles.filter((file) => file.secret);
    expect(secretFiles.length).toBeGreaterThan(0);
    const visible = JSON.stringify({ script: primary.script, checks: primary.checks });
    for (const file of primaryFiles) expect(visible).not.toContain(sha256(file.content));
    for (const user of exampleSecrets.submissionUsers) expect(visible).not.toContain(user.password);
    for (const file of secretFiles) expect(primary.stdin).toContain(`${sha256(file.content)}  ${file.path}\n`);
  });

  it("compares a file whose secret was not given by mode and owner only, and sends no hash for it", () => {
    const secret = primaryFiles.find((file) => file.secret)!;
    const spec = hostState(examplePrimary, primaryFiles, hostDirectories(examplePrimary), [], {
      contentNotCompared: new Set([secret.path]),
    });
    expect(spec.checks.find((check) => check.name === `file ${secret.path}`)?.expected).toMatch(/^content not compared, /);
    expect(spec.stdin).not.toContain(secret.path);
  });
});

describe("reading the observation", () => {
  it("names each drifted check with what the host has and what the code wants; an untouched host has none", () => {
    const untouched = primary.checks.map((check) => `${check.name}\t${check.expected}`).join("\n");
    expect(hostDrift(primary.checks, parseObservation(`${untouched}\n`))).toEqual([]);
    const edited = untouched
      .replace(
        "file /etc/postfix/main.cf\tcontent as deployed, 0644 root:root",
        "file /etc/postfix/main.cf\tcontent changed, 0644 root:root",
      )
      .replace("service brightchain-lookup\tenabled, active", "service brightchain-lookup\tdisabled, inactive");
    const drifts = hostDrift(primary.checks, parseObservation(edited));
    expect(formatDrift(drifts)).toBe(
      [
        "✗ file /etc/postfix/main.cf: content changed, 0644 root:root (expected: content as deployed, 0644 root:root)",
        "✗ service brightchain-lookup: disabled, inactive (expected: enabled, active)",
      ].join("\n"),
    );
  });

  it("refuses a line the script cannot have printed", () => {
    expect(() => parseObservation("garbage without a tab\n")).toThrow(/expected "name<TAB>value"/);
  });
});

describe("the HostState provider", () => {
  it("runs from Pulumi's serialized copy in plain Node: the observation goes over ssh with the pinned key", async () => {
    const serialized = await pulumi.runtime.serializeFunction(() => hostStateProvider, { allowSecrets: false });
    const dir = mkdtempSync(path.join(tmpdir(), "host-state-provider-"));
    try {
      writeFileSync(path.join(dir, "provider.js"), serialized.text);
      // Port 1 on loopback: nothing listens, so ssh itself answers (exit 255): the serialized code spawned it.
      const driver = `
        const provider = require(${JSON.stringify(path.join(dir, "provider.js"))}).${serialized.exportName}();
        const props = { connection: { host: "127.0.0.1", port: 1, user: "root", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP6kEPrnVDpntlskcoYMhNKYDm7NwXlPaA1dPHq31tgv" },
          sudo: false, script: ":", stdin: "", checks: [{ name: "service postfix", expected: "enabled, active", repair: [] }],
          state: { "service postfix": "enabled, active" }, steps: [], dkimRecordSource: "p=OLD", dkimRecordText: "p=OLD", dkimRecordRead: "" };
        (async () => {
          const same = await provider.diff("id", props, props);
          const drifted = await provider.diff("id", { ...props, state: { "service postfix": "disabled, inactive" } }, props);
          // A rotation: every check as wanted, but the key step printed the new selector's record.
          const newKey = await provider.diff("id", props, { ...props, dkimRecordSource: "p=NEW", dkimRecordText: "p=NEW" });
          const read = await provider.read("id", props).then(() => "read ok", (e) => String(e.message));
          console.log(JSON.stringify({ same, drifted, newKey, read }));
        })();`;
      const run = spawnSync(process.execPath, ["-e", driver], { encoding: "utf8", timeout: 30_000 });
      expect(run.status, run.stderr).toBe(0);
      const result = JSON.parse(run.stdout) as {
        same: { changes: boolean };
        drifted: { changes: boolean };
        newKey: { changes: boolean };
        read: string;
      };
      expect(result.same.changes).toBe(false);
      expect(result.drifted.changes).toBe(true);
      // Without this update the engine keeps the old record text and publishes the new selector with the old key.
      expect(result.newKey.changes).toBe(true);
      expect(result.read).toMatch(/^host state of 127\.0\.0\.1: the observation exited 255/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
