import { ChildProcess, spawn } from "node:child_process";

/**
 * One lab per machine, and several engineers' suites may want it at once: every lab user serialises on this
 * lock file. flock(1) holds it in a child process, so a crashed holder releases it with its process.
 */
export const LAB_LOCK_FILE = "/run/brightchain-lab.lock";

/** Resolves once the lab lock is held; call the returned function to release it. */
export function takeLabLock(deadlineMs: number): Promise<() => void> {
  return takeFileLock(LAB_LOCK_FILE, deadlineMs);
}

/**
 * An exclusive flock(1) on `file`, held by a child process until the returned function is called (or this
 * process dies). Used for the lab itself and for each base image, which a host suite may build while a lab
 * suite does.
 */
export async function takeFileLock(file: string, deadlineMs: number): Promise<() => void> {
  const holder: ChildProcess = spawn(
    "flock",
    // --no-fork: the lock is held by the process we spawned and by nothing else, so kill() releases it at once,
    // even when the caller's event loop is blocked next (a spawnSync), which stdin's EOF would wait for.
    [
      "--exclusive",
      "--no-fork",
      "--timeout",
      String(Math.ceil(deadlineMs / 1000)),
      file,
      "sh",
      "-c",
      "echo locked; exec cat >/dev/null",
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  await new Promise<void>((resolve, reject) => {
    let stderr = "";
    holder.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    holder.stdout?.once("data", () => resolve());
    holder.once("error", (error) => reject(new Error(`lab: could not run flock for ${file}: ${error.message}`)));
    holder.once("exit", (code) =>
      reject(new Error(`lab: could not take ${file} within ${deadlineMs} ms (flock exit ${code}): ${stderr}`)),
    );
  });
  return () => {
    holder.stdin?.end();
    holder.kill();
  };
}
