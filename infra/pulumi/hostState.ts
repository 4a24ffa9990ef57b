// HostState: the node's host as Pulumi sees it on a refresh. remote.Command has no Read, so without this
// `pulumi preview --refresh` never contacts a host; this dynamic resource's Read runs the plan's read-only
// observation script over SSH (the pinned host key, as every step) and reports each check's value, so a hand-edited
// main.cf, a stopped service, a changed mode, a removed DKIM key or an added firewall rule is a change the drift
// job fails on, named. Its Update is the repair: the steps that restore each drifted check, run again in plan
// order, then the host observed again.
//
// The provider runs in Pulumi's dynamic provider host from a serialized copy of this module's functions: it may
// use only Node's own modules and what it captures here (no .ts imports at run time).
import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { STEP_DKIM_KEY as DKIM_STEP, type HostCheck, type HostStep } from "../plan";
import * as hostStateModule from "../plan/hostState";
import * as shell from "../plan/shell";
import * as ssh from "../deploy/ssh";
import type { RemoteConnection } from "../deploy/ssh";

// Bound to local names so the serializer captures these functions alone (none of them refers to a module),
// not the module objects they come from.
const STEP_DKIM_KEY = DKIM_STEP;
const hostDrift = hostStateModule.hostDrift;
const parseObservation = hostStateModule.parseObservation;
const repairSteps = hostStateModule.repairSteps;
const formatDrift = hostStateModule.formatDrift;
const shellQuote = shell.shellQuote;
const runRemote = ssh.runRemote;

/** What the provider is given (all plain values by the time it runs). */
export interface HostStateProps {
  connection: RemoteConnection;
  /** The SSH user is not root: commands run through `sudo -n sh -c`. */
  sudo: boolean;
  /** The observation script and its stdin (the managed files' hashes: secret). */
  script: string;
  stdin: string;
  checks: HostCheck[];
  /** check name → value: the wanted state in inputs, the observed one after a refresh. */
  state: Record<string, string>;
  /** Every step a repair may run, in plan order, with what it needs. */
  steps: Pick<HostStep, "id" | "command" | "stdin" | "secret">[];
  /**
   * The DKIM key step's stdout as this run's program passes it: a new selector or a new key changes it, and that
   * change alone must reach the output (a diff that looked only at the checks would keep the previous key's text).
   */
  dkimRecordSource: string;
  /** Output: the record published, the key step's stdout or the key a repair generated again. */
  dkimRecordText: string;
  /** The command that prints the record again after a repair regenerated the key. */
  dkimRecordRead: string;
}

function asRoot(props: Pick<HostStateProps, "sudo">, command: string): string {
  return props.sudo ? `sudo -n sh -c ${shellQuote(command)}` : command;
}

async function observe(props: HostStateProps): Promise<Record<string, string>> {
  const result = await runRemote(props.connection, asRoot(props, props.script), { stdin: props.stdin, timeoutMs: 120_000 });
  if (result.exitCode !== 0) {
    throw new Error(
      `host state of ${props.connection.host}: the observation exited ${result.exitCode}: ${result.stderr.trim() || result.stdout.trim()}`,
    );
  }
  return parseObservation(result.stdout);
}

function wanted(checks: HostCheck[]): Record<string, string> {
  return Object.fromEntries(checks.map((check) => [check.name, check.expected]));
}

/** Runs the repair for whatever has drifted now, then proves the host is back. Returns the DKIM record text. */
async function repair(props: HostStateProps): Promise<string> {
  const drifts = hostDrift(props.checks, await observe(props));
  if (drifts.length === 0) return props.dkimRecordSource;
  const ids = repairSteps(props.checks, drifts, props.steps as HostStep[]);
  for (const id of ids) {
    const step = props.steps.find((s) => s.id === id)!;
    const result = await runRemote(props.connection, asRoot(props, step.command), {
      ...(step.stdin !== undefined ? { stdin: step.stdin } : {}),
    });
    if (result.exitCode !== 0) {
      const output = step.secret ? "(output hidden: the step carries a secret)" : `${result.stdout}${result.stderr}`.trim();
      throw new Error(`repair of ${props.connection.host}: step ${id} exited ${result.exitCode}: ${output}`);
    }
  }
  const left = hostDrift(props.checks, await observe(props));
  if (left.length > 0)
    throw new Error(`host ${props.connection.host} still drifts after re-running ${ids.join(", ")}:\n${formatDrift(left)}`);
  if (ids.includes(STEP_DKIM_KEY) && props.dkimRecordRead !== "") {
    // A regenerated DKIM key has a new public half: the record published from this output must follow it.
    const record = await runRemote(props.connection, asRoot(props, props.dkimRecordRead));
    if (record.exitCode === 0) return record.stdout.replace(/\n$/, "");
  }
  return props.dkimRecordSource;
}

/** Pulumi's dynamic provider for HostState. Exported for the lab engine, which runs it as `pulumi up --refresh` would. */
export const hostStateProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: HostStateProps) {
    // Created after the final verification: the host is in the wanted state by construction.
    return { id: inputs.connection.host, outs: { ...inputs } };
  },
  async read(id: string, props: HostStateProps) {
    const state = await observe(props);
    // The observed values become the inputs of the next diff too, so `preview --diff` shows each drifted check
    // with what the host has and what the code wants.
    return { id, props: { ...props, state }, inputs: { ...props, state } };
  },
  async diff(_id: string, olds: HostStateProps, news: HostStateProps) {
    // A changed connection or plan changes nothing on the host by itself; only a check's value does, or a key
    // step that printed another record (a rotation's new selector): without an update the engine would keep the
    // previous record text as this resource's output, and publish the new selector with the old key.
    const drifted = news.checks.some((check) => olds.state?.[check.name] !== check.expected);
    return { changes: drifted || olds.dkimRecordSource !== news.dkimRecordSource };
  },
  async update(_id: string, _olds: HostStateProps, news: HostStateProps) {
    const dkimRecordText = await repair(news);
    return { outs: { ...news, state: wanted(news.checks), dkimRecordText } };
  },
};

export interface HostStateArgs {
  /** The steps' own connection (host key pinned): the provider reads host, port, user, hostKey and privateKey. */
  connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  sudo: boolean;
  script: string;
  stdin: string;
  checks: HostCheck[];
  steps: HostStep[];
  dkimRecordText?: pulumi.Input<string>;
  dkimRecordRead?: string;
}

export class HostState extends pulumi.dynamic.Resource {
  /** The DKIM record's text: the key step's output, or the key a repair generated again. */
  declare readonly dkimRecordText: pulumi.Output<string>;
  declare readonly state: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: HostStateArgs, opts?: pulumi.CustomResourceOptions) {
    const repairable = new Set(args.checks.flatMap((check) => check.repair));
    super(
      hostStateProvider,
      name,
      {
        connection: pulumi.secret(args.connection),
        sudo: args.sudo,
        script: args.script,
        stdin: pulumi.secret(args.stdin),
        checks: args.checks,
        state: wanted(args.checks),
        steps: pulumi.secret(
          args.steps
            .filter((step) => repairable.has(step.id))
            .map((step) => ({
              id: step.id,
              command: step.command,
              secret: step.secret,
              ...(step.stdin !== undefined ? { stdin: step.stdin } : {}),
            })),
        ),
        dkimRecordSource: args.dkimRecordText ?? "",
        dkimRecordText: args.dkimRecordText ?? "",
        dkimRecordRead: args.dkimRecordRead ?? "",
      },
      { ...opts, additionalSecretOutputs: ["connection", "stdin", "steps"] },
      "brightchain",
      "HostState",
    );
  }
}
