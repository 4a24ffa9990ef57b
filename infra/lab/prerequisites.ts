// What the lab needs on this machine, checked before it does anything: every program it (and the deploy engines
// it drives) spawns, and the Debian package that ships it. On a new machine `npm run lab` installs the missing
// ones as root, or stops at once with the exact command, instead of failing minutes later with `spawn … ENOENT`.
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { ProgressReporter, runCommand, LabStepError } from "./process";

export interface LabPrerequisite {
  /** The program the lab runs (looked up on PATH and in the sbin folders). */
  program: string;
  /** The Debian package that ships it (same name on Debian 12 and 13). */
  debianPackage: string;
  /** What the lab runs it for, shown when it is missing. */
  usedFor: string;
}

/**
 * Every program the lab spawns on this machine, except those of Debian's essential packages (coreutils' chroot,
 * util-linux's flock and mount), which every Debian system has. .ci/run installs each package listed here
 * (test/lab/lab-plan.test.ts checks it).
 */
export const LAB_PREREQUISITES: readonly LabPrerequisite[] = [
  { program: "debootstrap", debianPackage: "debootstrap", usedFor: "building the base image of each release" },
  { program: "systemd-nspawn", debianPackage: "systemd-container", usedFor: "booting the lab hosts" },
  { program: "systemd-machine-id-setup", debianPackage: "systemd", usedFor: "giving each host its machine-id" },
  { program: "systemctl", debianPackage: "systemd", usedFor: "enabling networkd in the base image" },
  { program: "nft", debianPackage: "nftables", usedFor: "the lab's NAT and its filter towards the mirror" },
  { program: "ip", debianPackage: "iproute2", usedFor: "the lab bridge" },
  { program: "ssh", debianPackage: "openssh-client", usedFor: "reaching the hosts (both deploy engines)" },
  { program: "ssh-keygen", debianPackage: "openssh-client", usedFor: "the lab key and the hosts' keys" },
  { program: "openssl", debianPackage: "openssl", usedFor: "the lab CA and the ACME server's certificate" },
  { program: "knotd", debianPackage: "knot", usedFor: "the lab DNS" },
  { program: "knotc", debianPackage: "knot", usedFor: "publishing zones on the lab DNS" },
  { program: "pebble", debianPackage: "pebble", usedFor: "the lab ACME server" },
  { program: "ansible-playbook", debianPackage: "ansible", usedFor: "deploy engine 2, gateway playbook" },
];

/** The packages, each once, in the order listed. */
export function labPackages(prerequisites: readonly LabPrerequisite[] = LAB_PREREQUISITES): string[] {
  return [...new Set(prerequisites.map((entry) => entry.debianPackage))];
}

/** The sbin folders are searched too: a user's PATH often lacks them, and the lab runs as root anyway. */
function searchPath(pathVariable: string | undefined): string[] {
  const dirs = (pathVariable ?? "").split(delimiter).filter((dir) => dir !== "");
  for (const dir of ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
    if (!dirs.includes(dir)) dirs.push(dir);
  }
  return dirs;
}

export function findProgram(program: string, pathVariable = process.env.PATH): string | undefined {
  for (const dir of searchPath(pathVariable)) {
    try {
      accessSync(join(dir, program), constants.X_OK);
      return join(dir, program);
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

export function missingPrerequisites(
  find: (program: string) => string | undefined = (program) => findProgram(program),
  prerequisites: readonly LabPrerequisite[] = LAB_PREREQUISITES,
): LabPrerequisite[] {
  return prerequisites.filter((entry) => find(entry.program) === undefined);
}

/** The command that installs what is missing, as the user runs it. */
export function installCommand(missing: readonly LabPrerequisite[]): string {
  return `apt-get update && apt-get install -y --no-install-recommends ${labPackages(missing).join(" ")}`;
}

/** Thrown when something is missing and this process may not install it: names each program and the command. */
export class LabPrerequisitesError extends Error {
  constructor(readonly missing: readonly LabPrerequisite[]) {
    super(
      `lab: missing on this machine: ${missing.map((entry) => `${entry.program} (${entry.usedFor})`).join(", ")}.\n` +
        `Install them as root, then run the lab again:\n  ${installCommand(missing)}`,
    );
    this.name = "LabPrerequisitesError";
  }
}

/**
 * Checks every prerequisite; as root installs the missing packages with apt-get (progress lines as it goes),
 * otherwise throws LabPrerequisitesError with the exact command. Returns the packages it installed.
 */
export async function ensureLabPrerequisites(
  progress: ProgressReporter,
  options: { isRoot?: boolean; find?: (program: string) => string | undefined } = {},
): Promise<string[]> {
  const find = options.find ?? ((program: string) => findProgram(program));
  const missing = missingPrerequisites(find);
  if (missing.length === 0) return [];
  const isRoot = options.isRoot ?? process.getuid?.() === 0;
  if (!isRoot) throw new LabPrerequisitesError(missing);
  const packages = labPackages(missing);
  progress(`prerequisites: missing ${missing.map((entry) => entry.program).join(", ")}; installing ${packages.join(" ")}`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  let last = 0;
  const onLine = (line: string): void => {
    // apt prints a line per package and stage; one every couple of seconds shows it moving.
    if (/^(Get:|Unpacking|Setting up)/.test(line) && Date.now() - last > 2_000) {
      last = Date.now();
      progress(`prerequisites: ${line.trim()}`);
    }
  };
  progress("prerequisites: apt-get update");
  await aptGet(["update", "-q"], env, onLine);
  await aptGet(["install", "-y", "-q", "--no-install-recommends", ...packages], env, onLine);
  const stillMissing = missingPrerequisites(find);
  if (stillMissing.length > 0) {
    throw new LabStepError(
      "lab",
      "install prerequisites",
      installCommand(stillMissing),
      `installed ${packages.join(" ")}, yet ${stillMissing.map((entry) => entry.program).join(", ")} cannot be found`,
    );
  }
  progress(`prerequisites: installed ${packages.join(" ")}`);
  return packages;
}

async function aptGet(args: string[], env: NodeJS.ProcessEnv, onLine: (line: string) => void): Promise<void> {
  const command = `apt-get ${args.join(" ")}`;
  let result;
  try {
    result = await runCommand("apt-get", args, { env, onLine });
  } catch (error) {
    throw new LabStepError("lab", "install prerequisites", command, String(error));
  }
  if (result.exitCode !== 0) {
    throw new LabStepError(
      "lab",
      "install prerequisites",
      command,
      `exit code ${result.exitCode}\n${result.stdout}${result.stderr}`,
    );
  }
}
