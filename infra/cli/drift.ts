// `gateway drift --stack NAME`: is the node's host still what the code deploys? The same checks and the same
// read-only observation script as the HostState resource `pulumi preview --refresh` reads (infra/plan/hostState.ts),
// run over SSH with the stack's pinned host key: for a stack deployed with Ansible, and for a drift report a
// person reads at a glance.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { labStackConfig } from "../deploy/labStack";
import { runRemote, type RemoteConnection } from "../deploy/ssh";
import { LAB_STATE_DIR } from "../lab/constants";
import { labSshPaths } from "../lab/hosts";
import {
  HOST_KEY_HOWTO,
  GatewayConfigError,
  parseGatewayConfig,
  parseSshConnection,
  readStackConfigFiles,
  type FlatConfig,
} from "../model/config";
import { formatDrift, hostDrift, hostState, parseObservation, type HostDrift } from "../plan";
import { readRuntimeArtifacts } from "../plan/artifacts";
import { shellQuote } from "../plan/shell";
import { hostDirectories, hostFiles } from "../render";
import { missingSecrets, resolveSecrets } from "./secrets";
import { parseFlags, UsageError, type CliIo, type CliVerb } from "./verb";

const HELP = `Usage: gateway drift --stack NAME [--dir PROJECTDIR] [--identity FILE] [--runtime-dist DIR] [--lab]

Reads the stack's host back over SSH (gateway:ssh, its pinned hostKey) and compares it with what the code
deploys: every managed file's content, mode and owner, every directory, every service enabled and active,
the DKIM private key present and private, the firewall's rules. Prints one line per difference; nothing is
changed on the host. \`pulumi up\` repairs what it names (Pulumi.yaml refreshes first); with Ansible, run the
playbook again. The same checks run inside \`pulumi preview --refresh\` (the HostState resource).

  --stack NAME         reads Pulumi.yaml and Pulumi.NAME.yaml
  --dir PROJECTDIR     folder holding the Pulumi files (default: the current folder)
  --identity FILE      SSH private key (default: the SSH agent)
  --runtime-dist DIR   the built runtime the deploy installed (default: PROJECTDIR/runtime/dist)
  --lab                the stack as deployed to the lab (lab addresses, host keys and SSH key)

Secret files (SASL accounts, the Cloudflare token) are compared by content only when their secret is given as
for \`gateway render\` (GATEWAY_RENDER_SUBMISSION_USERS, GATEWAY_RENDER_CERTBOT_CLOUDFLARE_TOKEN); otherwise
their mode and owner are.

Exit codes: 0 no drift; 1 drift (each named) or the host could not be read; 2 bad flag or configuration.
`;

export interface StackDrift {
  host: string;
  drifts: HostDrift[];
}

export interface StackDriftOptions {
  stack: string;
  projectDir: string;
  runtimeDist?: string;
  identityFile?: string;
  lab?: boolean;
  env?: Record<string, string | undefined>;
}

/** The stack's expected host state, observed over SSH and compared. */
export async function stackDrift(options: StackDriftOptions): Promise<StackDrift> {
  const { values } = readStackConfigFiles(options.projectDir, options.stack);
  let flat: FlatConfig = values;
  let privateKey: string | undefined;
  if (options.lab) {
    const lab = labStackConfig(options.stack, options.projectDir);
    flat = { ...values, ...lab.overrides, ...lab.secrets };
    privateKey = readFileSync(labSshPaths(LAB_STATE_DIR).privateKey, "utf8");
  }
  if (options.identityFile) privateKey = readFileSync(options.identityFile, "utf8");
  const node = parseGatewayConfig(flat);
  const ssh = parseSshConnection(flat);
  if (ssh.hostKey === undefined) throw new GatewayConfigError("gateway:ssh.hostKey", undefined, HOST_KEY_HOWTO);
  // As for `gateway render` (the lab's own secrets in place of the environment): a secret not given is rendered as
  // a random marker, and a file carrying one is compared by mode and owner only.
  const { secrets, standIns } = resolveSecrets(options.lab ? {} : (options.env ?? {}), flat);
  const files = hostFiles(node, secrets);
  const withheld = new Set(files.filter((file) => missingSecrets(file, standIns).length > 0).map((file) => file.path));
  const dist = options.runtimeDist ?? path.join(options.projectDir, "runtime", "dist");
  const spec = hostState(node, files, hostDirectories(node), readRuntimeArtifacts(dist, "--runtime-dist"), {
    sshPort: ssh.port,
    contentNotCompared: withheld,
  });
  const connection: RemoteConnection = {
    host: ssh.host,
    port: ssh.port,
    user: ssh.user,
    hostKey: ssh.hostKey,
    ...(privateKey ? { privateKey } : {}),
  };
  const command = ssh.user === "root" ? spec.script : `sudo -n sh -c ${shellQuote(spec.script)}`;
  const result = await runRemote(connection, command, { stdin: spec.stdin, timeoutMs: 120_000 });
  if (result.exitCode !== 0) {
    throw new Error(`could not read ${ssh.user}@${ssh.host}:${ssh.port} (exit ${result.exitCode}): ${result.stderr.trim()}`);
  }
  return { host: ssh.host, drifts: hostDrift(spec.checks, parseObservation(result.stdout)) };
}

async function run(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, {
    stack: { type: "string" },
    dir: { type: "string" },
    identity: { type: "string" },
    "runtime-dist": { type: "string" },
    lab: { type: "boolean" },
  });
  const stack = flags.stack;
  if (stack === undefined) throw new UsageError("--stack is required, e.g. --stack primary");
  const result = await stackDrift({
    stack,
    projectDir: path.resolve(io.cwd, flags.dir ?? "."),
    lab: flags.lab ?? false,
    env: io.env,
    ...(flags.identity ? { identityFile: path.resolve(io.cwd, flags.identity) } : {}),
    ...(flags["runtime-dist"] ? { runtimeDist: path.resolve(io.cwd, flags["runtime-dist"]) } : {}),
  });
  const report = `drift ${stack} (${result.host}):\n${formatDrift(result.drifts)}\n`;
  if (result.drifts.length === 0) {
    io.stdout(report);
    return 0;
  }
  io.stdout(report);
  io.stderr(`drift ${stack}: ${result.drifts.length} difference(s); \`pulumi up --stack ${stack}\` repairs them\n`);
  return 1;
}

export const driftVerb: CliVerb = {
  summary: "read a stack's host back over SSH and name every file, service, key or firewall rule that drifted",
  help: HELP,
  run,
};
