// The "done when": `npx gateway render` on both example stacks writes a Postfix configuration that
// Debian's Postfix accepts without a warning. The CLI's own output is checked, not the renderers' strings.
//
// `postconf -n` / `-M` read the files exactly as written. For `postfix check`, only what cannot exist on this
// machine is changed, with `postconf -e` on the output copy: queue_directory and data_directory (a throwaway
// instance, so the check never touches the machine's /var/spool/postfix) and the TLS certificate and key (the
// Let's Encrypt paths exist only on the real host; a self-signed pair stands in).
import { execFile, spawnSync } from "node:child_process";
import { chownSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runUnderTty } from "../helpers/postfix-server";
import { createSelfSignedCert, scratchDir } from "../helpers/postfix-tools";

const execFileAsync = promisify(execFile);
const repo = join(__dirname, "../..");

describe.each([
  { stack: "primary", hostname: "mail.brightchain.org" },
  { stack: "relay", hostname: "mail2.brightchain.org" },
])("`gateway render --stack $stack` output against Debian's Postfix", ({ stack, hostname }) => {
  let root: string;
  let configDir: string;

  beforeAll(() => {
    root = scratchDir(`render-cli-${stack}-`);
    const run = spawnSync(
      process.execPath,
      [join(repo, "bin/gateway.cjs"), "render", "--stack", stack, "--out", join(root, "out")],
      {
        cwd: repo,
        encoding: "utf8",
      },
    );
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    configDir = join(root, "out/etc/postfix");
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("postconf -n and postconf -M read the files as written without a warning", async () => {
    const main = await execFileAsync("postconf", ["-c", configDir, "-n"], { encoding: "utf8" });
    expect(main.stderr).toBe("");
    expect(main.stdout).toContain(`myhostname = ${hostname}`);
    const master = await execFileAsync("postconf", ["-c", configDir, "-M"], { encoding: "utf8" });
    expect(master.stderr).toBe("");
    expect(master.stdout).toMatch(/^smtp\s+inet/m);
  });

  it("postfix check passes without a warning (instance paths and certificate substituted)", async () => {
    const queueDir = join(root, "queue");
    const dataDir = join(root, "data");
    for (const dir of [queueDir, dataDir]) mkdirSync(dir, { recursive: true, mode: 0o755 });
    const postfixUid = Number((await execFileAsync("id", ["-u", "postfix"])).stdout.trim());
    chownSync(dataDir, postfixUid, 0);
    const cert = await createSelfSignedCert(root, hostname);
    const rendered = readFileSync(join(configDir, "main.cf"), "utf8");
    expect(rendered).toContain(`/etc/letsencrypt/live/${hostname}/fullchain.pem`);
    await execFileAsync("postconf", [
      "-c",
      configDir,
      "-e",
      `queue_directory=${queueDir}`,
      `data_directory=${dataDir}`,
      `smtpd_tls_cert_file=${cert.certFile}`,
      `smtpd_tls_key_file=${cert.keyFile}`,
    ]);
    const checked = await runUnderTty(["postfix", "-c", configDir, "check"]);
    expect(checked.output).not.toMatch(/warning|fatal|error/i);
    expect(checked.code).toBe(0);
    const after = await execFileAsync("postconf", ["-c", configDir, "-n"], { encoding: "utf8" });
    expect(after.stderr).toBe("");
  });
});
