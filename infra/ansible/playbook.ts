// The Ansible adapter: hostPlan()'s ordered steps as one play. It holds no mail knowledge. Each plan step is
// recognised by its id and checked against the generator that made it (so a step this file misreads fails
// here, not on a host), then translated to the builtin module that does the same thing idempotently. A step it
// does not recognise runs as the plan's own shell command, guarded like Pulumi guards it: re-run exactly when
// the step's triggers change.
import { posix } from "node:path";
import { stringify } from "yaml";
import type { GatewayNode, HostDirectory, HostFile } from "../model/types";
import {
  STEP_DIRECTORIES,
  STEP_DKIM_KEY,
  STEP_OS_RELEASE,
  STEP_POSTFIX_CHECK,
  STEP_POSTFIX_RELOAD,
  STEP_RECIPIENT_REGISTRY,
  STEP_SYSTEM_USER,
  STEP_VERIFY,
  fileStepId,
  hostPlan,
  type HostStep,
  type RuntimeArtifact,
} from "../plan";
import { sha256 } from "../plan/shell";
import { directoriesCommand, installFileCommand, recipientRegistryCommand, systemUserCommand } from "../plan/steps";
import { dkimKeyPaths } from "../render/opendkim";

/**
 * Where a shell step records the triggers it last ran with. Its `creates:` names the stamp of the current
 * triggers, so Ansible skips the step (changed=0) until the plan's inputs for it change, as Pulumi does.
 */
export const STEP_STAMP_DIR = "/var/lib/brightchain-gateway/ansible-steps";

/** The handler topic every file that notifies Postfix uses: `postfix check`, then the reload. */
export const POSTFIX_RELOAD_TOPIC = "reload postfix";

/** A host file the playbook copies, and where the playbook folder holds its content. */
export interface PlaybookSource {
  /** Relative to the playbook folder: files/<host path>. */
  src: string;
  file: HostFile;
}

export interface PlaybookInput {
  node: GatewayNode;
  /** hostFiles(node, secrets): every file, including those withheld for lack of a secret. */
  files: HostFile[];
  directories: HostDirectory[];
  artifacts: RuntimeArtifact[];
  /** Paths of files whose secret was not available, each with the environment variable that supplies it. */
  withheld?: { path: string; reason: string }[];
}

export type AnsibleTask = Record<string, unknown>;

export interface AnsiblePlay {
  name: string;
  hosts: string;
  gather_facts: boolean;
  tasks: AnsibleTask[];
  handlers: AnsibleTask[];
}

export interface GatewayPlaybook {
  play: AnsiblePlay;
  /** Every file the play copies: what the playbook folder must hold under files/. */
  sources: PlaybookSource[];
  /** The plan the play was derived from, in order. */
  steps: HostStep[];
}

export function sourcePath(file: Pick<HostFile, "path">): string {
  return posix.join("files", file.path);
}

/** "0640": Ansible reads an unquoted 0640 as a decimal number; the YAML writer quotes a string. */
export function ansibleMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, "0")}`;
}

export function restartHandlerName(service: string): string {
  return `restart ${service}`;
}

function notifyTopics(file: HostFile): string[] {
  return file.notify.map((service) => (service === "postfix" ? POSTFIX_RELOAD_TOPIC : restartHandlerName(service)));
}

function stampPath(step: HostStep): string {
  return posix.join(STEP_STAMP_DIR, `${step.id}-${sha256(JSON.stringify(step.triggers)).slice(0, 16)}`);
}

/** The plan's command as-is, then the stamp of its triggers (only reached when the command succeeded: set -eu). */
function stampedShellTask(step: HostStep): AnsibleTask {
  if (step.stdin !== undefined) {
    throw new Error(
      `plan step ${step.id} reads stdin, which a shell task cannot feed; the Ansible adapter needs a translation for it`,
    );
  }
  const stamp = stampPath(step);
  const stampDir = posix.dirname(stamp);
  return {
    name: step.description,
    "ansible.builtin.shell": {
      cmd: [step.command, `mkdir -p ${stampDir}`, `rm -f ${stampDir}/${step.id}-*`, `: > ${stamp}`].join("\n"),
      executable: "/bin/sh",
      creates: stamp,
    },
    ...(step.secret ? { no_log: true } : {}),
  };
}

/**
 * The runtime artifacts as the plan installs them: the candidate must produce exactly the plan's install
 * command (path, mode, owner), and it notifies the services whose restart steps wait for it.
 */
function artifactFile(
  node: GatewayNode,
  artifact: RuntimeArtifact,
  steps: HostStep[],
  serviceSteps: Map<string, string>,
): HostFile {
  const path = posix.join(node.runtime.installDir, artifact.name);
  const step = steps.find((s) => s.id === fileStepId(path));
  if (step === undefined) throw new Error(`runtime artifact ${artifact.name}: the plan has no step installing ${path}`);
  const candidate: HostFile = { path, mode: 0o755, owner: "root", group: "root", content: artifact.content, notify: [] };
  if (installFileCommand(candidate) !== step.command) {
    throw new Error(
      `runtime artifact ${artifact.name}: the plan installs ${path} with another mode or owner than 0755 root:root; the Ansible adapter must follow it`,
    );
  }
  const notify = [...serviceSteps]
    .filter(([stepId]) => steps.find((s) => s.id === stepId)!.after.includes(step.id))
    .map(([, service]) => service);
  return { ...candidate, notify };
}

/** The unit of each service step, as the plan types it. */
function serviceStepNames(steps: HostStep[]): Map<string, string> {
  const names = new Map<string, string>();
  for (const step of steps.filter((s) => s.service !== undefined)) names.set(step.id, step.service!);
  return names;
}

function expectCommand(step: HostStep, expected: string, what: string): void {
  if (step.command !== expected) {
    throw new Error(`plan step ${step.id} is no longer ${what}; the Ansible adapter's translation of it must be updated`);
  }
}

/** Ancestors of the files' folders that no HostDirectory manages: created as `mkdir -p` would, nothing more. */
function parentFolders(files: HostFile[], directories: HostDirectory[]): string[] {
  const managed = new Set(directories.map((d) => d.path));
  const folders = new Set<string>();
  for (const file of files) {
    const dir = posix.dirname(file.path);
    if (!managed.has(dir)) folders.add(dir);
  }
  return [...folders].sort();
}

export function gatewayPlaybook(input: PlaybookInput): GatewayPlaybook {
  const { node, files, directories, artifacts } = input;
  const steps = hostPlan(node, files, directories, artifacts);
  const services = serviceStepNames(steps);
  const withheld = new Map((input.withheld ?? []).map((w) => [w.path, w.reason]));
  const byStepId = new Map<string, HostFile>();
  for (const file of files) byStepId.set(fileStepId(file.path), file);
  for (const artifact of artifacts) {
    const file = artifactFile(node, artifact, steps, services);
    byStepId.set(fileStepId(file.path), file);
  }

  const tasks: AnsibleTask[] = [];
  const sources: PlaybookSource[] = [];
  let parentsCreated = false;

  for (const step of steps) {
    const file = byStepId.get(step.id);
    if (file !== undefined) {
      expectCommand(step, installFileCommand(file), `installFileCommand(${file.path})`);
      if (!parentsCreated) {
        // copy does not create a missing parent folder; the plan's install command does (mkdir -p).
        tasks.push({
          name: "create the folders that hold the host files",
          "ansible.builtin.file": { path: "{{ item }}", state: "directory" },
          loop: parentFolders([...byStepId.values()], directories),
        });
        parentsCreated = true;
      }
      tasks.push(fileTask(step, file, withheld.get(file.path)));
      if (withheld.get(file.path) === undefined) sources.push({ src: sourcePath(file), file });
      continue;
    }
    const service = services.get(step.id);
    if (service !== undefined) {
      tasks.push({
        name: `enable and start ${service}`,
        "ansible.builtin.systemd": { name: service, enabled: true, state: "started", daemon_reload: true },
      });
      continue;
    }
    switch (step.id) {
      case STEP_SYSTEM_USER:
        expectCommand(step, systemUserCommand(node), "systemUserCommand(node)");
        tasks.push(...systemUserTasks(node));
        break;
      case STEP_DIRECTORIES:
        expectCommand(step, directoriesCommand(directories), "directoriesCommand(directories)");
        tasks.push({
          name: step.description,
          "ansible.builtin.file": {
            path: "{{ item.path }}",
            state: "directory",
            owner: "{{ item.owner }}",
            group: "{{ item.group }}",
            mode: "{{ item.mode }}",
          },
          loop: directories.map((d) => ({ path: d.path, owner: d.owner, group: d.group, mode: ansibleMode(d.mode) })),
        });
        break;
      case STEP_RECIPIENT_REGISTRY: {
        // The registry is the node's data: created empty when absent, never rewritten (so not a copy task).
        const registry = node.lookup.registry;
        if (registry.kind !== "file")
          throw new Error(`plan step ${step.id} seeds a registry file, but lookup.registry is ${registry.kind}`);
        expectCommand(step, recipientRegistryCommand(node, registry.path), "recipientRegistryCommand(node)");
        tasks.push({
          name: step.description,
          "ansible.builtin.shell": { cmd: step.command, executable: "/bin/sh", creates: registry.path },
        });
        break;
      }
      case STEP_DKIM_KEY:
        tasks.push(...dkimTasks(node, step));
        break;
      case STEP_POSTFIX_CHECK:
        // The check and the reload are handlers (below): they run once, after every file is in place, and
        // only when a file that Postfix reads changed. Services restart first, in the plan's order.
        tasks.push({
          name: "restart what changed; postfix check, then reload Postfix",
          "ansible.builtin.meta": "flush_handlers",
        });
        break;
      case STEP_POSTFIX_RELOAD:
        tasks.push({
          name: "enable Postfix and start it if stopped",
          "ansible.builtin.systemd": { name: "postfix", enabled: true, state: "started" },
        });
        break;
      case STEP_OS_RELEASE:
      case STEP_VERIFY:
        // Checks, run on every play: a release check that ran once would not notice a host reinstalled.
        tasks.push({
          name: step.description,
          "ansible.builtin.shell": { cmd: step.command, executable: "/bin/sh" },
          changed_when: false,
        });
        break;
      default:
        tasks.push(stampedShellTask(step));
    }
  }

  const postfixCheck = steps.find((s) => s.id === STEP_POSTFIX_CHECK);
  const postfixReload = steps.find((s) => s.id === STEP_POSTFIX_RELOAD);
  // Only what some file notifies: a service no file configures is started by its task and never restarted.
  const notified = new Set([...byStepId.values()].flatMap((f) => f.notify));
  const handlers: AnsibleTask[] = [...new Set(services.values())]
    .filter((service) => notified.has(service))
    .sort()
    .map((service) => ({
      name: restartHandlerName(service),
      "ansible.builtin.systemd": { name: service, state: "restarted", daemon_reload: true },
    }));
  if (postfixCheck !== undefined && postfixReload !== undefined) {
    handlers.push(
      {
        name: "postfix check",
        "ansible.builtin.shell": { cmd: postfixCheck.command, executable: "/bin/sh" },
        changed_when: false,
        listen: POSTFIX_RELOAD_TOPIC,
      },
      {
        // The plan's own command, not the systemd module: it restarts instead when the listener settings
        // changed, which a reload cannot apply.
        name: "reload Postfix",
        "ansible.builtin.shell": { cmd: postfixReload.command, executable: "/bin/sh" },
        listen: POSTFIX_RELOAD_TOPIC,
      },
    );
  }

  return {
    play: {
      name: `BrightChain Email Gateway ${node.role} ${node.host.hostname}`,
      hosts: node.host.hostname,
      gather_facts: false,
      tasks,
      handlers,
    },
    sources,
    steps,
  };
}

function fileTask(step: HostStep, file: HostFile, withheldReason: string | undefined): AnsibleTask {
  const attributes = { owner: file.owner, group: file.group, mode: ansibleMode(file.mode) };
  if (withheldReason !== undefined) {
    // Its content was not given to `gateway playbook`: it must already be on the host (placed by hand), and
    // this task fails naming the missing variable when it is not.
    return {
      name: `${file.path} must already exist (withheld: ${withheldReason})`,
      "ansible.builtin.file": { path: file.path, state: "file", ...attributes },
    };
  }
  return {
    name: step.description,
    "ansible.builtin.copy": { src: sourcePath(file), dest: file.path, ...attributes },
    ...(file.notify.length > 0 ? { notify: notifyTopics(file) } : {}),
    // A secret's content must not reach the terminal, the log or a --diff.
    ...(file.secret ? { no_log: true, diff: false } : {}),
  };
}

function systemUserTasks(node: GatewayNode): AnsibleTask[] {
  const { user, group, uid, gid, spoolDir } = node.drop;
  return [
    { name: `${group} group (gid ${gid})`, "ansible.builtin.group": { name: group, gid, system: true } },
    {
      name: `${user} system user (uid ${uid})`,
      "ansible.builtin.user": {
        name: user,
        uid,
        group,
        home: spoolDir,
        create_home: false,
        shell: "/usr/sbin/nologin",
        system: true,
      },
    },
  ];
}

/** The plan's key generation, skipped once the private key exists; the public record is shown for DNS. */
function dkimTasks(node: GatewayNode, step: HostStep): AnsibleTask[] {
  const { privateKey, txtRecord } = dkimKeyPaths(node);
  return [
    { name: step.description, "ansible.builtin.shell": { cmd: step.command, executable: "/bin/sh", creates: privateKey } },
    {
      name: `read the DKIM public record (${txtRecord})`,
      "ansible.builtin.command": { argv: ["cat", txtRecord] },
      register: "dkim_record",
      changed_when: false,
    },
    {
      name: `publish this TXT record as ${node.dkim.selector}._domainkey.${node.domain}`,
      "ansible.builtin.debug": { var: "dkim_record.stdout" },
    },
  ];
}

export function renderPlaybookYaml(playbook: GatewayPlaybook, header: string[]): string {
  const comment = header.map((line) => `# ${line}`.trimEnd()).join("\n");
  return `${comment}\n${stringify([playbook.play], { lineWidth: 0 })}`;
}
