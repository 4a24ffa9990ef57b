// Deploy engine 1 for the lab: the Pulumi program itself, run under the SDK's mocks with its remote commands
// executed for real over SSH and its DNS records served by the lab DNS. A second run with nothing changed
// executes nothing, as `pulumi up` would show "no changes".
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { readStackConfigFiles, type FlatConfig } from "../model/config";
import type { DnsRecord } from "../model/types";
import { LAB_HOSTS, LAB_STATE_DIR } from "../lab/constants";
import { labPublishWorker, labPublishZone, labSsh } from "../lab/lab";
import { labStackConfig } from "./labStack";
import type { PublishReply, PublishRequest, RunnerJob } from "./runner";
import { deployStatePath, type DeployFailure, type ResourceReport, type RunnerResult } from "./state";
import { mergeZoneRecords, renderLabZone } from "./zone";

export { labStackConfig, labStackOverrides, LAB_RECIPIENT_LOCAL_PARTS, LAB_SUBMISSION_USER } from "./labStack";
export type { DeployFailure, ResourceReport } from "./state";

/** Where the records go instead of Cloudflare. */
export interface DnsTarget {
  /** What the getZone invoke answers as zone id, before the zone's name. */
  zoneIdPrefix: string;
  publishZone: (name: string, text: string) => Promise<void>;
  /** Serves a Worker script at its custom domain; resolves to the address the domain's record points to. */
  serveWorker?: (hostname: string, scriptName: string, content: string) => Promise<string>;
}

export interface DeployStackOptions {
  stack: string;
  /** Folder with Pulumi.yaml and Pulumi.<stack>.yaml. */
  projectDir: string;
  /** Plain configuration laid over the stack files (flat keys, e.g. gateway:ssh). */
  overrides?: FlatConfig;
  /** What `pulumi config set --secret` holds: handed to the program as secrets. */
  secrets?: FlatConfig;
  dnsTarget: DnsTarget;
  /** The engine's state (per stack inputs and outputs, published zones). */
  stateDir: string;
  /** Built runtime (*.cjs); default PROJECTDIR/runtime/dist. */
  runtimeDist?: string;
  progress?: (line: string) => void;
  /** `pulumi destroy` instead of `pulumi up`: each command's delete runs, the stack's records leave the zone. */
  destroy?: boolean;
}

export interface DeployResult {
  stack: string;
  resources: ResourceReport[];
  /** Resources that ran (create or update); empty means "no changes". */
  executed: ResourceReport[];
  dnsRecords: DnsRecord[];
  /** Zones republished because their records changed. */
  zonesPublished: string[];
  seconds: number;
}

/** A step that failed on a host: its message names the stack, the host, the step, the command and its output. */
export class DeployStepError extends Error {
  constructor(
    readonly stack: string,
    readonly failure: DeployFailure,
  ) {
    const host = LAB_HOSTS.find((spec) => spec.ipv4 === failure.host);
    super(
      `deploy ${stack}: host ${host ? `${host.name} (${failure.host})` : failure.host}, step ${JSON.stringify(failure.step)} failed: ` +
        `\`${failure.command}\`\nexit code ${failure.exitCode}\n${failure.output}`,
    );
    this.name = "DeployStepError";
  }
}

function programFile(projectDir: string): { project: string; file: string } {
  const doc = parseYaml(readFileSync(path.join(projectDir, "Pulumi.yaml"), "utf8")) as { name?: unknown; main?: unknown };
  if (typeof doc.name !== "string")
    throw new Error(`${projectDir}/Pulumi.yaml: name is ${JSON.stringify(doc.name)}; accepted: the project name`);
  const main = typeof doc.main === "string" ? doc.main : "index.ts";
  return { project: doc.name, file: path.resolve(projectDir, main) };
}

function runRunner(
  job: RunnerJob,
  progress: (line: string) => void,
  publish: (resource: string, record: DnsRecord) => Promise<void>,
  serveWorker: (hostname: string, scriptName: string, content: string) => Promise<string>,
): Promise<number> {
  return new Promise((resolve, reject) => {
    // tsx loads the TypeScript runner and the program, as bin/gateway.cjs loads the CLI.
    const child = spawn(process.execPath, ["--require", require.resolve("tsx/cjs"), path.join(__dirname, "runner.ts")], {
      stdio: ["pipe", "pipe", "pipe", "ipc"],
      cwd: path.dirname(job.programFile),
    });
    child.on("message", (message: PublishRequest) => {
      const done: Promise<string | undefined> =
        message.kind === "publish"
          ? publish(message.resource, message.record).then(() => undefined)
          : serveWorker(message.hostname, message.scriptName, message.content);
      done.then(
        (address) =>
          child.connected &&
          child.send({
            kind: "published",
            serial: message.serial,
            ...(address !== undefined ? { address } : {}),
          } satisfies PublishReply),
        (error: unknown) =>
          child.connected &&
          child.send({
            kind: "published",
            serial: message.serial,
            error: error instanceof Error ? error.message : String(error),
          } satisfies PublishReply),
      );
    });
    let pending = "";
    const forward = (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) if (line.trim() !== "") progress(line);
    };
    child.stdout!.on("data", forward);
    child.stderr!.on("data", forward);
    child.once("error", reject);
    child.once("close", (code) => {
      if (pending.trim() !== "") progress(pending);
      resolve(code ?? 1);
    });
    child.stdin!.end(JSON.stringify(job));
  });
}

interface PublishedZone {
  records: DnsRecord[];
  serial: number;
}

/**
 * One stack's records by the resource that serves each (`dns/<stack>.records.json`). A run's update of a resource
 * replaces that resource's record and nothing else, as at Cloudflare (one record id per resource): two records of
 * one name and type (a node's TLSA records mid-rollover, CAA issue and iodef) are two resources.
 */
function readStackRecords(stateDir: string, stack: string): Map<string, DnsRecord> {
  const file = path.join(stateDir, "dns", `${stack}.records.json`);
  if (!existsSync(file)) return new Map();
  const saved = JSON.parse(readFileSync(file, "utf8")) as Record<string, DnsRecord> | DnsRecord[];
  // Written before records were kept by resource: each stays until the run ends, replaced by nothing.
  if (Array.isArray(saved)) return new Map(saved.map((r) => [`(recorded) ${r.type} ${r.name} ${r.content}`, r]));
  return new Map(Object.entries(saved));
}

/**
 * Serves the zone made of every deployed stack's records, stored per stack in stateDir, when it differs from what
 * was last published. `records` is this stack's full set, by resource.
 */
async function publishZone(
  stateDir: string,
  stack: string,
  origin: string,
  records: Map<string, DnsRecord>,
  target: DnsTarget,
): Promise<boolean> {
  const dnsDir = path.join(stateDir, "dns");
  mkdirSync(dnsDir, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(dnsDir, `${stack}.records.json`), `${JSON.stringify(Object.fromEntries(records), null, 2)}\n`);
  const byStack: Record<string, DnsRecord[]> = {};
  for (const file of readdirSync(dnsDir)) {
    const match = /^(.+)\.records\.json$/.exec(file);
    if (match) byStack[match[1]!] = [...readStackRecords(stateDir, match[1]!).values()];
  }
  const merged = mergeZoneRecords(origin, byStack);
  const publishedFile = path.join(dnsDir, `${origin}.zone.json`);
  const previous = existsSync(publishedFile) ? (JSON.parse(readFileSync(publishedFile, "utf8")) as PublishedZone) : undefined;
  // The same records in another order are the same zone: a run's records arrive in the order its resources
  // resolve, which differs between runs (a Worker's address record comes when its custom domain is created).
  if (previous && sameRecords(previous.records, merged)) return false;
  // Grows with every publish and stays a plausible date-based serial.
  const serial = Math.max((previous?.serial ?? 0) + 1, Math.floor(Date.now() / 1000));
  await target.publishZone(origin, renderLabZone(origin, merged, serial));
  writeFileSync(publishedFile, `${JSON.stringify({ records: merged, serial } satisfies PublishedZone, null, 2)}\n`);
  return true;
}

function sameRecords(a: readonly DnsRecord[], b: readonly DnsRecord[]): boolean {
  const canonical = (records: readonly DnsRecord[]) => records.map((record) => JSON.stringify(record)).sort();
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

/**
 * Runs the program for one stack in a fresh process, executing what changed since the last run from stateDir,
 * then publishes the stack's DNS records. Throws DeployStepError when a step fails on a host.
 */
export async function deployStack(options: DeployStackOptions): Promise<DeployResult> {
  const started = Date.now();
  const progress = options.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const { project, file } = programFile(options.projectDir);
  const files = readStackConfigFiles(options.projectDir, options.stack);
  const secrets = options.secrets ?? {};
  const missing = files.secureKeys.filter((key) => secrets[key] === undefined && key !== "cloudflare:apiToken");
  if (missing.length > 0) {
    throw new Error(
      `deploy ${options.stack}: secure config ${missing.join(", ")} cannot be decrypted here; accepted: pass the value in secrets`,
    );
  }
  const config = { ...files.values, ...(options.overrides ?? {}), ...secrets };
  const domain = config["gateway:domain"];
  if (!domain)
    throw new Error(`deploy ${options.stack}: gateway:domain is not set; accepted: the mail domain, e.g. brightchain.org`);

  mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
  const scratch = mkdtempSync(path.join(options.stateDir, `run-${options.stack}-`));
  try {
    const job: RunnerJob = {
      stack: options.stack,
      project,
      programFile: file,
      config,
      secretKeys: Object.keys(secrets),
      stateFile: deployStatePath(options.stateDir, options.stack),
      resultFile: path.join(scratch, "result.json"),
      zoneIdPrefix: options.dnsTarget.zoneIdPrefix,
      runtimeDist: options.runtimeDist ?? path.join(options.projectDir, "runtime", "dist"),
      ...(options.destroy ? { destroy: true } : {}),
    };
    // While the program runs, each record is served as soon as it is created (the records this stack had
    // before stay until the run ends: a record the program no longer registers is removed only then).
    const live = readStackRecords(options.stateDir, options.stack);
    /** The records this run's resources registered, by resource: what serves the zone after it. */
    const registered = new Map<string, DnsRecord>();
    let published: string[] = [];
    let publishing = Promise.resolve();
    const publish = (resource: string, record: DnsRecord): Promise<void> => {
      live.set(resource, record);
      registered.set(resource, record);
      publishing = publishing.then(async () => {
        if (await publishZone(options.stateDir, options.stack, domain, live, options.dnsTarget)) published = [domain];
      });
      return publishing;
    };
    // The runner's last words, for an exit code its result does not explain.
    const lastLines: string[] = [];
    const code = await runRunner(
      job,
      (line) => {
        lastLines.push(line);
        if (lastLines.length > 20) lastLines.shift();
        progress(line);
      },
      publish,
      async (hostname, scriptName, content) => {
        if (options.dnsTarget.serveWorker === undefined)
          throw new Error(`deploy ${options.stack}: this engine serves no Worker (custom domain ${hostname})`);
        return options.dnsTarget.serveWorker(hostname, scriptName, content);
      },
    );
    await publishing.catch(() => undefined);
    if (!existsSync(job.resultFile))
      throw new Error(`deploy ${options.stack}: the program runner exited with code ${code} and no result`);
    const result = JSON.parse(readFileSync(job.resultFile, "utf8")) as RunnerResult;
    if (result.failure) throw new DeployStepError(options.stack, result.failure);
    if (result.error) throw new Error(`deploy ${options.stack}: the program failed: ${result.error}`);
    // Pulumi's exit handler turns a clean run into exit code 1 when it finds work still in flight (its "promises
    // were still active" warning): a run that did not finish as `pulumi up` would is not a success.
    if (code !== 0)
      throw new Error(
        `deploy ${options.stack}: the program runner exited with code ${code} after its run:\n${lastLines.join("\n")}`,
      );
    const records = options.destroy ? [] : result.dnsRecords;
    if (await publishZone(options.stateDir, options.stack, domain, options.destroy ? new Map() : registered, options.dnsTarget))
      published = [domain];
    const zonesPublished = published;
    for (const zone of zonesPublished) progress(`[${options.stack}] lab DNS: published zone ${zone}`);
    return {
      stack: options.stack,
      resources: result.resources,
      executed: result.resources.filter((resource) => resource.action !== "same"),
      dnsRecords: records,
      zonesPublished,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The engine's state for lab deploys: inside the lab's state, so `lab down` forgets it with the hosts. */
export const LAB_DEPLOY_STATE_DIR = path.join(LAB_STATE_DIR, "deploy");

export const labDnsTarget = (): DnsTarget => ({
  zoneIdPrefix: "lab-zone-",
  publishZone: labPublishZone,
  serveWorker: labPublishWorker,
});

/**
 * `deployStack` for one of the project's stacks onto its lab host (the lab must be up), with gateway:os set to the
 * release that host boots. `overrides` go on top: a test that deploys a stack whose gateway:os is not the host's.
 */
export async function deployStackToLab(options: {
  stack: string;
  projectDir: string;
  runtimeDist?: string;
  overrides?: FlatConfig;
  progress?: (line: string) => void;
  destroy?: boolean;
}): Promise<DeployResult> {
  const lab = labStackConfig(options.stack, options.projectDir);
  const ssh = labSsh(lab.host.name);
  const configured = readStackConfigFiles(options.projectDir, options.stack).values["gateway:os"];
  const overrides = { ...lab.overrides, ...(options.overrides ?? {}) };
  if (overrides["gateway:os"] !== undefined && overrides["gateway:os"] !== configured) {
    options.progress?.(
      `[${options.stack}] gateway:os ${overrides["gateway:os"]} (Pulumi.${options.stack}.yaml says ` +
        `${configured ?? "nothing"}; lab host ${lab.host.name} boots ${lab.overrides["gateway:os"] ?? "an unrecorded release"})`,
    );
  }
  return deployStack({
    stack: options.stack,
    projectDir: options.projectDir,
    overrides,
    secrets: { ...lab.secrets, "gateway:sshPrivateKey": ssh.privateKey },
    dnsTarget: labDnsTarget(),
    stateDir: LAB_DEPLOY_STATE_DIR,
    ...(options.runtimeDist ? { runtimeDist: options.runtimeDist } : {}),
    ...(options.progress ? { progress: options.progress } : {}),
    ...(options.destroy ? { destroy: true } : {}),
  });
}
