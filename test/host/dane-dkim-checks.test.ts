// The DANE and DKIM-rotation host steps run by /bin/sh with the real tools they call: openssl computing the SPKI
// hash of a certbot-style key (P-256, certbot's default, and RSA), compared with what a DANE client computes
// from the certificate; the reuse_key edit of a certbot renewal config; and the checks that ask the zone's
// authoritative servers, run with the real dig against Knot serving the zone the renderer writes (the 2048-bit
// DKIM key split into character-strings, TLSA hex as dig groups it), passing when the records are served and
// failing, naming the server and its answer, when they are not. kzonecheck accepts that zone.
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { X509Certificate, createHash, createPublicKey } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { DnsRecord, GatewayNode } from "../../infra/model/types";
import { daneKeysCommand, daneSwitchCheckCommand, parseDaneKeys, tlsaContent } from "../../infra/plan/dane";
import { dkimPreviousRecordCommand, dkimServedCheckCommand } from "../../infra/plan/dkim-rotation";
import { dkimPreviousRecord, dnsRecords, renderZoneFile } from "../../infra/render/dns";
import { dkimKeygenCommand, renderOpendkimConf } from "../../infra/render/opendkim";
import { reuseKeyCommand } from "../../infra/render/tls";
import { examplePrimary } from "../fixtures/nodes";
import { generateDkimTxt } from "../helpers/pulumi-program";
import { freePort, processAlive, waitFor } from "../helpers/postfix-server";
import { scratchDir } from "../helpers/postfix-tools";

const L1 = "mail.brightchain.org";
const L2 = "mail.brightchain.org-2027";
let root: string;

beforeAll(() => {
  root = scratchDir("dane-dkim-checks-");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A host command with /etc/letsencrypt moved under the scratch folder; deadlines shortened for the failures. */
function sh(command: string, env: NodeJS.ProcessEnv = process.env) {
  const moved = command
    .replaceAll("/etc/letsencrypt", join(root, "letsencrypt"))
    .replace(/\+ (60|300) \)\)/, "+ 2 ))")
    .replace("sleep 5", "sleep 1");
  return spawnSync("/bin/sh", ["-c", moved], { encoding: "utf8", env });
}

/** A lineage as certbot leaves it: live/<lineage>/privkey.pem and fullchain.pem (self-signed here). */
function lineage(name: string, algorithm: "EC" | "RSA"): { keyPem: string; certPem: string } {
  const live = join(root, "letsencrypt", "live", name);
  mkdirSync(live, { recursive: true });
  const key = join(live, "privkey.pem");
  const options = algorithm === "EC" ? ["-pkeyopt", "ec_paramgen_curve:P-256"] : ["-pkeyopt", "rsa_keygen_bits:2048"];
  execFileSync("openssl", ["genpkey", "-algorithm", algorithm, ...options, "-out", key]);
  execFileSync("openssl", [
    "req",
    "-x509",
    "-key",
    key,
    "-subj",
    `/CN=${L1}`,
    "-days",
    "90",
    "-out",
    join(live, "fullchain.pem"),
  ]);
  return { keyPem: readFileSync(key, "utf8"), certPem: readFileSync(join(live, "fullchain.pem"), "utf8") };
}

const withLineages = (dane: NonNullable<GatewayNode["dane"]>, served = L1): GatewayNode => ({
  ...examplePrimary,
  tls: { ...examplePrimary.tls, certName: served },
  dane,
});

const sha256 = (der: Buffer) => createHash("sha256").update(der).digest("hex");

describe("the DANE key step with openssl on certbot-style keys", () => {
  it("prints, per lineage, the SHA-256 of the SPKI a DANE client computes from the served certificate", () => {
    const current = lineage(L1, "EC");
    const next = lineage(L2, "RSA");
    const node = withLineages({ nextLineage: L2 });
    const result = sh(daneKeysCommand(node));
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const hashes = parseDaneKeys(node, result.stdout);
    for (const [name, { keyPem, certPem }] of [
      [L1, current],
      [L2, next],
    ] as const) {
      const fromKey = sha256(createPublicKey(keyPem).export({ type: "spki", format: "der" }));
      const fromCertificate = sha256(new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" }));
      expect(hashes.get(name)).toBe(fromKey);
      expect(hashes.get(name)).toBe(fromCertificate);
    }
  });

  it("a lineage not issued yet fails the step, naming its key file", () => {
    const result = sh(daneKeysCommand(withLineages({ nextLineage: "never-issued" })));
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("letsencrypt/live/never-issued/privkey.pem: no such key");
  });
});

describe("reuse_key = True in a certbot renewal config", () => {
  // As certbot 2.x writes it for a dns-01 lineage issued without --reuse-key.
  const conf = [
    "# renew_before_expiry = 30 days",
    "version = 2.1.0",
    `archive_dir = /etc/letsencrypt/archive/${L1}`,
    `cert = /etc/letsencrypt/live/${L1}/cert.pem`,
    `privkey = /etc/letsencrypt/live/${L1}/privkey.pem`,
    `chain = /etc/letsencrypt/live/${L1}/chain.pem`,
    `fullchain = /etc/letsencrypt/live/${L1}/fullchain.pem`,
    "",
    "# Options used in the renewal process",
    "[renewalparams]",
    "account = 0123456789abcdef0123456789abcdef",
    "authenticator = dns-cloudflare",
    "dns_cloudflare_credentials = /etc/letsencrypt/cloudflare.ini",
    "server = https://acme-v02.api.letsencrypt.org/directory",
    "key_type = ecdsa",
    "",
  ].join("\n");
  const path = () => join(root, "letsencrypt", "renewal", `${L1}.conf`);

  afterEach(() => rmSync(join(root, "letsencrypt", "renewal"), { recursive: true, force: true }));

  function run(text: string): string {
    mkdirSync(join(root, "letsencrypt", "renewal"), { recursive: true });
    writeFileSync(path(), text);
    const result = sh(reuseKeyCommand(L1));
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    return readFileSync(path(), "utf8");
  }

  it("added under [renewalparams] once; a second run changes nothing", () => {
    const once = run(conf);
    expect(once.split("\n").filter((l) => l.startsWith("reuse_key"))).toEqual(["reuse_key = True"]);
    expect(once).toContain("[renewalparams]\nreuse_key = True\naccount = ");
    expect(run(once)).toBe(once);
  });

  it("reuse_key = False (a lineage issued with --new-key) becomes True", () => {
    const fixed = run(conf.replace("key_type = ecdsa", "key_type = ecdsa\nreuse_key = False"));
    expect(fixed.split("\n").filter((l) => l.startsWith("reuse_key"))).toEqual(["reuse_key = True"]);
  });
});

interface Knot {
  port: number;
  stop(): Promise<void>;
}

async function startKnot(dir: string, origin: string, zone: string): Promise<Knot> {
  rmSync(dir, { recursive: true, force: true });
  for (const sub of ["zones", "run", "db"]) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, "zones", `${origin}.zone`), zone);
  const port = await freePort();
  writeFileSync(
    join(dir, "knot.conf"),
    [
      "server:",
      `    rundir: "${join(dir, "run")}"`,
      `    listen: 127.0.0.1@${port}`,
      "database:",
      `    storage: "${join(dir, "db")}"`,
      "log:",
      "  - target: stderr",
      "    any: warning",
      "template:",
      "  - id: default",
      `    storage: "${join(dir, "zones")}"`,
      '    file: "%s.zone"',
      "    zonefile-sync: -1",
      "    journal-content: none",
      "zone:",
      `  - domain: ${origin}`,
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn("knotd", ["-c", join(dir, "knot.conf")], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (chunk: Buffer) => (log += chunk.toString()));
  await waitFor(`knotd to serve ${origin}\n${log}`, () => {
    const soa = spawnSync("dig", ["+short", `@127.0.0.1`, "-p", String(port), origin, "SOA"], { encoding: "utf8" });
    return soa.stdout.trim() !== "";
  });
  return {
    port,
    async stop() {
      if (child.pid === undefined || !processAlive(child.pid)) return;
      child.kill("SIGTERM");
      await waitFor(`knotd ${child.pid} to exit`, () => child.exitCode !== null || child.signalCode !== null);
    },
  };
}

/**
 * A PATH whose `dig` is the real one sent to Knot's port: every @server (the NS names the zone gives) and the
 * NS query itself go to 127.0.0.1, as the zone's servers and the host's resolver would answer.
 */
function digToKnot(port: number): NodeJS.ProcessEnv {
  const bin = join(root, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(
    join(bin, "dig"),
    `#!/bin/sh\nfor a do\n  shift\n  case "$a" in @*) ;; *) set -- "$@" "$a" ;; esac\ndone\nexec /usr/bin/dig @127.0.0.1 -p ${port} "$@"\n`,
  );
  chmodSync(join(bin, "dig"), 0o755);
  return { ...process.env, PATH: `${bin}:${process.env.PATH}` };
}

describe("the checks that ask the zone's authoritative servers, with dig against Knot", () => {
  let knot: Knot | undefined;
  const keyDir = () => join(root, "dkim");
  const rotating = (): GatewayNode => ({
    ...examplePrimary,
    dkim: {
      ...examplePrimary.dkim,
      keyDir: keyDir(),
      selector: "mail2026",
      previous: { selector: "default", keepUntil: "2999-12-31" },
    },
  });

  afterEach(async () => {
    await knot?.stop();
    knot = undefined;
  });

  async function serve(records: DnsRecord[]): Promise<NodeJS.ProcessEnv> {
    const zone = renderZoneFile(examplePrimary.domain, records);
    const file = join(root, "check.zone");
    writeFileSync(file, zone);
    // The zone as the lab and `gateway render` write it must load as it is.
    const check = spawnSync("kzonecheck", ["-o", examplePrimary.domain, file], { encoding: "utf8" });
    expect(`${check.stdout}${check.stderr}`, "kzonecheck").toBe("");
    expect(check.status).toBe(0);
    knot = await startKnot(join(root, "knot"), examplePrimary.domain, zone);
    return digToKnot(knot.port);
  }

  function tlsa(hash: string): DnsRecord {
    return { name: `_25._tcp.${L1}`, type: "TLSA", content: tlsaContent(hash), ttl: 3600, purpose: "test" };
  }
  const hashOf = (name: string) =>
    parseDaneKeys(withLineages({}, name), sh(daneKeysCommand(withLineages({}, name))).stdout).get(name)!;

  it("DANE switch: passes once both keys' TLSA are served", async () => {
    lineage(L1, "EC");
    lineage(L2, "EC");
    const env = await serve([...dnsRecords(examplePrimary), tlsa(hashOf(L1)), tlsa(hashOf(L2))]);
    const result = sh(daneSwitchCheckCommand(withLineages({ previousLineage: L1 }, L2))!, env);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(
      /^_25\._tcp\.mail\.brightchain\.org TLSA: served by every authoritative server of brightchain\.org/,
    );
  });

  it("DANE switch: refused while the new key's TLSA is not served, naming the server, its answer and the fix", async () => {
    lineage(L1, "EC");
    lineage(L2, "EC");
    const env = await serve([...dnsRecords(examplePrimary), tlsa(hashOf(L1))]);
    const result = sh(daneSwitchCheckCommand(withLineages({ previousLineage: L1 }, L2))!, env);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("not served by every authoritative server of brightchain.org");
    expect(result.stderr).toContain(`mail.brightchain.org(answered: 3 1 1 ${hashOf(L1)}|)`);
    expect(result.stderr).toContain(`set gateway:dane.nextLineage to ${L2}`);
  });

  it("DKIM: passes once the new selector's record, 2048-bit key split into strings, is served with this key", async () => {
    rmSync(keyDir(), { recursive: true, force: true });
    mkdirSync(keyDir(), { recursive: true });
    execFileSync("opendkim-genkey", ["-b", "2048", "-h", "sha256", "-s", "mail2026", "-d", "brightchain.org", "-D", keyDir()]);
    const node = rotating();
    const txt = readFileSync(join(keyDir(), "mail2026.txt"), "utf8");
    const previous = dkimPreviousRecord(node, generateDkimTxt("default", "brightchain.org"));
    const env = await serve([...dnsRecords(node, txt), previous]);
    const result = sh(dkimServedCheckCommand(node), env);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("mail2026._domainkey.brightchain.org TXT: served by every authoritative server");
  });

  it("DKIM: refused while the zone serves another key for the selector; signing would stay on the previous one", async () => {
    rmSync(keyDir(), { recursive: true, force: true });
    mkdirSync(keyDir(), { recursive: true });
    execFileSync("opendkim-genkey", ["-b", "2048", "-h", "sha256", "-s", "mail2026", "-d", "brightchain.org", "-D", keyDir()]);
    const node = rotating();
    const env = await serve(dnsRecords(node, generateDkimTxt("mail2026", "brightchain.org")));
    const result = sh(dkimServedCheckCommand(node), env);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("mail2026._domainkey.brightchain.org TXT: not served by every authoritative server");
    expect(result.stderr).toContain("OpenDKIM keeps signing with default");
  });
});

describe("mid-rotation on the primary, with opendkim's own tools", () => {
  it("the new selector's key from the key step; opendkim -n accepts the config signing with it; the old record read back", () => {
    // Not under /tmp: opendkim refuses a key or config whose parent directories others can write to.
    const safe = mkdtempSync("/var/lib/bc-dkim-rotation-test-");
    onTestFinished(() => rmSync(safe, { recursive: true, force: true }));
    const keyDir = join(safe, "keys");
    const at = (selector: string): GatewayNode => ({ ...examplePrimary, dkim: { ...examplePrimary.dkim, keyDir, selector } });
    // Before: the key the node signed with.
    expect(spawnSync("/bin/sh", ["-c", dkimKeygenCommand(at("default"))], { encoding: "utf8" }).status).toBe(0);
    const rotating: GatewayNode = {
      ...at("mail2026"),
      dkim: { ...at("mail2026").dkim, previous: { selector: "default", keepUntil: "2999-12-31" } },
    };
    const keygen = spawnSync("/bin/sh", ["-c", dkimKeygenCommand(rotating)], { encoding: "utf8" });
    expect(keygen.stderr).toBe("");
    expect(keygen.status).toBe(0);
    const conf = renderOpendkimConf(rotating).replace(/^PidFile\s+.*$/m, `PidFile ${join(safe, "opendkim.pid")}`);
    expect(conf).toMatch(new RegExp(`^KeyFile\\s+${keyDir}/mail2026\\.private$`, "m"));
    writeFileSync(join(safe, "opendkim.conf"), conf);
    const check = spawnSync("opendkim", ["-n", "-x", join(safe, "opendkim.conf")], { encoding: "utf8" });
    expect(`${check.stdout}${check.stderr}`).toBe("");
    expect(check.status).toBe(0);
    const previous = spawnSync("/bin/sh", ["-c", dkimPreviousRecordCommand(rotating)], { encoding: "utf8" });
    expect(previous.status).toBe(0);
    expect(dkimPreviousRecord(rotating, previous.stdout).content).toBe(
      dkimPreviousRecord(rotating, readFileSync(join(keyDir, "default.txt"), "utf8")).content,
    );
    const missing = spawnSync(
      "/bin/sh",
      [
        "-c",
        dkimPreviousRecordCommand({
          ...rotating,
          dkim: { ...rotating.dkim, previous: { selector: "gone", keepUntil: "2999-12-31" } },
        }),
      ],
      { encoding: "utf8" },
    );
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain("no record file for the previous selector gone");
  });
});
