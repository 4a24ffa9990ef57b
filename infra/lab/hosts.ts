import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { createConnection } from "node:net";
import { dirname, join } from "node:path";
import { LAB_APT_CACHE_DIR, LAB_BRIDGE, LAB_GATEWAY_IP, LAB_PREFIX_LENGTH, LabHostSpec } from "./constants";
import { isLabProcessAlive, readLogTail, startDetached, stopLabProcess } from "./daemon";
import { CommandResult, LabStepError, runCommand, runStep, shellQuote, waitFor } from "./process";
import { LabProcessRecord } from "./state";

export interface LabHostPaths {
  dir: string;
  upper: string;
  work: string;
  root: string;
  supervisorScript: string;
  nspawnPidFile: string;
  consoleLog: string;
}

export function labHostPaths(stateDir: string, name: string): LabHostPaths {
  const dir = join(stateDir, "hosts", name);
  return {
    dir,
    upper: join(dir, "upper"),
    work: join(dir, "work"),
    root: join(dir, "root"),
    supervisorScript: join(dir, "supervise.sh"),
    nspawnPidFile: join(dir, "nspawn.pid"),
    consoleLog: join(dir, "console.log"),
  };
}

export interface LabSshPaths {
  privateKey: string;
  publicKey: string;
  knownHosts: string;
}

export function labSshPaths(stateDir: string): LabSshPaths {
  const dir = join(stateDir, "ssh");
  return { privateKey: join(dir, "id_ed25519"), publicKey: join(dir, "id_ed25519.pub"), knownHosts: join(dir, "known_hosts") };
}

export const machineName = (host: LabHostSpec): string => `bclab-${host.name}`;

/** networkd config: static address; no router advertisements, which would stall network-online for 2 minutes. */
export function renderHostNetwork(host: LabHostSpec): string {
  return [
    "[Match]",
    "Name=host0",
    "",
    "[Network]",
    `Address=${host.ipv4}/${LAB_PREFIX_LENGTH}`,
    `Gateway=${LAB_GATEWAY_IP}`,
    `DNS=${LAB_GATEWAY_IP}`,
    "IPv6AcceptRA=no",
    "LinkLocalAddressing=no",
    "",
  ].join("\n");
}

export function renderHostsFile(host: LabHostSpec): string {
  return `127.0.0.1\tlocalhost\n${host.ipv4}\t${host.fqdn} ${host.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}

/**
 * Where the container's cgroup lives in each mounted hierarchy. nspawn without a host systemd must be put in a
 * cgroup of its own first, or two containers share one and collide; the hybrid layout (v1 name=systemd plus
 * unified) needs both, a pure cgroup2 machine only the root one.
 */
export function containerCgroupDirs(name: string, cgroupRoot = "/sys/fs/cgroup"): string[] {
  if (existsSync(join(cgroupRoot, "cgroup.controllers"))) return [join(cgroupRoot, "machine", name)];
  return ["systemd", "unified"]
    .filter((hierarchy) => existsSync(join(cgroupRoot, hierarchy)))
    .map((hierarchy) => join(cgroupRoot, hierarchy, "machine", name));
}

/**
 * The supervisor: restarts systemd-nspawn while the guest asks for a reboot (exit code 133) and ends with the
 * guest otherwise. Each nspawn moves itself into the container's cgroup before exec, the loop stays outside it.
 */
export function renderSupervisorScript(host: LabHostSpec, paths: LabHostPaths, cgroupDirs: readonly string[]): string {
  const nspawn = [
    "systemd-nspawn",
    "--boot",
    `--directory=${paths.root}`,
    `--machine=${machineName(host)}`,
    `--network-bridge=${LAB_BRIDGE}`,
    "--register=no",
    "--keep-unit",
    "--console=read-only",
    "--resolv-conf=off",
    "--timezone=off",
    "--link-journal=no",
    `--bind=${join(LAB_APT_CACHE_DIR, host.name)}:/var/cache/apt/archives`,
  ]
    .map(shellQuote)
    .join(" ");
  const joinCgroups = cgroupDirs
    .map((dir) => `mkdir -p ${shellQuote(dir)} && echo $$ > ${shellQuote(join(dir, "cgroup.procs"))}`)
    .join(" && ");
  const child = `${joinCgroups} && echo $$ > ${shellQuote(paths.nspawnPidFile)} && SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 exec ${nspawn}`;
  return [
    "#!/bin/sh",
    `# brightchain lab supervisor for ${host.name}`,
    "while :; do",
    `  sh -c ${shellQuote(child)}`,
    "  rc=$?",
    '  [ "$rc" -eq 133 ] || exit "$rc"',
    `  echo "[supervisor] guest rebooted, starting it again" >&2`,
    "done",
    "",
  ].join("\n");
}

/** The host's root: its own writable layer over the base image of its release (`baseDir`). */
export async function mountHostOverlay(host: LabHostSpec, paths: LabHostPaths, baseDir: string): Promise<void> {
  for (const dir of [paths.upper, paths.work, paths.root]) mkdirSync(dir, { recursive: true });
  await runStep(host.name, "mount overlay root", "mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${baseDir},upperdir=${paths.upper},workdir=${paths.work}`,
    paths.root,
  ]);
}

export async function unmountHostOverlay(host: LabHostSpec, paths: LabHostPaths): Promise<void> {
  const mounted = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .some((line) => line.split(" ")[1] === paths.root);
  if (mounted) await runStep(host.name, "unmount overlay root", "umount", [paths.root]);
}

/** Gives the clone its own identity and makes it reachable: machine-id, host keys, address, DNS, lab key, CAs. */
export async function personaliseHost(
  host: LabHostSpec,
  paths: LabHostPaths,
  ssh: LabSshPaths,
  trustedCaFiles: readonly { name: string; path: string }[],
): Promise<void> {
  const root = paths.root;
  // Removed first: systemd-machine-id-setup copies an existing D-Bus id, which would give every clone one id.
  const dbusMachineId = join(root, "var/lib/dbus/machine-id");
  if (existsSync(dbusMachineId) || isSymlink(dbusMachineId)) unlinkSync(dbusMachineId);
  await runStep(host.name, "machine-id", "systemd-machine-id-setup", [`--root=${root}`]);
  mkdirSync(join(root, "var/lib/dbus"), { recursive: true });
  symlinkSync("/etc/machine-id", dbusMachineId);
  // ed25519 only: every client the lab uses speaks it, and RSA generation costs seconds per host.
  await runStep(host.name, "ssh host key", "ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    `root@${host.fqdn}`,
    "-f",
    join(root, "etc/ssh/ssh_host_ed25519_key"),
  ]);
  writeFileSync(join(root, "etc/hostname"), `${host.name}\n`);
  writeFileSync(join(root, "etc/hosts"), renderHostsFile(host));
  writeFileSync(join(root, "etc/systemd/network/10-host0.network"), renderHostNetwork(host));
  const resolvConf = join(root, "etc/resolv.conf");
  if (existsSync(resolvConf) || isSymlink(resolvConf)) unlinkSync(resolvConf);
  writeFileSync(resolvConf, `nameserver ${LAB_GATEWAY_IP}\n`);
  mkdirSync(join(root, "root/.ssh"), { recursive: true, mode: 0o700 });
  writeFileSync(join(root, "root/.ssh/authorized_keys"), readFileSync(ssh.publicKey), { mode: 0o600 });
  for (const ca of trustedCaFiles) {
    writeFileSync(join(root, "usr/local/share/ca-certificates", `${ca.name}.crt`), readFileSync(ca.path));
  }
  await runStep(host.name, "trust lab CAs", "chroot", [root, "update-ca-certificates", "--fresh"]);
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** known_hosts lines for the keys just generated: SSH to the lab is verified, never trust-on-first-use. */
export function knownHostsLines(host: LabHostSpec, paths: LabHostPaths): string[] {
  const sshDir = join(paths.root, "etc/ssh");
  return readdirSync(sshDir)
    .filter((name) => /^ssh_host_.*_key\.pub$/.test(name))
    .sort()
    .map((name) => {
      const [type, key] = readFileSync(join(sshDir, name), "utf8").trim().split(/\s+/);
      return `${host.ipv4},${host.fqdn},${host.name} ${type} ${key}`;
    });
}

export function startHost(
  host: LabHostSpec,
  paths: LabHostPaths,
): { supervisor: LabProcessRecord; cgroupDirs: string[]; cgroupParentsCreated: string[] } {
  const cgroupDirs = containerCgroupDirs(machineName(host));
  // The shared `machine` parents are made here, not by `mkdir -p` in the script, so down knows whether they were ours.
  const cgroupParentsCreated: string[] = [];
  for (const parent of cgroupDirs.map((dir) => dirname(dir))) {
    if (!existsSync(parent)) {
      mkdirSync(parent);
      cgroupParentsCreated.push(parent);
    }
  }
  mkdirSync(join(LAB_APT_CACHE_DIR, host.name), { recursive: true });
  writeFileSync(paths.supervisorScript, renderSupervisorScript(host, paths, cgroupDirs), { mode: 0o755 });
  if (existsSync(paths.nspawnPidFile)) unlinkSync(paths.nspawnPidFile);
  const supervisor = startDetached("sh", [paths.supervisorScript], paths.consoleLog, paths.supervisorScript);
  return { supervisor, cgroupDirs, cgroupParentsCreated };
}

export function sshArgs(ssh: LabSshPaths, host: LabHostSpec): string[] {
  return [
    "-F",
    "/dev/null",
    "-i",
    ssh.privateKey,
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${ssh.knownHosts}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "LogLevel=ERROR",
    `root@${host.ipv4}`,
  ];
}

export function sshExec(
  ssh: LabSshPaths,
  host: LabHostSpec,
  command: string,
  options: { input?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return runCommand("ssh", [...sshArgs(ssh, host), "--", command], options);
}

function portOpen(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: address, port, timeout: 1_000 });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * Waits for SSH, then for boot to finish. `degraded` counts as up (a unit that fails in a container must not
 * block the lab) but the failed units are returned so the caller can show them.
 */
export async function waitForHostReady(
  host: LabHostSpec,
  paths: LabHostPaths,
  ssh: LabSshPaths,
  supervisor: LabProcessRecord,
  deadlineMs = 90_000,
): Promise<{ state: string; failedUnits: string[] }> {
  let last = "";
  await waitFor(
    { host: host.name, step: "wait for SSH" },
    deadlineMs,
    async () => {
      if (!isLabProcessAlive(supervisor)) {
        throw new LabStepError(
          host.name,
          "boot",
          "systemd-nspawn",
          `the container exited; console:\n${readLogTail(paths.consoleLog)}`,
        );
      }
      if (!(await portOpen(host.ipv4, 22))) {
        last = `port 22 on ${host.ipv4} closed`;
        return undefined;
      }
      const probe = await sshExec(ssh, host, "true", { timeoutMs: 10_000 });
      last = probe.stderr;
      return probe.exitCode === 0 ? true : undefined;
    },
    () => `${last}\nconsole (${paths.consoleLog}):\n${readLogTail(paths.consoleLog)}`,
  );
  const running = await sshExec(ssh, host, "systemctl is-system-running --wait", { timeoutMs: deadlineMs });
  const state = running.stdout.trim();
  if (state !== "running" && state !== "degraded") {
    throw new LabStepError(
      host.name,
      "wait for boot to finish",
      "systemctl is-system-running --wait",
      running.stdout + running.stderr,
    );
  }
  const failed = await sshExec(ssh, host, "systemctl --failed --no-legend --plain | cut -d' ' -f1");
  return { state, failedUnits: failed.stdout.split("\n").filter((line) => line.trim() !== "") };
}

function nspawnRecord(paths: LabHostPaths): LabProcessRecord | undefined {
  try {
    return { pid: Number(readFileSync(paths.nspawnPidFile, "utf8").trim()), commandLineMarker: paths.root };
  } catch {
    return undefined;
  }
}

/** SIGTERM to nspawn is a clean poweroff of the guest; the supervisor then ends on its own (exit code not 133). */
export async function stopHost(host: LabHostSpec, paths: LabHostPaths, supervisor: LabProcessRecord | undefined): Promise<void> {
  const nspawn = nspawnRecord(paths);
  if (nspawn) await stopLabProcess(host.name, "systemd-nspawn (poweroff)", nspawn, 20_000);
  if (supervisor) await stopLabProcess(host.name, "supervisor", supervisor, 5_000);
}

/** Removes the container's cgroups, deepest first (nspawn makes sub-cgroups inside the one it was given). */
export function removeCgroupDirs(dirs: readonly string[]): void {
  const removeTree = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) removeTree(join(dir, entry.name));
    }
    rmdirSync(dir);
  };
  for (const dir of dirs) removeTree(dir);
}

/** Removes a cgroup the lab made only if nothing else has put a child cgroup in it meanwhile. */
export function removeEmptyCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  const hasChildren = readdirSync(dir, { withFileTypes: true }).some((entry) => entry.isDirectory());
  if (!hasChildren) rmdirSync(dir);
}
