import { lookup } from "node:dns/promises";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import {
  LAB_ACME_DIRECTORY_URL,
  LAB_BRIDGE,
  LAB_GATEWAY_IP,
  LAB_HOSTS,
  LAB_STATE_DIR,
  LabHostSpec,
  labBaseDir,
  labHostSpec,
  labReleaseLabel,
  type LabHostReleases,
  type LabRelease,
} from "./constants";
import { labHostReleases } from "../deploy/labStack";
import { labAcmePaths, startLabAcme } from "./acme";
import { baseImageRecipe, ensureBaseImage, mirrorHostNames } from "./base";
import { isLabProcessAlive, stopLabProcess } from "./daemon";
import {
  assertZoneName,
  defaultLabZones,
  labDnsPaths,
  publishLabZone,
  renderMirrorZone,
  renderNameserverZone,
  renderReverseZone,
  startLabDns,
} from "./dns";
import {
  knownHostsLines,
  labHostPaths,
  labSshPaths,
  mountHostOverlay,
  personaliseHost,
  removeCgroupDirs,
  removeEmptyCgroup,
  sshExec,
  startHost,
  stopHost,
  unmountHostOverlay,
  waitForHostReady,
} from "./hosts";
import {
  assertNetworkIsFree,
  createBridge,
  createNftTable,
  deleteBridge,
  deleteNftTable,
  enableIpForwarding,
  restoreIpForwarding,
} from "./network";
import { CommandResult, LabStepError, ProgressReporter, consoleProgress, runStep, waitFor } from "./process";
import { ensureLabPrerequisites } from "./prerequisites";
import { LAB_WORKERS_ADDRESS, serveLabWorker } from "./workers";
import { LabState, readLabState, recordedHostRelease, writeLabState } from "./state";

export interface LabUpOptions {
  /** Zone name → BIND zone file text. Defaults cover brightchain.org and outside.test with the lab addresses. */
  zones?: Record<string, string>;
  /**
   * The release a host boots, for hosts that should not boot the default: mail and mail2 the gateway:os of the
   * stack deployed to them (Pulumi.primary.yaml, Pulumi.relay.yaml in projectDir), outside debian-12. The lab
   * stacks' gateway:os then follows the host (labStackConfig), so e.g. `{ mail: "debian-12", mail2:
   * "debian-13" }` deploys the primary as a Debian 12 node.
   */
  releases?: Partial<LabHostReleases>;
  /** Where Pulumi.primary.yaml and Pulumi.relay.yaml are read from; default the current directory. */
  projectDir?: string;
  progress?: ProgressReporter;
}

export interface LabTimings {
  baseImageSeconds: number;
  baseImageBuilt: boolean;
  upSeconds: number;
}

export interface LabInfo {
  hosts: readonly LabHostSpec[];
  /** The release each host boots. */
  releases: LabHostReleases;
  dnsServer: string;
  /** For node.tls.acmeServer in the lab. */
  acmeDirectoryUrl: string;
  /** PEM of the CA that signed the ACME server's own certificate (certbot needs it: REQUESTS_CA_BUNDLE). */
  acmeServerCaFile: string;
  timings: LabTimings;
}

/** What the Pulumi command provider's `connection` and an Ansible inventory need to reach a lab host. */
export interface LabSshConnection {
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  privateKey: string;
  knownHostsPath: string;
}

export function assertRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error("lab: must run as root (it creates a bridge, an nft table, overlay mounts and containers)");
  }
}

function requireState(): LabState {
  const state = readLabState();
  if (!state?.ready) {
    throw new Error(`lab: not up (no ready state in ${LAB_STATE_DIR}); run \`gateway lab up\` first`);
  }
  return state;
}

async function resolveMirrorAddresses(names: readonly string[]): Promise<Record<string, string[]>> {
  const resolved: Record<string, string[]> = {};
  for (const name of names) {
    const addresses = (await lookup(name, { all: true, family: 4 })).map((entry) => entry.address);
    if (addresses.length === 0) throw new Error(`lab: apt mirror ${name} does not resolve on this machine`);
    resolved[name] = addresses;
  }
  return resolved;
}

/**
 * Boots the lab: base image (cached), bridge + NAT, DNS, ACME, then the three hosts. Every step is recorded as
 * it is made, so a failure part-way leaves a state `labDown` can clean up.
 */
export async function labUp(options: LabUpOptions = {}): Promise<LabInfo> {
  const progress = options.progress ?? consoleProgress();
  // Before anything else: a new machine gets its packages installed (root) or the command to do it.
  await ensureLabPrerequisites(progress);
  assertRoot();
  const started = Date.now();
  if (existsSync(`${LAB_STATE_DIR}/state.json`)) {
    throw new Error(`lab: already up or left over (${LAB_STATE_DIR}/state.json exists); run \`gateway lab down\` first`);
  }
  const zones = { ...defaultLabZones(), ...(options.zones ?? {}) };
  for (const name of Object.keys(zones)) assertZoneName(name);
  const releases = labHostReleases(options.projectDir ?? process.cwd(), options.releases);
  progress(`releases: ${LAB_HOSTS.map((host) => `${host.name} ${labReleaseLabel(releases[host.name])}`).join(", ")}`);

  // Only the releases some host boots, each built once and cached; side by side (mostly download and unpack).
  const recipes = [...new Set(Object.values(releases))].sort().map((release) => baseImageRecipe(release));
  const builds = await Promise.all(recipes.map((recipe) => ensureBaseImage(progress, recipe)));
  const base = { built: builds.some((build) => build.built), seconds: Math.max(...builds.map((build) => build.seconds)) };
  await assertNetworkIsFree();

  const mirrors = await resolveMirrorAddresses([...new Set(recipes.flatMap((recipe) => mirrorHostNames(recipe.guestSources)))]);
  const mirrorAddresses = [...new Set(Object.values(mirrors).flat())].sort();
  const state: LabState = {
    startedAt: new Date().toISOString(),
    bridgeCreated: false,
    nftTableCreated: false,
    hosts: {},
    zones: {},
    mirrorAddresses: Object.fromEntries(Object.entries(mirrors).map(([name, addresses]) => [name, addresses.join(" ")])),
    ready: false,
  };
  mkdirSync(LAB_STATE_DIR, { recursive: true, mode: 0o700 });
  writeLabState(state);

  progress(`network: bridge ${LAB_BRIDGE} ${LAB_GATEWAY_IP}/24, NAT to the apt mirror (${mirrorAddresses.join(", ")})`);
  state.bridgeCreated = true;
  writeLabState(state);
  await createBridge();
  state.ipForwardBefore = enableIpForwarding();
  writeLabState(state);
  state.nftTableCreated = true;
  writeLabState(state);
  await createNftTable(mirrorAddresses);

  const reverse = renderReverseZone();
  const nameserver = renderNameserverZone();
  const servedZones: Record<string, string> = { ...zones, [reverse.name]: reverse.text, [nameserver.name]: nameserver.text };
  for (const [name, addresses] of Object.entries(mirrors)) servedZones[name] = renderMirrorZone(name, addresses);
  progress(`dns: knot on ${LAB_GATEWAY_IP}:53 serving ${Object.keys(servedZones).join(", ")}`);
  state.zones = servedZones;
  state.dns = await startLabDns(labDnsPaths(LAB_STATE_DIR), servedZones);
  writeLabState(state);

  progress(`acme: pebble on ${LAB_ACME_DIRECTORY_URL}`);
  const acmePaths = labAcmePaths(LAB_STATE_DIR);
  state.acme = await startLabAcme(acmePaths);
  writeLabState(state);

  const ssh = labSshPaths(LAB_STATE_DIR);
  mkdirSync(`${LAB_STATE_DIR}/ssh`, { recursive: true, mode: 0o700 });
  await runStep("lab", "generate the lab SSH key", "ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    "brightchain-lab",
    "-f",
    ssh.privateKey,
  ]);

  progress(`hosts: preparing ${LAB_HOSTS.map((host) => host.name).join(", ")} (overlay clone, identity, address, keys, CAs)`);
  for (const host of LAB_HOSTS) state.hosts[host.name] = { release: releases[host.name], overlayMounted: true };
  writeLabState(state);
  const knownHosts = await Promise.all(
    LAB_HOSTS.map(async (host) => {
      const paths = labHostPaths(LAB_STATE_DIR, host.name);
      await mountHostOverlay(host, paths, labBaseDir(releases[host.name]));
      await personaliseHost(host, paths, ssh, labTrustedCas());
      return knownHostsLines(host, paths);
    }),
  );
  writeFileSync(ssh.knownHosts, `${knownHosts.flat().join("\n")}\n`);

  progress(`hosts: booting ${LAB_HOSTS.map((host) => `${host.name} (${host.ipv4}, ${releases[host.name]})`).join(", ")}`);
  for (const host of LAB_HOSTS) {
    const { supervisor, cgroupDirs, cgroupParentsCreated } = startHost(host, labHostPaths(LAB_STATE_DIR, host.name));
    state.hosts[host.name] = { ...state.hosts[host.name], supervisor, cgroupDirs };
    state.cgroupParentsCreated = [...(state.cgroupParentsCreated ?? []), ...cgroupParentsCreated];
    writeLabState(state);
  }
  await Promise.all(
    LAB_HOSTS.map(async (host) => {
      const record = state.hosts[host.name];
      const ready = await waitForHostReady(host, labHostPaths(LAB_STATE_DIR, host.name), ssh, record.supervisor!);
      const failed = ready.failedUnits.length > 0 ? `; failed units: ${ready.failedUnits.join(", ")}` : "";
      progress(`hosts: ${host.name} (${releases[host.name]}) is ${ready.state}${failed}`);
    }),
  );
  state.ready = true;
  writeLabState(state);
  const upSeconds = (Date.now() - started) / 1000;
  progress(`lab is up in ${upSeconds.toFixed(1)} s`);
  return labInfo(releases, { baseImageSeconds: base.seconds, baseImageBuilt: base.built, upSeconds });
}

/** The CAs every lab host trusts: the lab's own (pebble's HTTPS) and pebble's issuing root (its certificates). */
function labTrustedCas(): { name: string; path: string }[] {
  const acmePaths = labAcmePaths(LAB_STATE_DIR);
  return [
    { name: "brightchain-lab-ca", path: acmePaths.labCaCert },
    { name: "brightchain-lab-pebble-root", path: acmePaths.pebbleRoot },
  ];
}

function labInfo(releases: LabHostReleases, timings: LabTimings): LabInfo {
  return {
    hosts: LAB_HOSTS,
    releases,
    dnsServer: LAB_GATEWAY_IP,
    acmeDirectoryUrl: LAB_ACME_DIRECTORY_URL,
    acmeServerCaFile: labAcmePaths(LAB_STATE_DIR).labCaCert,
    timings,
  };
}

/**
 * Removes exactly what `labUp` recorded, in reverse order, and nothing else. Safe to run twice and after a
 * crashed `labUp`. Keeps the cached base image and the shared apt archive.
 */
export async function labDown(options: { progress?: ProgressReporter } = {}): Promise<void> {
  assertRoot();
  const progress = options.progress ?? consoleProgress();
  const state = readLabState();
  if (!state) {
    progress("lab: nothing to remove (no state)");
    return;
  }
  const started = Date.now();
  await Promise.all(
    Object.entries(state.hosts).map(async ([name, record]) => {
      const host = labHostSpec(name);
      const paths = labHostPaths(LAB_STATE_DIR, name);
      progress(`hosts: stopping ${name} (${recordedHostRelease(state, name)})`);
      await stopHost(host, paths, record.supervisor);
      if (record.cgroupDirs) removeCgroupDirs(record.cgroupDirs);
      if (record.overlayMounted) await unmountHostOverlay(host, paths);
    }),
  );
  for (const parent of state.cgroupParentsCreated ?? []) removeEmptyCgroup(parent);
  if (state.workers) {
    progress("workers: stopping the Workers host");
    await stopLabProcess("lab", "the Workers host", state.workers);
  }
  if (state.acme) {
    progress("acme: stopping pebble");
    await stopLabProcess("lab", "pebble", state.acme);
  }
  if (state.dns) {
    progress("dns: stopping knot");
    await stopLabProcess("lab", "knotd", state.dns);
  }
  if (state.nftTableCreated) await deleteNftTable();
  if (state.ipForwardBefore !== undefined) restoreIpForwarding(state.ipForwardBefore);
  if (state.bridgeCreated) await deleteBridge();
  progress(`state: removing ${LAB_STATE_DIR}`);
  rmSync(LAB_STATE_DIR, { recursive: true, force: true });
  progress(`lab is down in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

export interface LabStatus {
  up: boolean;
  /** `release` is absent for a host the lab has no record of. */
  hosts: { name: string; ipv4: string; release?: LabRelease; running: boolean }[];
  dnsRunning: boolean;
  acmeRunning: boolean;
}

export function labStatus(): LabStatus {
  const state = readLabState();
  return {
    up: state?.ready === true,
    hosts: LAB_HOSTS.map((host) => {
      const supervisor = state?.hosts[host.name]?.supervisor;
      const release = recordedHostRelease(state, host.name);
      return {
        name: host.name,
        ipv4: host.ipv4,
        ...(release !== undefined ? { release } : {}),
        running: supervisor !== undefined && isLabProcessAlive(supervisor),
      };
    }),
    dnsRunning: state?.dns !== undefined && isLabProcessAlive(state.dns),
    acmeRunning: state?.acme !== undefined && isLabProcessAlive(state.acme),
  };
}

/** Runs a shell command on a lab host as root over SSH; the exit code is returned, not thrown. */
export async function labExec(
  host: string,
  command: string,
  options: { input?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  requireState();
  return sshExec(labSshPaths(LAB_STATE_DIR), labHostSpec(host), command, options);
}

export function labSsh(host: string): LabSshConnection {
  requireState();
  const ssh = labSshPaths(LAB_STATE_DIR);
  return {
    host: labHostSpec(host).ipv4,
    port: 22,
    user: "root",
    privateKeyPath: ssh.privateKey,
    privateKey: readFileSync(ssh.privateKey, "utf8"),
    knownHostsPath: ssh.knownHosts,
  };
}

/**
 * Reboots a host from inside (`systemctl reboot`, which nspawn turns into exit code 133 and the supervisor
 * into a fresh boot) and resolves once it is booted again. A marker in /run (a tmpfs) tells the new boot from
 * the old one.
 */
export async function labReboot(
  host: string,
  options: { progress?: ProgressReporter; deadlineMs?: number } = {},
): Promise<{ seconds: number; state: string }> {
  const state = requireState();
  const spec = labHostSpec(host);
  const ssh = labSshPaths(LAB_STATE_DIR);
  const paths = labHostPaths(LAB_STATE_DIR, host);
  const started = Date.now();
  const marker = "/run/brightchain-lab-before-reboot";
  const mark = await sshExec(ssh, spec, `touch ${marker}`);
  if (mark.exitCode !== 0) {
    throw new LabStepError(host, "mark the current boot", `ssh root@${spec.ipv4} touch ${marker}`, mark.stdout + mark.stderr);
  }
  options.progress?.(`hosts: rebooting ${host}`);
  // The SSH session dies with the guest; its exit code says nothing.
  await sshExec(ssh, spec, "systemctl reboot", { timeoutMs: 15_000 });
  let last = "";
  await waitFor(
    { host, step: "come back after reboot" },
    options.deadlineMs ?? 120_000,
    async () => {
      const probe = await sshExec(ssh, spec, `test ! -e ${marker}`, { timeoutMs: 10_000 });
      last = probe.stderr;
      return probe.exitCode === 0 ? true : undefined;
    },
    () => last,
  );
  const ready = await waitForHostReady(spec, paths, ssh, state.hosts[host].supervisor!);
  return { seconds: (Date.now() - started) / 1000, state: ready.state };
}

/**
 * Powers a host off (the whole machine down, as when a datacenter loses a server), keeping its disk. `labStart`
 * boots it again with everything it had.
 */
export async function labStop(host: string, options: { progress?: ProgressReporter } = {}): Promise<void> {
  const state = requireState();
  const spec = labHostSpec(host);
  options.progress?.(`hosts: powering off ${host}`);
  await stopHost(spec, labHostPaths(LAB_STATE_DIR, host), state.hosts[host].supervisor);
}

export async function labStart(host: string, options: { progress?: ProgressReporter } = {}): Promise<{ state: string }> {
  const state = requireState();
  const spec = labHostSpec(host);
  const record = state.hosts[host];
  if (record.supervisor && isLabProcessAlive(record.supervisor)) {
    throw new Error(`lab: host "${host}" is already running; accepted: a host stopped with labStop`);
  }
  options.progress?.(`hosts: booting ${host}`);
  const paths = labHostPaths(LAB_STATE_DIR, host);
  const { supervisor, cgroupDirs, cgroupParentsCreated } = startHost(spec, paths);
  state.hosts[host] = { ...record, supervisor, cgroupDirs };
  state.cgroupParentsCreated = [...(state.cgroupParentsCreated ?? []), ...cgroupParentsCreated];
  writeLabState(state);
  const ready = await waitForHostReady(spec, paths, labSshPaths(LAB_STATE_DIR), supervisor);
  return { state: ready.state };
}

/**
 * Gives a host back as `lab up` made it: powered off, every change on its disk discarded (the overlay's upper
 * layer), a new identity (machine-id, SSH host key, pinned in the lab's known_hosts), booted. Another deploy
 * engine then starts from the same bare Debian as the first one did.
 */
export async function labRecreate(
  host: string,
  options: { progress?: ProgressReporter } = {},
): Promise<{ seconds: number; state: string }> {
  const state = requireState();
  const spec = labHostSpec(host);
  const paths = labHostPaths(LAB_STATE_DIR, host);
  const ssh = labSshPaths(LAB_STATE_DIR);
  const started = Date.now();
  const release = recordedHostRelease(state, host) ?? "debian-12";
  options.progress?.(`hosts: recreating ${host} fresh from the ${labReleaseLabel(release)} base image`);
  await stopHost(spec, paths, state.hosts[host].supervisor);
  await unmountHostOverlay(spec, paths);
  rmSync(paths.upper, { recursive: true, force: true });
  rmSync(paths.work, { recursive: true, force: true });
  await mountHostOverlay(spec, paths, labBaseDir(release));
  await personaliseHost(spec, paths, ssh, labTrustedCas());
  const otherHosts = readFileSync(ssh.knownHosts, "utf8")
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith(`${spec.ipv4},`));
  writeFileSync(ssh.knownHosts, `${[...otherHosts, ...knownHostsLines(spec, paths)].join("\n")}\n`);
  const { supervisor, cgroupDirs, cgroupParentsCreated } = startHost(spec, paths);
  state.hosts[host] = { ...state.hosts[host], release, supervisor, cgroupDirs };
  state.cgroupParentsCreated = [...(state.cgroupParentsCreated ?? []), ...cgroupParentsCreated];
  writeLabState(state);
  const ready = await waitForHostReady(spec, paths, ssh, supervisor);
  return { seconds: (Date.now() - started) / 1000, state: ready.state };
}

/** Publishes (replaces or adds) a zone on the lab DNS, e.g. the primary stack's records with its DKIM key. */
/**
 * Serves a Worker script at its custom domain (workers.ts), as Cloudflare does once a deploy creates them; returns
 * the address the custom domain's record must point to.
 */
export async function labPublishWorker(hostname: string, scriptName: string, content: string): Promise<string> {
  const state = requireState();
  const running = state.workers !== undefined && isLabProcessAlive(state.workers) ? state.workers : undefined;
  state.workers = await serveLabWorker(running, hostname, scriptName, content);
  writeLabState(state);
  return LAB_WORKERS_ADDRESS;
}

export async function labPublishZone(name: string, text: string): Promise<void> {
  const state = requireState();
  await publishLabZone(labDnsPaths(LAB_STATE_DIR), state.zones, name, text);
  state.zones[name] = text;
  writeLabState(state);
}

/**
 * An Ansible inventory (INI) for lab hosts: the lab's key, and the host keys the lab generated pinned, so Ansible
 * connects with the same verification as `labExec`.
 */
export function labAnsibleInventory(hosts: readonly string[] = LAB_HOSTS.map((host) => host.name)): string {
  requireState();
  const ssh = labSshPaths(LAB_STATE_DIR);
  const sshArgs = `-o UserKnownHostsFile=${ssh.knownHosts} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes`;
  const lines = hosts.map((name) => {
    const spec = labHostSpec(name);
    return (
      `${spec.name} ansible_host=${spec.ipv4} ansible_user=root ansible_ssh_private_key_file=${ssh.privateKey} ` +
      `ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='${sshArgs}'`
    );
  });
  return `[lab]\n${lines.join("\n")}\n`;
}
