import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";

/** A lab step that failed: which host (or "lab" for the machine itself), which step, and what the tool said. */
export class LabStepError extends Error {
  constructor(
    readonly host: string,
    readonly step: string,
    readonly command: string,
    readonly output: string,
  ) {
    super(`lab: host "${host}", step "${step}" failed: \`${command}\`\n${tail(output, 60)}`);
    this.name = "LabStepError";
  }
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface RunOptions {
  input?: string;
  /** Streams each output line as it arrives (debootstrap and apt take minutes; the user sees them move). */
  onLine?: (line: string) => void;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export function runCommand(file: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], env: options.env ?? process.env });
    let stdout = "";
    let stderr = "";
    let pendingLine = "";
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            stderr += `\n(killed after ${options.timeoutMs} ms)`;
            child.kill("SIGKILL");
          }, options.timeoutMs);
    const forwardLines = (chunk: string): void => {
      if (!options.onLine) return;
      const lines = (pendingLine + chunk).split("\n");
      pendingLine = lines.pop() ?? "";
      for (const line of lines) options.onLine(line);
    };
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      forwardLines(chunk);
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
      forwardLines(chunk);
    });
    child.on("error", (error) => {
      if (timer) clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ stdout, stderr, exitCode: code ?? 128 + (signal ? osConstants.signals[signal] : 0) });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

/** Runs a command that must succeed; a failure becomes a LabStepError naming host and step. */
export async function runStep(
  host: string,
  step: string,
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const command = [file, ...args].map(shellQuote).join(" ");
  let result: CommandResult;
  try {
    result = await runCommand(file, args, options);
  } catch (error) {
    throw new LabStepError(host, step, command, String(error));
  }
  if (result.exitCode !== 0) {
    throw new LabStepError(host, step, command, `exit code ${result.exitCode}\n${result.stdout}${result.stderr}`);
  }
  return result;
}

export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function tail(text: string, lines: number): string {
  const all = text.trimEnd().split("\n");
  return all.length > lines ? ["…", ...all.slice(-lines)].join("\n") : all.join("\n");
}

/** Polls `probe` until it returns a value, or fails with what the last attempt said once the deadline passes. */
export async function waitFor<T>(
  what: { host: string; step: string },
  deadlineMs: number,
  probe: () => Promise<T | undefined>,
  describeLastFailure: () => string,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  let delay = 50;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new LabStepError(what.host, what.step, `(waited ${Math.round(deadlineMs / 1000)} s)`, describeLastFailure());
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 500);
  }
}

/** Progress lines: elapsed seconds since `lab` started, so slow steps are visible without a profiler. */
export type ProgressReporter = (message: string) => void;

export function consoleProgress(startedAt = Date.now()): ProgressReporter {
  return (message) => {
    const seconds = ((Date.now() - startedAt) / 1000).toFixed(1).padStart(6);
    process.stderr.write(`[lab ${seconds}s] ${message}\n`);
  };
}
