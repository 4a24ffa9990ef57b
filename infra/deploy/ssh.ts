// How the lab engine executes a command provider resource: the system ssh client, told exactly what the
// resource's `connection` input says — the host key the program pins included, and no other — and no prompts.
//
// runRemote is also what the HostState dynamic provider runs inside Pulumi's provider host, from a serialized copy
// of the function: it and the functions it calls reach Node's modules through `require` at call time, because
// the serializer cannot copy a module object captured from the surrounding file.
import type { ChildProcessWithoutNullStreams } from "node:child_process";

/** The fields of @pulumi/command's remote ConnectionArgs the engine honours. */
export interface RemoteConnection {
  host: string;
  port?: number;
  user?: string;
  privateKey?: string;
  /** `type base64`: the only key accepted from the host (the program's gateway:ssh.hostKey). */
  hostKey: string;
}

export interface SshOptions {
  /** known_hosts holding the host's key; anything else is refused (StrictHostKeyChecking=yes). */
  knownHostsFile: string;
  /** The private key written to a 0600 file, when the connection carries one. */
  identityFile?: string;
}

const ACCEPTED_CONNECTION = "{host, port?, user?, privateKey?, hostKey}";

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
  // pulumi-command without a hostKey accepts any key; the engine refuses to, so a program that forgot to pin
  // one fails here as it must not succeed against a real host.
  const hostKey = fields.hostKey;
  if (typeof hostKey !== "string" || !/^[a-z0-9-]+ [A-Za-z0-9+/]+={0,2}$/.test(hostKey)) {
    throw new Error(
      `${resource}: connection.hostKey is ${JSON.stringify(hostKey)}; accepted: the host's public key as "type base64"`,
    );
  }
  const connection: RemoteConnection = { host, port, user, hostKey };
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

/** A known_hosts line accepting exactly the connection's host key at its address and port. */
export function knownHostsLine(connection: RemoteConnection): string {
  const port = connection.port ?? 22;
  const name = port === 22 ? connection.host : `[${connection.host}]:${port}`;
  return `${name} ${connection.hostKey}\n`;
}

/**
 * Runs one remote command. The private key and the pinned host key are written to a private temporary folder
 * for the one call and removed after, so neither appears on a command line.
 */
export async function runRemote(
  connection: RemoteConnection,
  command: string,
  options: { stdin?: string; environment?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RemoteResult> {
  /* eslint-disable @typescript-eslint/no-require-imports -- see the header: required at call time, on purpose */
  const { spawn } = require("node:child_process") as typeof import("node:child_process");
  const { mkdtempSync, rmSync, writeFileSync } = require("node:fs") as typeof import("node:fs");
  const { tmpdir } = require("node:os") as typeof import("node:os");
  const path = require("node:path") as typeof import("node:path");
  /* eslint-enable @typescript-eslint/no-require-imports */
  const keyDir = mkdtempSync(path.join(tmpdir(), "gateway-deploy-ssh-"));
  try {
    const knownHostsFile = path.join(keyDir, "known_hosts");
    writeFileSync(knownHostsFile, knownHostsLine(connection), { mode: 0o600 });
    let identityFile: string | undefined;
    if (connection.privateKey) {
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
      const child: ChildProcessWithoutNullStreams = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
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
    rmSync(keyDir, { recursive: true, force: true });
  }
}
