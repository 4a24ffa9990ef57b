import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labHostReleases, labStackConfig } from "../../infra/deploy/labStack";
import { labBaseDir, labSuite, LAB_BRIDGE, LAB_HOSTS, LAB_NFT_TABLE, LAB_STATE_DIR } from "../../infra/lab/constants";
import { readStackConfigFiles } from "../../infra/model/config";
import { takeLabLock } from "../../infra/lab/lock";
import { readLabState } from "../../infra/lab/state";
import {
  LabInfo,
  labAnsibleInventory,
  labDown,
  labExec,
  labPublishZone,
  labReboot,
  labRecreate,
  labSsh,
  labStart,
  labStatus,
  labStop,
  labUp,
} from "../../infra/lab/lab";

const repo = join(__dirname, "..", "..");
const stackOs = (stack: string): string | undefined => readStackConfigFiles(repo, stack).values["gateway:os"];

// One lab per machine: this file owns it for its duration (the lab project runs files one at a time).
const zone = (serial: number, extra = ""): string =>
  "$ORIGIN brightchain.org.\n$TTL 300\n" +
  `@ SOA ns.lab.test. hostmaster.lab.test. ${serial} 3600 600 86400 300\n@ NS ns.lab.test.\n` +
  "@ MX 10 mail.brightchain.org.\n@ MX 20 mail2.brightchain.org.\nmail A 10.231.0.10\nmail2 A 10.231.0.20\n" +
  extra;

async function run(host: string, command: string): Promise<string> {
  const result = await labExec(host, command);
  expect(result.exitCode, `${host}: ${command}\n${result.stdout}${result.stderr}`).toBe(0);
  return result.stdout.trim();
}

function commandSucceeds(file: string, args: string[]): boolean {
  try {
    execFileSync(file, args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Live (non-zombie) processes `lab up` starts: nspawn, its supervisors, knotd and pebble (by their config paths). */
function liveLabProcesses(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      if (/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))) continue;
      const commandLine = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      const madeByLab = ["systemd-nspawn", `${LAB_STATE_DIR}/hosts/`, `${LAB_STATE_DIR}/dns/`, `${LAB_STATE_DIR}/acme/`];
      if (madeByLab.some((marker) => commandLine.includes(marker)) && !commandLine.startsWith("ssh ")) {
        found.push(`${pid} ${commandLine}`);
      }
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

/**
 * Takes the lab lock, then waits for a lab someone left up without it (never takes theirs down), then removes
 * what a crashed `lab up` recorded (state written, never ready). Returns the lock's release.
 */
async function takeTheLab(): Promise<() => void> {
  const release = await takeLabLock(900_000);
  const waitUntil = Date.now() + 600_000;
  while (labStatus().up) {
    if (Date.now() > waitUntil) {
      release();
      throw new Error("another lab stayed up for 10 minutes; not touching it");
    }
    await new Promise((resolve) => setTimeout(resolve, 5_000));
  }
  if (readLabState()) await labDown({ progress: () => undefined });
  return release;
}

describe("lab up over something it did not make", () => {
  let releaseLock: (() => void) | undefined;
  beforeAll(async () => {
    releaseLock = await takeTheLab();
  });
  afterAll(() => {
    if (commandSucceeds("ip", ["link", "show", LAB_BRIDGE])) execFileSync("ip", ["link", "del", LAB_BRIDGE]);
    releaseLock?.();
  });

  it("refuses to start when the bridge name is taken, naming it, and leaves it and everything else alone", async () => {
    execFileSync("ip", ["link", "add", LAB_BRIDGE, "type", "bridge"]);
    await expect(labUp({ progress: () => undefined })).rejects.toThrow(
      `interface ${LAB_BRIDGE} already exists but the lab has no record of making it`,
    );
    expect(commandSucceeds("ip", ["link", "show", LAB_BRIDGE])).toBe(true);
    expect(existsSync(LAB_STATE_DIR)).toBe(false);
    expect(commandSucceeds("nft", ["list", "table", "ip", LAB_NFT_TABLE])).toBe(false);
  });
});

describe("the lab: real systemd hosts, lab DNS, pebble", () => {
  let info: LabInfo;

  let releaseLock: (() => void) | undefined;

  beforeAll(async () => {
    releaseLock = await takeTheLab();
    info = await labUp({ zones: { "brightchain.org": zone(1) } });
  });

  afterAll(async () => {
    try {
      await labDown({ progress: () => undefined });
    } finally {
      releaseLock?.();
    }
  });

  it("boots each host on its release: mail and mail2 their stack's gateway:os, outside Debian 12", async () => {
    const expected = labHostReleases(repo);
    expect(expected).toEqual({ mail: stackOs("primary"), mail2: stackOs("relay"), outside: "debian-12" });
    expect(info.releases).toEqual(expected);
    for (const host of LAB_HOSTS) {
      const release = expected[host.name];
      expect(await run(host.name, ". /etc/os-release && echo $VERSION_CODENAME"), host.name).toBe(labSuite(release));
      expect(labStatus().hosts.find((status) => status.name === host.name)?.release).toBe(release);
      expect(readLabState()?.hosts[host.name]?.release).toBe(release);
    }
    // The lab stacks' gateway:os is the host's release.
    expect(labStackConfig("primary", repo).overrides["gateway:os"]).toBe(expected.mail);
    expect(labStackConfig("relay", repo).overrides["gateway:os"]).toBe(expected.mail2);
  });

  it("boots mail, mail2 and outside with systemd running, each with its own identity over pinned SSH", async () => {
    const machineIds = new Set<string>();
    for (const host of LAB_HOSTS) {
      expect(await run(host.name, "hostname -f")).toBe(host.fqdn);
      expect(["running", "degraded"]).toContain(await run(host.name, "systemctl is-system-running || true"));
      machineIds.add(await run(host.name, "cat /etc/machine-id"));
    }
    expect(machineIds.size).toBe(LAB_HOSTS.length);
    const connection = labSsh("mail");
    expect(connection).toMatchObject({ host: "10.231.0.10", port: 22, user: "root" });
    expect(connection.privateKey).toContain("OPENSSH PRIVATE KEY");
    expect(labStatus()).toMatchObject({ up: true, dnsRunning: true, acmeRunning: true });
  });

  it("gives Ansible an inventory it can reach every host with, host keys verified", () => {
    const dir = mkdtempSync(join(tmpdir(), "lab-inventory-"));
    try {
      writeFileSync(join(dir, "inventory.ini"), labAnsibleInventory());
      const output = execFileSync("ansible", ["-i", join(dir, "inventory.ini"), "all", "-m", "ping", "-o"], {
        encoding: "utf8",
        // No persistent SSH master: it would outlive the test and hold connections to hosts `lab down` removes.
        env: { ...process.env, ANSIBLE_HOST_KEY_CHECKING: "True", ANSIBLE_NOCOLOR: "1", ANSIBLE_SSH_ARGS: "-o ControlMaster=no" },
      });
      for (const host of LAB_HOSTS) expect(output).toMatch(new RegExp(`^${host.name} \\| SUCCESS`, "m"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("lets a guest install packages from the machine's mirror through NAT", async () => {
    await run("outside", "DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq dnsutils >/dev/null");
    expect(await run("outside", "command -v dig")).toBe("/usr/bin/dig");
  });

  it("serves the given zone from the lab DNS, which the hosts resolve through", async () => {
    expect((await run("outside", "dig +short MX brightchain.org @10.231.0.1")).split("\n").sort()).toEqual([
      "10 mail.brightchain.org.",
      "20 mail2.brightchain.org.",
    ]);
    expect(await run("outside", "getent hosts mail2.brightchain.org")).toMatch(/^10\.231\.0\.20\s/);
    expect(await run("outside", "dig +short -x 10.231.0.10")).toBe("mail.brightchain.org.");
  });

  it("replaces a zone on the running server (the DKIM record published after the key exists)", async () => {
    await labPublishZone("brightchain.org", zone(2, 'mail._domainkey TXT "v=DKIM1; k=rsa; p=MIIBlab"\n'));
    expect(await run("outside", "dig +short TXT mail._domainkey.brightchain.org")).toBe('"v=DKIM1; k=rsa; p=MIIBlab"');
    await expect(labPublishZone("brightchain.org", "$ORIGIN brightchain.org.\n@ SOA broken\n")).rejects.toThrow(
      /publish zone brightchain\.org/,
    );
    // A refused zone leaves the published one in place.
    expect(await run("outside", "dig +short TXT mail._domainkey.brightchain.org")).toBe('"v=DKIM1; k=rsa; p=MIIBlab"');
  });

  it("serves pebble's ACME directory over HTTPS that guests trust, and guests trust pebble's issuing root", async () => {
    expect(info.acmeDirectoryUrl).toBe("https://10.231.0.1:14000/dir");
    const directory = JSON.parse(await run("mail", `curl -sS --fail ${info.acmeDirectoryUrl}`)) as Record<string, unknown>;
    expect(directory).toHaveProperty("newOrder");
    const root = "/usr/local/share/ca-certificates/brightchain-lab-pebble-root.crt";
    expect(await run("mail", `openssl x509 -noout -subject -in ${root}`)).toMatch(/Pebble Root CA/);
    expect(await run("mail", `openssl verify -CApath /etc/ssl/certs ${root}`)).toMatch(/OK$/);
  });

  it("issues a certificate to a guest through pebble's http-01 validation over the lab DNS, trusted by guests", async () => {
    await run(
      "mail",
      "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends certbot >/dev/null 2>&1",
    );
    await run(
      "mail",
      `certbot certonly --standalone --non-interactive --agree-tos -m postmaster@brightchain.org --server ${info.acmeDirectoryUrl} -d mail.brightchain.org`,
    );
    const live = "/etc/letsencrypt/live/mail.brightchain.org";
    expect(await run("mail", `openssl x509 -noout -issuer -in ${live}/cert.pem`)).toMatch(/Pebble Intermediate CA/);
    expect(await run("mail", `openssl verify -CApath /etc/ssl/certs -untrusted ${live}/chain.pem ${live}/cert.pem`)).toMatch(
      /OK$/,
    );
  });

  it("brings a host back after `systemctl reboot` inside it", async () => {
    await run("mail2", "touch /var/tmp/survives-reboot");
    const reboot = await labReboot("mail2");
    expect(["running", "degraded"]).toContain(reboot.state);
    expect(
      await run("mail2", "test -e /var/tmp/survives-reboot && test ! -e /run/brightchain-lab-before-reboot && echo back"),
    ).toBe("back");
  });

  it("powers a host off (unreachable from outside) and boots it again with its disk intact", async () => {
    await run("mail", "touch /var/tmp/kept-while-off");
    await labStop("mail");
    expect(labStatus().hosts.find((host) => host.name === "mail")?.running).toBe(false);
    expect(await run("outside", "timeout 5 bash -c '</dev/tcp/10.231.0.10/22' 2>/dev/null && echo open || echo closed")).toBe(
      "closed",
    );
    expect(["running", "degraded"]).toContain((await labStart("mail")).state);
    expect(await run("mail", "test -e /var/tmp/kept-while-off && echo kept")).toBe("kept");
  });

  it("re-creates a host fresh on its own release: disk changes gone, new identity", async () => {
    await run("mail", "touch /var/tmp/gone-after-recreate");
    const before = await run("mail", "cat /etc/machine-id");
    const recreated = await labRecreate("mail");
    expect(["running", "degraded"]).toContain(recreated.state);
    expect(await run("mail", ". /etc/os-release && echo $VERSION_CODENAME")).toBe(labSuite(info.releases.mail));
    expect(await run("mail", "test ! -e /var/tmp/gone-after-recreate && cat /etc/machine-id")).not.toBe(before);
    expect(readLabState()?.hosts.mail?.release).toBe(info.releases.mail);
  });

  it("lab down removes the containers, bridge, nft table, daemons, mounts and state, twice without error", async () => {
    await labDown({ progress: () => undefined });
    await labDown({ progress: () => undefined });
    expect(commandSucceeds("ip", ["link", "show", LAB_BRIDGE])).toBe(false);
    expect(commandSucceeds("nft", ["list", "table", "ip", LAB_NFT_TABLE])).toBe(false);
    expect(liveLabProcesses()).toEqual([]);
    expect(readFileSync("/proc/self/mounts", "utf8")).not.toContain(LAB_STATE_DIR);
    expect(existsSync(LAB_STATE_DIR)).toBe(false);
    for (const host of LAB_HOSTS) {
      for (const hierarchy of ["systemd", "unified"]) {
        expect(existsSync(`/sys/fs/cgroup/${hierarchy}/machine/bclab-${host.name}`)).toBe(false);
      }
    }
    for (const release of new Set(Object.values(info.releases))) {
      expect(existsSync(`${labBaseDir(release)}/etc/os-release`), release).toBe(true);
    }
  });
});
