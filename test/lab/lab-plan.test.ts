import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { labHostReleases, labStackOverrides, stackLabRelease } from "../../infra/deploy/labStack";
import { readStackConfigFiles } from "../../infra/model/config";
import { debianSourcesForGuests, debootstrapMirror, mirrorHostNames } from "../../infra/lab/base";
import { labHostSpec, LAB_HOSTS } from "../../infra/lab/constants";
import { assertZoneName, labDnsPaths, renderKnotConfig, renderNameserverZone, renderReverseZone } from "../../infra/lab/dns";
import { containerCgroupDirs, labHostPaths, renderHostNetwork, renderSupervisorScript } from "../../infra/lab/hosts";
import { renderLabNftRuleset } from "../../infra/lab/network";
import {
  ensureLabPrerequisites,
  labPackages,
  LAB_PREREQUISITES,
  LabPrerequisitesError,
  missingPrerequisites,
} from "../../infra/lab/prerequisites";
import { LabStepError, runStep } from "../../infra/lab/process";

/** The packages .ci/run installs: the words of its apt_packages=( … ) array. */
function ciAptPackages(): string[] {
  const script = readFileSync(join(__dirname, "..", "..", ".ci", "run"), "utf8");
  const list = /^apt_packages=\(([^)]*)\)/m.exec(script)?.[1];
  if (list === undefined) throw new Error(".ci/run has no apt_packages=( … ) list");
  return list
    .split("\n")
    .map((line) => line.replace(/#.*/, ""))
    .join(" ")
    .split(/\s+/)
    .filter((word) => word !== "");
}

// The pure parts of the lab: what it would write, checked without booting anything.
describe("lab plan", () => {
  const machineSources = [
    {
      path: "/etc/apt/sources.list.d/debian.sources",
      text:
        "Types: deb\n# snapshot\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n" +
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n" +
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nEnabled: no\n",
    },
    {
      path: "/etc/apt/sources.list.d/nodesource.sources",
      text: "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n",
    },
    { path: "/etc/apt/sources.list", text: "deb http://security.debian.org/debian-security bookworm-security main\n" },
  ];

  it("gives the guests the machine's enabled Debian sources only, and debootstraps from the main archive", () => {
    const guest = debianSourcesForGuests(machineSources, "bookworm");
    expect(guest).toContain("URIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates");
    expect(guest).toContain("URIs: http://security.debian.org/debian-security\nSuites: bookworm-security");
    expect(guest).not.toContain("nodesource");
    expect(guest).not.toContain("# snapshot");
    expect(guest.match(/debian-security/g)).toHaveLength(1);
    expect(debootstrapMirror(guest, "bookworm")).toBe("http://deb.debian.org/debian");
    expect(mirrorHostNames(guest)).toEqual(["deb.debian.org", "security.debian.org"]);
    expect(() => debootstrapMirror("", "bookworm")).toThrow(/no enabled Debian entry for suite "bookworm"/);
  });

  it("gives a Debian 13 guest the same mirrors with trixie's suites", () => {
    const guest = debianSourcesForGuests(machineSources, "trixie");
    expect(guest).toContain("URIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates");
    expect(guest).toContain("URIs: http://security.debian.org/debian-security\nSuites: trixie-security");
    expect(guest).not.toContain("bookworm");
    expect(debootstrapMirror(guest, "trixie")).toBe("http://deb.debian.org/debian");
  });

  it("lets guests out only to the mirror, and masquerades only the lab subnet", () => {
    const rules = renderLabNftRuleset(["203.0.113.80"]);
    expect(rules).toMatch(/^table ip brightchain_lab \{/);
    expect(rules).toContain('iifname "bclab0" ip daddr { 203.0.113.80 } tcp dport { 80, 443 } accept');
    expect(rules).toContain('iifname "bclab0" drop');
    expect(rules).toContain('ip saddr 10.231.0.0/24 oifname != "bclab0" masquerade');
  });

  it("configures host0 statically without router advertisements (network-online would wait 2 minutes)", () => {
    const network = renderHostNetwork(labHostSpec("mail2"));
    expect(network).toContain("Address=10.231.0.20/24");
    expect(network).toContain("DNS=10.231.0.1");
    expect(network).toContain("IPv6AcceptRA=no");
  });

  it("restarts a container only when the guest asked for a reboot (nspawn exit code 133)", () => {
    const host = labHostSpec("mail");
    const script = renderSupervisorScript(host, labHostPaths("/var/lib/brightchain-lab", "mail"), [
      "/sys/fs/cgroup/unified/machine/bclab-mail",
    ]);
    expect(script).toContain('[ "$rc" -eq 133 ] || exit "$rc"');
    expect(script).toContain("--register=no --keep-unit");
    expect(script).toContain("/sys/fs/cgroup/unified/machine/bclab-mail/cgroup.procs");
    expect(containerCgroupDirs("bclab-mail", "/nonexistent")).toEqual([]);
  });

  it("serves the lab's zones plus reverse names for every host", () => {
    const config = renderKnotConfig(labDnsPaths("/state"), ["brightchain.org", "outside.test"]);
    expect(config).toContain("listen: 10.231.0.1@53");
    expect(config).toContain("  - domain: brightchain.org\n  - domain: outside.test");
    const reverse = renderReverseZone();
    expect(reverse.name).toBe("0.231.10.in-addr.arpa");
    for (const host of LAB_HOSTS) expect(reverse.text).toContain(`PTR ${host.fqdn}.`);
  });

  it("signs every zone (DNSSEC, ECDSA P-256 as Cloudflare) and gives the NS name every zone names an address", () => {
    const config = renderKnotConfig(labDnsPaths("/state"), ["brightchain.org"]);
    expect(config).toContain("policy:\n  - id: lab\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n");
    expect(config).toContain("    dnssec-signing: on\n    dnssec-policy: lab\n");
    const nameserver = renderNameserverZone();
    expect(nameserver.name).toBe("lab.test");
    expect(nameserver.text).toMatch(/^ns A 10\.231\.0\.1$/m);
  });

  it("names the value and what is accepted when a user gets a name wrong", () => {
    expect(() => labHostSpec("mail3")).toThrow('lab host "mail3" does not exist; accepted: mail, mail2, outside');
    expect(() => assertZoneName("Brightchain.org.")).toThrow(/"Brightchain\.org\." is not a DNS name/);
  });

  it("reports a failed step with the host, the step, the command and its output", async () => {
    const failure = runStep("mail", "install postfix", "sh", ["-c", "echo E: Unable to locate package >&2; exit 100"]);
    await expect(failure).rejects.toBeInstanceOf(LabStepError);
    await expect(failure).rejects.toThrow(
      /host "mail", step "install postfix" failed: `sh -c .*`\nexit code 100\nE: Unable to locate package/,
    );
  });

  it("installs every package the lab needs in CI: each is in .ci/run's apt_packages", () => {
    const ci = ciAptPackages();
    expect(ci).toContain("debootstrap");
    expect(labPackages().filter((pkg) => !ci.includes(pkg))).toEqual([]);
    // Every program the lab spawns outside Debian's essential set is listed once with its package.
    const programs = LAB_PREREQUISITES.map((entry) => entry.program);
    for (const program of [
      "debootstrap",
      "systemd-nspawn",
      "nft",
      "ip",
      "ssh",
      "ssh-keygen",
      "knotd",
      "knotc",
      "pebble",
      "ansible-playbook",
    ])
      expect(programs).toContain(program);
    expect(new Set(programs).size).toBe(programs.length);
  });

  it("stops a user who is not root at once with the exact apt-get command for what is missing", async () => {
    const installed = new Set(["ssh", "ssh-keygen", "ip", "systemctl", "systemd-machine-id-setup", "openssl"]);
    const find = (program: string) => (installed.has(program) ? `/usr/bin/${program}` : undefined);
    expect(missingPrerequisites(find).map((entry) => entry.program)).toEqual([
      "debootstrap",
      "systemd-nspawn",
      "nft",
      "knotd",
      "knotc",
      "pebble",
      "ansible-playbook",
    ]);
    const progress: string[] = [];
    const attempt = ensureLabPrerequisites((line) => progress.push(line), { isRoot: false, find });
    await expect(attempt).rejects.toBeInstanceOf(LabPrerequisitesError);
    await expect(attempt).rejects.toThrow(
      "apt-get update && apt-get install -y --no-install-recommends debootstrap systemd-container nftables knot pebble ansible",
    );
    await expect(attempt).rejects.toThrow(/missing on this machine: debootstrap \(building the base image of each release\)/);
    expect(progress).toEqual([]);
    expect(await ensureLabPrerequisites(() => undefined, { isRoot: false, find: (program) => `/usr/bin/${program}` })).toEqual(
      [],
    );
  });

  it("boots mail and mail2 on their stack's gateway:os, outside on Debian 12, unless told otherwise", () => {
    const repo = join(__dirname, "..", "..");
    expect(labHostReleases(repo)).toEqual({ mail: "debian-13", mail2: "debian-12", outside: "debian-12" });
    expect(labHostReleases(repo, { mail: "debian-12", mail2: "debian-13" })).toEqual({
      mail: "debian-12",
      mail2: "debian-13",
      outside: "debian-12",
    });
    // The stack follows the host it lands on.
    const primary = readStackConfigFiles(repo, "primary").values;
    expect(labStackOverrides("primary", primary, { mail: "debian-12" }).overrides["gateway:os"]).toBe("debian-12");
    expect(labStackOverrides("primary", primary).overrides["gateway:os"]).toBeUndefined();
    expect(() => stackLabRelease("relay", { "gateway:os": "ubuntu-24.04" })).toThrow(
      'Pulumi.relay.yaml: gateway:os is "ubuntu-24.04"; the lab boots debian-12, debian-13',
    );
  });
});
