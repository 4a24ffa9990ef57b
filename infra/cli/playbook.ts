// `gateway playbook`: the stack's node as an Ansible playbook + inventory, with the host files beside it exactly
// as `gateway render` writes them (the same function writes both), so `ansible-playbook` applies the plan
// `pulumi up` would run.
import { existsSync, mkdirSync, readdirSync, renameSync, chmodSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { gatewayPlaybook, renderInventory, renderPlaybookYaml, sourcePath, type InventoryConnection } from "../ansible";
import { knownHostsLine } from "../deploy/ssh";
import {
  GatewayConfigError,
  HOST_KEY_HOWTO,
  parseGatewayConfig,
  parseSshConnection,
  readStackConfigFiles,
  type SshConnection,
} from "../model/config";
import { MissingRuntimeBuildError, readRuntimeArtifacts } from "../plan/artifacts";
import type { RuntimeArtifact } from "../plan";
import { renderStack } from "./render";
import { SECRET_ENVIRONMENT } from "./secrets";
import { parseFlags, UsageError, type CliIo, type CliVerb } from "./verb";

const RUNTIME_DIST_VARIABLE = "GATEWAY_RUNTIME_DIST";

const HELP = `Usage: gateway playbook --stack NAME --out DIR [--dir PROJECTDIR] [connection flags]

Writes an Ansible playbook that brings a bare server to the stack's node: the same ordered steps as
\`pulumi up\` (packages, system user, spool tree, files with exact modes, DKIM key if absent, firewall,
certificate, services, postfix check before every Postfix reload, verification), with handlers for the
reloads and restarts each file asks for. A second run reports changed=0; --check --diff shows drift.

  DIR/playbook.yml    one play for the node's hostname
  DIR/inventory.ini   the node, reached as the stack's gateway:ssh says (or the flags below)
  DIR/known_hosts     the stack's pinned gateway:ssh.hostKey, which the inventory makes the only key accepted
  DIR/files/…         every host file at its host path, byte-identical to \`gateway render\`, and the runtime
  DIR/manifest.json   as \`gateway render\` writes it (compare it with a host or another engine)
  DIR/dns.zone        the DNS records this stack owns (Ansible does not publish them)

Apply:  ansible-playbook -i DIR/inventory.ini DIR/playbook.yml
Drift:  ansible-playbook -i DIR/inventory.ini DIR/playbook.yml --check --diff

Flags:
  --stack NAME          reads Pulumi.yaml and Pulumi.NAME.yaml
  --out DIR             output folder; must not exist yet or be empty
  --dir PROJECTDIR      folder holding the Pulumi files (default: the current folder)
  --host ADDRESS        SSH address (default: gateway:ssh.host, else the node's hostname)
  --port N              SSH port (default: gateway:ssh.port, else 22)
  --user NAME           SSH login (default: gateway:ssh.user, else root; anyone else uses sudo)
  --key FILE            SSH private key file (default: the SSH agent / ~/.ssh)
  --known-hosts FILE    known_hosts to verify the host against, strictly (default: DIR/known_hosts, written
                        from gateway:ssh.hostKey; without either the playbook is not written)
  --runtime-dist DIR    the built runtime (*.cjs) to install (default: $${RUNTIME_DIST_VARIABLE}, else
                        PROJECTDIR/runtime/dist; build it with \`npm run build --workspace runtime\`)

Secrets come from the same variables as \`gateway render\`:
  ${SECRET_ENVIRONMENT.submissionUsers}, ${SECRET_ENVIRONMENT.certbotCloudflareToken}
A file that needs an unset secret is not written; the playbook then requires it to be on the host already
and fails naming the variable if it is not.

Exit codes: 0 written; 2 bad flag or configuration; 1 anything else.
`;

function portFlag(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535)
    throw new UsageError(`--port ${JSON.stringify(value)} is invalid; expected a TCP port 1–65535`);
  return port;
}

/**
 * Without --known-hosts, the stack's pinned host key (gateway:ssh.hostKey) in DIR/known_hosts: Ansible then
 * refuses any other key, as `pulumi up` does. Without either, whoever answers on the address would get root.
 */
function pinnedKnownHosts(out: string, flags: Partial<InventoryConnection>, ssh: SshConnection): string {
  if (ssh.hostKey === undefined) throw new GatewayConfigError("gateway:ssh.hostKey", undefined, HOST_KEY_HOWTO);
  const file = path.join(out, "known_hosts");
  const line = knownHostsLine({ host: flags.host ?? ssh.host, port: flags.port ?? ssh.port, hostKey: ssh.hostKey });
  writeFileSync(file, line, { mode: 0o644 });
  return file;
}

export interface PlaybookResult {
  hostname: string;
  tasks: number;
  handlers: number;
  files: number;
  withheld: { path: string; reason: string }[];
}

export function writePlaybook(
  projectDir: string,
  stack: string,
  out: string,
  options: { env: CliIo["env"]; runtimeDist: string; runtimeDistSource: string; connection: Partial<InventoryConnection> },
): PlaybookResult {
  if (existsSync(out) && readdirSync(out).length > 0) {
    throw new UsageError(
      `--out ${out} is not empty; give a new folder or empty it, so no stale file from an earlier run survives`,
    );
  }
  let artifacts: RuntimeArtifact[];
  try {
    artifacts = readRuntimeArtifacts(options.runtimeDist, options.runtimeDistSource);
  } catch (error) {
    // A bad --runtime-dist is a usage error (exit 2), like every other bad flag.
    if (error instanceof MissingRuntimeBuildError) throw new UsageError(error.message);
    throw error;
  }
  mkdirSync(out, { recursive: true });
  const filesDir = path.join(out, "files");
  const rendered = renderStack(projectDir, stack, filesDir, options.env);
  // render's two reports describe the node, not host paths: they sit beside the playbook.
  renameSync(path.join(filesDir, "manifest.json"), path.join(out, "manifest.json"));
  renameSync(path.join(filesDir, "dns.zone"), path.join(out, "dns.zone"));

  const { values } = readStackConfigFiles(projectDir, stack);
  const node = parseGatewayConfig(values);
  const ssh = parseSshConnection(values);
  const withheld = rendered.manifest.withheld.map((w) => ({ path: w.path, reason: w.reason }));
  const playbook = gatewayPlaybook({
    node,
    files: [...rendered.written, ...rendered.withheld].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
    directories: rendered.directories,
    artifacts,
    withheld,
  });

  const writtenPaths = new Set(rendered.written.map((f) => f.path));
  for (const source of playbook.sources) {
    if (writtenPaths.has(source.file.path)) continue;
    // The runtime artifacts: render does not write them, the playbook installs them.
    const target = path.join(out, sourcePath(source.file));
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, source.file.content, { mode: 0o600 });
    chmodSync(target, source.file.mode);
  }

  writeFileSync(
    path.join(out, "playbook.yml"),
    renderPlaybookYaml(playbook, [
      `Written by \`gateway playbook --stack ${stack}\` from Pulumi.yaml + Pulumi.${stack}.yaml; regenerate, don't edit.`,
      `The same steps as \`pulumi up --stack ${stack}\`, in the same order (infra/plan).`,
    ]),
  );
  writeFileSync(
    path.join(out, "inventory.ini"),
    renderInventory(node.host.hostname, {
      host: options.connection.host ?? ssh.host,
      port: options.connection.port ?? ssh.port,
      user: options.connection.user ?? ssh.user,
      ...(options.connection.privateKeyFile !== undefined ? { privateKeyFile: options.connection.privateKeyFile } : {}),
      knownHostsFile: options.connection.knownHostsFile ?? pinnedKnownHosts(out, options.connection, ssh),
    }),
  );
  return {
    hostname: node.host.hostname,
    tasks: playbook.play.tasks.length,
    handlers: playbook.play.handlers.length,
    files: playbook.sources.length,
    withheld,
  };
}

export const playbookVerb: CliVerb = {
  summary: "write an Ansible playbook + inventory that applies a stack's node (same plan as pulumi up)",
  help: HELP,
  run: async (args, io) => {
    const flags = parseFlags(args, {
      stack: { type: "string" },
      out: { type: "string" },
      dir: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      user: { type: "string" },
      key: { type: "string" },
      "known-hosts": { type: "string" },
      "runtime-dist": { type: "string" },
    });
    const { stack, out, host, port, user, key } = flags;
    if (stack === undefined) throw new UsageError("--stack NAME is required (the NAME of Pulumi.NAME.yaml)");
    if (out === undefined) throw new UsageError("--out DIR is required");
    const projectDir = path.resolve(io.cwd, flags.dir ?? ".");
    const distFlag = flags["runtime-dist"];
    const distEnv = io.env[RUNTIME_DIST_VARIABLE];
    const [runtimeDist, runtimeDistSource] =
      distFlag !== undefined
        ? [path.resolve(io.cwd, distFlag), "--runtime-dist"]
        : distEnv
          ? [path.resolve(io.cwd, distEnv), RUNTIME_DIST_VARIABLE]
          : [path.join(projectDir, "runtime", "dist"), "the default runtime build folder"];
    const knownHosts = flags["known-hosts"];
    const result = writePlaybook(projectDir, stack, path.resolve(io.cwd, out), {
      env: io.env,
      runtimeDist,
      runtimeDistSource,
      connection: {
        ...(host !== undefined ? { host } : {}),
        ...(port !== undefined ? { port: portFlag(port) } : {}),
        ...(user !== undefined ? { user } : {}),
        ...(key !== undefined ? { privateKeyFile: path.resolve(io.cwd, key) } : {}),
        ...(knownHosts !== undefined ? { knownHostsFile: path.resolve(io.cwd, knownHosts) } : {}),
      },
    });
    io.stdout(
      `${result.hostname}: playbook.yml (${result.tasks} tasks, ${result.handlers} handlers), inventory.ini and ${result.files} files written to ${out}\n` +
        `apply: ansible-playbook -i ${path.join(out, "inventory.ini")} ${path.join(out, "playbook.yml")}\n`,
    );
    for (const w of result.withheld) io.stdout(`withheld ${w.path}: ${w.reason}; the playbook requires it on the host\n`);
    return 0;
  },
};
