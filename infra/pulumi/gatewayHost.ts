// GatewayHost: one remote.Command per host step, wired exactly as the plan says. No mail knowledge here.
//
// Every step, files included, is a remote.Command: a file's content goes in on stdin and the command installs it
// with its mode and owner in one atomic move. remote.CopyToRemote cannot set a mode or an owner, and would leave
// a secret world-readable (umask) between the copy and a following chmod.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { GatewayNode, HostDirectory, HostFile } from "../model/types";
import {
  STEP_CERTIFICATE,
  STEP_DANE_KEYS,
  STEP_DKIM_KEY,
  STEP_DKIM_PREVIOUS,
  STEP_VERIFY,
  hostDeployment,
  type HostStep,
  type RuntimeArtifact,
} from "../plan";
import { shellQuote } from "../plan/shell";
import { dkimRecordReadCommand } from "../plan/steps";
import { HostState } from "./hostState";

export interface GatewayHostArgs {
  node: GatewayNode;
  files: HostFile[];
  directories: HostDirectory[];
  /** Built runtime programs to install under node.runtime.installDir. */
  artifacts: RuntimeArtifact[];
  /** SSH access to the node; its privateKey should be a Pulumi secret (it stays one). */
  connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  /** The port sshd listens on, kept open by the firewall step (default 22). */
  sshPort?: number;
  /**
   * The SSH user is not root: every step runs through `sudo -n sh -c`, which needs passwordless sudo and
   * fails at once (rather than hanging on a password prompt) without it.
   */
  sudo?: boolean;
  /**
   * What the certificate step must wait for besides the plan's own order: the node's address records, which an
   * ACME http-01 validation resolves (a first deploy would otherwise race its own DNS).
   */
  certificateAfter?: pulumi.Input<pulumi.Resource>[];
  /**
   * Resources a step waits for that only exist once this component's own outputs do: mid-rotation, the new DKIM
   * record built from the key step's stdout, which dkim-selector-served waits for. Settled after construction.
   */
  stepAfter?: Record<string, Promise<pulumi.Resource[]>>;
  /** The component's name in stacks deployed before: each child is aliased from `<previousName>-<child>`. */
  previousName?: string;
}

/**
 * At most this many steps of one host run at once. Pulumi starts every step whose dependencies are done, each
 * over its own SSH connection, and the file steps all wait for the same one: 20 connections at once meet sshd's
 * MaxStartups (10:30:100), which drops unauthenticated connections at random beyond 10.
 */
export const MAX_STEPS_IN_FLIGHT = 8;

/**
 * For each step, one more step it must wait for: the steps, in plan order, are dealt into `width` lanes, each
 * waiting for the one before it in its lane, so at most one step per lane runs at a time. The plan order is a
 * topological order, so no cycle can appear; a lane predecessor the step already waits for is left out.
 */
export function laneDependencies(steps: HostStep[], width: number): Map<string, string> {
  const ancestors = new Map<string, Set<string>>();
  for (const step of steps) {
    const all = new Set<string>(step.after);
    for (const id of step.after) for (const ancestor of ancestors.get(id) ?? []) all.add(ancestor);
    ancestors.set(step.id, all);
  }
  const extra = new Map<string, string>();
  steps.forEach((step, index) => {
    const previous = index >= width ? steps[index - width]!.id : undefined;
    if (previous !== undefined && !ancestors.get(step.id)!.has(previous)) extra.set(step.id, previous);
  });
  return extra;
}

export class GatewayHost extends pulumi.ComponentResource {
  /** The plan this component realised, in order. */
  readonly steps: HostStep[];
  /** One command per step, by step id. */
  readonly commands: Record<string, command.remote.Command>;
  /** stdout of the DKIM key step: opendkim-genkey's <selector>.txt. Undefined on nodes that sign nothing. */
  readonly dkimRecordText?: pulumi.Output<string>;
  /** Mid-rotation: stdout of the step printing the previous DKIM selector's record file. */
  readonly dkimPreviousText?: pulumi.Output<string>;
  /** stdout of the DANE key step (`<lineage> <sha256>` lines); undefined with gateway:dane.enabled false. */
  readonly daneKeysText?: pulumi.Output<string>;
  /** stdout of the final verification, once the node listens and answers lookups. */
  readonly verified: pulumi.Output<string>;
  /** The final verification itself: what mail records wait for. */
  readonly verifyCommand: command.remote.Command;
  /** Created first and never replaced: its delete is what `pulumi destroy` runs on the host. */
  readonly teardown: command.remote.Command;
  /** The host read back on every refresh: drift of any managed file, service, key or firewall rule, and its repair. */
  readonly hostState: HostState;

  constructor(name: string, args: GatewayHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("brightchain:gateway:GatewayHost", name, {}, opts);

    // One plan for the steps, the host state that reads them back and the teardown.
    const plan = hostDeployment(args.node, args.files, args.directories, args.artifacts, { sshPort: args.sshPort ?? 22 });
    this.steps = plan.steps;
    // The key must stay secret in every child's state, whatever form the caller passed it in.
    const connection = pulumi.secret(args.connection);
    // The steps carry no delete of their own: a changed step is replaced create-before-delete, and a delete would
    // remove the file its replacement had just written. One resource whose triggers never change holds the whole
    // node's removal instead; a changed plan changes its delete by an update (`:`), never a replacement.
    const asRoot = (text: string): string => (args.sudo ? `sudo -n sh -c ${shellQuote(text)}` : text);
    const previously = (child: string): pulumi.CustomResourceOptions =>
      args.previousName !== undefined ? { aliases: [{ name: `${args.previousName}-${child}` }] } : {};
    this.teardown = new command.remote.Command(
      `${name}-teardown`,
      {
        connection,
        create: ":",
        update: ":",
        delete: asRoot(plan.teardown),
        triggers: [],
        addPreviousOutputInEnv: false,
      },
      { parent: this, ...previously("teardown") },
    );
    this.commands = {};
    const lanes = laneDependencies(this.steps, MAX_STEPS_IN_FLIGHT);
    for (const step of this.steps) {
      const keep = (value: string): pulumi.Input<string> => (step.secret ? pulumi.secret(value) : value);
      const commandArgs: command.remote.CommandArgs = {
        connection,
        create: keep(args.sudo ? `sudo -n sh -c ${shellQuote(step.command)}` : step.command),
        // Every input that changes what the step does is in its triggers, which replace it (the create runs);
        // any other change — the SSH connection, sudo — is an update, which must not repeat apt or certbot.
        update: keep(args.sudo ? `sudo -n sh -c ${shellQuote(step.update)}` : step.update),
        triggers: step.secretTriggers ? pulumi.secret(step.triggers) : step.triggers,
        // Off so the command and its environment are exactly what the plan says, on every run.
        addPreviousOutputInEnv: false,
        logging: step.secret ? "none" : "stdoutAndStderr",
      };
      if (step.stdin !== undefined) commandArgs.stdin = keep(step.stdin);
      const dependsOn: pulumi.Input<pulumi.Resource>[] = [
        ...[...step.after, ...(lanes.has(step.id) ? [lanes.get(step.id)!] : [])].map((id) => this.commands[id]!),
        ...(step.id === STEP_CERTIFICATE ? (args.certificateAfter ?? []) : []),
      ];
      const later = args.stepAfter?.[step.id];
      const waitFor: pulumi.Input<pulumi.Input<pulumi.Resource>[]> =
        later === undefined ? dependsOn : later.then((resources) => [...dependsOn, ...resources]);
      this.commands[step.id] = new command.remote.Command(`${name}-${step.id}`, commandArgs, {
        parent: this,
        ...previously(step.id),
        dependsOn: waitFor,
        additionalSecretOutputs: step.secret ? ["stdin", "stdout", "stderr"] : [],
      });
    }

    this.verifyCommand = this.commands[STEP_VERIFY]!;
    this.verified = this.verifyCommand.stdout;
    const state = plan.state;
    const dkimStep = this.commands[STEP_DKIM_KEY];
    this.hostState = new HostState(
      `${name}-host-state`,
      {
        connection,
        sudo: args.sudo ?? false,
        script: state.script,
        stdin: state.stdin,
        checks: state.checks,
        steps: this.steps,
        ...(dkimStep ? { dkimRecordText: dkimStep.stdout, dkimRecordRead: dkimRecordReadCommand(args.node) } : {}),
      },
      { parent: this, dependsOn: [this.verifyCommand] },
    );
    // Through the host state: a DKIM key a repair had to generate again is published with its new public half.
    this.dkimRecordText = dkimStep ? this.hostState.dkimRecordText : undefined;
    this.daneKeysText = this.commands[STEP_DANE_KEYS]?.stdout;
    this.dkimPreviousText = this.commands[STEP_DKIM_PREVIOUS]?.stdout;
    this.registerOutputs({ dkimRecordText: this.dkimRecordText, daneKeysText: this.daneKeysText, verified: this.verified });
  }
}
