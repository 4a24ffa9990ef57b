// The lab engine's SSH executor against a real OpenSSH server (Debian's sshd, started by this test on loopback
// with its own host key, stopped by its pid): what a remote.Command's stdin, environment and exit code become,
// and that a host whose key is not the pinned one is refused. No lab host needed.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runRemote, type RemoteConnection } from "../../infra/deploy/ssh";

const dir = mkdtempSync(path.join(tmpdir(), "deploy-ssh-"));
const PRIVSEP_DIR = "/run/sshd";
let createdPrivsepDir = false;
let sshd: ChildProcess | undefined;
let connection: RemoteConnection;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitForBanner(port: number, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const banner = await new Promise<string>((resolve) => {
      const socket = createConnection({ host: "127.0.0.1", port });
      socket.once("data", (chunk) => {
        socket.destroy();
        resolve(chunk.toString());
      });
      socket.once("error", () => resolve(""));
    });
    if (banner.startsWith("SSH-2.0-")) return;
    if (Date.now() > deadline) throw new Error(`sshd on 127.0.0.1:${port} did not answer within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const keygen = (file: string) => execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file]);

beforeAll(async () => {
  keygen(path.join(dir, "host_key"));
  keygen(path.join(dir, "client_key"));
  writeFileSync(path.join(dir, "authorized_keys"), readFileSync(path.join(dir, "client_key.pub")), { mode: 0o600 });
  if (!existsSync(PRIVSEP_DIR)) {
    mkdirSync(PRIVSEP_DIR, { mode: 0o755 });
    createdPrivsepDir = true;
  }
  const port = await freePort();
  sshd = spawn(
    "/usr/sbin/sshd",
    [
      "-D",
      "-e",
      "-f",
      "/dev/null",
      "-p",
      String(port),
      "-h",
      path.join(dir, "host_key"),
      "-o",
      "ListenAddress=127.0.0.1",
      "-o",
      "PidFile=none",
      "-o",
      "UsePAM=no",
      "-o",
      "StrictModes=no",
      "-o",
      "PermitRootLogin=prohibit-password",
      "-o",
      `AuthorizedKeysFile=${path.join(dir, "authorized_keys")}`,
    ],
    { stdio: "ignore" },
  );
  await waitForBanner(port, 10_000);
  const hostKey = readFileSync(path.join(dir, "host_key.pub"), "utf8").split(" ").slice(0, 2).join(" ");
  connection = {
    host: "127.0.0.1",
    port,
    user: "root",
    privateKey: readFileSync(path.join(dir, "client_key"), "utf8"),
    hostKey,
  };
}, 30_000);

afterAll(() => {
  sshd?.kill("SIGTERM");
  if (createdPrivsepDir) rmSync(PRIVSEP_DIR, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe("deploy engine: remote commands over a real sshd", () => {
  it("feeds stdin byte for byte, as a file step's content", async () => {
    const content = "line 1\n\ttab, 'quotes' \"and\" $dollars `ticks`\nünïcödé\n".repeat(2000);
    const result = await runRemote(connection, "sha256sum", { stdin: content });
    expect(result.exitCode).toBe(0);
    expect(result.stdout.split(" ")[0]).toBe(createHash("sha256").update(content).digest("hex"));
  });

  it("passes the environment and returns the exit code and both streams", async () => {
    const result = await runRemote(connection, 'echo "$GREETING|$EMPTY"; echo oops >&2; exit 7', {
      environment: { GREETING: 'it\'s a "test"', EMPTY: "" },
    });
    expect(result).toEqual({ exitCode: 7, stdout: 'it\'s a "test"|\n', stderr: "oops\n" });
  });

  it("refuses a host whose key is not the one the program pins, without prompting and before any command runs", async () => {
    keygen(path.join(dir, "other_key"));
    const other = readFileSync(path.join(dir, "other_key.pub"), "utf8").split(" ").slice(0, 2).join(" ");
    const marker = path.join(dir, "ran");
    const result = await runRemote({ ...connection, hostKey: other }, `touch ${marker}; echo should-not-run`);
    expect(existsSync(marker)).toBe(false);
    expect(result.exitCode).toBe(255);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/host key .*changed|Host key verification failed/i);
  });
});
