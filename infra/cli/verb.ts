// What a CLI verb is: main.ts dispatches on the first argument through a table of these.

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

/** `--name value` and `--name=value` flags; anything unknown is a usage error naming it. */
export function parseFlags(args: string[], known: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const match = /^--([a-z][a-z-]*)(?:=(.*))?$/.exec(arg);
    if (!match)
      throw new UsageError(
        `unexpected argument ${JSON.stringify(arg)}; accepted flags: ${known.map((k) => `--${k}`).join(", ")}`,
      );
    const name = match[1]!;
    if (!known.includes(name))
      throw new UsageError(`unknown flag --${name}; accepted flags: ${known.map((k) => `--${k}`).join(", ")}`);
    const value = match[2] ?? args[++i];
    if (value === undefined || value === "") throw new UsageError(`--${name} needs a value`);
    flags.set(name, value);
  }
  return flags;
}
