import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { isLabRelease, LAB_HOSTS, LAB_RELEASES, labHostSpec, type LabHostReleases } from "./constants";
import { labDemo } from "./demo";
import { assertRoot, labDown, labExec, labStatus, labUp } from "./lab";
import { ensureLabPrerequisites } from "./prerequisites";
import { consoleProgress } from "./process";
import { LAB_LOCK_FILE, takeLabLock } from "./lock";
import { parseFlags, UsageError } from "../cli/verb";

export const LAB_USAGE = `usage: gateway lab <command>
  up [--zone NAME=FILE ...] [--release HOST=RELEASE ...]
                              build the base images (once per release), boot mail, mail2 and outside, lab DNS
                              and ACME; mail and mail2 boot their stack's gateway:os, outside debian-12;
                              --release overrides one host (RELEASE: ${LAB_RELEASES.join(", ")})
  down                        remove everything \`lab up\` made (the cached base images stay)
  status                      what is running, and the release each host boots
  exec HOST COMMAND...        run a shell command on a lab host as root (HOST: ${LAB_HOSTS.map((host) => host.name).join(", ")})
  demo                        up, deploy both example stacks, send a message from outside, show it in the store
  test                        run the lab suite (npx vitest run --project lab)`;

function parseUpArguments(args: readonly string[]): { zones: Record<string, string>; releases: Partial<LabHostReleases> } {
  const flags = parseFlags(args, { zone: { type: "string", multiple: true }, release: { type: "string", multiple: true } });
  const zones: Record<string, string> = {};
  const releases: Partial<LabHostReleases> = {};
  const split = (value: string): [string, string] => {
    const separator = value.indexOf("=");
    return separator <= 0 ? ["", ""] : [value.slice(0, separator), value.slice(separator + 1)];
  };
  for (const value of flags.zone ?? []) {
    const [name, file] = split(value);
    if (name === "")
      throw new UsageError(`--zone ${JSON.stringify(value)} is invalid; expected NAME=FILE, e.g. brightchain.org=zone.txt`);
    zones[name] = readFileSync(file, "utf8");
  }
  for (const value of flags.release ?? []) {
    const [name, release] = split(value);
    if (name === "" || !isLabRelease(release)) {
      throw new UsageError(
        `--release ${JSON.stringify(value)} is invalid; expected HOST=RELEASE, e.g. mail=debian-12; RELEASE: ${LAB_RELEASES.join(", ")}`,
      );
    }
    try {
      releases[labHostSpec(name).name] = release;
    } catch (error) {
      throw new UsageError(
        `--release ${JSON.stringify(value)} is invalid: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
  return { zones, releases };
}

/**
 * Up and down change the one lab of the machine: never while another lab user (a running suite) holds it. The
 * prerequisites come first: a user who is not root learns what to install, not that /run is not writable.
 */
async function underLabLock<T>(work: () => Promise<T>): Promise<T> {
  await ensureLabPrerequisites(consoleProgress());
  assertRoot();
  process.stderr.write(`[lab] taking ${LAB_LOCK_FILE} (waits while a lab suite is running)\n`);
  const release = await takeLabLock(900_000);
  try {
    return await work();
  } finally {
    release();
  }
}

/** `gateway lab …`; returns the process exit code. Errors are printed, not thrown, so the CLI stays one line. */
export async function runLabCommand(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "up": {
        const { zones, releases } = parseUpArguments(rest);
        const info = await underLabLock(() => labUp({ zones, releases }));
        for (const host of info.hosts)
          console.log(
            `${host.name.padEnd(8)} ${host.ipv4.padEnd(12)} ${info.releases[host.name].padEnd(10)} ${host.fqdn}  (${host.role})`,
          );
        console.log(`dns      ${info.dnsServer}:53`);
        console.log(`acme     ${info.acmeDirectoryUrl}  (server CA: ${info.acmeServerCaFile})`);
        console.log("ssh      gateway lab exec HOST COMMAND   (key and known_hosts in the lab state dir)");
        return 0;
      }
      case "down":
        await underLabLock(() => labDown());
        return 0;
      case "status": {
        const status = labStatus();
        console.log(
          `lab ${status.up ? "up" : "not up"}; dns ${status.dnsRunning ? "running" : "stopped"}; acme ${status.acmeRunning ? "running" : "stopped"}`,
        );
        for (const host of status.hosts)
          console.log(
            `${host.name.padEnd(8)} ${host.ipv4.padEnd(12)} ${(host.release ?? "-").padEnd(10)} ${host.running ? "running" : "stopped"}`,
          );
        return status.up ? 0 : 1;
      }
      case "exec": {
        const [host, ...words] = rest;
        if (!host || words.length === 0) throw new UsageError(`exec needs HOST and COMMAND\n${LAB_USAGE}`);
        const result = await labExec(host, words.join(" "));
        process.stdout.write(result.stdout);
        process.stderr.write(result.stderr);
        return result.exitCode;
      }
      case "help":
      case "--help":
        console.log(LAB_USAGE);
        return 0;
      case "demo":
        return await labDemo(process.cwd(), (line) => console.log(line));
      case "test":
        return spawnSync("npx", ["vitest", "run", "--project", "lab", ...rest], { stdio: "inherit" }).status ?? 1;
      default:
        console.error(
          `gateway lab: unknown command "${command ?? ""}"; accepted: up, down, status, exec, demo, test, help\n${LAB_USAGE}`,
        );
        return 2;
    }
  } catch (error) {
    // Bad usage is reported by the dispatcher (exit 2), in the shape every verb uses.
    if (error instanceof UsageError) throw error;
    console.error(error instanceof Error ? error.message : String(error));
    return 1;
  }
}
