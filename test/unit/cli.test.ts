import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { RenderManifest } from "../../infra/cli/render";

const repo = path.resolve(__dirname, "../..");
const temp = mkdtempSync(path.join(tmpdir(), "gateway-cli-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

let outCount = 0;
const freshOut = (): string => path.join(temp, `out${outCount++}`);

function gateway(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const env: Record<string, string | undefined> = { ...process.env, ...options.env };
  // The secret variables must come only from the test case, never from the machine running it.
  if (!options.env?.GATEWAY_RENDER_SUBMISSION_USERS) delete env.GATEWAY_RENDER_SUBMISSION_USERS;
  if (!options.env?.GATEWAY_RENDER_CERTBOT_CLOUDFLARE_TOKEN) delete env.GATEWAY_RENDER_CERTBOT_CLOUDFLARE_TOKEN;
  const result = spawnSync(process.execPath, [path.join(repo, "bin/gateway.cjs"), ...args], {
    cwd: options.cwd ?? repo,
    env,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const readManifest = (out: string): RenderManifest =>
  JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8")) as RenderManifest;
const modeOf = (file: string): string => `0${(statSync(file).mode & 0o7777).toString(8).padStart(3, "0")}`;

describe("gateway render", () => {
  it.each(["primary", "relay"])(
    "writes the %s stack's files at their host paths with their modes and a true manifest",
    (stack) => {
      const out = freshOut();
      const run = gateway(["render", "--stack", stack, "--out", out]);
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      const manifest = readManifest(out);
      expect(manifest.stack).toBe(stack);
      expect(manifest.hostname).toBe(stack === "primary" ? "mail.brightchain.org" : "mail2.brightchain.org");
      expect(manifest.files.map((f) => f.path)).toEqual(
        expect.arrayContaining(["/etc/postfix/main.cf", "/etc/postfix/master.cf"]),
      );
      for (const entry of manifest.files) {
        const onDisk = path.join(out, entry.path);
        expect(entry.mode).toMatch(/^0[0-7]{3,4}$/);
        expect(modeOf(onDisk), entry.path).toBe(entry.mode);
        expect(createHash("sha256").update(readFileSync(onDisk)).digest("hex"), entry.path).toBe(entry.sha256);
      }
      for (const dir of manifest.directories) {
        expect(statSync(path.join(out, dir.path)).isDirectory()).toBe(true);
        expect(modeOf(path.join(out, dir.path)), dir.path).toBe(dir.mode);
      }
      const zone = readFileSync(path.join(out, "dns.zone"), "utf8");
      expect(zone).toContain(
        stack === "primary" ? "@\t3600\tIN\tMX\t10\tmail.brightchain.org." : "@\t3600\tIN\tMX\t20\tmail2.brightchain.org.",
      );
      const zoneCheck = spawnSync("kzonecheck", ["-o", "brightchain.org", path.join(out, "dns.zone")], { encoding: "utf8" });
      expect(zoneCheck.stdout + zoneCheck.stderr).toBe("");
      expect(zoneCheck.status).toBe(0);
      expect(manifest.ptr[0]!.reverseName).toBe(stack === "primary" ? "10.113.0.203.in-addr.arpa" : "20.113.0.203.in-addr.arpa");
    },
  );

  it("the primary's zone says why the DKIM record is missing and has SPF and DMARC; the relay's has neither", () => {
    const primaryOut = freshOut();
    const relayOut = freshOut();
    expect(gateway(["render", "--stack", "primary", "--out", primaryOut]).code).toBe(0);
    expect(gateway(["render", "--stack", "relay", "--out", relayOut]).code).toBe(0);
    const primaryZone = readFileSync(path.join(primaryOut, "dns.zone"), "utf8");
    const relayZone = readFileSync(path.join(relayOut, "dns.zone"), "utf8");
    expect(primaryZone).toMatch(/; Not here: the DKIM record default\._domainkey\.brightchain\.org/);
    expect(primaryZone).toMatch(
      /; Not here: TLSA _25\._tcp\.mail\.brightchain\.org 3 1 1 <SHA-256 of the key of certbot lineage/,
    );
    expect(primaryZone).toContain('"v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 ip4:203.0.113.20 -all"');
    expect(primaryZone).toMatch(/^_dmarc\t/m);
    expect(relayZone).not.toMatch(/v=spf1|v=DMARC1|v=DKIM1/);
  });

  it("withholds secret files without their secret, and writes them (0600/0640, never world-readable) with it", () => {
    const without = freshOut();
    expect(gateway(["render", "--stack", "primary", "--out", without]).code).toBe(0);
    const withheld = readManifest(without).withheld;
    expect(withheld.length).toBeGreaterThan(0);
    for (const w of withheld) {
      expect(w.reason).toMatch(/GATEWAY_RENDER_/);
      expect(() => statSync(path.join(without, w.path))).toThrow();
    }

    const withSecrets = freshOut();
    const run = gateway(["render", "--stack", "primary", "--out", withSecrets], {
      env: {
        GATEWAY_RENDER_SUBMISSION_USERS: JSON.stringify([
          { username: "brightchain-node", password: "correct horse battery staple" },
        ]),
        GATEWAY_RENDER_CERTBOT_CLOUDFLARE_TOKEN: "cf-test-token-not-real",
      },
    });
    expect(run.code).toBe(0);
    const manifest = readManifest(withSecrets);
    expect(manifest.withheld).toEqual([]);
    const secretFiles = manifest.files.filter((f) => f.secret);
    expect(secretFiles.map((f) => f.path).sort()).toEqual(withheld.map((w) => w.path).sort());
    for (const f of secretFiles) expect(Number.parseInt(f.mode, 8) & 0o007).toBe(0);
    const passwd = secretFiles.find((f) => f.path.includes("dovecot"));
    if (passwd) expect(readFileSync(path.join(withSecrets, passwd.path), "utf8")).toContain("brightchain-node");
  });

  it("renders identically twice (deterministic output, stable manifest)", () => {
    const a = freshOut();
    const b = freshOut();
    gateway(["render", "--stack", "relay", "--out", a]);
    gateway(["render", "--stack", "relay", "--out", b]);
    expect(readFileSync(path.join(a, "manifest.json"), "utf8")).toBe(readFileSync(path.join(b, "manifest.json"), "utf8"));
    expect(readFileSync(path.join(a, "dns.zone"), "utf8")).toBe(readFileSync(path.join(b, "dns.zone"), "utf8"));
  });

  it("works from another folder with --dir, and refuses a non-empty --out", () => {
    const out = freshOut();
    expect(gateway(["render", "--stack", "relay", "--out", out, "--dir", repo], { cwd: temp }).code).toBe(0);
    const again = gateway(["render", "--stack", "relay", "--out", out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/--out .* is not empty/);
  });

  it("bad configuration exits 2 naming the key, the value and what is accepted; nothing is written", () => {
    const project = path.join(temp, "badproject");
    rmSync(project, { recursive: true, force: true });
    mkdirSync(project);
    copyFileSync(path.join(repo, "Pulumi.yaml"), path.join(project, "Pulumi.yaml"));
    writeFileSync(
      path.join(project, "Pulumi.relay.yaml"),
      readFileSync(path.join(repo, "Pulumi.relay.yaml"), "utf8").replace(
        "gateway:spamEngine: rspamd",
        "gateway:spamEngine: amavis",
      ),
    );
    const out = freshOut();
    const run = gateway(["render", "--stack", "relay", "--out", out, "--dir", project]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('gateway:spamEngine="amavis" is invalid; expected spamassassin, rspamd, none');
    expect(() => statSync(out)).toThrow();

    writeFileSync(path.join(project, "Pulumi.typo.yaml"), "config:\n  gateway:rol: relay\n");
    const typo = gateway(["render", "--stack", "typo", "--out", freshOut(), "--dir", project]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/gateway:rol="\(value not shown\)" is invalid; expected gateway:role \(the closest key\)/);
  });

  it("a bad secret variable exits 2 naming the variable, without echoing the password", () => {
    const run = gateway(["render", "--stack", "primary", "--out", freshOut()], {
      env: { GATEWAY_RENDER_SUBMISSION_USERS: '[{"username":"node","password":"tooshort"}]' },
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("GATEWAY_RENDER_SUBMISSION_USERS");
    expect(run.stderr).not.toContain("tooshort");
  });

  it("usage errors exit 2: missing flags, unknown flags, unknown stack file", () => {
    expect(gateway(["render", "--out", freshOut()]).stderr).toMatch(/--stack NAME is required/);
    const unknownFlag = gateway(["render", "--stack", "relay", "--out", freshOut(), "--force"]);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toMatch(/unknown flag --force; accepted flags: --stack, --out, --dir/);
    const noStack = gateway(["render", "--stack", "nosuch", "--out", freshOut()]);
    expect(noStack.code).toBe(2);
    expect(noStack.stderr).toMatch(/Pulumi\.nosuch\.yaml/);
  });
});

describe("gateway help", () => {
  it("--help lists every verb; no verb prints usage and exits 2; an unknown verb exits 2", () => {
    const help = gateway(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Verbs:\n\s+render\s+write/);
    const bare = gateway([]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/Usage: gateway <verb>/);
    const unknown = gateway(["deploy"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown verb "deploy"; accepted: render/);
  });

  it("render --help explains every flag and secret variable", () => {
    const help = gateway(["render", "--help"]);
    expect(help.code).toBe(0);
    for (const word of [
      "--stack",
      "--out",
      "--dir",
      "manifest.json",
      "dns.zone",
      "GATEWAY_RENDER_SUBMISSION_USERS",
      "GATEWAY_RENDER_CERTBOT_CLOUDFLARE_TOKEN",
      "Exit codes",
    ]) {
      expect(help.stdout).toContain(word);
    }
  });
});
