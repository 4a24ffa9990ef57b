// One stack's run of the Pulumi program (infra/index.ts) under the SDK's mocks, with the command provider's
// resources EXECUTED over SSH and the DNS records collected for the lab DNS. The SDK calls newResource for a
// resource only after the calls of everything it depends on have returned, so steps run in the order
// `pulumi up` runs them. A process of its own per stack: Pulumi's runtime state is per process.
//
// Reads a RunnerJob as JSON on stdin, writes a RunnerResult to job.resultFile, progress lines to stderr.
import { readFileSync, writeFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import type { DnsRecord } from "../model/types";
import { canonicalInputs, changedInputNames, decideAction, unwrapSecrets, type ResourceAction } from "./inputs";
import { describeSsh, parseRemoteConnection, runRemote, type RemoteConnection } from "./ssh";
import {
  readDeployState,
  resourceKey,
  writeDeployState,
  type DeployFailure,
  type ResourceReport,
  type RunnerResult,
} from "./state";
import { dnsRecordFromCloudflareInputs } from "./zone";

export interface RunnerJob {
  stack: string;
  project: string;
  /** The program's entry (Pulumi.yaml's main), absolute. */
  programFile: string;
  config: Record<string, string>;
  secretKeys: string[];
  stateFile: string;
  resultFile: string;
  /** Answer for cloudflare getZone: the zone id the records are created in. */
  zoneIdPrefix: string;
  runtimeDist: string;
  /** `pulumi destroy`: run each recorded command's delete, publish nothing, forget the stack. */
  destroy?: boolean;
}

const COMMAND = "command:remote:Command";
/** A dynamic resource (HostState): its provider travels serialized in the `__provider` input. */
const DYNAMIC = /^pulumi-nodejs:dynamic[/:]/;
const PROVIDER_KEY = "__provider";
/** Where a command's delete is kept in the engine's state for the destroy. */
const RECORDED_DELETE = "recordedDelete";
/** Outputs of a dynamic resource the engine keeps between runs: never a secret (those come from the inputs). */
const DYNAMIC_KEPT_OUTPUTS = ["state", "dkimRecordSource", "dkimRecordText"];
const COPY = "command:remote:CopyToRemote";
const DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord";
const WORKERS_SCRIPT = "cloudflare:index/workersScript:WorkersScript";
const WORKERS_CUSTOM_DOMAIN = "cloudflare:index/workersCustomDomain:WorkersCustomDomain";

/** Which of a command's inputs runs: create (also for a replacement), update, or delete (destroy). */
type CommandPhase = "create" | "update" | "delete";

/** Commands whose delete a destroy runs, in the order they were created (destroyed in reverse). */
interface PendingDelete {
  name: string;
  plain: Record<string, unknown>;
  connection: RemoteConnection;
}

class StepFailed extends Error {
  constructor(readonly failure: DeployFailure) {
    super(`host ${failure.host}, step ${failure.step}: exit code ${failure.exitCode}`);
  }
}

/** The bytes a CopyToRemote source names: a FileAsset's path or a StringAsset's text. */
export function assetContent(resource: string, source: unknown): Buffer {
  const asset = source as Record<string, unknown> | undefined;
  if (asset?.[pulumi.runtime.specialSigKey] === pulumi.runtime.specialAssetSig) {
    if (typeof asset.path === "string") return readFileSync(asset.path);
    if (typeof asset.text === "string") return Buffer.from(asset.text, "utf8");
  }
  throw new Error(
    `${resource}: input "source" is not accepted by the lab engine; accepted: a FileAsset or StringAsset (archives and remote assets are not copied)`,
  );
}

/**
 * What the runner asks of the engine process, over the IPC channel: a DNS record served, or a Worker script served
 * at its custom domain (the reply then carries the address the domain's record points to).
 */
export type PublishRequest =
  | { kind: "publish"; serial: number; resource: string; record: DnsRecord }
  | { kind: "worker"; serial: number; hostname: string; scriptName: string; content: string };
export interface PublishReply {
  kind: "published";
  serial: number;
  address?: string;
  error?: string;
}

let nextRequest = 0;
const pendingPublishes = new Map<number, { resolve: (address?: string) => void; reject: (error: Error) => void }>();

/** Resolves once the engine has done it (it owns the lab DNS zone, the Workers host and their lock-free state). */
function askEngine(request: DistributiveOmit<PublishRequest, "serial">): Promise<string | undefined> {
  const serial = ++nextRequest;
  return new Promise((resolve, reject) => {
    pendingPublishes.set(serial, { resolve, reject });
    process.send!({ ...request, serial } as PublishRequest);
  });
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

/** `resource`: the Pulumi resource the record belongs to, as a Cloudflare record id would: its update replaces it. */
const publishRecord = async (resource: string, record: DnsRecord): Promise<void> => {
  await askEngine({ kind: "publish", resource, record });
};

process.on("message", (message: PublishReply) => {
  const pending = pendingPublishes.get(message.serial);
  if (message.kind !== "published" || !pending) return;
  pendingPublishes.delete(message.serial);
  if (message.error) pending.reject(new Error(message.error));
  else pending.resolve(message.address);
});

/**
 * The provider as Pulumi's dynamic provider host loads it: from the serialized text in `__provider`, not from
 * this process's modules, so what the lab runs is what the serializer produced.
 */
function loadDynamicProvider(name: string, serialized: unknown): pulumi.dynamic.ResourceProvider {
  if (typeof serialized !== "string")
    throw new Error(`${name}: input "${PROVIDER_KEY}" is ${typeof serialized}; accepted: the serialized dynamic provider`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the same loader Pulumi's provider host uses
  const requireFromString = require("require-from-string") as (code: string) => {
    handler: () => pulumi.dynamic.ResourceProvider;
  };
  return requireFromString(serialized).handler();
}

/**
 * A dynamic resource as `pulumi up --refresh` runs it (Pulumi.yaml sets refresh: always): created once; on every
 * later run read back from the live system, diffed against the program's inputs, and updated when they differ.
 * Returns the action taken and the outputs.
 */
async function applyDynamic(
  name: string,
  plain: Record<string, unknown>,
  previous: Record<string, unknown> | undefined,
): Promise<{ action: ResourceAction; outputs: Record<string, unknown>; changed: string[] }> {
  const provider = loadDynamicProvider(name, plain[PROVIDER_KEY]);
  const inputs = Object.fromEntries(Object.entries(plain).filter(([key]) => key !== PROVIDER_KEY));
  const id = `${name}-id`;
  if (previous === undefined) return { action: "create", outputs: (await provider.create(inputs)).outs, changed: [] };
  // Secret outputs are not kept between runs: the read gets them from the current inputs, the rest as recorded.
  const props = { ...inputs, ...previous };
  const read = provider.read ? await provider.read(id, props) : { props };
  const refreshed = (read.props ?? props) as Record<string, unknown>;
  const diff = provider.diff ? await provider.diff(id, refreshed, inputs) : { changes: true };
  if (!diff.changes) return { action: "same", outputs: refreshed, changed: [] };
  const wanted = (inputs.state ?? {}) as Record<string, unknown>;
  const observed = (refreshed.state ?? {}) as Record<string, unknown>;
  const changed = Object.keys(wanted).filter((key) => observed[key] !== wanted[key]);
  const updated = provider.update ? await provider.update(id, refreshed, inputs) : { outs: inputs };
  return { action: "update", outputs: (updated.outs ?? inputs) as Record<string, unknown>, changed };
}

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function run(job: RunnerJob): Promise<RunnerResult> {
  const state = readDeployState(job.stateFile, job.stack);
  const reports: ResourceReport[] = [];
  const dnsRecords: DnsRecord[] = [];
  /** WorkersScript content by script name, for the custom domain that names it as its service. */
  const workerScripts = new Map<string, string>();
  let failure: DeployFailure | undefined;
  let inFlight = 0;
  const pendingDeletes: PendingDelete[] = [];
  let settle: (() => void) | undefined;
  const failed = new Promise<void>((resolve) => (settle = resolve));
  // An error the SDK raises outside newResource (the program throwing, a bad output) surfaces only here.
  const crashed = new Promise<never>((_, reject) =>
    process.on("unhandledRejection", (reason) => {
      if (!failure) reject(reason instanceof Error ? reason : new Error(String(reason)));
    }),
  );

  const execute = async (
    type: string,
    name: string,
    plain: Record<string, unknown>,
    connection: RemoteConnection,
    phase: CommandPhase,
  ): Promise<Record<string, unknown>> => {
    const hidden = plain.logging === "none";
    let command: string;
    let stdin: string | Buffer | undefined;
    if (type === COMMAND) {
      // pulumi-command runs `update` for an update when it is set, `create` otherwise; `delete` on a destroy.
      const field = phase === "update" && typeof plain.update === "string" ? "update" : phase === "delete" ? "delete" : "create";
      command = typeof plain[field] === "string" ? (plain[field] as string) : "";
      if (command === "")
        throw new Error(`${name}: input "${field}" is ${JSON.stringify(plain[field])}; accepted: the command to run`);
      stdin = typeof plain.stdin === "string" ? plain.stdin : undefined;
    } else {
      const remotePath = plain.remotePath;
      if (typeof remotePath !== "string" || !remotePath.startsWith("/")) {
        throw new Error(`${name}: input "remotePath" is ${JSON.stringify(remotePath)}; accepted: an absolute path`);
      }
      command = `cat > '${remotePath.replace(/'/g, `'\\''`)}'`;
      stdin = assetContent(name, plain.source);
    }
    const environment = (plain.environment ?? {}) as Record<string, string>;
    const result = await runRemote(connection, command, {
      ...(stdin !== undefined ? { stdin: stdin.toString() } : {}),
      environment,
    });
    if (result.exitCode !== 0) {
      throw new StepFailed({
        host: connection.host,
        step: name,
        command: hidden
          ? `${describeSsh(connection)} (command hidden: the step carries a secret)`
          : `${describeSsh(connection)} -- ${command}`,
        exitCode: result.exitCode,
        output: hidden ? "(output hidden: the step carries a secret)" : `${result.stdout}${result.stderr}`,
      });
    }
    // The command provider reports stdout/stderr without the final newline.
    return { stdout: result.stdout.replace(/\n$/, ""), stderr: result.stderr.replace(/\n$/, "") };
  };

  await pulumi.runtime.setMocks(
    {
      async newResource(args) {
        const raw = args.inputs as Record<string, unknown>;
        const plain = unwrapSecrets(raw) as Record<string, unknown>;
        const id = `${args.name}-id`;
        const key = resourceKey(args.type, args.name);
        const previous = state.resources[key];
        if (job.destroy) {
          // `pulumi destroy`: nothing is created or read; a command the state knows and that has a delete is
          // deleted once every resource is registered, in reverse order of creation.
          // Pulumi deletes with the delete command its state recorded at the last up, not the program's current
          // one (a destroy after a config change still stops what that up started); the connection is today's.
          const recordedDelete = previous?.outputs[RECORDED_DELETE];
          if (args.type === COMMAND && typeof recordedDelete === "string" && recordedDelete !== "")
            pendingDeletes.push({
              name: args.name,
              plain: { ...plain, delete: recordedDelete },
              connection: parseRemoteConnection(args.name, plain.connection),
            });
          if (previous !== undefined)
            reports.push({
              type: args.type,
              name: args.name,
              action: "delete",
              inputsHash: previous.inputsHash,
              changedInputs: [],
              seconds: 0,
            });
          return { id, state: { ...plain, ...(previous?.outputs ?? {}), stdout: previous?.outputs.stdout ?? "", stderr: "" } };
        }
        if (DYNAMIC.test(args.type)) {
          if (failure) throw new Error(`${args.name}: not run, an earlier step failed`);
          const started = Date.now();
          let result: Awaited<ReturnType<typeof applyDynamic>>;
          try {
            result = await applyDynamic(args.name, plain, previous?.outputs);
          } catch (error) {
            // A repair that failed, or a host that could not be read: reported like a failed step.
            const host = (plain.connection as { host?: unknown } | undefined)?.host;
            failure ??= {
              host: typeof host === "string" ? host : "(unknown host)",
              step: args.name,
              command: "the host state's read, diff and repair",
              exitCode: -1,
              output: error instanceof Error ? error.message : String(error),
            };
            if (inFlight === 0) settle?.();
            throw error;
          }
          const finished = Date.now();
          const kept = Object.fromEntries(
            DYNAMIC_KEPT_OUTPUTS.filter((k) => k in result.outputs).map((k) => [k, result.outputs[k]]),
          );
          const recorded = canonicalInputs(raw);
          state.resources[key] = {
            type: args.type,
            name: args.name,
            inputsHash: recorded.hash,
            inputs: recorded.inputs,
            outputs: kept,
          };
          writeDeployState(job.stateFile, state);
          reports.push({
            type: args.type,
            name: args.name,
            action: result.action,
            inputsHash: recorded.hash,
            changedInputs: result.changed,
            seconds: (finished - started) / 1000,
            ...(result.action === "same" ? {} : { startedAt: started, finishedAt: finished }),
          });
          progress(
            `[${job.stack}] ${args.name}: ${result.action}${result.changed.length ? ` (${result.changed.join(", ")})` : ""}`,
          );
          return { id, state: { ...plain, ...result.outputs } };
        }
        if (args.type === WORKERS_SCRIPT) {
          workerScripts.set(String(plain.scriptName), String(plain.content));
          return { id, state: plain };
        }
        if (args.type === WORKERS_CUSTOM_DOMAIN) {
          // Served at once, with its address record published, as Cloudflare does for a custom domain.
          const hostname = String(plain.hostname);
          const content = workerScripts.get(String(plain.service));
          if (content === undefined)
            throw new Error(`${args.name}: service ${JSON.stringify(plain.service)} names no WorkersScript of this stack`);
          const address = await askEngine({ kind: "worker", hostname, scriptName: String(plain.service), content });
          const record: DnsRecord = {
            name: hostname,
            type: "A",
            content: address!,
            ttl: 300,
            purpose: `the address Cloudflare gives the Worker custom domain ${hostname} (${args.name})`,
          };
          dnsRecords.push(record);
          await publishRecord(args.name, record);
          return { id, state: plain };
        }
        const managed = args.type === COMMAND || args.type === COPY || args.type === DNS_RECORD;
        if (!managed) return { id, state: plain };
        const current = canonicalInputs(raw);
        const action = decideAction(previous?.inputsHash, current);
        const report: ResourceReport = {
          type: args.type,
          name: args.name,
          action,
          inputsHash: current.hash,
          changedInputs: action === "update" ? changedInputNames(previous?.inputs, current.inputs) : [],
          seconds: 0,
        };
        reports.push(report);
        if (args.type === DNS_RECORD) {
          const record = dnsRecordFromCloudflareInputs(args.name, plain);
          dnsRecords.push(record);
          // Live as soon as it is created, as at Cloudflare: the relay's certificate step (http-01) needs its A record.
          await publishRecord(args.name, record);
        }
        if (action === "same") return { id, state: { ...plain, ...previous!.outputs } };
        if (args.type === DNS_RECORD) {
          state.resources[key] = {
            type: args.type,
            name: args.name,
            inputsHash: current.hash,
            inputs: current.inputs,
            outputs: {},
          };
          writeDeployState(job.stateFile, state);
          return { id, state: plain };
        }
        if (failure) throw new Error(`${args.name}: not run, an earlier step failed`);
        const connection = parseRemoteConnection(args.name, plain.connection);
        inFlight++;
        try {
          // No session cap of the engine's own: the program declares how many steps may run at once (GatewayHost's
          // lanes), and the engine runs what the SDK hands it, as pulumi-command does.
          const started = Date.now();
          progress(`[${job.stack}] ${connection.host} ${args.name}: ${action}`);
          // A changed trigger replaces the command (create runs again); any other changed input is an update.
          const replaced =
            action === "update" &&
            JSON.stringify((previous!.inputs as Record<string, unknown>).triggers) !==
              JSON.stringify((current.inputs as Record<string, unknown>).triggers);
          const outputs = await execute(
            args.type,
            args.name,
            plain,
            connection,
            action === "update" && !replaced ? "update" : "create",
          );
          report.startedAt = started;
          report.finishedAt = Date.now();
          report.seconds = (report.finishedAt - started) / 1000;
          progress(`[${job.stack}] ${connection.host} ${args.name}: done in ${report.seconds.toFixed(1)} s`);
          // The delete a destroy will run, kept in the clear only when the resource holds no secret.
          const deleteCommand =
            typeof plain.delete === "string" && plain.logging !== "none" ? { [RECORDED_DELETE]: plain.delete } : {};
          state.resources[key] = {
            type: args.type,
            name: args.name,
            inputsHash: current.hash,
            inputs: current.inputs,
            outputs: { ...outputs, ...deleteCommand },
          };
          writeDeployState(job.stateFile, state);
          return { id, state: { ...plain, ...outputs } };
        } catch (error) {
          failure ??=
            error instanceof StepFailed
              ? error.failure
              : {
                  host: connection.host,
                  step: args.name,
                  command: describeSsh(connection),
                  exitCode: -1,
                  output: error instanceof Error ? error.message : String(error),
                };
          throw error;
        } finally {
          inFlight--;
          if (failure && inFlight === 0) settle?.();
        }
      },
      call(args) {
        if (args.token === "cloudflare:index/getZone:getZone") {
          const name = (args.inputs as { filter?: { name?: string } }).filter?.name ?? "";
          const zoneId = `${job.zoneIdPrefix}${name}`;
          return { id: zoneId, zoneId, name };
        }
        throw new Error(`the lab engine answers no invoke ${args.token}; accepted: cloudflare:index/getZone:getZone`);
      },
    },
    job.project,
    job.stack,
    false,
  );
  pulumi.runtime.setAllConfig(job.config, job.secretKeys);
  process.env.GATEWAY_RUNTIME_DIST = job.runtimeDist;

  // Required only now: a program loaded before setMocks registers nothing.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const program = require(job.programFile) as Record<string, unknown>;
  // Every export resolves only once the resources it is built from have been created: the final verification
  // runs after every other host step, the records after the DKIM step. Waiting for all of them is waiting for all.
  const exported = Promise.all(
    Object.values(program)
      .filter((value) => pulumi.Output.isInstance(value))
      .map((value) => new Promise<void>((resolve) => (value as pulumi.Output<unknown>).apply(() => resolve()))),
  );
  await Promise.race([exported, failed, crashed]);
  // The exports resolve before the SDK has sent GatewayHost's registerOutputs (it serializes the verification's
  // output, resolved in that same turn); exiting then leaves those RPCs in flight, and Pulumi reports them at
  // exit as "3 promises were still active" and sets exit code 1. disconnect() drains the SDK's RPC queue first,
  // as the language host does at the end of `pulumi up`. After a failed step, outputs never resolve: no wait.
  if (!failure) await Promise.race([pulumi.runtime.disconnect(), crashed]);
  if (job.destroy) {
    for (const pending of pendingDeletes.reverse()) {
      const report = reports.find((r) => r.name === pending.name)!;
      report.startedAt = Date.now();
      progress(`[${job.stack}] ${pending.connection.host} ${pending.name}: delete`);
      try {
        await execute(COMMAND, pending.name, pending.plain, pending.connection, "delete");
      } catch (error) {
        if (!(error instanceof StepFailed)) throw error;
        return { stack: job.stack, resources: reports, dnsRecords, failure: error.failure };
      }
      report.finishedAt = Date.now();
      report.seconds = (report.finishedAt - report.startedAt) / 1000;
    }
    // Destroyed is forgotten: the next up starts from nothing, as after `pulumi destroy`.
    writeDeployState(job.stateFile, { stack: job.stack, resources: {} });
  }
  return { stack: job.stack, resources: reports, dnsRecords, ...(failure ? { failure } : {}) };
}

async function main(): Promise<void> {
  const job = JSON.parse(readFileSync(0, "utf8")) as RunnerJob;
  let result: RunnerResult;
  try {
    result = await run(job);
  } catch (error) {
    result = {
      stack: job.stack,
      resources: [],
      dnsRecords: [],
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    };
  }
  writeFileSync(job.resultFile, JSON.stringify(result), { mode: 0o600 });
  // Pulumi's mock runtime keeps handles open (and a failed step leaves outputs that never resolve): done is done.
  process.exitCode = result.failure || result.error ? 1 : 0;
  process.disconnect?.();
  process.exit();
}

if (require.main === module) void main();
