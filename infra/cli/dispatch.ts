// `gateway <verb> …`: one table of verbs, so adding a verb is one import and one line here.
import { GatewayConfigError } from "../model/config";
import { labDeployVerb } from "./deploy";
import { doctorVerb } from "./doctor";
import { driftVerb } from "./drift";
import { labVerb } from "./lab";
import { playbookVerb } from "./playbook";
import { renderVerb } from "./render";
import { UsageError, type CliIo, type CliVerb } from "./verb";

const verbs: Record<string, CliVerb> = {
  render: renderVerb,
  drift: driftVerb,
  doctor: doctorVerb,
  playbook: playbookVerb,
  "lab-deploy": labDeployVerb,
  lab: labVerb,
};

function overview(): string {
  const width = Math.max(...Object.keys(verbs).map((v) => v.length));
  return [
    "Usage: gateway <verb> [flags]",
    "",
    "BrightChain Email Gateway as code: every DNS record and host file of a node, derived from the Pulumi",
    "stack configuration (Pulumi.yaml + Pulumi.<stack>.yaml).",
    "",
    "Verbs:",
    ...Object.entries(verbs).map(([name, verb]) => `  ${name.padEnd(width)}  ${verb.summary}`),
    "",
    "`gateway <verb> --help` explains the verb's flags. Deploying is `pulumi up --stack <stack>`.",
    "",
  ].join("\n");
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    if (name === undefined) {
      io.stderr(overview());
      return 2;
    }
    io.stdout(overview());
    return 0;
  }
  const verb = verbs[name];
  if (verb === undefined) {
    io.stderr(`gateway: unknown verb ${JSON.stringify(name)}; accepted: ${Object.keys(verbs).join(", ")}\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    io.stdout(verb.help);
    return 0;
  }
  try {
    return await verb.run(rest, io);
  } catch (err) {
    if (err instanceof GatewayConfigError || err instanceof UsageError) {
      io.stderr(`gateway ${name}: ${err.message}\n`);
      return 2;
    }
    io.stderr(`gateway ${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}
