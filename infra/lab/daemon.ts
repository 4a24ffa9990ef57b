import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { LabProcessRecord } from "./state";
import { waitFor } from "./process";

/**
 * Starts a daemon that outlives the `lab up` process (later `lab test` / `lab down` runs find it by pid).
 * Output goes to a log file so a failed readiness check can show what the daemon said.
 */
export function startDetached(
  file: string,
  args: readonly string[],
  logFile: string,
  commandLineMarker: string,
  env: NodeJS.ProcessEnv = process.env,
): LabProcessRecord {
  const log = openSync(logFile, "a");
  try {
    const child = spawn(file, args, { detached: true, stdio: ["ignore", log, log], env });
    if (child.pid === undefined) throw new Error(`lab: could not start ${file}; see ${logFile}`);
    child.unref();
    return { pid: child.pid, commandLineMarker };
  } finally {
    closeSync(log);
  }
}

/** True only while the pid still runs the command the lab started (a recycled pid belongs to someone else). */
export function isLabProcessAlive(record: LabProcessRecord): boolean {
  try {
    const stat = readFileSync(`/proc/${record.pid}/stat`, "utf8");
    if (/^\d+ \(.*\) Z/.test(stat)) return false;
    return readFileSync(`/proc/${record.pid}/cmdline`, "utf8").includes(record.commandLineMarker);
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL if the process has not gone within the grace period. */
export async function stopLabProcess(host: string, what: string, record: LabProcessRecord, graceMs = 15_000): Promise<void> {
  if (!isLabProcessAlive(record)) return;
  process.kill(record.pid, "SIGTERM");
  try {
    await waitFor(
      { host, step: `stop ${what}` },
      graceMs,
      async () => (isLabProcessAlive(record) ? undefined : true),
      () => "",
    );
  } catch {
    if (isLabProcessAlive(record)) process.kill(record.pid, "SIGKILL");
    await waitFor(
      { host, step: `kill ${what}` },
      5_000,
      async () => (isLabProcessAlive(record) ? undefined : true),
      () => `pid ${record.pid} survived SIGKILL`,
    );
  }
}

export function readLogTail(logFile: string, lines = 40): string {
  try {
    return readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return `(no log at ${logFile})`;
  }
}
