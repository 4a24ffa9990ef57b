// `gateway playbook` end to end through bin/gateway.cjs: the folder it writes holds the same host files,
// byte for byte and mode for mode, as `gateway render`, plus the runtime, a playbook and an inventory.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { RenderManifest } from "../../infra/cli/render";

const repo = path.resolve(__dirname, "../..");
const temp = mkdtempSync(path.join(tmpdir(), "gateway-playbook-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

// A stand-in runtime build: the CLI must ship whatever the build holds, not know its names.
const dist = path.join(temp, "dist");
mkdirSync(dist);
writeFileSync(path.join(dist, "brightchain-lookup.cjs"), "// lookup build\n");
writeFileSync(path.join(dist, "brightchain-inbound.cjs"), "// inbound build\n");

let outCount = 0;
const freshOut = (): string => path.join(temp, `out${outCount++}`);

function gateway(args: string[], env: Record<string, string> = {}) {
  const fullEnv: Record<string, string | undefined> = { ...process.env, GATEWAY_RUNTIME_DIST: dist, ...env };
  if (!env.GATEWAY_RENDER_SUBMISSION_USERS) delete fullEnv.GATEWAY_RENDER_SUBMISSION_USERS;
  if (!env.GATEWAY_RENDER_CERTBOT_CLOUDFLARE_TOKEN) delete fullEnv.GATEWAY_RENDER_CERTBOT_CLOUDFLARE_TOKEN;
  const result = spawnSync(process.execPath, [path.join(repo, "bin/gateway.cjs"), ...args], {
    cwd: repo,
    env: fullEnv,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Every regular file under dir, relative path → [mode, content]. */
function tree(dir: string, prefix = ""): Map<string, [string, Buffer]> {
  const entries = new Map<string, [string, Buffer]>();
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, name.name);
    const rel = path.posix.join(prefix, name.name);
    if (name.isDirectory()) for (const [k, v] of tree(full, rel)) entries.set(k, v);
    else entries.set(rel, [(statSync(full).mode & 0o7777).toString(8), readFileSync(full)]);
  }
  return entries;
}

const secrets = {
  GATEWAY_RENDER_SUBMISSION_USERS: JSON.stringify([{ username: "brightchain-node", password: "lab-only-password-1" }]),
  GATEWAY_RENDER_CERTBOT_CLOUDFLARE_TOKEN: "lab-token_0123456789",
};

describe("gateway playbook", () => {
  it.each(["primary", "relay"])("writes the %s stack's files exactly as gateway render does, plus the runtime", (stack) => {
    const rendered = freshOut();
    const bundle = freshOut();
    expect(gateway(["render", "--stack", stack, "--out", rendered], secrets).code).toBe(0);
    const run = gateway(["playbook", "--stack", stack, "--out", bundle], secrets);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);

    const renderTree = tree(rendered);
    const bundleFiles = tree(path.join(bundle, "files"));
    for (const [rel, [mode, content]] of renderTree) {
      if (rel === "manifest.json" || rel === "dns.zone") continue;
      expect(bundleFiles.get(rel), rel).toEqual([mode, content]);
    }
    const extra = [...bundleFiles.keys()].filter((rel) => !renderTree.has(rel)).sort();
    expect(extra).toEqual(["opt/brightchain-gateway/brightchain-inbound.cjs", "opt/brightchain-gateway/brightchain-lookup.cjs"]);
    expect(bundleFiles.get("opt/brightchain-gateway/brightchain-lookup.cjs")).toEqual(["755", Buffer.from("// lookup build\n")]);

    expect(readFileSync(path.join(bundle, "manifest.json"), "utf8")).toBe(
      readFileSync(path.join(rendered, "manifest.json"), "utf8"),
    );
    expect(readFileSync(path.join(bundle, "dns.zone"), "utf8")).toBe(readFileSync(path.join(rendered, "dns.zone"), "utf8"));
    const manifest = JSON.parse(readFileSync(path.join(bundle, "manifest.json"), "utf8")) as RenderManifest;
    expect(manifest.withheld).toEqual([]);

    // Every copy task's source is in the folder.
    const [play] = parse(readFileSync(path.join(bundle, "playbook.yml"), "utf8")) as [
      { hosts: string; tasks: Record<string, { src?: string }>[] },
    ];
    const sources = play!.tasks.map((t) => t["ansible.builtin.copy"]?.src).filter((s): s is string => s !== undefined);
    expect(sources.length).toBe(bundleFiles.size);
    for (const src of sources) expect(bundleFiles.has(src.replace(/^files\//, ""))).toBe(true);
    expect(play!.hosts).toBe(manifest.hostname);
  });

  it("takes the inventory from the stack's gateway:ssh, and the connection flags over it", () => {
    const plain = freshOut();
    expect(gateway(["playbook", "--stack", "relay", "--out", plain]).code).toBe(0);
    expect(readFileSync(path.join(plain, "inventory.ini"), "utf8")).toContain(
      "mail2.brightchain.org ansible_host=203.0.113.20 ansible_port=22 ansible_user=root",
    );
    const lab = freshOut();
    const run = gateway([
      "playbook",
      "--stack",
      "relay",
      "--out",
      lab,
      "--host",
      "10.231.0.20",
      "--port",
      "2222",
      "--key",
      "/srv/lab/id",
      "--known-hosts",
      "/srv/lab/known_hosts",
    ]);
    expect(run.code).toBe(0);
    const inventory = readFileSync(path.join(lab, "inventory.ini"), "utf8");
    expect(inventory).toContain("ansible_host=10.231.0.20 ansible_port=2222");
    expect(inventory).toContain("ansible_ssh_private_key_file=/srv/lab/id");
    expect(inventory).toContain("UserKnownHostsFile=/srv/lab/known_hosts");
  });

  it("pins the stack's gateway:ssh.hostKey by default: DIR/known_hosts holds it, the inventory checks strictly against it", () => {
    const out = freshOut();
    expect(gateway(["playbook", "--stack", "relay", "--out", out]).code).toBe(0);
    const knownHosts = readFileSync(path.join(out, "known_hosts"), "utf8");
    expect(knownHosts).toMatch(/^203\.0\.113\.20 ssh-ed25519 AAAA[A-Za-z0-9+/]+=*\n$/);
    expect(readFileSync(path.join(out, "inventory.ini"), "utf8")).toContain(
      `ansible_ssh_common_args="-o UserKnownHostsFile=${path.join(out, "known_hosts")} -o StrictHostKeyChecking=yes"`,
    );
  });

  it("without the secrets, writes no secret file and says which variable each one needs", () => {
    const out = freshOut();
    const run = gateway(["playbook", "--stack", "primary", "--out", out]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /withheld \/etc\/dovecot\/brightchain-submission\.passwd: needs a secret: set GATEWAY_RENDER_SUBMISSION_USERS/,
    );
    const files = tree(path.join(out, "files"));
    expect(files.has("etc/dovecot/brightchain-submission.passwd")).toBe(false);
    expect(readFileSync(path.join(out, "playbook.yml"), "utf8")).toContain(
      "/etc/dovecot/brightchain-submission.passwd must already exist",
    );
  });

  it.each([
    [["--stack", "primary"], /--out DIR is required/],
    [["--stack", "primary", "--out", "X", "--port", "70000"], /--port "70000" is invalid; expected a TCP port 1–65535/],
    [["--stack", "primary", "--out", "X", "--bogus", "1"], /unknown flag --bogus; accepted flags: --stack/],
  ])("refuses %j with exit 2 and a message naming the flag", (args, message) => {
    const run = gateway(["playbook", ...args.map((a) => (a === "X" ? freshOut() : a))]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
  });

  it("refuses a runtime folder with no build, naming where it looked and how to build", () => {
    const empty = path.join(temp, "empty-dist");
    mkdirSync(empty);
    const run = gateway(["playbook", "--stack", "primary", "--out", freshOut(), "--runtime-dist", empty]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      `--runtime-dist "${empty}" holds no built runtime (*.cjs); run \`npm run build --workspace runtime\``,
    );
  });

  it("refuses a non-empty output folder", () => {
    const out = freshOut();
    mkdirSync(out);
    writeFileSync(path.join(out, "stale"), "x");
    const run = gateway(["playbook", "--stack", "primary", "--out", out]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("is not empty");
  });
});
