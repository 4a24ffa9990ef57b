// Deploy engine 2 on a real host: `gateway playbook` for the primary, applied by Debian's ansible-playbook to
// the lab's fresh `mail` host (systemd-nspawn, real systemd). First run converges the node and its services;
// the second reports changed=0; every host file then matches render's manifest byte for byte with its mode and
// owner; a hand edit of main.cf shows up in --check --diff, and a real run puts it back.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import type { RenderManifest } from "../../infra/cli/render";
import { LAB_ACME_DIRECTORY_URL, LAB_STATE_DIR, labHostSpec } from "../../infra/lab/constants";
import { labDown, labExec, labSsh, labStatus, labUp } from "../../infra/lab/lab";

const repo = path.resolve(__dirname, "../..");
const LAB_LOCK = "/run/brightchain-lab.lock";
const temp = mkdtempSync(path.join(tmpdir(), "gateway-ansible-lab-"));
const project = path.join(temp, "project");
const dist = path.join(temp, "dist");
const bundle = path.join(temp, "bundle");
const ansibleHome = path.join(temp, "ansible");
const mail = labHostSpec("mail");
const timings: Record<string, number> = {};

const secrets = {
  GATEWAY_RENDER_SUBMISSION_USERS: JSON.stringify([{ username: "brightchain-node", password: "lab-only-submission-password" }]),
};

/** The lab serializes on one lock file: held by a flock child of ours, released by closing its stdin. */
async function takeLabLock(deadlineMs: number): Promise<ChildProcess> {
  const child = spawn(
    "flock",
    ["--exclusive", "--timeout", String(Math.floor(deadlineMs / 1000)), LAB_LOCK, "sh", "-c", "echo locked; exec cat >/dev/null"],
    {
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  await new Promise<void>((resolve, reject) => {
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout!.once("data", () => resolve());
    child.once("exit", (code) =>
      reject(new Error(`could not take ${LAB_LOCK} within ${deadlineMs} ms (flock exit ${code}): ${stderr}`)),
    );
  });
  return child;
}

/** The repository's Pulumi project with the lab's addresses and ACME server: the same stacks, pointed at the lab. */
function writeLabProject(): void {
  mkdirSync(project);
  const projectDoc = parse(readFileSync(path.join(repo, "Pulumi.yaml"), "utf8")) as { config: Record<string, unknown> };
  const fleet = (projectDoc.config["gateway:fleet"] as { value: { hostname: string; ipv4: string; ipv6?: string }[] }).value;
  // The IPv6 addresses stay: without one, main.cf says inet_protocols=ipv4, which Postfix cannot take on a
  // reload (master exits: "to change inet_protocols, stop and start Postfix") and the plan reloads. Reported.
  projectDoc.config["gateway:fleet"] = { value: fleet.map((node) => ({ ...node, ipv4: labAddress(node.hostname) })) };
  projectDoc.config["gateway:acmeServer"] = LAB_ACME_DIRECTORY_URL;
  projectDoc.config["gateway:acmeChallenge"] = "http-01";
  writeFileSync(path.join(project, "Pulumi.yaml"), stringify(projectDoc));
  const stackDoc = parse(readFileSync(path.join(repo, "Pulumi.primary.yaml"), "utf8")) as { config: Record<string, unknown> };
  stackDoc.config["gateway:ssh"] = { host: mail.ipv4, user: "root", port: 22 };
  writeFileSync(path.join(project, "Pulumi.primary.yaml"), stringify(stackDoc));
}

function labAddress(hostname: string): string {
  const host = ["mail", "mail2", "outside"].map((name) => labHostSpec(name)).find((spec) => spec.fqdn === hostname);
  if (host === undefined) throw new Error(`the lab has no host for fleet entry ${hostname}`);
  return host.ipv4;
}

/** Every runtime/bin entry bundled as runtime/build.mjs does, into this test's own folder. */
async function buildRuntime(): Promise<void> {
  mkdirSync(dist);
  const bin = path.join(repo, "runtime", "bin");
  for (const entry of readdirSync(bin).filter((name) => name.endsWith(".ts"))) {
    await build({
      entryPoints: [path.join(bin, entry)],
      outfile: path.join(dist, entry.replace(/\.ts$/, ".cjs")),
      bundle: true,
      platform: "node",
      target: "node18",
      format: "cjs",
      legalComments: "none",
      banner: { js: "#!/usr/bin/env node" },
      logLevel: "warning",
    });
  }
}

interface PlaybookRun {
  code: number | null;
  stdout: string;
  stderr: string;
  recap: { ok: number; changed: number; failed: number; unreachable: number };
  seconds: number;
}

function ansiblePlaybook(extra: string[] = []): PlaybookRun {
  const started = Date.now();
  const result = spawnSync(
    "ansible-playbook",
    ["-i", path.join(bundle, "inventory.ini"), path.join(bundle, "playbook.yml"), ...extra],
    {
      cwd: bundle,
      encoding: "utf8",
      timeout: 900_000,
      env: {
        ...process.env,
        HOME: ansibleHome,
        ANSIBLE_LOCAL_TEMP: path.join(ansibleHome, "tmp"),
        ANSIBLE_SSH_CONTROL_PATH_DIR: path.join(ansibleHome, "cp"),
        ANSIBLE_PIPELINING: "True",
        ANSIBLE_NOCOLOR: "1",
        ANSIBLE_FORCE_COLOR: "0",
      },
    },
  );
  const seconds = (Date.now() - started) / 1000;
  const line = new RegExp(`^${mail.fqdn.replace(/\./g, "\\.")}\\s*:\\s*(.*)$`, "m").exec(result.stdout)?.[1] ?? "";
  const count = (name: string): number => Number(new RegExp(`${name}=(\\d+)`).exec(line)?.[1] ?? NaN);
  return {
    code: result.status,
    stdout: result.stdout,
    stderr: result.stderr,
    recap: { ok: count("ok"), changed: count("changed"), failed: count("failed"), unreachable: count("unreachable") },
    seconds,
  };
}

/** Ansible's SSH masters outlive the run by ControlPersist; ours are closed through their own sockets. */
function closeSshMasters(): void {
  const dir = path.join(ansibleHome, "cp");
  if (!existsSync(dir)) return;
  for (const socket of readdirSync(dir)) {
    spawnSync("ssh", ["-o", `ControlPath=${path.join(dir, socket)}`, "-O", "exit", mail.ipv4], { timeout: 10_000 });
  }
}

async function onMail(command: string, input?: string): Promise<string> {
  const result = await labExec("mail", command, input === undefined ? {} : { input });
  if (result.exitCode !== 0) throw new Error(`mail: ${command} exited ${result.exitCode}: ${result.stdout}${result.stderr}`);
  return result.stdout;
}

/** path → "mode owner group sha256" as the host has it. */
async function hostFacts(paths: string[]): Promise<Map<string, string>> {
  const script = paths
    .map((p) => `printf '%s %s\\n' "$(stat -c '%n %a %U %G' '${p}')" "$(sha256sum < '${p}' | cut -d' ' -f1)"`)
    .join("\n");
  const facts = new Map<string, string>();
  for (const line of (await onMail(script)).trim().split("\n")) {
    const [file, ...rest] = line.split(" ");
    facts.set(file!, rest.join(" "));
  }
  return facts;
}

let lock: ChildProcess | undefined;
let labIsOurs = false;
let manifest: RenderManifest;
let firstRun: PlaybookRun;

beforeAll(async () => {
  lock = await takeLabLock(900_000);
  // Another engineer's lab that is up without the lock is theirs: wait for it to go, never take it down.
  const waitUntil = Date.now() + 600_000;
  while (labStatus().up) {
    if (Date.now() > waitUntil) throw new Error("another lab stayed up for 10 minutes; not touching it");
    await new Promise((resolve) => setTimeout(resolve, 5_000));
  }
  if (existsSync(path.join(LAB_STATE_DIR, "state.json"))) {
    throw new Error(`a lab's state is left in ${LAB_STATE_DIR} by someone else; not taking it down, not starting over it`);
  }
  writeLabProject();
  await buildRuntime();
  const upStarted = Date.now();
  labIsOurs = true;
  await labUp();
  timings.labUp = (Date.now() - upStarted) / 1000;

  const ssh = labSsh("mail");
  const written = spawnSync(
    process.execPath,
    [
      path.join(repo, "bin/gateway.cjs"),
      "playbook",
      "--stack",
      "primary",
      "--dir",
      project,
      "--out",
      bundle,
      "--runtime-dist",
      dist,
      "--host",
      ssh.host,
      "--key",
      ssh.privateKeyPath,
      "--known-hosts",
      ssh.knownHostsPath,
    ],
    { cwd: repo, encoding: "utf8", env: { ...process.env, ...secrets }, timeout: 120_000 },
  );
  if (written.status !== 0) throw new Error(`gateway playbook failed: ${written.stderr}`);
  manifest = JSON.parse(readFileSync(path.join(bundle, "manifest.json"), "utf8")) as RenderManifest;

  // Operator data, not configuration: the recipients the node syncs from BrightChain.
  await onMail(
    "mkdir -p /etc/brightchain && cat > /etc/brightchain/recipients",
    "alice@brightchain.org\npostmaster@brightchain.org\n",
  );
  firstRun = ansiblePlaybook();
  timings.firstApply = firstRun.seconds;
}, 1_800_000);

afterAll(async () => {
  closeSshMasters();
  try {
    if (labIsOurs) await labDown();
  } finally {
    lock?.stdin?.end();
    lock?.kill();
    rmSync(temp, { recursive: true, force: true });
    console.log(`ansible lab timings (s): ${JSON.stringify(timings)}`);
  }
}, 600_000);

describe("ansible-playbook on a fresh lab host", () => {
  it("converges the primary on the first run", () => {
    expect(firstRun.stderr + firstRun.stdout.slice(-4000)).not.toMatch(/fatal:|FAILED!/);
    expect(firstRun.code, firstRun.stdout.slice(-6000)).toBe(0);
    expect(firstRun.recap.failed).toBe(0);
    expect(firstRun.recap.changed).toBeGreaterThan(10);
  });

  it("leaves every service running and Postfix answering on 25 and 587", async () => {
    const units = ["postfix", "opendkim", "spamd", "spamass-milter", "dovecot", "brightchain-lookup", "brightchain-inbound"];
    expect((await onMail(`systemctl is-active ${units.join(" ")}`)).trim().split("\n")).toEqual(units.map(() => "active"));
    const banner = await onMail("timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/25; head -1 <&3'");
    expect(banner).toMatch(/^220 mail\.brightchain\.org ESMTP/);
    expect(await onMail("ss -Htln 'sport = :587' | wc -l")).not.toBe("0\n");
  });

  it("reports changed=0 on the second run", () => {
    const second = ansiblePlaybook();
    timings.secondApply = second.seconds;
    // The tasks that changed, if any, are in the output's "changed:" lines.
    expect(
      second.recap,
      second.stdout
        .split("\n")
        .filter((l) => /^(TASK|RUNNING HANDLER|changed|fatal)/.test(l))
        .join("\n"),
    ).toMatchObject({ changed: 0, failed: 0 });
    expect(second.code).toBe(0);
  });

  it("puts every host file on the host byte for byte, with the manifest's mode, owner and group", async () => {
    const facts = await hostFacts(manifest.files.map((f) => f.path));
    for (const file of manifest.files) {
      expect(facts.get(file.path), file.path).toBe(
        `${Number.parseInt(file.mode, 8).toString(8)} ${file.owner} ${file.group} ${file.sha256}`,
      );
    }
    const runtime = readdirSync(dist).map((name) => `/opt/brightchain-gateway/${name}`);
    const runtimeFacts = await hostFacts(runtime);
    for (const name of readdirSync(dist)) {
      const sha = createHash("sha256")
        .update(readFileSync(path.join(dist, name)))
        .digest("hex");
      expect(runtimeFacts.get(`/opt/brightchain-gateway/${name}`)).toBe(`755 root root ${sha}`);
    }
    const dirs = await onMail(manifest.directories.map((d) => `stat -c '%n %a %U %G' '${d.path}'`).join("\n"));
    expect(dirs.trim().split("\n")).toEqual(
      manifest.directories.map((d) => `${d.path} ${Number.parseInt(d.mode, 8).toString(8)} ${d.owner} ${d.group}`),
    );
  });

  it("shows a hand edit of main.cf with --check --diff, and a real run restores it and reloads Postfix", async () => {
    await onMail("printf 'smtpd_banner = hand edited\\n' >> /etc/postfix/main.cf");
    const check = ansiblePlaybook(["--check", "--diff"]);
    timings.checkDiff = check.seconds;
    expect(check.code).toBe(0);
    expect(check.stdout).toContain("--- before: /etc/postfix/main.cf");
    expect(check.stdout).toMatch(/^-smtpd_banner = hand edited$/m);
    expect(check.stdout).toMatch(/RUNNING HANDLER \[reload Postfix\]/);
    expect(check.recap.changed).toBeGreaterThanOrEqual(1);
    // --check changed nothing on the host.
    expect(await onMail("tail -1 /etc/postfix/main.cf")).toBe("smtpd_banner = hand edited\n");

    const restore = ansiblePlaybook();
    expect(restore.code).toBe(0);
    expect(restore.stdout).toMatch(/RUNNING HANDLER \[postfix check\]/);
    expect(restore.stdout).toMatch(/RUNNING HANDLER \[reload Postfix\]/);
    const mainCf = manifest.files.find((f) => f.path === "/etc/postfix/main.cf")!;
    expect((await hostFacts([mainCf.path])).get(mainCf.path)).toBe(`644 root root ${mainCf.sha256}`);
    expect(await onMail("postconf -h smtpd_banner")).not.toContain("hand edited");
  });
});
