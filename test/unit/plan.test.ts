import { createHash } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  STEP_DKIM_KEY,
  STEP_OS_RELEASE,
  STEP_PACKAGES,
  STEP_POSTFIX_CHECK,
  STEP_POSTFIX_RELOAD,
  STEP_RETIRE,
  STEP_VERIFY,
  fileStepId,
  hostPlan,
  type HostStep,
} from "../../infra/plan";
import { firewallFiles } from "../../infra/render/firewall";
import { requiredPackages } from "../../infra/plan/packages";
import { nodeProfiles } from "../../infra/model/profiles";
import { OS_RELEASES, releaseOs } from "../../infra/model/releases";
import {
  directoriesCommand,
  dkimKeyCommand,
  installFileCommand,
  installFileStdin,
  recipientRegistryCommand,
} from "../../infra/plan/steps";
import type { GatewayNode, HostDirectory, HostFile } from "../../infra/model/types";
import { examplePrimary, exampleRelay, nodeMatrix } from "../fixtures/nodes";

// Stand-ins with the shape the renderers produce: the plan only reads path/mode/owner/content/notify.
function sampleFiles(node: GatewayNode, mainCf = `myhostname = ${node.host.hostname}\n`): HostFile[] {
  return [
    { path: "/etc/postfix/main.cf", mode: 0o644, owner: "root", group: "root", content: mainCf, notify: ["postfix"] },
    {
      path: "/etc/postfix/master.cf",
      mode: 0o644,
      owner: "root",
      group: "root",
      content: "smtp inet n - y - - smtpd\n",
      notify: ["postfix"],
    },
    {
      path: "/etc/opendkim.conf",
      mode: 0o644,
      owner: "root",
      group: "root",
      content: "Socket inet:8891@127.0.0.1\n",
      notify: ["opendkim"],
    },
    {
      path: "/etc/brightchain/gateway.env",
      mode: 0o640,
      owner: "root",
      group: "brightchain",
      content: "GATEWAY_POSTFIX_PASS=s3cret\n",
      secret: true,
      notify: ["brightchain-lookup"],
    },
    {
      path: "/etc/systemd/system/brightchain-lookup.service",
      mode: 0o644,
      owner: "root",
      group: "root",
      content: "[Service]\n",
      notify: ["brightchain-lookup"],
    },
    ...firewallFiles(node),
  ];
}

const sampleDirectories: HostDirectory[] = [
  { path: "/var/spool/brightchain", mode: 0o750, owner: "brightchain", group: "brightchain" },
  { path: "/var/spool/brightchain/incoming", mode: 0o750, owner: "brightchain", group: "brightchain" },
];

function plan(node: GatewayNode, mainCf?: string): HostStep[] {
  return hostPlan(node, sampleFiles(node, mainCf), sampleDirectories, [
    { name: "brightchain-lookup.cjs", content: "console.log(1)\n" },
  ]);
}

function step(steps: HostStep[], id: string): HostStep {
  const found = steps.find((s) => s.id === id);
  if (!found) throw new Error(`no step ${id} in ${steps.map((s) => s.id).join(", ")}`);
  return found;
}

describe("hostPlan order and identity", () => {
  it.each(nodeMatrix)(
    "$name: unique ids, every step runs after steps listed before it, the release check then packages first, verify last",
    ({ node }) => {
      const steps = plan(node);
      const ids = steps.map((s) => s.id);
      expect(new Set(ids).size).toBe(ids.length);
      const seen = new Set<string>();
      for (const s of steps) {
        for (const dep of s.after) expect(seen.has(dep), `${s.id} runs after ${dep}`).toBe(true);
        seen.add(s.id);
      }
      expect(ids.slice(0, 2)).toEqual([STEP_OS_RELEASE, STEP_PACKAGES]);
      expect(ids.slice(-4)).toEqual([STEP_POSTFIX_CHECK, STEP_POSTFIX_RELOAD, STEP_RETIRE, STEP_VERIFY]);
    },
  );

  it("is deterministic: the same inputs give the same steps", () => {
    expect(plan(examplePrimary)).toEqual(plan(examplePrimary));
  });

  it("refuses two files at one path", () => {
    const files = sampleFiles(examplePrimary);
    expect(() => hostPlan(examplePrimary, [...files, files[0]!], sampleDirectories)).toThrow(
      /\/etc\/postfix\/main.cf is rendered twice/,
    );
  });
});

describe("packages", () => {
  it("primary on Debian: SpamAssassin with spamd and the milter, Dovecot for SASL, dns-01 plugin, ufw; no debconf prompt", () => {
    const packages = requiredPackages(examplePrimary);
    expect(packages).toEqual(
      expect.arrayContaining([
        "postfix",
        "opendkim",
        "opendkim-tools",
        "spamassassin",
        "spamd",
        "spamass-milter",
        "dovecot-core",
        "certbot",
        "python3-certbot-dns-cloudflare",
        "ufw",
        "nodejs",
      ]),
    );
    expect(packages).not.toContain("rspamd");
    expect(packages).not.toContain("firewalld");
    const command = step(plan(examplePrimary), STEP_PACKAGES).command;
    expect(command).toContain("export DEBIAN_FRONTEND=noninteractive");
    expect(command).toContain("postfix postfix/main_mailer_type select Internet Site");
    expect(command).toContain("postfix/mailname string brightchain.org");
    // Postfix is installed on its own before anything whose postinst needs the postfix user (spamass-milter).
    const installs = command.split("\n").filter((line) => line.startsWith("apt-get install"));
    expect(installs).toHaveLength(2);
    expect(installs[0]).toMatch(/ postfix$/);
    expect(installs[1]).toContain(" spamass-milter");
  });

  it("relay on Debian: Rspamd; no Dovecot (no submission port), no OpenDKIM (relays sign nothing)", () => {
    expect(requiredPackages(exampleRelay)).toEqual([
      "postfix",
      "bind9-dnsutils",
      "rspamd",
      "certbot",
      "python3-certbot-dns-cloudflare",
      "ufw",
      "nodejs",
      "ca-certificates",
      "prometheus-postfix-exporter",
    ]);
  });

  it.each(OS_RELEASES)("%s: exactly the packages of the node's component profiles, Postfix first", (release) => {
    for (const node of [examplePrimary, exampleRelay]) {
      for (const engine of ["spamassassin", "rspamd", "none"] as const) {
        const variant: GatewayNode = { ...node, os: releaseOs(release), spam: { ...node.spam, engine } };
        const packages = requiredPackages(variant);
        expect(packages[0]).toBe("postfix");
        expect(new Set(packages).size).toBe(packages.length);
        expect(packages).toEqual(nodeProfiles(variant).flatMap((profile) => profile.packages));
        const spamd =
          release === "rhel-9" ? ["spamassassin", "spamass-milter-postfix"] : ["spamassassin", "spamd", "spamass-milter"];
        for (const name of spamd) expect(packages.includes(name)).toBe(engine === "spamassassin");
        expect(packages.includes("rspamd")).toBe(engine === "rspamd");
        expect(packages.includes("opendkim")).toBe(node.role === "primary");
        const dovecot = release === "rhel-9" ? "dovecot" : "dovecot-core";
        expect(packages.includes(dovecot)).toBe(node.role === "primary");
      }
    }
  });

  it("RHEL: dnf after EPEL, spamass-milter-postfix, dovecot, firewalld; Rspamd from its own repository", () => {
    const rhelSa = nodeMatrix.find((m) => m.name === "relay-rhel-spamassassin-ipv4only")!.node;
    expect(requiredPackages(rhelSa)).toEqual(expect.arrayContaining(["spamassassin", "spamass-milter-postfix", "firewalld"]));
    const rhelPrimary = nodeMatrix.find((m) => m.name === "primary-rhel-rspamd-pipe")!.node;
    expect(requiredPackages(rhelPrimary)).toEqual(expect.arrayContaining(["dovecot", "rspamd"]));
    const command = step(plan(rhelPrimary), STEP_PACKAGES).command;
    expect(command).toContain("epel-release");
    expect(command).toContain("rspamd.repo");
    expect(command).toMatch(/^dnf install -y .*firewalld/m);
    expect(command).not.toContain("apt-get");
  });

  it("http-01 drops the Cloudflare plugin and uses standalone certbot (the firewall script opens 80)", () => {
    const http = nodeMatrix.find((m) => m.name === "primary-ubuntu-none-http01")!.node;
    expect(requiredPackages(http)).not.toContain("python3-certbot-dns-cloudflare");
    const steps = plan(http);
    expect(step(steps, "certificate").command).toContain("--standalone");
    expect(step(steps, "certificate").after).toContain("firewall");
  });

  it("runs the rendered firewall script after installing it, re-running when the script changes", () => {
    const firewall = step(plan(examplePrimary), "firewall");
    expect(firewall.command).toBe("BRIGHTCHAIN_SSH_PORT=22 /usr/local/sbin/brightchain-firewall");
    expect(firewall.after).toContain(fileStepId("/usr/local/sbin/brightchain-firewall"));
    const http = nodeMatrix.find((m) => m.name === "primary-ubuntu-none-http01")!.node;
    expect(step(plan(http), "firewall").triggers).not.toEqual(firewall.triggers);
  });

  it("keeps the deploy's SSH port open so applying the firewall cannot lock the deploy out", () => {
    const custom = hostPlan(examplePrimary, sampleFiles(examplePrimary), sampleDirectories, [], { sshPort: 2222 });
    expect(step(custom, "firewall").command).toBe("BRIGHTCHAIN_SSH_PORT=2222 /usr/local/sbin/brightchain-firewall");
    expect(step(custom, "firewall").triggers).not.toEqual(step(plan(examplePrimary), "firewall").triggers);
  });
});

describe("roles", () => {
  it("only the primary generates a DKIM key; its step prints <selector>.txt for the DNS record", () => {
    const dkim = step(plan(examplePrimary), STEP_DKIM_KEY);
    expect(dkim.command).toContain("opendkim-genkey -b 2048 -h sha256 -s default -d brightchain.org -D /etc/dkim");
    expect(dkim.command.trim().split("\n").at(-1)).toBe("cat /etc/dkim/default.txt");
    expect(plan(exampleRelay).map((s) => s.id)).not.toContain(STEP_DKIM_KEY);
  });

  it("the primary verifies 25 and 587, a relay 25 only; both query the lookup service through Postfix's own socketmap client", () => {
    const primary = step(plan(examplePrimary), STEP_VERIFY).command;
    expect(primary).toContain("listening 25 && listening 587");
    expect(primary).toContain("socketmap:inet:127.0.0.1:2526:virtual");
    // Each milter Postfix calls must be up too: with milter_default_action = tempfail a starting one means 451.
    expect(primary).toContain("[ -S /var/spool/postfix/spamass/spamass.sock ] && listening 8891 && lookup_answers");
    const relay = step(plan(exampleRelay), STEP_VERIFY).command;
    expect(relay).toContain("until listening 25 && listening 11332 && lookup_answers && services_up");
    expect(relay).toMatch(/for u in brightchain-lookup certbot.timer .*rspamd;/);
  });

  it("seeds an empty recipient registry file before the services start, only for the file registry", () => {
    const steps = plan(examplePrimary);
    expect(step(steps, "recipient-registry").command).toContain(
      "install -m 0640 -o root -g brightchain /dev/null /etc/brightchain/recipients",
    );
    expect(step(steps, "service-brightchain-lookup").after).toContain("recipient-registry");
    const http = {
      ...examplePrimary,
      lookup: { ...examplePrimary.lookup, registry: { kind: "http" as const, url: "http://127.0.0.1:8080" } },
    };
    expect(plan(http).map((s) => s.id)).not.toContain("recipient-registry");
  });

  it("enables the spam engine's services and every service a file notifies, but reloads Postfix only after postfix check", () => {
    const ids = plan(examplePrimary).map((s) => s.id);
    expect(ids).toEqual(
      expect.arrayContaining(["service-spamd", "service-spamass-milter", "service-opendkim", "service-brightchain-lookup"]),
    );
    expect(ids).not.toContain("service-postfix");
    expect(plan(exampleRelay).map((s) => s.id)).toContain("service-rspamd");
    expect(step(plan(examplePrimary), STEP_POSTFIX_RELOAD).after).toEqual([STEP_POSTFIX_CHECK]);
  });

  it("issues the certificate through Cloudflare dns-01 by default, before any service or Postfix uses it, and enables renewal", () => {
    const steps = plan(examplePrimary);
    const certificate = step(steps, "certificate");
    expect(certificate.command).toContain("--dns-cloudflare-credentials /etc/letsencrypt/cloudflare.ini");
    expect(certificate.command).toContain("test -s /etc/letsencrypt/live/mail.brightchain.org/fullchain.pem");
    expect(step(steps, "service-certbot-timer").after).toContain("certificate");
    expect(step(steps, STEP_POSTFIX_CHECK).after).toContain("certificate");
    const rhel = nodeMatrix.find((m) => m.name === "primary-rhel-rspamd-pipe")!.node;
    expect(plan(rhel).map((s) => s.id)).toContain("service-certbot-renew-timer");
  });
});

describe("files and secrets", () => {
  it("passes file content on stdin, never on the command line, and flags secret files", () => {
    const steps = plan(examplePrimary);
    const env = step(steps, fileStepId("/etc/brightchain/gateway.env"));
    expect(env.secret).toBe(true);
    // The content after its hash line (secret files), so the command holds neither.
    expect(env.stdin).toBe(
      `${createHash("sha256").update("GATEWAY_POSTFIX_PASS=s3cret\n").digest("hex")}\nGATEWAY_POSTFIX_PASS=s3cret\n`,
    );
    expect(env.command).not.toContain("s3cret");
    expect(env.command).not.toMatch(/[0-9a-f]{64}/);
    expect(env.command).toContain("chmod 0640");
    expect(env.command).toContain("chown root:brightchain");
    expect(step(steps, fileStepId("/etc/postfix/main.cf")).secret).toBe(false);
  });

  it("installs runtime artifacts root-owned and executable, restarting the unit of the same name", () => {
    const steps = plan(examplePrimary);
    const artifact = step(steps, fileStepId("/opt/brightchain-gateway/brightchain-lookup.cjs"));
    expect(artifact.command).toContain("chmod 0755");
    expect(artifact.command).toContain("chown root:root");
    expect(step(steps, "service-brightchain-lookup").after).toContain(artifact.id);
  });
});

describe("triggers", () => {
  function changedSteps(before: HostStep[], after: HostStep[]): string[] {
    const old = new Map(before.map((s) => [s.id, JSON.stringify(s.triggers)]));
    return after.filter((s) => old.get(s.id) !== JSON.stringify(s.triggers)).map((s) => s.id);
  }

  it.each([examplePrimary, exampleRelay])(
    "a changed main.cf re-runs its install, postfix check, the reload and verify — nothing else ($role)",
    (node) => {
      const before = plan(node);
      const after = plan(node, `myhostname = ${node.host.hostname}\nmessage_size_limit = 1\n`);
      expect(changedSteps(before, after)).toEqual([
        fileStepId("/etc/postfix/main.cf"),
        STEP_POSTFIX_CHECK,
        STEP_POSTFIX_RELOAD,
        STEP_VERIFY,
      ]);
    },
  );

  it("an unchanged node changes no trigger", () => {
    expect(changedSteps(plan(examplePrimary), plan(examplePrimary))).toEqual([]);
  });

  it("a changed opendkim.conf restarts opendkim but leaves Postfix alone", () => {
    const files = sampleFiles(examplePrimary);
    const changed = files.map((f) => (f.path === "/etc/opendkim.conf" ? { ...f, content: "Socket inet:8892@127.0.0.1\n" } : f));
    const ids = changedSteps(
      hostPlan(examplePrimary, files, sampleDirectories),
      hostPlan(examplePrimary, changed, sampleDirectories),
    );
    expect(ids).toEqual([fileStepId("/etc/opendkim.conf"), "service-opendkim", STEP_VERIFY]);
  });
});

describe("the commands, run by a real shell", () => {
  const cleanups: string[] = [];
  afterEach(() => {
    for (const dir of cleanups.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "plan-test-"));
    cleanups.push(dir);
    return dir;
  }

  it.each(nodeMatrix)("$name: every command parses with sh -n", ({ node }) => {
    for (const s of plan(node)) {
      const result = spawnSync("sh", ["-n"], { input: s.command });
      expect(result.status, `${s.id}: ${result.stderr}`).toBe(0);
    }
  });

  it("installs a file with exact content, mode and owner, atomically, and re-running changes nothing", () => {
    const dir = tempDir();
    const file = {
      path: join(dir, "etc/brightchain/gateway.env"),
      mode: 0o640,
      owner: "root",
      group: "opendkim",
      content: "GATEWAY_POSTFIX_PASS=s3cret\n",
    };
    for (let run = 0; run < 2; run++) execFileSync("sh", ["-c", installFileCommand(file)], { input: file.content });
    const stat = statSync(file.path);
    expect(stat.mode & 0o7777).toBe(0o640);
    expect(stat.uid).toBe(0);
    expect(stat.gid).toBe(Number(execFileSync("getent", ["group", "opendkim"]).toString().split(":")[2]));
    expect(readFileSync(file.path, "utf8")).toBe(file.content);
    expect(readdirSync(join(dir, "etc/brightchain"))).toEqual(["gateway.env"]);
  });

  it("a secret file: the hash travels in stdin, never in the command a failing step prints", () => {
    const dir = tempDir();
    const file = {
      path: join(dir, "etc/dovecot/brightchain-submission.passwd"),
      mode: 0o640,
      owner: "root",
      group: "root",
      content: "node:{SHA512-CRYPT}$6$salt$hash\n",
      secret: true,
    };
    const command = installFileCommand(file);
    expect(command).not.toContain(createHash("sha256").update(file.content).digest("hex"));
    expect(command).not.toContain(file.content.trim());
    execFileSync("sh", ["-c", command], { input: installFileStdin(file) });
    expect(readFileSync(file.path, "utf8")).toBe(file.content);
    const damaged = spawnSync("sh", ["-c", command], { input: installFileStdin(file).slice(0, -3) });
    expect(damaged.status).not.toBe(0);
    expect(damaged.stderr.toString()).toContain("content arrived damaged");
    expect(readFileSync(file.path, "utf8")).toBe(file.content);
  });

  it("refuses content that does not match the planned hash and leaves the old file and no temp file behind", () => {
    const dir = tempDir();
    const path = join(dir, "main.cf");
    writeFileSync(path, "old\n");
    const result = spawnSync(
      "sh",
      ["-c", installFileCommand({ path, mode: 0o644, owner: "root", group: "root", content: "new\n" })],
      { input: "ne" },
    );
    expect(result.status).not.toBe(0);
    expect(result.stderr.toString()).toContain(`${path}: content arrived damaged`);
    expect(readFileSync(path, "utf8")).toBe("old\n");
    expect(readdirSync(dir)).toEqual(["main.cf"]);
  });

  it("creates the recipient registry when absent and never touches an existing one", () => {
    const dir = tempDir();
    const registry = join(dir, "etc/brightchain/recipients");
    const node = { ...examplePrimary, drop: { ...examplePrimary.drop, group: "opendkim" } };
    execFileSync("sh", ["-c", recipientRegistryCommand(node, registry)]);
    expect(readFileSync(registry, "utf8")).toBe("");
    expect(statSync(registry).mode & 0o7777).toBe(0o640);
    writeFileSync(registry, "alice@brightchain.org\n");
    execFileSync("sh", ["-c", recipientRegistryCommand(node, registry)]);
    expect(readFileSync(registry, "utf8")).toBe("alice@brightchain.org\n");
  });

  it("creates directories with their owners and modes", () => {
    const dir = tempDir();
    const tree = [
      { path: join(dir, "spool"), mode: 0o750, owner: "root", group: "root" },
      { path: join(dir, "spool/incoming/new"), mode: 0o750, owner: "opendkim", group: "opendkim" },
    ];
    execFileSync("sh", ["-c", directoriesCommand(tree)]);
    expect(statSync(tree[0]!.path).mode & 0o7777).toBe(0o750);
    const incoming = statSync(tree[1]!.path);
    expect(incoming.mode & 0o7777).toBe(0o750);
    expect(incoming.uid).toBe(Number(execFileSync("id", ["-u", "opendkim"]).toString()));
  });

  it("generates the DKIM key with the real opendkim-genkey once, keeps it on re-run, prints the public record", () => {
    const keyDir = join(tempDir(), "dkim");
    const node = { ...examplePrimary, dkim: { ...examplePrimary.dkim, keyDir } };
    const first = execFileSync("sh", ["-c", dkimKeyCommand(node)]).toString();
    const key = readFileSync(join(keyDir, "default.private"), "utf8");
    const second = execFileSync("sh", ["-c", dkimKeyCommand(node)]).toString();
    expect(second).toBe(first);
    expect(readFileSync(join(keyDir, "default.private"), "utf8")).toBe(key);
    expect(first).toMatch(/^default\._domainkey\s+IN\s+TXT/);
    expect(first).toContain("v=DKIM1; h=sha256; k=rsa;");
    expect(statSync(join(keyDir, "default.private")).mode & 0o7777).toBe(0o600);
    expect(statSync(keyDir).mode & 0o7777).toBe(0o750);
  });
});
