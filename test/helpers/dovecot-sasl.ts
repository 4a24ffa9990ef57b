// A real Dovecot from Debian as Postfix's SASL backend in tests: its own config, run and state dirs in a temp
// dir, a passwd-file of test users, and only the auth listener (`protocols = none`), placed where the test
// Postfix's smtpd looks for it (smtpd_sasl_path = private/auth, relative to that Postfix's queue dir).
// Run in the foreground (-F) so the test owns its pid and stops exactly that process.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { waitFor } from "./postfix-server";

export interface DovecotSasl {
  dir: string;
  log(): string;
  stop(): Promise<void>;
}

async function dovecotGid(): Promise<number> {
  const { stdout } = await promisify(execFile)("id", ["-g", "dovecot"]);
  return Number(stdout.trim());
}

export async function startDovecotSasl(options: { authSocket: string; users: Record<string, string> }): Promise<DovecotSasl> {
  const dir = mkdtempSync(join(tmpdir(), "dovecot-sasl-"));
  // The auth process runs as the dovecot user: it must traverse the dir and read (only) the passwd-file.
  chmodSync(dir, 0o755);
  for (const sub of ["run", "state"]) mkdirSync(join(dir, sub));
  const passwd = join(dir, "passwd");
  writeFileSync(
    passwd,
    Object.entries(options.users)
      .map(([user, pass]) => `${user}:{PLAIN}${pass}\n`)
      .join(""),
    { mode: 0o640 },
  );
  chownSync(passwd, 0, await dovecotGid());
  const logFile = join(dir, "dovecot.log");
  const config = join(dir, "dovecot.conf");
  writeFileSync(
    config,
    `protocols = none
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${logFile}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${passwd}
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}
service auth {
  unix_listener ${options.authSocket} {
    mode = 0660
    user = postfix
    group = postfix
  }
}
`,
  );
  const child: ChildProcess = spawn("dovecot", ["-F", "-c", config], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const log = (): string => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "") + stderr;
  try {
    await waitFor(`dovecot's auth socket ${options.authSocket}`, () => {
      if (child.exitCode !== null) throw new Error(`dovecot exited with ${child.exitCode}:\n${log()}`);
      return existsSync(options.authSocket);
    });
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    dir,
    log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
