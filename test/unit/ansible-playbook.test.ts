// The Ansible adapter on the example nodes: the play is the host plan in order, every file is copied with its
// exact mode (a string Ansible reads as octal), notifies the handler its services need, and Postfix reloads
// only after `postfix check`. The YAML is re-read with the yaml parser to test what Ansible will see.
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { gatewayPlaybook, renderInventory, renderPlaybookYaml, STEP_STAMP_DIR, type AnsibleTask } from "../../infra/ansible";
import type { GatewayNode } from "../../infra/model/types";
import { hostPlan, type RuntimeArtifact } from "../../infra/plan";
import { POSTFIX_RELOAD_COMMAND } from "../../infra/plan/steps";
import { hostDirectories, hostFiles } from "../../infra/render/index";
import { examplePrimary, exampleRelay, exampleSecrets, nodeMatrix } from "../fixtures/nodes";

const artifacts: RuntimeArtifact[] = [
  { name: "brightchain-inbound.cjs", content: "// inbound\n" },
  { name: "brightchain-lookup.cjs", content: "// lookup\n" },
];

function build(node: GatewayNode) {
  const files = hostFiles(node, exampleSecrets);
  const directories = hostDirectories(node);
  const playbook = gatewayPlaybook({ node, files, directories, artifacts });
  const yamlText = renderPlaybookYaml(playbook, ["test header"]);
  const [play] = parse(yamlText) as [{ hosts: string; gather_facts: boolean; tasks: AnsibleTask[]; handlers: AnsibleTask[] }];
  return { files, directories, playbook, play: play!, yamlText };
}

const copyTasks = (tasks: AnsibleTask[]) =>
  tasks.filter((t) => t["ansible.builtin.copy"] !== undefined) as (AnsibleTask & {
    "ansible.builtin.copy": { src: string; dest: string; owner: string; group: string; mode: string };
    notify?: string[];
    no_log?: boolean;
    diff?: boolean;
  })[];

const taskIndex = (tasks: AnsibleTask[], predicate: (t: AnsibleTask) => boolean): number => {
  const index = tasks.findIndex(predicate);
  expect(index).toBeGreaterThanOrEqual(0);
  return index;
};

describe.each([
  ["primary", examplePrimary],
  ["relay", exampleRelay],
])("playbook for the example %s", (_name, node) => {
  const { files, playbook, play, yamlText } = build(node);

  it("targets the node's hostname only, without fact gathering", () => {
    expect(play.hosts).toBe(node.host.hostname);
    expect(play.gather_facts).toBe(false);
  });

  it("copies every host file and runtime artifact with owner, group and the mode as a quoted octal string", () => {
    const copies = copyTasks(play.tasks);
    const expected = [
      ...files,
      ...artifacts.map((a) => ({ path: `${node.runtime.installDir}/${a.name}`, mode: 0o755, owner: "root", group: "root" })),
    ];
    expect(copies.map((t) => t["ansible.builtin.copy"].dest).sort()).toEqual(expected.map((f) => f.path).sort());
    for (const file of expected) {
      const task = copies.find((t) => t["ansible.builtin.copy"].dest === file.path)!;
      expect(task["ansible.builtin.copy"]).toMatchObject({
        src: `files${file.path}`,
        owner: file.owner,
        group: file.group,
        mode: `0${file.mode.toString(8)}`,
      });
    }
    // Unquoted, YAML would hand Ansible the number 640 (decimal): mode 0o1200, a different file.
    expect(yamlText).toMatch(/mode: "0644"/);
    expect(yamlText).not.toMatch(/mode: 0\d{3}\b/);
  });

  it("ships each file's content byte for byte as hostFiles() renders it", () => {
    const byPath = new Map(playbook.sources.map((s) => [s.file.path, s]));
    for (const file of files) {
      const source = byPath.get(file.path)!;
      expect(source.src).toBe(`files${file.path}`);
      expect(Buffer.from(source.file.content)).toEqual(Buffer.from(file.content));
    }
  });

  it("keeps secret files out of logs and diffs", () => {
    const secretPaths = files.filter((f) => f.secret).map((f) => f.path);
    if (node.role === "primary") expect(secretPaths.length).toBeGreaterThan(0);
    for (const task of copyTasks(play.tasks).filter((t) => secretPaths.includes(t["ansible.builtin.copy"].dest))) {
      expect(task.no_log).toBe(true);
      expect(task.diff).toBe(false);
    }
    expect(yamlText).not.toContain(exampleSecrets.submissionUsers[0]!.password);
  });

  it("notifies a handler for every service a file names, and each such handler exists", () => {
    const handlerNames = new Set(play.handlers.flatMap((h) => [h.name as string, ...(h.listen ? [h.listen as string] : [])]));
    for (const file of files) {
      const task = copyTasks(play.tasks).find((t) => t["ansible.builtin.copy"].dest === file.path)!;
      const expected = file.notify.map((s) => (s === "postfix" ? "reload postfix" : `restart ${s}`));
      expect(task.notify ?? []).toEqual(expected);
      for (const topic of expected) expect(handlerNames.has(topic)).toBe(true);
    }
    const lookupUnit = copyTasks(play.tasks).find(
      (t) => t["ansible.builtin.copy"].dest === `${node.runtime.installDir}/brightchain-lookup.cjs`,
    )!;
    expect(lookupUnit.notify).toEqual(["restart brightchain-lookup"]);
  });

  it("runs postfix check before the Postfix reload, both as handlers of one topic, after the service restarts", () => {
    const names = play.handlers.map((h) => h.name);
    const check = names.indexOf("postfix check");
    const reload = names.indexOf("reload Postfix");
    expect(check).toBeGreaterThanOrEqual(0);
    expect(reload).toBe(check + 1);
    expect(play.handlers[check]!.listen).toBe("reload postfix");
    expect(play.handlers[reload]!.listen).toBe("reload postfix");
    expect(play.handlers[check]!["ansible.builtin.shell"]).toMatchObject({ cmd: expect.stringContaining("postfix check") });
    // The plan's reload command: it restarts instead when inet_protocols/inet_interfaces changed.
    expect(play.handlers[reload]!["ansible.builtin.shell"]).toEqual({ cmd: POSTFIX_RELOAD_COMMAND, executable: "/bin/sh" });
    for (const restart of play.handlers.slice(0, check)) expect(restart.name).toMatch(/^restart /);
  });

  it("keeps the plan's order: release check, packages, user, directories, files, keys and certificate, services, flush, verify", () => {
    const t = play.tasks;
    const release = taskIndex(t, (x) => String(x.name).startsWith("check that the host runs "));
    const packages = taskIndex(t, (x) => x.name === "install the distribution packages");
    const user = taskIndex(t, (x) => x["ansible.builtin.user"] !== undefined);
    const dirs = taskIndex(t, (x) => x.name === "create the spool tree and key directories with their owners and modes");
    const firstCopy = taskIndex(t, (x) => x["ansible.builtin.copy"] !== undefined);
    const certificate = taskIndex(t, (x) => String(x.name).startsWith("obtain the TLS certificate"));
    const firstService = taskIndex(t, (x) => String(x.name).startsWith("enable and start "));
    const flush = taskIndex(t, (x) => x["ansible.builtin.meta"] === "flush_handlers");
    const verify = taskIndex(t, (x) => String(x.name).startsWith("wait for Postfix to listen"));
    expect(release).toBe(0);
    expect(t[release]!.changed_when).toBe(false);
    expect([release, packages, user, dirs, firstCopy, certificate, firstService, flush, verify]).toEqual(
      [release, packages, user, dirs, firstCopy, certificate, firstService, flush, verify].sort((a, b) => a - b),
    );
    expect(t[verify]!.changed_when).toBe(false);
  });

  it("runs the plan's own shell commands unchanged, guarded by a stamp of their triggers so a re-run changes nothing", () => {
    const steps = hostPlan(node, files, hostDirectories(node), artifacts);
    for (const id of ["packages", "firewall", "certificate"]) {
      const step = steps.find((s) => s.id === id)!;
      const task = play.tasks.find((x) => x.name === step.description)!;
      const shell = task["ansible.builtin.shell"] as { cmd: string; creates: string };
      expect(shell.cmd.startsWith(`${step.command}\n`)).toBe(true);
      expect(shell.creates.startsWith(`${STEP_STAMP_DIR}/${id}-`)).toBe(true);
      expect(shell.cmd.endsWith(`: > ${shell.creates}`)).toBe(true);
    }
  });

  it("generates the DKIM key only where the plan does, and only if absent", () => {
    const dkim = play.tasks.find((x) => String(x.name).startsWith("generate the DKIM key"));
    if (node.role === "relay") {
      expect(dkim).toBeUndefined();
      return;
    }
    expect(dkim!["ansible.builtin.shell"]).toMatchObject({ creates: `${node.dkim.keyDir}/${node.dkim.selector}.private` });
  });

  it("seeds the recipient registry only when the host has none: it is the node's data", () => {
    const seed = play.tasks.find((x) => String(x.name).startsWith("create an empty recipient registry"))!;
    expect(seed["ansible.builtin.shell"]).toMatchObject({ creates: "/etc/brightchain/recipients" });
  });

  it("enables and starts every service the plan restarts", () => {
    const steps = hostPlan(node, files, hostDirectories(node), artifacts);
    const planned = steps.filter((s) => s.id.startsWith("service-")).length;
    const started = play.tasks.filter(
      (x) => (x["ansible.builtin.systemd"] as { state?: string } | undefined)?.state === "started",
    );
    // Plus Postfix itself, which the plan reloads in its own step.
    expect(started.length).toBe(planned + 1);
  });
});

describe("every node of the matrix", () => {
  it.each(nodeMatrix.map((m) => [m.name, m.node] as const))("%s translates without an unrecognised step", (_name, node) => {
    const { play } = build(node);
    expect(play.tasks.length).toBeGreaterThan(10);
  });
});

describe("files withheld for lack of a secret", () => {
  it("are not shipped; the play requires them on the host, naming the variable", () => {
    const node = examplePrimary;
    const files = hostFiles(node, exampleSecrets);
    const secret = files.find((f) => f.secret)!;
    const playbook = gatewayPlaybook({
      node,
      files,
      directories: hostDirectories(node),
      artifacts,
      withheld: [{ path: secret.path, reason: "needs a secret: set GATEWAY_RENDER_SUBMISSION_USERS" }],
    });
    expect(playbook.sources.some((s) => s.file.path === secret.path)).toBe(false);
    const task = playbook.play.tasks.find(
      (t) => (t["ansible.builtin.file"] as { path?: string } | undefined)?.path === secret.path,
    )!;
    expect(task.name).toContain("GATEWAY_RENDER_SUBMISSION_USERS");
    expect(task["ansible.builtin.file"]).toMatchObject({ state: "file", mode: `0${secret.mode.toString(8)}` });
  });
});

describe("inventory", () => {
  it("names the node as the play does and says how to reach it", () => {
    const text = renderInventory("mail.brightchain.org", {
      host: "10.231.0.10",
      port: 22,
      user: "root",
      privateKeyFile: "/var/lib/lab/id",
      knownHostsFile: "/var/lib/lab/known_hosts",
    });
    expect(text).toBe(
      "[gateway]\nmail.brightchain.org ansible_host=10.231.0.10 ansible_port=22 ansible_user=root ansible_python_interpreter=/usr/bin/python3 " +
        'ansible_ssh_private_key_file=/var/lib/lab/id ansible_ssh_common_args="-o UserKnownHostsFile=/var/lib/lab/known_hosts -o StrictHostKeyChecking=yes"\n',
    );
  });

  it("escalates with sudo for a login other than root", () => {
    expect(renderInventory("mail2.brightchain.org", { host: "203.0.113.20", port: 2222, user: "deploy" })).toContain(
      "ansible_become=true",
    );
  });

  it("refuses a value INI cannot carry, naming the flag", () => {
    expect(() => renderInventory("m", { host: "10.0.0.1", port: 22, user: "root", knownHostsFile: "/tmp/a b" })).toThrow(
      /--known-hosts "\/tmp\/a b"/,
    );
  });
});
