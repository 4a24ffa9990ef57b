// What the plan's smaller pieces show an operator: RHEL's dnf step line by line (EPEL, Node 20, Rspamd's own
// repository only with Rspamd), the runtime build the plan installs and the error naming the folder when there is
// none, and the DANE key step's output as the parser takes or refuses it, and as the shell prints it.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { MissingRuntimeBuildError, readRuntimeArtifacts } from "../../infra/plan/artifacts";
import { daneKeysCommand, parseDaneKeys } from "../../infra/plan/dane";
import { packagesCommand } from "../../infra/plan/packages";
import { nodeMatrix, examplePrimary } from "../fixtures/nodes";

const root = mkdtempSync(join(tmpdir(), "plan-small-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const matrixNode = (name: string): GatewayNode => nodeMatrix.find((m) => m.name === name)!.node;

const EPEL =
  'rpm -q epel-release >/dev/null 2>&1 || dnf install -y epel-release || dnf install -y "https://dl.fedoraproject.org/pub/epel/epel-release-latest-$(rpm -E %rhel).noarch.rpm"';
const NODE_20 = "if dnf module list nodejs >/dev/null 2>&1; then dnf module enable -y nodejs:20; fi";

describe("the RHEL packages step", () => {
  it("Rspamd: EPEL, Node 20, then Rspamd's repository and key once, then one dnf install", () => {
    expect(packagesCommand(matrixNode("primary-rhel-rspamd-pipe")).split("\n")).toEqual([
      "set -eu",
      EPEL,
      NODE_20,
      "if [ ! -f /etc/yum.repos.d/rspamd.repo ]; then",
      '  curl -fsS -o /etc/yum.repos.d/rspamd.repo "https://rspamd.com/rpm-stable/centos-$(rpm -E %rhel)/rspamd.repo"',
      "  rpm --import https://rspamd.com/rpm-stable/gpg.key",
      "fi",
      "dnf install -y postfix bind-utils opendkim opendkim-tools rspamd dovecot certbot python3-certbot-dns-cloudflare firewalld nodejs ca-certificates",
    ]);
  });

  it("SpamAssassin: no Rspamd repository", () => {
    expect(packagesCommand(matrixNode("relay-rhel-spamassassin-ipv4only")).split("\n")).toEqual([
      "set -eu",
      EPEL,
      NODE_20,
      "dnf install -y postfix bind-utils spamassassin spamass-milter-postfix certbot python3-certbot-dns-cloudflare firewalld nodejs ca-certificates",
    ]);
  });
});

describe("the runtime build the plan installs", () => {
  it("every *.cjs of the folder, sorted by name, with its content; nothing else", () => {
    const dist = join(root, "dist");
    mkdirSync(dist);
    writeFileSync(join(dist, "b.cjs"), "// b\n");
    writeFileSync(join(dist, "a.cjs"), "// a\n");
    writeFileSync(join(dist, "a.cjs.map"), "{}");
    writeFileSync(join(dist, "notes.txt"), "x");
    expect(readRuntimeArtifacts(dist, "--runtime-dist")).toEqual([
      { name: "a.cjs", content: "// a\n" },
      { name: "b.cjs", content: "// b\n" },
    ]);
  });

  it("a folder without a build, or no folder: an error naming where the path came from, the path, and the fix", () => {
    const empty = join(root, "empty");
    mkdirSync(empty);
    writeFileSync(join(empty, "brightchain-lookup.js"), "");
    for (const dist of [empty, join(root, "missing")]) {
      let error: unknown;
      try {
        readRuntimeArtifacts(dist, "GATEWAY_RUNTIME_DIST");
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(MissingRuntimeBuildError);
      expect((error as Error).name).toBe("MissingRuntimeBuildError");
      expect((error as Error).message).toBe(
        `GATEWAY_RUNTIME_DIST ${JSON.stringify(dist)} holds no built runtime (*.cjs); run \`npm run build --workspace runtime\` or point it at a build`,
      );
    }
  });
});

describe("the DANE key step's output", () => {
  const H = "a".repeat(64);
  const node = examplePrimary;

  it("takes surrounding spaces and blank lines; refuses a line with more before or after `<lineage> <hash>`", () => {
    expect(parseDaneKeys(node, `\n  mail.brightchain.org ${H}  \n \t \n`)).toEqual(new Map([["mail.brightchain.org", H]]));
    for (const line of [`x mail.brightchain.org ${H}`, `mail.brightchain.org ${H}a`, `mail.brightchain.org ${H} x`])
      expect(() => parseDaneKeys(node, line)).toThrow(
        `DANE key line ${JSON.stringify(line)} from mail.brightchain.org is not accepted; accepted: "<lineage> <64 lower-case hex>" for mail.brightchain.org`,
      );
  });

  it("run by a shell: a lineage whose key is missing stops the step naming the key file, printing no line", () => {
    const command = daneKeysCommand(node).replaceAll("/etc/letsencrypt", join(root, "letsencrypt"));
    const result = spawnSync("/bin/sh", ["-c", command], { encoding: "utf8" });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      `${join(root, "letsencrypt")}/live/mail.brightchain.org/privkey.pem: no such key; the lineage has not been issued on this host\n`,
    );
  });

  it("run by a shell: `<lineage> <sha256 of the public key's DER>` per key", () => {
    const live = join(root, "letsencrypt", "live", "mail.brightchain.org");
    mkdirSync(live, { recursive: true });
    const key = join(live, "privkey.pem");
    spawnSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]);
    const der = spawnSync("openssl", ["pkey", "-in", key, "-pubout", "-outform", "DER"]).stdout;
    const hash = spawnSync("sha256sum", { input: der, encoding: "utf8" }).stdout.slice(0, 64);
    const command = daneKeysCommand(node).replaceAll("/etc/letsencrypt", join(root, "letsencrypt"));
    const result = spawnSync("/bin/sh", ["-c", command], { encoding: "utf8" });
    expect(result.stdout).toBe(`mail.brightchain.org ${hash}\n`);
    expect(parseDaneKeys(node, result.stdout).get("mail.brightchain.org")).toBe(hash);
  });
});
