// Every CLI's flags go through one parser (shared/cli-flags.ts: node:util parseArgs, strict), so a bad flag reads
// the same whichever `gateway` verb (exit 2) or runtime command (exit 64) it was given to. The dispatcher is
// called in-process; the runtime's commands run as processes.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../../infra/cli/dispatch";
import { parseFlags, UsageError } from "../../infra/cli/verb";
import { FlagError, parseCommandLine } from "../../shared/cli-flags";

async function gateway(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    env: {},
    cwd: process.cwd(),
  });
  return { code, stdout, stderr };
}

describe("flags of every verb", () => {
  it.each([
    ["render", "--stack, --out, --dir"],
    ["playbook", "--stack, --out, --dir, --host, --port, --user, --key, --known-hosts, --runtime-dist"],
    ["lab-deploy", "--stack, --dir, --runtime-dist"],
    ["drift", "--stack, --dir, --identity, --runtime-dist, --lab"],
    ["lab up", "--zone, --release"],
  ])("%s: an unknown flag exits 2 naming it and every accepted flag", async (verb, accepted) => {
    const run = await gateway([...verb.split(" "), "--bogus", "1"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(`gateway ${verb.split(" ")[0]}: unknown flag --bogus; accepted flags: ${accepted}\n`);
  });

  it.each(["render", "playbook", "lab-deploy", "drift"])("%s: a flag without its value exits 2 naming it", async (verb) => {
    const run = await gateway([verb, "--stack"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(`gateway ${verb}: --stack needs a value\n`);
  });
});

describe("parseFlags", () => {
  const options = { stack: { type: "string" }, zone: { type: "string", multiple: true }, lab: { type: "boolean" } } as const;

  it("takes --name value and --name=value, repeats a multiple flag, a boolean alone", () => {
    expect(parseFlags(["--stack", "primary", "--zone=a=1", "--zone", "b=2", "--lab"], options)).toEqual({
      stack: "primary",
      zone: ["a=1", "b=2"],
      lab: true,
    });
  });

  it.each([
    [["--stack", "--lab"], "--stack needs a value"],
    [["--stack="], "--stack needs a value"],
    [["--stack", "a", "--stack", "b"], "--stack is given twice; give it once"],
    [["--lab=yes"], "--lab takes no value"],
    [["primary"], 'unexpected argument "primary"; accepted flags: --stack, --zone, --lab'],
    [["-s", "primary"], "unknown flag -s; accepted flags: --stack, --zone, --lab"],
  ])("refuses %j: %s", (args, message) => {
    expect(() => parseFlags(args, options)).toThrow(UsageError);
    expect(() => parseFlags(args, options)).toThrow(message);
  });
});

describe("the runtime's commands", () => {
  it.each([
    ["brightchain-send", "--from, --to, --subject, --file"],
    ["brightchain-store", "--recipient, --folder, --json, --store"],
  ])("%s: an unknown flag exits 64 in the same words, with the usage", (command, accepted) => {
    const run = spawnSync(process.execPath, ["--import", "tsx", join(__dirname, `../../runtime/bin/${command}.ts`), "--bogus"], {
      encoding: "utf8",
      env: { PATH: process.env.PATH },
    });
    expect(run.status).toBe(64);
    expect(run.stderr).toMatch(new RegExp(`^${command}: unknown flag --bogus; accepted flags: ${accepted}\\nusage: ${command} `));
  });

  it("a command's operands are positionals, up to the number it takes", () => {
    const options = { json: { type: "boolean" } } as const;
    expect(parseCommandLine(["show", "abcdef12", "--json"], options, 2)).toEqual({
      values: { json: true },
      positionals: ["show", "abcdef12"],
    });
    expect(() => parseCommandLine(["show", "a", "b"], options, 2)).toThrow(FlagError);
    expect(() => parseCommandLine(["show", "a", "b"], options, 2)).toThrow('unexpected argument "b"; accepted flags: --json');
  });
});
