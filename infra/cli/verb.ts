// What a CLI verb is: main.ts dispatches on the first argument through a table of these.
import { FlagError, parseCommandLine, type FlagOptions } from "../../shared/cli-flags";

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

/** A verb's flags (shared/cli-flags.ts, as every CLI here parses them); a bad one is a UsageError, exit 2. */
export function parseFlags<const T extends FlagOptions>(args: readonly string[], options: T) {
  try {
    return parseCommandLine(args, options).values;
  } catch (error) {
    if (error instanceof FlagError) throw new UsageError(error.message);
    throw error;
  }
}
