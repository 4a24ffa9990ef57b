// What a CLI verb is: main.ts dispatches on the first argument through a table of these.
import { parseArgs, type ParseArgsConfig } from "node:util";

type FlagOptions = NonNullable<ParseArgsConfig["options"]>;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  cwd: string;
}

export interface CliVerb {
  /** One line for `gateway --help`. */
  summary: string;
  /** Full help for `gateway <verb> --help`: every flag and environment variable. */
  help: string;
  /** Resolves to the process exit code: 0 success, 2 bad usage or configuration, 1 anything else. */
  run: (args: string[], io: CliIo) => Promise<number>;
}

/** Thrown for a bad flag or value; main.ts turns it into exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * A verb's flags, parsed by node:util's parseArgs in strict mode: `--name value` and `--name=value`, a string
 * flag given once unless it is `multiple`. Every verb's errors have one shape, `--flag …; accepted flags: …`,
 * and end in exit 2; parseArgs' own messages name no accepted flag, so the arguments are checked on its tokens
 * first.
 */
export function parseFlags<const T extends FlagOptions>(args: readonly string[], options: T) {
  const accepted = `accepted flags: ${Object.keys(options)
    .map((name) => `--${name}`)
    .join(", ")}`;
  const { tokens } = parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true });
  const seen = new Set<string>();
  for (const token of tokens) {
    if (token.kind === "positional") throw new UsageError(`unexpected argument ${JSON.stringify(token.value)}; ${accepted}`);
    if (token.kind !== "option") continue;
    const option = Object.hasOwn(options, token.name) ? options[token.name] : undefined;
    if (option === undefined) throw new UsageError(`unknown flag ${token.rawName}; ${accepted}`);
    if (option.type === "boolean" && token.value !== undefined) throw new UsageError(`${token.rawName} takes no value`);
    // Without a value, or with the next flag taken as its value (`--stack --out DIR`).
    if (
      option.type === "string" &&
      (token.value === undefined || token.value === "" || (!token.inlineValue && token.value.startsWith("-")))
    )
      throw new UsageError(`${token.rawName} needs a value`);
    if (seen.has(token.name) && !option.multiple) throw new UsageError(`${token.rawName} is given twice; give it once`);
    seen.add(token.name);
  }
  return parseArgs({ args: [...args], options, strict: true, allowPositionals: false }).values;
}
