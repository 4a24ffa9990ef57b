// A Debian root of another release with the mail packages installed, for checking rendered files with that
// release's own tools (postconf, doveconf, rspamadm, …) on a machine that runs an older one. Two cached layers:
// the lab's base image (infra/lab/base.ts: one debootstrap per release, shared with `gateway lab up`) and, beside
// it, a copy with every package a node of that release can need, installed by apt inside a chroot. A test gets
// an overlay of a temp upper directory over the package layer; each command runs in its own mount and PID
// namespace, so the overlay, /proc and /dev mounts and any process a package script leaves behind end with it.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { baseImageRecipe, ensureBaseImage } from "../../infra/lab/base";
import { labBaseDir, type LabRelease } from "../../infra/lab/constants";
import { takeFileLock } from "../../infra/lab/lock";
import { runCommand, runStep, type CommandResult } from "../../infra/lab/process";
import { releaseOs } from "../../infra/model/releases";
import type { GatewayNode, SpamEngine } from "../../infra/model/types";
import { requiredPackages } from "../../infra/plan/packages";
import { shellQuote } from "../../infra/plan/shell";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

export type Progress = (line: string) => void;

/** The base image's own stamp (infra/lab/base.ts): it changes whenever the base is rebuilt from another recipe. */
const BASE_STAMP_FILE = ".brightchain-lab-base.json";
const LAYER_STAMP_FILE = ".brightchain-mail-layer.json";
/** Bump when buildPackageLayer changes what it makes, so layers built by older code are rebuilt. */
const LAYER_LAYOUT_VERSION = 2;
const SPAM_ENGINES: readonly SpamEngine[] = ["spamassassin", "rspamd", "none"];

/** Every node variant of `release` whose packages differ: primary and relay × each spam engine. */
export function releaseNodeVariants(release: LabRelease): GatewayNode[] {
  const os = releaseOs(release);
  return [examplePrimary, exampleRelay].flatMap((node) =>
    SPAM_ENGINES.map((engine) => ({ ...node, os, spam: { ...node.spam, engine } })),
  );
}

/** The union of requiredPackages over those variants, sorted: what the package layer installs. */
export function releaseMailPackages(release: LabRelease): string[] {
  return [...new Set(releaseNodeVariants(release).flatMap(requiredPackages))].sort();
}

export function packageLayerDir(release: LabRelease): string {
  return `${labBaseDir(release)}-mail`;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return undefined;
  }
}

/**
 * Namespaces every command runs in: a private mount namespace (mounts vanish with it, none reaches the
 * machine) and a PID namespace whose init is the command, so the kernel kills whatever it leaves running.
 */
const UNSHARE = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--"];
/** Checks also get a network namespace of their own: what a tool says must not depend on the machine's network. */
const UNSHARE_OFFLINE = [...UNSHARE.slice(0, -1), "--net", "--"];

/** After `setup`, mounts /proc, /dev and an empty /run on `root` and runs sh's "$@" chrooted there. */
function chrootScript(root: string, setup: string[] = []): string {
  return [
    "set -e",
    ...setup,
    `mount -t proc proc ${shellQuote(`${root}/proc`)}`,
    `mount --rbind /dev ${shellQuote(`${root}/dev`)}`,
    `mount -t tmpfs -o mode=0755 tmpfs ${shellQuote(`${root}/run`)}`,
    `exec chroot ${shellQuote(root)} "$@"`,
  ].join("\n");
}

/**
 * The package layer of `release`: built when missing or when its stamp (the base's stamp + the package list)
 * differs, beside its final path and renamed into place, so an interrupted build never looks cached.
 */
export async function ensurePackageLayer(
  release: LabRelease,
  progress: Progress,
): Promise<{ dir: string; built: boolean; seconds: number; baseSeconds: number }> {
  const started = Date.now();
  const base = await ensureBaseImage(progress, baseImageRecipe(release));
  const baseDir = labBaseDir(release);
  const dir = packageLayerDir(release);
  const packages = releaseMailPackages(release);
  const baseStamp = await readOptional(join(baseDir, BASE_STAMP_FILE));
  if (baseStamp === undefined) throw new Error(`${baseDir}/${BASE_STAMP_FILE} is missing after ensureBaseImage`);
  const stamp = `${JSON.stringify({ base: JSON.parse(baseStamp) as unknown, packages, layout: LAYER_LAYOUT_VERSION }, null, 2)}\n`;
  if ((await readOptional(join(dir, LAYER_STAMP_FILE))) === stamp) {
    progress(`package layer ${release}: cached at ${dir}`);
    return { dir, built: false, seconds: 0, baseSeconds: base.seconds };
  }
  // Two suites (or two engineers) may find it missing at once: one builds, the other then finds it cached.
  await mkdir(dirname(dir), { recursive: true });
  const unlock = await takeFileLock(`${dir}.lock`, 1_800_000);
  try {
    if ((await readOptional(join(dir, LAYER_STAMP_FILE))) === stamp) {
      progress(`package layer ${release}: cached at ${dir} (built meanwhile by another process)`);
      return { dir, built: false, seconds: 0, baseSeconds: base.seconds };
    }
    const layerStarted = Date.now();
    await buildPackageLayer(release, baseDir, dir, packages, stamp, progress);
    const seconds = (Date.now() - layerStarted) / 1000;
    progress(
      `package layer ${release}: built in ${seconds.toFixed(0)} s (${((Date.now() - started) / 1000).toFixed(0)} s with the base)`,
    );
    return { dir, built: true, seconds, baseSeconds: base.seconds };
  } finally {
    unlock();
  }
}

async function buildPackageLayer(
  release: LabRelease,
  baseDir: string,
  dir: string,
  packages: string[],
  stamp: string,
  progress: Progress,
): Promise<void> {
  const buildDir = `${dir}.partial`;
  await rm(buildDir, { recursive: true, force: true });
  progress(`package layer ${release}: copying the base ${baseDir} to ${buildDir}`);
  await runStep("lab", "copy the base image", "cp", ["-a", "--reflink=auto", baseDir, buildDir]);
  // Package scripts must not start daemons: there is no init here, and a daemon would outlive the chroot.
  await writeFile(join(buildDir, "usr/sbin/policy-rc.d"), "#!/bin/sh\n# brightchain: no daemon starts in this root\nexit 101\n", {
    mode: 0o755,
  });
  // apt inside the chroot resolves the mirror with the machine's resolver; the base's own file comes back after.
  const resolvConf = join(buildDir, "etc/resolv.conf");
  const baseResolvConf = await readOptional(resolvConf);
  await rm(resolvConf, { force: true });
  await writeFile(resolvConf, await readFile("/etc/resolv.conf"));
  const aptInstall =
    "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
  const script = [
    "set -eu",
    "export DEBIAN_FRONTEND=noninteractive",
    "echo 'postfix postfix/main_mailer_type select Internet Site' | debconf-set-selections",
    `echo 'postfix postfix/mailname string ${examplePrimary.domain}' | debconf-set-selections`,
    "apt-get update -q",
    // As the plan does (infra/plan/packages.ts): Postfix first, so spamass-milter finds the postfix user.
    `${aptInstall} postfix`,
    `${aptInstall} ${packages.join(" ")}`,
    "apt-get clean",
  ].join("\n");
  progress(`package layer ${release}: apt-get install ${packages.join(" ")} (about a minute)`);
  let lastShown = 0;
  await runStep(
    "lab",
    `install the ${release} mail packages`,
    UNSHARE[0]!,
    [...UNSHARE.slice(1), "sh", "-c", chrootScript(buildDir), "sh", "sh", "-c", script],
    {
      timeoutMs: 1_500_000,
      onLine: (line) => {
        if (/^(Get:|Unpacking|Setting up)/.test(line) && Date.now() - lastShown > 5000) {
          lastShown = Date.now();
          progress(`package layer ${release}: ${line.slice(0, 120)}`);
        }
      },
    },
  );
  await rm(resolvConf, { force: true });
  if (baseResolvConf !== undefined) await writeFile(resolvConf, baseResolvConf);
  await writeFile(join(buildDir, LAYER_STAMP_FILE), stamp);
  await rm(dir, { recursive: true, force: true });
  await rename(buildDir, dir);
}

/** One check of the layers per release and test file; every root of the file then reuses it. */
const layersReady = new Map<LabRelease, ReturnType<typeof ensurePackageLayer>>();

export interface ReleaseRoot {
  release: LabRelease;
  /** The per-test upper directory: everything the test's commands wrote, at its path in the root. */
  upper: string;
  /**
   * Runs argv inside the root (chrooted, as root, with no network but a down loopback), with `input` on
   * stdin. Never throws for a non-zero exit.
   */
  run(argv: readonly string[], input?: string): Promise<CommandResult & { output: string }>;
  /** Runs a shell script inside the root. */
  sh(script: string, input?: string): Promise<CommandResult & { output: string }>;
  /** Removes the temp directory (upper, work, mount point). Nothing stays mounted: mounts die with each command. */
  remove(): Promise<void>;
}

/**
 * A fresh writable root of `release` over its package layer (built or reused first). Files written by the
 * test's commands land in `upper` only; the cached layers are never written.
 */
export async function openReleaseRoot(release: LabRelease, progress: Progress): Promise<ReleaseRoot> {
  let ready = layersReady.get(release);
  if (ready === undefined) {
    ready = ensurePackageLayer(release, progress);
    layersReady.set(release, ready);
  }
  const { dir: layer } = await ready;
  const temp = await mkdtemp(join(tmpdir(), `bc-${release}-root-`));
  const upper = join(temp, "upper");
  const work = join(temp, "work");
  const merged = join(temp, "merged");
  for (const path of [upper, work, merged]) await mkdir(path);
  const overlay = `mount -t overlay overlay -o ${shellQuote(`lowerdir=${layer},upperdir=${upper},workdir=${work}`)} ${shellQuote(merged)}`;
  // `ip` is the machine's, run before the chroot: inet_interfaces = all needs an interface that is up.
  const script = chrootScript(merged, ["ip link set lo up", overlay]);
  const run = async (argv: readonly string[], input?: string): Promise<CommandResult & { output: string }> => {
    if (!existsSync(temp)) throw new Error(`${release} root ${temp} was removed`);
    const result = await runCommand(UNSHARE_OFFLINE[0]!, [...UNSHARE_OFFLINE.slice(1), "sh", "-c", script, "sh", ...argv], {
      input,
      timeoutMs: 300_000,
      env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", HOME: "/root", TERM: "dumb" },
    });
    return { ...result, output: `${result.stdout}${result.stderr}` };
  };
  // A resolver that answers at once (port unreachable) instead of one the namespace cannot route to: tools that
  // resolve while loading their configuration (Rspamd's fuzzy_check) then fail fast and say only that.
  const resolver = await run(["/bin/sh", "-c", "echo 'nameserver 127.0.0.1' > /etc/resolv.conf"]);
  if (resolver.exitCode !== 0) throw new Error(`${release} root ${temp}: cannot run a command in it:\n${resolver.output}`);
  return {
    release,
    upper,
    run,
    sh: (text, input) => run(["/bin/sh", "-c", text], input),
    remove: () => rm(temp, { recursive: true, force: true }),
  };
}
