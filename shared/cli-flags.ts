// Command-line flags for every CLI in the repository, the `gateway` verbs and the runtime's brightchain-send and
// brightchain-store alike: node:util's parseArgs in strict mode, with errors in one shape that names the flag and
// every accepted one. parseArgs' own messages name no accepted flag, so the arguments are checked on its tokens
// first; the strict parse after that is what returns the typed values.
import { parseArgs, type ParseArgsConfig } from "node:util";

export type FlagOptions = NonNullable<ParseArgsConfig["options"]>;

/** A bad flag or argument; each CLI turns it into its usage exit code (2 for `gateway`, 64 for the runtime's). */
export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

/**
 * `--name value` and `--name=value`; a string flag once unless it is `multiple`; at most `maxPositionals`
 * arguments that are not flags (a sub-command and its operand).
 */
export function parseCommandLine<const T extends FlagOptions>(args: readonly string[], options: T, maxPositionals = 0) {
  const accepted = `accepted flags: ${Object.keys(options)
    .map((name) => `--${name}`)
    .join(", ")}`;
  const { tokens } = parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true });
  const seen = new Set<string>();
  let positionals = 0;
  for (const token of tokens) {
    if (token.kind === "positional") {
      if (++positionals > maxPositionals) throw new FlagError(`unexpected argument ${JSON.stringify(token.value)}; ${accepted}`);
      continue;
    }
    if (token.kind !== "option") continue;
    const option = Object.hasOwn(options, token.name) ? options[token.name] : undefined;
    if (option === undefined) throw new FlagError(`unknown flag ${token.rawName}; ${accepted}`);
    if (option.type === "boolean" && token.value !== undefined) throw new FlagError(`${token.rawName} takes no value`);
    // Without a value, or with the next flag taken as its value (`--stack --out DIR`).
    if (
      option.type === "string" &&
      (token.value === undefined || token.value === "" || (!token.inlineValue && token.value.startsWith("-")))
    )
      throw new FlagError(`${token.rawName} needs a value`);
    if (seen.has(token.name) && !option.multiple) throw new FlagError(`${token.rawName} is given twice; give it once`);
    seen.add(token.name);
  }
  return parseArgs({ args: [...args], options, strict: true, allowPositionals: maxPositionals > 0 });
}
