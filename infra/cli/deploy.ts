// `gateway lab-deploy --stack NAME`: deploy engine 1 onto the lab. The Pulumi program itself runs, its
// remote commands executed over SSH on the stack's lab host and its DNS records published to the lab DNS.
import * as path from "node:path";
import { DeployStepError, deployStackToLab } from "../deploy";
import { parseFlags, UsageError, type CliIo, type CliVerb } from "./verb";

const HELP = `Usage: gateway lab-deploy --stack NAME [--dir PROJECTDIR] [--runtime-dist DIR]

Runs the Pulumi program (Pulumi.yaml's main) for the stack the way \`pulumi up\` would, against the lab
(\`gateway lab up\` first): every remote.Command is executed over SSH on the stack's lab host in the order
the program's dependencies impose, and the DNS records go to the lab DNS instead of Cloudflare. The stack
files are used as they are, with the lab's addresses, SSH key and ACME server (pebble, http-01) laid over.
The lab is the only target: a real node is deployed with \`pulumi up --stack NAME\`.
A second run executes only what changed since the last one: with nothing changed it executes nothing.

  --stack NAME          reads Pulumi.yaml and Pulumi.NAME.yaml (primary → lab host mail, relay → mail2)
  --dir PROJECTDIR      folder holding the Pulumi files (default: the current folder)
  --runtime-dist DIR    the built runtime (*.cjs) (default: PROJECTDIR/runtime/dist)

Exit codes: 0 deployed; 2 bad flag or configuration; 1 a step failed (host, step, command and output shown).
`;

async function run(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, { stack: { type: "string" }, dir: { type: "string" }, "runtime-dist": { type: "string" } });
  const stack = flags.stack;
  if (stack === undefined) throw new UsageError("--stack is required, e.g. --stack primary");
  const projectDir = path.resolve(io.cwd, flags.dir ?? ".");
  const runtimeDist = flags["runtime-dist"];
  try {
    const result = await deployStackToLab({
      stack,
      projectDir,
      ...(runtimeDist ? { runtimeDist: path.resolve(io.cwd, runtimeDist) } : {}),
      progress: (line) => io.stderr(`${line}\n`),
    });
    const counts = { create: 0, update: 0, same: 0, delete: 0 };
    for (const resource of result.resources) counts[resource.action]++;
    io.stdout(
      result.executed.length === 0
        ? `lab-deploy ${stack}: no changes (${result.resources.length} resources unchanged) in ${result.seconds.toFixed(1)} s\n`
        : `lab-deploy ${stack}: ${counts.create} created, ${counts.update} updated, ${counts.same} unchanged in ${result.seconds.toFixed(1)} s\n`,
    );
    return 0;
  } catch (error) {
    if (error instanceof DeployStepError) {
      io.stderr(`${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

export const labDeployVerb: CliVerb = {
  summary: "run the Pulumi program against the lab: its remote commands over SSH, its DNS to the lab DNS",
  help: HELP,
  run,
};
