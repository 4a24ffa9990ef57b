// Deploy engine 1 on real hosts: the Pulumi program for the primary and relay stacks, its remote commands
// executed over SSH on the lab's `mail` and `mail2` (systemd-nspawn, real systemd), its DNS records served by the
// lab DNS. A second run executes nothing and leaves every host file byte-identical; then a real message from
// `outside` lands in the primary's store.
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deployStackToLab, labStackConfig, type DeployResult } from "../../infra/deploy";
import { LAB_GATEWAY_IP, type LabHostName } from "../../infra/lab/constants";
import { labDown, labExec, labStatus, labUp } from "../../infra/lab/lab";
import { takeLabLock } from "../../infra/lab/lock";
import { readLabState } from "../../infra/lab/state";
import { parseGatewayConfig, parseGatewaySecrets, readStackConfigFiles } from "../../infra/model/config";
import type { HostFile } from "../../infra/model/types";
import { hostPlan, type HostStep } from "../../infra/plan";
import { hostDirectories, hostFiles } from "../../infra/render";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const repo = path.resolve(__dirname, "../..");
const temp = mkdtempSync(path.join(tmpdir(), "gateway-deploy-lab-"));
const timings: Record<string, number> = {};
const STACKS = [
  { stack: "primary", host: "mail" },
  { stack: "relay", host: "mail2" },
] as const;

let releaseLock: (() => void) | undefined;
let labIsOurs = false;
const first: Record<string, DeployResult> = {};
const second: Record<string, DeployResult> = {};
const hashesBefore: Record<string, string> = {};
const hashesAfter: Record<string, string> = {};

async function on(host: LabHostName, command: string, input?: string): Promise<string> {
  const result = await labExec(host, command, { timeoutMs: 300_000, ...(input !== undefined ? { input } : {}) });
  if (result.exitCode !== 0)
    throw new Error(`${host}: \`${command}\` exited ${result.exitCode}\n${result.stdout}${result.stderr}`);
  return result.stdout;
}

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
  const dist = path.join(temp, "dist");
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
    into[stack] = await deployStackToLab({
      stack,
      projectDir: repo,
      runtimeDist: path.join(temp, "dist"),
      progress: () => undefined,
    });
    timings[`${label} ${stack}`] = into[stack].seconds;
  }
}

beforeAll(async () => {
  const started = Date.now();
  releaseLock = await takeLabLock(1_800_000);
  // A lab that is up while we hold the lock belongs to someone who did not take it: wait, never take it down.
  const waitUntil = Date.now() + 600_000;
  while (labStatus().up) {
    if (Date.now() > waitUntil) throw new Error("another lab stayed up for 10 minutes; not touching it");
    await new Promise((resolve) => setTimeout(resolve, 5_000));
  }
  // Left over from a crashed `lab up` (state recorded, never ready): removed from its own record, nothing else.
  if (readLabState()) await labDown({ progress: () => undefined });
  for (const entry of readdirSync(path.join(repo, "runtime", "bin")).filter((name) => name.endsWith(".ts"))) {
    await bundleRuntimeEntry(entry.replace(/\.ts$/, ""), path.join(temp, "dist"));
  }
  labIsOurs = true;
  const upStarted = Date.now();
  await labUp({ progress: () => undefined });
  timings["lab up"] = (Date.now() - upStarted) / 1000;

  await deployAll(first, "first apply");
  // Operator data, not configuration: the recipients the node syncs from BrightChain (the plan only seeds an empty registry).
  await on("mail", "cat > /etc/brightchain/recipients", "alice@brightchain.org\npostmaster@brightchain.org\n");
  for (const { stack, host } of STACKS) hashesBefore[stack] = await hostFileFingerprints(stack, host);
  await deployAll(second, "second apply");
  for (const { stack, host } of STACKS) hashesAfter[stack] = await hostFileFingerprints(stack, host);
  timings["setup total"] = (Date.now() - started) / 1000;
}, 3_600_000);

afterAll(async () => {
  try {
    if (labIsOurs) await labDown({ progress: () => undefined });
  } finally {
    releaseLock?.();
    rmSync(temp, { recursive: true, force: true });
    console.log(`deploy engine lab timings (s): ${JSON.stringify(timings)}`);
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

  it("leaves every service of each node running", async () => {
    const primary = ["postfix", "opendkim", "spamd", "spamass-milter", "dovecot", "brightchain-lookup", "brightchain-inbound"];
    expect((await on("mail", `systemctl is-active ${primary.join(" ")}`)).trim().split("\n")).toEqual(
      primary.map(() => "active"),
    );
    const relay = ["postfix", "rspamd", "brightchain-lookup"];
    expect((await on("mail2", `systemctl is-active ${relay.join(" ")}`)).trim().split("\n")).toEqual(relay.map(() => "active"));
    // postfix.service is Debian's wrapper and stays "active" when master has exited: ask the port.
    for (const host of ["mail", "mail2"] as const)
      expect(await on(host, "ss -Htln 'sport = :25'"), host).toMatch(/0\.0\.0\.0:25/);
  });

  it("published the stacks' records to the lab DNS: outside sees both MX and the primary's DKIM key", async () => {
    await on(
      "outside",
      "command -v dig swaks >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dnsutils swaks >/dev/null",
    );
    const mx = (await on("outside", "dig +short MX brightchain.org")).trim().split("\n").sort();
    expect(mx).toEqual(["10 mail.brightchain.org.", "20 mail2.brightchain.org."]);
    expect(await on("outside", "dig +short TXT default._domainkey.brightchain.org")).toMatch(
      /v=DKIM1; h=sha256; k=rsa; " "p=|v=DKIM1; h=sha256; k=rsa; p=/,
    );
    // The key in DNS is the public half of the private key the primary signs with.
    const published = (await on("outside", "dig +short TXT default._domainkey.brightchain.org")).replace(/["\s]/g, "");
    const publicKey = (
      await on("mail", "openssl rsa -in /etc/dkim/default.private -pubout -outform DER 2>/dev/null | base64 -w0")
    ).trim();
    expect(publicKey.length).toBeGreaterThan(300);
    expect(published).toBe(`v=DKIM1;h=sha256;k=rsa;p=${publicKey}`);
    expect(await on("outside", `dig +short TXT brightchain.org @${LAB_GATEWAY_IP}`)).toContain("ip4:10.231.0.10");
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

  it("delivers a message from outside to a known recipient into the primary's store", async () => {
    const subject = `deploy-engine smoke ${Date.now()}`;
    const sent = await on(
      "outside",
      `swaks --to alice@brightchain.org --from someone@outside.test --helo mx.outside.test --server mail.brightchain.org --port 25 --header 'Subject: ${subject}' --body 'hello from outside' 2>&1`,
    );
    expect(sent).toMatch(/<-\s+250 2\.0\.0 Ok: queued/);
    const store =
      "node /opt/brightchain-gateway/brightchain-store.cjs list --recipient alice@brightchain.org --store /var/spool/brightchain/store";
    const deadline = Date.now() + 60_000;
    let listing = "";
    while (!listing.includes(subject)) {
      if (Date.now() > deadline)
        throw new Error(
          `not in the store within 60 s; store lists:\n${listing}\nmail log:\n${await on("mail", "journalctl -u postfix -u brightchain-inbound -n 40 --no-pager")}`,
        );
      listing = (await labExec("mail", store)).stdout;
      if (!listing.includes(subject)) await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(listing).toMatch(new RegExp(`\\tinbox\\talice@brightchain\\.org\\t.*${subject}`));
  });
});
