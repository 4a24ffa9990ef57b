// Deploy engine 1 on real hosts, then the end-to-end mail scenarios on what it deployed. The Pulumi program for
// the primary and relay stacks, its remote commands executed over SSH on the lab's `mail` and `mail2`
// (systemd-nspawn, real systemd), its DNS records served by the lab DNS. A second run executes nothing and
// leaves every host file byte-identical; then every scenario of test/helpers/lab-scenarios.ts.
// test/lab/ansible.test.ts runs the same scenarios on nodes the playbook deployed.
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deployStackToLab, labStackConfig, type DeployResult } from "../../infra/deploy";
import { LAB_GATEWAY_IP, type LabHostName } from "../../infra/lab/constants";
import { labDown, labUp } from "../../infra/lab/lab";
import { parseGatewayConfig, parseGatewaySecrets, readStackConfigFiles } from "../../infra/model/config";
import type { HostFile } from "../../infra/model/types";
import { hostPlan, type HostStep } from "../../infra/plan";
import { hostDirectories, hostFiles } from "../../infra/render";
import { on } from "../helpers/lab-mail";
import { claimLab, describeMailScenarios, labTimer, readyGatewaysForMail, setUpOutside } from "../helpers/lab-scenarios";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const repo = path.resolve(__dirname, "../..");
const temp = mkdtempSync(path.join(tmpdir(), "gateway-scenarios-"));
const dist = path.join(temp, "dist");
const timer = labTimer();
const suiteStarted = Date.now();
const STACKS = [
  { stack: "primary", host: "mail" },
  { stack: "relay", host: "mail2" },
] as const satisfies readonly { stack: string; host: LabHostName }[];

let releaseLab: (() => void) | undefined;
const first: Record<string, DeployResult> = {};
const second: Record<string, DeployResult> = {};
const hashesBefore: Record<string, string> = {};
const hashesAfter: Record<string, string> = {};

/** The stack's host files as the program renders them for the lab. */
function labHostFiles(stack: string): HostFile[] {
  const lab = labStackConfig(stack, repo);
  const flat = { ...readStackConfigFiles(repo, stack).values, ...lab.overrides, ...lab.secrets };
  return hostFiles(parseGatewayConfig(flat), parseGatewaySecrets(flat));
}

/** The steps the program turns into remote commands, with the built runtime this test installs. */
function labHostPlan(stack: string): HostStep[] {
  const lab = labStackConfig(stack, repo);
  const node = parseGatewayConfig({ ...readStackConfigFiles(repo, stack).values, ...lab.overrides });
  const artifacts = readdirSync(dist)
    .sort()
    .map((name) => ({ name, content: readFileSync(path.join(dist, name), "utf8") }));
  return hostPlan(node, labHostFiles(stack), hostDirectories(node), artifacts, { sshPort: 22 });
}

/** sha256, mode and owner of every host file of the stack, as the host has them. */
async function hostFileFingerprints(stack: string, host: LabHostName): Promise<string> {
  const paths = labHostFiles(stack)
    .map((file) => `'${file.path}'`)
    .join(" ");
  return on(host, `cd / && sha256sum ${paths} && stat -c '%n %a %U:%G' ${paths}`);
}

async function deployAll(into: Record<string, DeployResult>, label: string): Promise<void> {
  for (const { stack } of STACKS) {
    into[stack] = await timer.timed(`${label} ${stack}`, () =>
      deployStackToLab({ stack, projectDir: repo, runtimeDist: dist, progress: () => undefined }),
    );
  }
}

beforeAll(async () => {
  releaseLab = await claimLab();
  for (const entry of readdirSync(path.join(repo, "runtime", "bin")).filter((name) => name.endsWith(".ts"))) {
    await bundleRuntimeEntry(entry.replace(/\.ts$/, ""), dist);
  }
  await timer.timed("lab up", () => labUp({ progress: () => undefined }));
  const outside = timer.timed("outside setup", setUpOutside);
  // Settled before a failed deploy ends the hook: afterAll's lab down must not cut outside's install short.
  const outsideSettled = outside.then(
    () => undefined,
    () => undefined,
  );
  try {
    await deployAll(first, "first apply");
    for (const { stack, host } of STACKS) hashesBefore[stack] = await hostFileFingerprints(stack, host);
    await deployAll(second, "second apply");
    for (const { stack, host } of STACKS) hashesAfter[stack] = await hostFileFingerprints(stack, host);
  } finally {
    await outsideSettled;
  }
  await outside;
  await readyGatewaysForMail();
  timer.timings["setup total"] = (Date.now() - suiteStarted) / 1000;
}, 3_600_000);

afterAll(async () => {
  try {
    if (releaseLab) await timer.timed("lab down", () => labDown({ progress: () => undefined }));
  } finally {
    releaseLab?.();
    rmSync(temp, { recursive: true, force: true });
    timer.timings["whole suite"] = (Date.now() - suiteStarted) / 1000;
    console.log(`engine 1 lab timings (s): ${JSON.stringify(timer.timings)}`);
  }
}, 600_000);

describe("deploy engine 1: the Pulumi program's own commands on lab hosts", () => {
  it("ran every remote command of both stacks on the first apply, in the program's dependency order", () => {
    for (const { stack } of STACKS) {
      const commands = first[stack]!.resources.filter((r) => r.type === "command:remote:Command");
      expect(commands.length).toBeGreaterThan(20);
      expect(commands.every((r) => r.action === "create")).toBe(true);
      // Every step started only after each step it depends on (the plan's `after`, the program's dependsOn) ended.
      const byName = new Map(commands.map((r) => [r.name, r]));
      for (const step of labHostPlan(stack)) {
        const resource = byName.get(`${stack}-${step.id}`)!;
        expect(resource, step.id).toBeDefined();
        for (const dependency of step.after) {
          expect(resource.startedAt!, `${step.id} after ${dependency}`).toBeGreaterThanOrEqual(
            byName.get(`${stack}-${dependency}`)!.finishedAt!,
          );
        }
      }
      expect(commands[0]!.name).toBe(`${stack}-packages`);
      expect(commands.at(-1)!.name).toBe(`${stack}-verify`);
    }
  });

  it("leaves Postfix listening on 25 on both nodes", async () => {
    // postfix.service is Debian's wrapper and stays "active" when master has exited: ask the port.
    for (const host of ["mail", "mail2"] as const)
      expect(await on(host, "ss -Htln 'sport = :25'"), host).toMatch(/0\.0\.0\.0:25/);
  });

  it("published the stacks' records to the lab DNS: outside sees both MX and the primary's DKIM key", async () => {
    const mx = (await on("outside", "dig +short MX brightchain.org")).trim().split("\n").sort();
    expect(mx).toEqual(["10 mail.brightchain.org.", "20 mail2.brightchain.org."]);
    // The key in DNS is the public half of the private key the primary signs with.
    const published = (await on("outside", "dig +short TXT default._domainkey.brightchain.org")).replace(/["\s]/g, "");
    const publicKey = (
      await on("mail", "openssl rsa -in /etc/dkim/default.private -pubout -outform DER 2>/dev/null | base64 -w0")
    ).trim();
    expect(publicKey.length).toBeGreaterThan(300);
    expect(published).toBe(`v=DKIM1;h=sha256;k=rsa;p=${publicKey}`);
    expect(await on("outside", `dig +short TXT brightchain.org @${LAB_GATEWAY_IP}`)).toContain("ip4:10.231.0.10");
    expect(await on("outside", "dig +short AAAA mail.brightchain.org")).toBe("");
  });

  it("executes nothing on the second apply: every resource's inputs are identical and no zone is republished", () => {
    for (const { stack } of STACKS) {
      expect(second[stack]!.executed.map((r) => `${r.name}: ${r.action} ${r.changedInputs.join(",")}`)).toEqual([]);
      expect(second[stack]!.zonesPublished).toEqual([]);
      const inputs = (result: DeployResult) =>
        Object.fromEntries(result.resources.map((r) => [`${r.type}::${r.name}`, r.inputsHash]));
      expect(inputs(second[stack]!)).toEqual(inputs(first[stack]!));
    }
  });

  it("leaves every host file byte-identical, with its mode and owner, and equal to what the program renders", () => {
    for (const { stack } of STACKS) {
      expect(hashesAfter[stack]).toBe(hashesBefore[stack]);
      for (const file of labHostFiles(stack)) {
        const sha = createHash("sha256").update(file.content).digest("hex");
        expect(hashesAfter[stack], file.path).toContain(`${sha}  ${file.path}\n`);
        expect(hashesAfter[stack], file.path).toContain(`${file.path} ${file.mode.toString(8)} ${file.owner}:${file.group}\n`);
      }
    }
  });
});

describe("mail end to end on the nodes engine 1 deployed", () => {
  describeMailScenarios(timer);
});
