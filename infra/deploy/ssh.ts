// How the lab engine executes a command provider resource: the system ssh client, told exactly what the
// resource's `connection` input says, with the host key pinned (never trust-on-first-use) and no prompts.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

/** The fields of @pulumi/command's remote ConnectionArgs the engine honours. */
export interface RemoteConnection {
  host: string;
  port?: number;
  user?: string;
  privateKey?: string;
}

export interface SshOptions {
  /** known_hosts holding the host's key; anything else is refused (StrictHostKeyChecking=yes). */
  knownHostsFile: string;
  /** The private key written to a 0600 file, when the connection carries one. */
  identityFile?: string;
}

const ACCEPTED_CONNECTION = "{host, port?, user?, privateKey?}";

/** Checks a connection input and names the field that is wrong. */
export function parseRemoteConnection(resource: string, value: unknown): RemoteConnection {
  if (typeof value !== "object" || value === null) {
    throw new Error(`${resource}: input "connection" is ${JSON.stringify(value)}; accepted: ${ACCEPTED_CONNECTION}`);
  }
  const fields = value as Record<string, unknown>;
  const host = fields.host;
  if (typeof host !== "string" || host === "") {
    throw new Error(`${resource}: connection.host is ${JSON.stringify(host)}; accepted: a host name or address`);
  }
  const port = fields.port ?? 22;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`${resource}: connection.port is ${JSON.stringify(port)}; accepted: an integer from 1 to 65535`);
  }
  const user = fields.user ?? "root";
  if (typeof user !== "string" || !/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) {
    throw new Error(`${resource}: connection.user is ${JSON.stringify(user)}; accepted: a login name such as root`);
  }
  const connection: RemoteConnection = { host, port, user };
  if (typeof fields.privateKey === "string" && fields.privateKey !== "") connection.privateKey = fields.privateKey;
  return connection;
}

/** The ssh argv (without the remote command): batch mode, pinned host key, only the given identity. */
export function sshArguments(connection: RemoteConnection, options: SshOptions): string[] {
  return [
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${options.knownHostsFile}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=15",
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "LogLevel=ERROR",
    ...(options.identityFile ? ["-o", "IdentitiesOnly=yes", "-i", options.identityFile] : []),
    "-p",
    String(connection.port ?? 22),
    "-l",
    connection.user ?? "root",
    connection.host,
  ];
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * The remote command line. sshd hands it to the login shell exactly as the command provider's session.Run does;
 * `environment` becomes exports in front of it, because sshd drops SetEnv variables not listed in AcceptEnv.
 */
export function remoteCommandLine(command: string, environment: Record<string, string> = {}): string {
  const exports = Object.entries(environment)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        throw new Error(
          `environment variable name ${JSON.stringify(name)} is not accepted; accepted: letters, digits and _, not starting with a digit`,
        );
      }
      return `export ${name}=${shellQuote(value)}\n`;
    });
  return exports.join("") + command;
}

export interface RemoteResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** The command a user can paste to reproduce a step (no key material in it). */
export function describeSsh(connection: RemoteConnection): string {
  return `ssh -p ${connection.port ?? 22} ${connection.user ?? "root"}@${connection.host}`;
}

/**
 * Runs one remote command. The key is written to a private temporary file for the one call and removed after,
 * so it never appears on a command line.
 */
export async function runRemote(
  connection: RemoteConnection,
  knownHostsFile: string,
  command: string,
  options: { stdin?: string; environment?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RemoteResult> {
  const keyDir = connection.privateKey ? mkdtempSync(path.join(tmpdir(), "gateway-deploy-key-")) : undefined;
  try {
    let identityFile: string | undefined;
    if (keyDir && connection.privateKey) {
      identityFile = path.join(keyDir, "id");
      writeFileSync(identityFile, connection.privateKey.endsWith("\n") ? connection.privateKey : `${connection.privateKey}\n`, {
        mode: 0o600,
      });
    }
    const args = [
      ...sshArguments(connection, { knownHostsFile, ...(identityFile ? { identityFile } : {}) }),
      "--",
      remoteCommandLine(command, options.environment),
    ];
    return await new Promise<RemoteResult>((resolve, reject) => {
      const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      const timer = setTimeout(() => child.kill("SIGTERM"), options.timeoutMs ?? 1_200_000);
      child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
      child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
      child.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once("close", (code, signal) => {
        clearTimeout(timer);
        resolve({
          exitCode: code ?? (signal ? 128 : 255),
          stdout: Buffer.concat(stdout).toString("utf8"),
          stderr:
            Buffer.concat(stderr).toString("utf8") +
            (signal ? `\n(killed by ${signal} after ${options.timeoutMs ?? 1_200_000} ms)` : ""),
        });
      });
      child.stdin.on("error", () => undefined);
      child.stdin.end(options.stdin ?? "");
    });
  } finally {
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  }
}
