import { ChildProcess, spawn } from "node:child_process";

/**
 * One lab per machine, and several engineers' suites may want it at once: every lab user serialises on this
 * lock file. flock(1) holds it in a child process, so a crashed holder releases it with its process.
 */
export const LAB_LOCK_FILE = "/run/brightchain-lab.lock";

/** Resolves once the lock is held; call the returned function to release it. */
export async function takeLabLock(deadlineMs: number): Promise<() => void> {
  const holder: ChildProcess = spawn(
    "flock",
    [
      "--exclusive",
      "--timeout",
      String(Math.ceil(deadlineMs / 1000)),
      LAB_LOCK_FILE,
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
    holder.once("exit", (code) =>
      reject(new Error(`lab: could not take ${LAB_LOCK_FILE} within ${deadlineMs} ms (flock exit ${code}): ${stderr}`)),
    );
  });
  return () => {
    holder.stdin?.end();
    holder.kill();
  };
}
