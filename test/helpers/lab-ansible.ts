// Deploy engine 2 in the lab as an operator runs it: `gateway playbook` for a stack of a Pulumi project folder
// pointed at the lab (the same configuration deploy engine 1 applies), then Debian's ansible-playbook. Plus what
// compares engines: a host's manifest of every file and directory the plan manages.
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import type { RenderManifest } from "../../infra/cli/render";
import { labStackConfig, LAB_SUBMISSION_USER } from "../../infra/deploy";
import { mergeZoneRecords, renderLabZone } from "../../infra/deploy/zone";
import type { LabHostName } from "../../infra/lab/constants";
import { labPublishZone, labSsh } from "../../infra/lab/lab";
import { parseGatewayConfig, readStackConfigFiles } from "../../infra/model/config";
import { dkimKeyPaths } from "../../infra/render/opendkim";
import { dnsRecords } from "../../infra/render/dns";
import { on, RUNTIME_DIR, shellQuote } from "./lab-mail";

const repo = path.resolve(__dirname, "../..");

/**
 * The repository's project with each stack file carrying the lab's overrides (labStackConfig: lab addresses,
 * SSH to the lab host, pebble over http-01): `gateway playbook --dir` then describes exactly the node engine 1
 * deploys from the repository's own files.
 */
export function writeLabProject(dir: string, stacks: readonly string[]): void {
  mkdirSync(dir, { recursive: true });
  copyFileSync(path.join(repo, "Pulumi.yaml"), path.join(dir, "Pulumi.yaml"));
  for (const stack of stacks) {
    const file = `Pulumi.${stack}.yaml`;
    const doc = parse(readFileSync(path.join(repo, file), "utf8")) as { config: Record<string, unknown> };
    for (const [key, value] of Object.entries(labStackConfig(stack, repo).overrides)) {
      // Written as a user would (objects as YAML, not JSON strings); both read back to the same flat value.
      doc.config[key] = /^[[{]/.test(value) ? JSON.parse(value) : value;
    }
    writeFileSync(path.join(dir, file), stringify(doc));
  }
}

/** `gateway playbook` for one stack of the lab project, reaching its host with the lab's key and pinned host keys. */
export function writeLabPlaybook(options: { stack: string; projectDir: string; out: string; runtimeDist: string }): void {
  const host = labStackConfig(options.stack, options.projectDir).host;
  const ssh = labSsh(host.name);
  const written = spawnSync(
    process.execPath,
    [
      path.join(repo, "bin/gateway.cjs"),
      "playbook",
      "--stack",
      options.stack,
      "--dir",
      options.projectDir,
      "--out",
      options.out,
      "--runtime-dist",
      options.runtimeDist,
      "--key",
      ssh.privateKeyPath,
      "--known-hosts",
      ssh.knownHostsPath,
    ],
    {
      cwd: repo,
      encoding: "utf8",
      env: { ...process.env, GATEWAY_RENDER_SUBMISSION_USERS: JSON.stringify([LAB_SUBMISSION_USER]) },
      timeout: 120_000,
    },
  );
  if (written.status !== 0) throw new Error(`gateway playbook --stack ${options.stack} failed: ${written.stderr}`);
}

export interface PlaybookRun {
  code: number | null;
  stdout: string;
  stderr: string;
  recap: { ok: number; changed: number; failed: number; unreachable: number };
  seconds: number;
}

/** Where Ansible keeps its temp files and SSH masters: the test's own folder, never the user's home. */
function ansibleEnvironment(ansibleHome: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HOME: ansibleHome,
    ANSIBLE_LOCAL_TEMP: path.join(ansibleHome, "tmp"),
    ANSIBLE_SSH_CONTROL_PATH_DIR: path.join(ansibleHome, "cp"),
    ANSIBLE_PIPELINING: "True",
    ANSIBLE_NOCOLOR: "1",
    ANSIBLE_FORCE_COLOR: "0",
  };
}

/** ansible-playbook on a bundle `gateway playbook` wrote; the recap is the line of the node `hostname`. */
export async function runPlaybook(
  bundle: string,
  hostname: string,
  ansibleHome: string,
  extra: string[] = [],
): Promise<PlaybookRun> {
  const started = Date.now();
  const child = spawn(
    "ansible-playbook",
    ["-i", path.join(bundle, "inventory.ini"), path.join(bundle, "playbook.yml"), ...extra],
    {
      cwd: bundle,
      env: ansibleEnvironment(ansibleHome),
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  });
  const line = new RegExp(`^${hostname.replace(/\./g, "\\.")}\\s*:\\s*(.*)$`, "m").exec(stdout)?.[1] ?? "";
  const count = (name: string): number => Number(new RegExp(`${name}=(\\d+)`).exec(line)?.[1] ?? NaN);
  return {
    code,
    stdout,
    stderr,
    recap: { ok: count("ok"), changed: count("changed"), failed: count("failed"), unreachable: count("unreachable") },
    seconds: (Date.now() - started) / 1000,
  };
}

/** The lines an operator reads to see what a run did: tasks, handlers, what changed, what failed. */
export function playbookSummary(run: PlaybookRun): string {
  return (
    run.stdout
      .split("\n")
      .filter((l) => /^(TASK|RUNNING HANDLER|changed|fatal)/.test(l))
      .join("\n") + `\n${run.stderr}`
  );
}

/**
 * Ansible's SSH masters outlive the run by ControlPersist; ours are closed through their own sockets (ssh wants a
 * destination argument, but with ControlPath given it only talks to the socket).
 */
export function closeSshMasters(ansibleHome: string): void {
  const dir = path.join(ansibleHome, "cp");
  if (!existsSync(dir)) return;
  for (const socket of readdirSync(dir)) {
    spawnSync("ssh", ["-o", `ControlPath=${path.join(dir, socket)}`, "-O", "exit", "lab-host"], { timeout: 10_000 });
  }
}

/** What a node's host holds under the plan: one line per managed file ("path mode owner group sha256") and directory. */
export type HostManifest = string[];

/** The paths a stack's plan manages, from the manifest `gateway playbook` wrote beside the playbook. */
export function readBundleManifest(bundle: string): RenderManifest {
  return JSON.parse(readFileSync(path.join(bundle, "manifest.json"), "utf8")) as RenderManifest;
}

const octal = (mode: string): string => Number.parseInt(mode, 8).toString(8);

/** The part of a render's manifest that says what a host must hold. */
export type ManagedPaths = Pick<RenderManifest, "files" | "directories">;

/** The manifest the plan says the host must have: render's files and directories, and the built runtime. */
export function expectedManifest(manifest: ManagedPaths, runtimeShas: Record<string, string>): HostManifest {
  return [
    ...manifest.files.map((f) => `${f.path} ${octal(f.mode)} ${f.owner} ${f.group} ${f.sha256}`),
    ...Object.entries(runtimeShas).map(([name, sha]) => `${RUNTIME_DIR}/${name} 755 root root ${sha}`),
    ...manifest.directories.map((d) => `${d.path}/ ${octal(d.mode)} ${d.owner} ${d.group}`),
  ].sort();
}

/** The same lines as the host has them: stat and sha256sum of each path, read over SSH in one go. */
export async function hostManifest(
  host: LabHostName,
  manifest: ManagedPaths,
  runtimeNames: readonly string[],
): Promise<HostManifest> {
  const files = [...manifest.files.map((f) => f.path), ...runtimeNames.map((name) => `${RUNTIME_DIR}/${name}`)];
  const script = [
    ...files.map(
      (p) => `printf '%s %s\\n' "$(stat -c '%n %a %U %G' ${shellQuote(p)})" "$(sha256sum < ${shellQuote(p)} | cut -d' ' -f1)"`,
    ),
    ...manifest.directories.map((d) => `stat -c '%n/ %a %U %G' ${shellQuote(d.path)}`),
  ].join("\n");
  return (await on(host, script)).trim().split("\n").sort();
}

/**
 * The zone an Ansible operator publishes by hand (the playbook does not touch DNS): every stack's records from
 * the model, the primary's DKIM key as its host generated it.
 */
export async function publishStacksZone(projectDir: string, stacks: readonly string[]): Promise<void> {
  const byStack: Record<string, ReturnType<typeof dnsRecords>> = {};
  let domain = "";
  for (const stack of stacks) {
    const lab = labStackConfig(stack, projectDir);
    const node = parseGatewayConfig({ ...readStackConfigFiles(projectDir, stack).values, ...lab.overrides });
    domain = node.domain;
    const dkim = node.role === "primary" ? await on(lab.host.name, `cat ${shellQuote(dkimKeyPaths(node).txtRecord)}`) : undefined;
    byStack[stack] = dnsRecords(node, dkim);
  }
  await labPublishZone(domain, renderLabZone(domain, mergeZoneRecords(domain, byStack), Math.floor(Date.now() / 1000)));
}
