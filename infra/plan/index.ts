// hostPlan: the ordered, idempotent steps that turn a bare server into the node described by the model.
// Pure: same node, files and directories in, same steps out. Triggers are content hashes so an adapter re-runs
// exactly the steps whose inputs changed: a changed main.cf re-runs its install step, `postfix check`, the
// Postfix reload and the final verification, and nothing else.
import { posix } from "node:path";
import { componentProfile, nodeProfiles, runsComponent, type Component } from "../model/profiles";
import type { GatewayNode, GatewaySecrets, HostDirectory, HostFile } from "../model/types";
import { hostFiles } from "../render";
import { FIREWALL_SCRIPT, firewallApplyCommand } from "../render/firewall";
import { OPENDKIM_CONF_PATH, opendkimEnabled } from "../render/opendkim";
import { packagesCommand } from "./packages";
import { pathSlug, sha256 } from "./shell";
import {
  POSTFIX_CHECK_COMMAND,
  POSTFIX_RELOAD_COMMAND,
  certificateCommand,
  dkimKeyCommand,
  directoriesCommand,
  installFileCommand,
  installFileStdin,
  dkimRecordReadCommand,
  osReleaseCommand,
  recipientRegistryCommand,
  serviceCommand,
  systemUserCommand,
  retireCommand,
  teardownCommand,
  verifyCommand,
} from "./steps";
import { hostStateSpec, type HostStateSpec } from "./hostState";
import { daneKeys, daneKeysCommand, daneSwitchCheckCommand } from "./dane";
import { dkimPreviousRecordCommand, dkimRotating, dkimServedCheckCommand } from "./dkim-rotation";
import { MAIN_CF_PATH } from "../render/postfix";
import type { HostStep, RuntimeArtifact } from "./types";

export type { HostStep, RuntimeArtifact } from "./types";
export type { HostCheck, HostDrift, HostStateSpec } from "./hostState";
export { formatDrift, hostDrift, parseObservation, repairSteps } from "./hostState";

export const STEP_OS_RELEASE = "os-release";
export const STEP_PACKAGES = "packages";
export const STEP_SYSTEM_USER = "system-user";
export const STEP_DIRECTORIES = "directories";
export const STEP_RECIPIENT_REGISTRY = "recipient-registry";
export const STEP_DKIM_KEY = "dkim-key";
export const STEP_CERTIFICATE = "certificate";
export const STEP_DKIM_PREVIOUS = "dkim-previous-key";
export const STEP_DKIM_SERVED = "dkim-selector-served";
export const STEP_DANE_KEYS = "dane-keys";
export const STEP_DANE_SWITCH = "dane-switch-check";
export const STEP_FIREWALL = "firewall";
export const STEP_POSTFIX_CHECK = "postfix-check";
export const STEP_POSTFIX_RELOAD = "postfix-reload";
export const STEP_RETIRE = "retire-components";
export const STEP_VERIFY = "verify";

export function fileStepId(path: string): string {
  return `file-${pathSlug(path)}`;
}

export function serviceStepId(service: string): string {
  return `service-${pathSlug(service)}`;
}

function fileTrigger(file: HostFile): string {
  return sha256(JSON.stringify([file.path, file.mode, file.owner, file.group, file.content]));
}

/**
 * A runtime artifact is installed like any file, executable and root-owned (the service user must not be able
 * to rewrite its own program), and restarts the systemd unit of the same name when one is among the files.
 */
function artifactFiles(node: GatewayNode, artifacts: RuntimeArtifact[], files: HostFile[]): HostFile[] {
  const units = new Set(
    files
      .map((f) => f.path)
      .filter((p) => p.startsWith("/etc/systemd/system/"))
      .map((p) => posix.basename(p, ".service")),
  );
  return artifacts.map((artifact) => {
    const unit = artifact.name.replace(/\.c?js$/, "");
    return {
      path: posix.join(node.runtime.installDir, artifact.name),
      mode: 0o755,
      owner: "root",
      group: "root",
      content: artifact.content,
      notify: units.has(unit) ? [unit] : [],
    };
  });
}

function rejectDuplicatePaths(files: HostFile[]): void {
  const seen = new Set<string>();
  for (const file of files) {
    if (seen.has(file.path)) {
      throw new Error(`host file ${file.path} is rendered twice; every path must come from exactly one renderer`);
    }
    seen.add(file.path);
  }
}

export interface HostPlanOptions {
  /** The port sshd listens on: the firewall keeps it open so the deploy does not lock itself out (default 22). */
  sshPort?: number;
  /** Files whose content the drift check cannot know (a secret it was not given): mode and owner only. */
  contentNotCompared?: ReadonlySet<string>;
}

/** Components a node can turn off; what they leave is retired by the plan's retire step. */
const SWITCHABLE: Component[] = ["opendkim", "spamassassin", "rspamd", "dovecot"];

/**
 * The files another configuration of this node would render and this one does not: what an earlier deploy with
 * another spam engine, submission setting or ACME challenge may have left. Only paths matter, so the variants are
 * rendered with stand-in secrets and default scores.
 */
function retiredFiles(node: GatewayNode, files: HostFile[]): string[] {
  const standIn: GatewaySecrets = {
    submissionUsers: [{ username: "retired", password: "retired-stand-in" }],
    certbotCloudflareToken: "retired-stand-in",
  };
  const spam = { ...node.spam, probableScore: 5, definiteScore: 10 };
  const variants: GatewayNode[] = [
    ...(["spamassassin", "rspamd", "none"] as const).map((engine) => ({ ...node, spam: { ...spam, engine } })),
    ...(["http-01", "dns-01"] as const).map((challenge) => ({ ...node, tls: { ...node.tls, challenge } })),
    ...(node.role === "primary"
      ? [{ ...node, submission: { enabled: !(node.submission?.enabled ?? false), saslBackend: "dovecot" as const } }]
      : []),
  ];
  const current = new Set(files.map((file) => file.path));
  const other = new Set(variants.flatMap((variant) => hostFiles(variant, standIn).map((file) => file.path)));
  return [...other].filter((path) => !current.has(path)).sort();
}

/** Every file the plan installs: the rendered ones and the runtime programs. */
function planFiles(node: GatewayNode, files: HostFile[], artifacts: RuntimeArtifact[]): HostFile[] {
  const allFiles = [...files, ...artifactFiles(node, artifacts, files)];
  rejectDuplicatePaths(allFiles);
  return allFiles;
}

/**
 * Every unit a service step enables and restarts: each one a component profile runs, started even when no file of
 * ours configures it (certbot's timer), plus every unit a host file notifies (the runtime's own). Postfix has its
 * own check and reload steps.
 */
function planServices(node: GatewayNode, files: HostFile[]): string[] {
  const services = new Set<string>([
    ...nodeProfiles(node).flatMap((profile) => profile.services),
    ...files.flatMap((f) => f.notify),
  ]);
  services.delete("postfix");
  return [...services].sort();
}

/** The command `pulumi destroy` runs on the host: see teardownCommand. */
export function hostTeardown(node: GatewayNode, files: HostFile[], artifacts: RuntimeArtifact[] = []): string {
  return teardownOf(node, planFiles(node, files, artifacts));
}

function teardownOf(node: GatewayNode, allFiles: HostFile[]): string {
  // Also what an earlier configuration may have started (another spam engine): a destroy stops all of ours.
  const switchable = SWITCHABLE.flatMap((component) => componentProfile(node, component).removal.services);
  return teardownCommand(node, allFiles, [...planServices(node, allFiles), ...switchable], node.dkim.keepKeyOnDestroy ?? false);
}

/**
 * The state the plan leaves the host in, as named checks with the steps that restore each, and the read-only
 * script that observes them: what the drift check compares and what a re-apply repairs.
 */
export function hostState(
  node: GatewayNode,
  files: HostFile[],
  directories: HostDirectory[],
  artifacts: RuntimeArtifact[] = [],
  options: HostPlanOptions = {},
): HostStateSpec {
  const allFiles = planFiles(node, files, artifacts);
  return stateOf(node, allFiles, directories, planSteps(node, files, allFiles, directories, options), options);
}

function stateOf(
  node: GatewayNode,
  allFiles: HostFile[],
  directories: HostDirectory[],
  steps: HostStep[],
  options: HostPlanOptions,
): HostStateSpec {
  return hostStateSpec({
    node,
    files: allFiles,
    directories,
    steps,
    services: planServices(node, allFiles),
    sshPort: options.sshPort ?? 22,
    contentNotCompared: options.contentNotCompared ?? new Set(),
    stepIds: {
      fileStep: fileStepId,
      serviceStep: serviceStepId,
      directories: STEP_DIRECTORIES,
      dkimKey: STEP_DKIM_KEY,
      firewall: STEP_FIREWALL,
      postfixCheck: STEP_POSTFIX_CHECK,
      postfixReload: STEP_POSTFIX_RELOAD,
      verify: STEP_VERIFY,
    },
  });
}

/** What deploying one node takes from the plan: its steps, the host state that checks them, and its teardown. */
export interface HostDeployment {
  steps: HostStep[];
  state: HostStateSpec;
  /** The command `pulumi destroy` runs on the host (hostTeardown). */
  teardown: string;
}

/**
 * hostPlan, hostState and hostTeardown of one node, from one plan: what a deploy (GatewayHost) needs, each
 * computed once. The same as calling the three with these arguments.
 */
export function hostDeployment(
  node: GatewayNode,
  files: HostFile[],
  directories: HostDirectory[],
  artifacts: RuntimeArtifact[] = [],
  options: HostPlanOptions = {},
): HostDeployment {
  const allFiles = planFiles(node, files, artifacts);
  const steps = planSteps(node, files, allFiles, directories, options);
  return { steps, state: stateOf(node, allFiles, directories, steps, options), teardown: teardownOf(node, allFiles) };
}

export function hostPlan(
  node: GatewayNode,
  files: HostFile[],
  directories: HostDirectory[],
  artifacts: RuntimeArtifact[] = [],
  options: HostPlanOptions = {},
): HostStep[] {
  return planSteps(node, files, planFiles(node, files, artifacts), directories, options);
}

/** `files` as rendered, `allFiles` with the runtime programs (planFiles). */
function planSteps(
  node: GatewayNode,
  files: HostFile[],
  allFiles: HostFile[],
  directories: HostDirectory[],
  options: HostPlanOptions,
): HostStep[] {
  const steps: HostStep[] = [];
  // A trigger of a secret step is secret wherever it goes: a service step and the verification reuse them.
  const secretTriggers = new Set<string>();
  const add = (step: Omit<HostStep, "secret" | "secretTriggers" | "update"> & { secret?: boolean; update?: string }): void => {
    const secret = step.secret ?? false;
    // The command is part of what the step does: a changed command re-runs it even where the content did not change.
    const ownCommand = sha256(step.command);
    const triggers = step.triggers.includes(ownCommand) ? step.triggers : [...step.triggers, ownCommand];
    if (secret) for (const trigger of triggers) secretTriggers.add(trigger);
    steps.push({
      ...step,
      triggers,
      secret,
      secretTriggers: secret || triggers.some((trigger) => secretTriggers.has(trigger)),
      // Read stdin away even when doing nothing: a command that exits before its stdin (a 1 MB runtime bundle) is
      // consumed can fail the SSH session's copy of it.
      update: step.update ?? (step.stdin !== undefined ? "cat >/dev/null" : ":"),
    });
  };

  const osRelease = osReleaseCommand(node);
  add({
    id: STEP_OS_RELEASE,
    description: `check that the host runs ${node.os.release}`,
    command: osRelease,
    after: [],
    triggers: [sha256(osRelease)],
  });

  const packages = packagesCommand(node);
  add({
    id: STEP_PACKAGES,
    description: "install the distribution packages",
    command: packages,
    after: [STEP_OS_RELEASE],
    triggers: [sha256(packages)],
  });

  const user = systemUserCommand(node);
  add({
    id: STEP_SYSTEM_USER,
    description: `create the ${node.drop.user} system user (uid ${node.drop.uid}, gid ${node.drop.gid})`,
    command: user,
    after: [STEP_PACKAGES],
    triggers: [sha256(user)],
  });

  const dirs = directoriesCommand(directories);
  add({
    id: STEP_DIRECTORIES,
    description: "create the spool tree and key directories with their owners and modes",
    command: dirs,
    after: [STEP_SYSTEM_USER],
    triggers: [sha256(dirs)],
  });

  // Before main.cf names the new lineage: Postfix's processes read main.cf as they start, so installing it is
  // the switch, not the reload that follows.
  const daneSwitch = daneSwitchCheckCommand(node);
  if (daneSwitch !== undefined) {
    add({
      id: STEP_DANE_SWITCH,
      description: `check that every authoritative server of ${node.domain} serves the TLSA records of ${node.tls.certName} and ${node.dane?.previousLineage} before Postfix serves ${node.tls.certName}`,
      command: daneSwitch,
      after: [STEP_PACKAGES],
      triggers: [sha256(daneSwitch)],
    });
  }

  const addDkimKey = (): void => {
    const dkim = dkimKeyCommand(node);
    add({
      id: STEP_DKIM_KEY,
      description: `generate the DKIM key ${node.dkim.selector} on the host if absent and print its public record`,
      command: dkim,
      // The DNS record is built from this step's stdout: print the key again, generate nothing.
      update: dkimRecordReadCommand(node),
      after: [STEP_DIRECTORIES],
      triggers: [sha256(dkim)],
    });
  };
  // Mid-rotation the new key comes before the files: its record is published from the key step's output while
  // the host is still being set up, and opendkim.conf (which signs with it) waits until the zone serves it.
  const rotating = opendkimEnabled(node) && dkimRotating(node);
  if (rotating) {
    addDkimKey();
    const served = dkimServedCheckCommand(node);
    add({
      id: STEP_DKIM_SERVED,
      description: `wait until every authoritative server of ${node.domain} serves the DKIM record of ${node.dkim.selector}, before OpenDKIM signs with it`,
      command: served,
      after: [STEP_DKIM_KEY, STEP_PACKAGES],
      triggers: [sha256(served), sha256(dkimKeyCommand(node))],
    });
    const previous = dkimPreviousRecordCommand(node);
    add({
      id: STEP_DKIM_PREVIOUS,
      description: `print the record of the previous DKIM selector ${node.dkim.previous!.selector}, kept published until ${node.dkim.previous!.keepUntil}`,
      command: previous,
      update: previous,
      after: [STEP_DIRECTORIES],
      triggers: [sha256(previous)],
    });
  }

  const hashesByService = new Map<string, string[]>();
  const stepsByService = new Map<string, string[]>();
  for (const file of allFiles) {
    const id = fileStepId(file.path);
    const trigger = fileTrigger(file);
    add({
      id,
      description: `install ${file.path} (${file.mode.toString(8)} ${file.owner}:${file.group})`,
      command: installFileCommand(file),
      stdin: installFileStdin(file),
      secret: file.secret ?? false,
      after: [
        STEP_DIRECTORIES,
        ...(daneSwitch !== undefined && file.path === MAIN_CF_PATH ? [STEP_DANE_SWITCH] : []),
        ...(rotating && file.path === OPENDKIM_CONF_PATH ? [STEP_DKIM_SERVED] : []),
      ],
      triggers: [trigger],
    });
    for (const service of file.notify) {
      hashesByService.set(service, [...(hashesByService.get(service) ?? []), trigger]);
      stepsByService.set(service, [...(stepsByService.get(service) ?? []), id]);
    }
  }
  const fileStepIds = allFiles.map((f) => fileStepId(f.path));

  const prerequisites: string[] = [];
  // With gateway:recipients the registry is one of the host files above; otherwise it is the node's data,
  // created empty once so the lookup service can start.
  if (node.lookup.registry.kind === "file" && node.lookup.registry.addresses === undefined) {
    const registry = recipientRegistryCommand(node, node.lookup.registry.path);
    add({
      id: STEP_RECIPIENT_REGISTRY,
      description: `create an empty recipient registry ${node.lookup.registry.path} if there is none`,
      command: registry,
      after: [STEP_SYSTEM_USER],
      triggers: [sha256(registry)],
    });
    prerequisites.push(STEP_RECIPIENT_REGISTRY);
  }
  if (opendkimEnabled(node)) {
    if (!rotating) addDkimKey();
    prerequisites.push(STEP_DKIM_KEY);
  }

  // The rendered script is a file like any other; this step runs it whenever it or the SSH port changes.
  const firewallScript = allFiles.find((f) => f.path === FIREWALL_SCRIPT);
  if (firewallScript === undefined)
    throw new Error(`the host files lack ${FIREWALL_SCRIPT}; the firewall step has nothing to run`);
  const firewall = firewallApplyCommand(options.sshPort);
  add({
    id: STEP_FIREWALL,
    description: "apply the host firewall",
    command: firewall,
    after: [STEP_PACKAGES, fileStepId(FIREWALL_SCRIPT)],
    triggers: [sha256(firewall), fileTrigger(firewallScript)],
  });

  const certificate = certificateCommand(node);
  add({
    id: STEP_CERTIFICATE,
    description: `obtain the TLS certificate for ${node.host.hostname} (${node.tls.challenge})`,
    command: certificate,
    // The Cloudflare credentials and the deploy hook are files; http-01 needs the firewall's port 80.
    after: [...fileStepIds, STEP_FIREWALL],
    triggers: [sha256(certificate)],
  });
  prerequisites.push(STEP_CERTIFICATE);

  if (daneKeys(node).length > 0) {
    const keys = daneKeysCommand(node);
    add({
      id: STEP_DANE_KEYS,
      description: `print the SHA-256 of each DANE key (${daneKeys(node)
        .map((k) => k.lineage)
        .join(", ")}) for the TLSA records`,
      command: keys,
      // Read-only: the TLSA records are built from its stdout, so an update prints it again.
      update: keys,
      after: [STEP_CERTIFICATE],
      triggers: [sha256(keys), sha256(certificate)],
    });
  }

  const services = planServices(node, allFiles);
  const serviceStepIds: string[] = [];
  for (const service of services) {
    const id = serviceStepId(service);
    serviceStepIds.push(id);
    add({
      id,
      description: `enable ${service} and restart it on its configuration`,
      command: serviceCommand(service),
      service,
      after: [...(stepsByService.get(service) ?? []), ...prerequisites],
      // A service no file notifies still runs once, to be enabled and started.
      triggers: hashesByService.get(service) ?? [sha256(service)],
    });
  }

  const postfixTriggers = hashesByService.get("postfix") ?? [sha256("postfix")];
  add({
    id: STEP_POSTFIX_CHECK,
    description: "postfix check: refuse to reload a configuration Postfix itself rejects",
    command: POSTFIX_CHECK_COMMAND,
    after: [...fileStepIds, ...prerequisites, ...serviceStepIds],
    triggers: postfixTriggers,
  });
  add({
    id: STEP_POSTFIX_RELOAD,
    description: "enable Postfix and reload it (start it if stopped)",
    command: POSTFIX_RELOAD_COMMAND,
    after: [STEP_POSTFIX_CHECK],
    triggers: postfixTriggers,
  });

  const retiredUnits = SWITCHABLE.filter((component) => !runsComponent(node, component)).flatMap(
    (component) => componentProfile(node, component).removal.services,
  );
  const retire = retireCommand(retiredUnits, retiredFiles(node, files));
  add({
    id: STEP_RETIRE,
    description: "stop and disable the components this node no longer runs, and remove their files",
    command: retire,
    // After Postfix reloaded onto the new milter: stopping the old one first would tempfail mail in between.
    after: [STEP_POSTFIX_RELOAD],
    triggers: [sha256(retire)],
  });

  const verify = verifyCommand(node, services);
  add({
    id: STEP_VERIFY,
    description: "wait for Postfix to listen and the recipient lookup service to answer",
    command: verify,
    // Read-only: proving the node again over the new connection is what the MX waits for.
    update: verify,
    after: [STEP_POSTFIX_RELOAD, STEP_RETIRE, ...serviceStepIds],
    triggers: [...postfixTriggers, ...serviceStepIds.flatMap((id) => steps.find((s) => s.id === id)!.triggers)],
  });

  return steps;
}
