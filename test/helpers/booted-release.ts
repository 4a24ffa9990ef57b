// A Debian release booted for real: systemd-nspawn --boot over a throwaway overlay of the release's package layer
// (release-root.ts: its systemd, its nodejs, its mail packages), with a network namespace of its own (loopback
// only), so a test can start rendered units under that release's systemd and read its journal. Booting takes
// about ten seconds; nothing of it outlives stop(): the container is powered off, the overlay unmounted, its
// cgroups and temp directory removed. The cached layers are never written.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { containerCgroupDirs, removeCgroupDirs } from "../../infra/lab/hosts";
import type { LabRelease } from "../../infra/lab/constants";
import { runCommand, shellQuote, type CommandResult } from "../../infra/lab/process";
import { ensurePackageLayer, type Progress } from "./release-root";

export type Result = CommandResult & { output: string };

export interface BootedRelease {
  release: LabRelease;
  /** The container's root as this machine sees it: files written here appear inside at once. */
  root: string;
  /** Runs argv inside the booted container (all its namespaces, as root); never throws for a non-zero exit. */
  exec(argv: readonly string[], input?: string): Promise<Result>;
  sh(script: string, input?: string): Promise<Result>;
  /** Powers the container off and removes everything boot made. */
  stop(): Promise<void>;
}

let booted = 0;

/**
 * Boots `release`. `prepare` runs first with the root mounted and a chrooted shell, to put files, users and masks
 * in place before systemd starts (units the layer's packages enable start at boot unless masked there).
 */
export async function bootRelease(
  release: LabRelease,
  progress: Progress,
  prepare: (root: string, chrootSh: (script: string) => Promise<Result>) => Promise<void>,
): Promise<BootedRelease> {
  const { dir: layer } = await ensurePackageLayer(release, progress);
  const temp = mkdtempSync(join(tmpdir(), `bc-${release}-boot-`));
  const [upper, work, root] = ["upper", "work", "root"].map((name) => join(temp, name)) as [string, string, string];
  for (const dir of [upper, work, root]) mkdirSync(dir);
  const name = `bc-boot-${process.pid}-${++booted}`;
  const cgroups = containerCgroupDirs(name);
  let nspawn: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let consoleText = "";

  const cleanUp = async (): Promise<void> => {
    if (nspawn !== undefined && nspawn.exitCode === null && nspawn.signalCode === null) {
      // nspawn turns SIGTERM into the container's poweroff; a guest that hangs is killed after 20 s.
      nspawn.kill("SIGTERM");
      const killer = setTimeout(() => nspawn?.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(killer);
    }
    await runCommand("umount", [root]);
    removeCgroupDirs(cgroups);
    rmSync(temp, { recursive: true, force: true });
  };

  try {
    const mounted = await runCommand("mount", [
      "-t",
      "overlay",
      "overlay",
      "-o",
      `lowerdir=${layer},upperdir=${upper},workdir=${work}`,
      root,
    ]);
    if (mounted.exitCode !== 0) throw new Error(`overlay on ${root}: ${mounted.stderr}`);
    const chrootSh = async (script: string): Promise<Result> => {
      const result = await runCommand("chroot", [root, "/bin/sh", "-c", script], { timeoutMs: 120_000 });
      return { ...result, output: `${result.stdout}${result.stderr}` };
    };
    await prepare(root, chrootSh);

    for (const dir of cgroups) mkdirSync(dir, { recursive: true });
    const joinCgroups = cgroups.map((dir) => `echo $$ > ${shellQuote(join(dir, "cgroup.procs"))}`).join(" && ");
    const command = [
      "systemd-nspawn",
      "--boot",
      `--directory=${root}`,
      `--machine=${name}`,
      "--private-network",
      "--register=no",
      "--keep-unit",
      "--console=pipe",
      "--resolv-conf=off",
      "--timezone=off",
      "--link-journal=no",
    ]
      .map(shellQuote)
      .join(" ");
    // As the lab does (infra/lab/hosts.ts): without a host systemd, nspawn must be put in a cgroup of its own.
    nspawn = spawn("sh", ["-c", `${joinCgroups} && SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 exec ${command}`], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const child = nspawn;
    exited = new Promise((resolve) => child.once("exit", () => resolve()));
    for (const stream of [child.stdout!, child.stderr!]) stream.on("data", (chunk: Buffer) => (consoleText += chunk.toString()));

    const leader = await waitForLeader(child, () => consoleText);
    const exec = async (argv: readonly string[], input?: string): Promise<Result> => {
      const result = await runCommand("nsenter", ["-t", String(leader), "-a", ...argv], { input, timeoutMs: 120_000 });
      return { ...result, output: `${result.stdout}${result.stderr}` };
    };
    const deadline = Date.now() + 90_000;
    for (;;) {
      const state = (await exec(["systemctl", "is-system-running"])).stdout.trim();
      if (state === "running" || state === "degraded") break;
      if (Date.now() > deadline)
        throw new Error(`${release} container did not finish booting (${state}):\n${consoleText.slice(-3000)}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    progress(`${release} container ${name} booted`);
    return { release, root, exec, sh: (script, input) => exec(["/bin/sh", "-c", script], input), stop: cleanUp };
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

/** The container's init: nspawn's one child, once it runs systemd. */
async function waitForLeader(nspawn: ChildProcess, consoleText: () => string): Promise<number> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (nspawn.exitCode !== null || nspawn.signalCode !== null) throw new Error(`systemd-nspawn exited:\n${consoleText()}`);
    const children = `/proc/${nspawn.pid}/task/${nspawn.pid}/children`;
    const leader = existsSync(children) ? Number(readFileSync(children, "utf8").trim().split(/\s+/)[0]) : NaN;
    if (leader > 0 && readOptional(`/proc/${leader}/comm`)?.trim() === "systemd") return leader;
    if (Date.now() > deadline) throw new Error(`no systemd in the container after 30 s:\n${consoleText()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}
