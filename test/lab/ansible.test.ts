// Deploy engine 2 on real hosts: `gateway playbook` + Debian's ansible-playbook apply the primary and relay stacks
// to fresh lab hosts (on the releases their stacks name: the primary on Debian 13, the relay on Debian 12), and
// each host's manifest (every managed file's sha256, mode, owner and group, every managed directory, the runtime)
// must be exactly what the plan renders. test/lab/scenarios.test.ts holds deploy engine 1 to the same manifest,
// so both engines leave the same host without deploying twice here. The second run reports changed=0, a hand
// edit of main.cf shows in --check --diff, and the end-to-end mail scenarios pass on the playbook-deployed nodes.
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stackDrift } from "../../infra/cli/drift";
import type { RenderManifest } from "../../infra/cli/render";
import { labHostSpec, type LabHostName } from "../../infra/lab/constants";
import { labDown, labUp } from "../../infra/lab/lab";
import {
  closeSshMasters,
  expectedManifest,
  hostManifest,
  playbookSummary,
  publishStacksZone,
  readBundleManifest,
  runPlaybook,
  writeLabPlaybook,
  writeLabProject,
  type HostManifest,
  type PlaybookRun,
} from "../helpers/lab-ansible";
import { on } from "../helpers/lab-mail";
import {
  claimLab,
  describeMailScenarios,
  labTimer,
  PRIMARY_SERVICES,
  readyGatewaysForMail,
  RELAY_SERVICES,
  setUpOutside,
} from "../helpers/lab-scenarios";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const repo = path.resolve(__dirname, "../..");
const temp = mkdtempSync(path.join(tmpdir(), "gateway-ansible-lab-"));
const project = path.join(temp, "project");
const dist = path.join(temp, "dist");
const ansibleHome = path.join(temp, "ansible");
const timer = labTimer();
const suiteStarted = Date.now();

const STACKS = [
  { stack: "primary", host: "mail", services: PRIMARY_SERVICES },
  { stack: "relay", host: "mail2", services: RELAY_SERVICES },
] as const satisfies readonly { stack: string; host: LabHostName; services: readonly string[] }[];

const bundle = (stack: string): string => path.join(temp, `playbook-${stack}`);
const fqdn = (host: LabHostName): string => labHostSpec(host).fqdn;

let releaseLab: (() => void) | undefined;
const manifests: Record<string, RenderManifest> = {};
const runtimeShas: Record<string, string> = {};
const byAnsible: Record<string, HostManifest> = {};
const firstRuns: Record<string, PlaybookRun> = {};

beforeAll(async () => {
  releaseLab = await claimLab();
  for (const entry of readdirSync(path.join(repo, "runtime", "bin")).filter((name) => name.endsWith(".ts"))) {
    await bundleRuntimeEntry(entry.replace(/\.ts$/, ""), dist);
  }
  for (const name of readdirSync(dist))
    runtimeShas[name] = createHash("sha256")
      .update(readFileSync(path.join(dist, name)))
      .digest("hex");
  await timer.timed("lab up", () => labUp({ progress: () => undefined }));
  // After lab up: the project's stacks carry gateway:os of the release each lab host boots.
  writeLabProject(
    project,
    STACKS.map((s) => s.stack),
  );
  const outside = timer.timed("outside setup", setUpOutside);
  // Settled before a failed deploy ends the hook: afterAll's lab down must not cut outside's install short.
  const outsideSettled = outside.then(
    () => undefined,
    () => undefined,
  );
  try {
    // The two hosts are independent: both playbooks at once (most of their time is apt and dpkg on the hosts).
    const applied = await Promise.allSettled(
      STACKS.map(async ({ stack, host }) => {
        writeLabPlaybook({ stack, projectDir: project, out: bundle(stack), runtimeDist: dist });
        manifests[stack] = readBundleManifest(bundle(stack));
        const run = await runPlaybook(bundle(stack), fqdn(host), ansibleHome);
        timer.timings[`ansible first apply ${stack}`] = run.seconds;
        firstRuns[stack] = run;
        if (run.code !== 0) throw new Error(`ansible-playbook for ${stack} exited ${run.code}:\n${run.stdout.slice(-6000)}`);
        byAnsible[stack] = await hostManifest(host, manifests[stack], Object.keys(runtimeShas));
      }),
    );
    for (const result of applied) if (result.status === "rejected") throw result.reason;
  } finally {
    await outsideSettled;
  }
  await outside;
  await publishStacksZone(
    project,
    STACKS.map((s) => s.stack),
  );
  await readyGatewaysForMail();
  timer.timings["setup total"] = (Date.now() - suiteStarted) / 1000;
}, 3_600_000);

afterAll(async () => {
  closeSshMasters(ansibleHome);
  try {
    if (releaseLab) await timer.timed("lab down", () => labDown({ progress: () => undefined }));
  } finally {
    releaseLab?.();
    rmSync(temp, { recursive: true, force: true });
    timer.timings["whole suite"] = (Date.now() - suiteStarted) / 1000;
    console.log(`ansible lab timings (s): ${JSON.stringify(timer.timings)}`);
  }
}, 600_000);

describe("ansible-playbook on fresh lab hosts, against the Pulumi program's commands", () => {
  it.each(STACKS)("converges the $stack node on the first run, every service running", async ({ stack, host, services }) => {
    const run = firstRuns[stack]!;
    expect(run.stderr + run.stdout.slice(-4000)).not.toMatch(/fatal:|FAILED!/);
    expect(run.recap.failed).toBe(0);
    expect(run.recap.changed).toBeGreaterThan(10);
    expect((await on(host, `systemctl is-active ${services.join(" ")}`)).trim().split("\n")).toEqual(
      services.map(() => "active"),
    );
  });

  it.each(STACKS)(
    "leaves $host exactly as the plan renders it (as engine 1 does): every managed file's sha256, mode, owner and group",
    ({ stack }) => {
      expect(byAnsible[stack]).toEqual(expectedManifest(manifests[stack]!, runtimeShas));
    },
  );

  it.each(STACKS)("reports changed=0 on the second run of $stack", async ({ stack, host }) => {
    const second = await runPlaybook(bundle(stack), fqdn(host), ansibleHome);
    timer.timings[`ansible second apply ${stack}`] = second.seconds;
    expect(second.recap, playbookSummary(second)).toMatchObject({ changed: 0, failed: 0 });
    expect(second.code).toBe(0);
  });

  it("shows a hand edit of main.cf with --check --diff, and a real run restores it and reloads Postfix", async () => {
    await on("mail", "printf 'smtpd_banner = hand edited\\n' >> /etc/postfix/main.cf");
    const check = await runPlaybook(bundle("primary"), fqdn("mail"), ansibleHome, ["--check", "--diff"]);
    timer.timings["ansible check diff primary"] = check.seconds;
    expect(check.code, playbookSummary(check)).toBe(0);
    expect(check.stdout).toContain("--- before: /etc/postfix/main.cf");
    expect(check.stdout).toMatch(/^-smtpd_banner = hand edited$/m);
    expect(check.stdout).toMatch(/RUNNING HANDLER \[reload Postfix\]/);
    expect(check.recap.changed).toBeGreaterThanOrEqual(1);
    // --check changed nothing on the host.
    expect(await on("mail", "tail -1 /etc/postfix/main.cf")).toBe("smtpd_banner = hand edited\n");

    const restore = await runPlaybook(bundle("primary"), fqdn("mail"), ansibleHome);
    expect(restore.code, playbookSummary(restore)).toBe(0);
    expect(restore.stdout).toMatch(/RUNNING HANDLER \[postfix check\]/);
    expect(restore.stdout).toMatch(/RUNNING HANDLER \[reload Postfix\]/);
    expect(await hostManifest("mail", manifests.primary!, Object.keys(runtimeShas))).toEqual(byAnsible.primary);
    expect(await on("mail", "postconf -h smtpd_banner")).not.toContain("hand edited");
  });

  it.each(STACKS)(
    "leaves $stack as the drift check expects it: gateway drift finds nothing on the playbook's node",
    async ({ stack }) => {
      const drift = await stackDrift({ stack, projectDir: project, runtimeDist: dist, lab: true });
      expect(drift.drifts).toEqual([]);
    },
  );
});

describe("mail end to end on the nodes the playbook deployed", () => {
  describeMailScenarios(timer);
});
