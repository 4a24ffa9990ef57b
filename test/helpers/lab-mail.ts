// Mail on the lab as a user sees it: commands on a lab host that fail loudly (host, command, output), swaks
// from `outside`, waits that poll a condition on a host until a deadline, and the BrightChain store on `mail`
// read through its own CLI. Every failure names the host and what was last seen there.
import type { LabHostName } from "../../infra/lab/constants";
import { labExec } from "../../infra/lab/lab";

/** The runtime as the deploy installs it on a node. */
export const RUNTIME_DIR = "/opt/brightchain-gateway";
export const GATEWAY_ENV_FILE = "/etc/brightchain/gateway.env";

/** Single-quoted for sh, whatever the text holds. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export interface HostResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs a command on a lab host; any exit code is returned. */
export async function tryOn(host: LabHostName, command: string, input?: string, timeoutMs = 300_000): Promise<HostResult> {
  return labExec(host, command, { timeoutMs, ...(input !== undefined ? { input } : {}) });
}

/** Runs a command on a lab host and returns its stdout; a non-zero exit throws with the host, command and output. */
export async function on(host: LabHostName, command: string, input?: string, timeoutMs = 300_000): Promise<string> {
  const result = await tryOn(host, command, input, timeoutMs);
  if (result.exitCode !== 0) {
    throw new Error(`${host}: \`${command}\` exited ${result.exitCode}\n${result.stdout}${result.stderr}`);
  }
  return result.stdout;
}

/**
 * Polls `command` on `host` until `done(stdout)` holds; throws after `deadlineMs` with the host, what was awaited,
 * and the last output seen (plus `diagnose`'s output, e.g. the host's mail log).
 */
export async function waitOnHost(
  host: LabHostName,
  what: string,
  command: string,
  done: (stdout: string, exitCode: number) => boolean,
  options: { deadlineMs?: number; intervalMs?: number; diagnose?: () => Promise<string> } = {},
): Promise<string> {
  const deadlineMs = options.deadlineMs ?? 60_000;
  const deadline = Date.now() + deadlineMs;
  let last: HostResult = { stdout: "", stderr: "", exitCode: -1 };
  for (;;) {
    last = await tryOn(host, command, undefined, 60_000);
    if (done(last.stdout, last.exitCode)) return last.stdout;
    if (Date.now() > deadline) {
      const extra = options.diagnose ? `\n--- diagnosis ---\n${await options.diagnose()}` : "";
      throw new Error(
        `${host}: ${what} did not happen within ${deadlineMs} ms; last \`${command}\` exited ${last.exitCode}:\n${last.stdout}${last.stderr}${extra}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 500));
  }
}

export interface SwaksOptions {
  to: string;
  from?: string;
  server: string;
  port?: number;
  subject?: string;
  body?: string;
  /** Extra swaks arguments, e.g. ["--tls"] or ["--auth-user", "u"]. */
  extra?: string[];
}

/** swaks on `outside`: the whole transcript and swaks' exit code (0 delivered, 23/24/25 refused at MAIL/RCPT/DATA). */
export async function swaksFromOutside(options: SwaksOptions): Promise<{ transcript: string; exitCode: number }> {
  const args = [
    "swaks",
    "--to",
    options.to,
    "--from",
    options.from ?? "someone@outside.test",
    "--helo",
    "mx.outside.test",
    "--server",
    options.server,
    "--port",
    String(options.port ?? 25),
    "--timeout",
    "30",
    "--header",
    `Subject: ${options.subject ?? "lab scenario"}`,
    "--body",
    options.body ?? "hello from outside",
    ...(options.extra ?? []),
  ];
  const result = await tryOn("outside", `${args.map(shellQuote).join(" ")} 2>&1`);
  return { transcript: result.stdout + result.stderr, exitCode: result.exitCode };
}

/** The server's reply to RCPT TO in a swaks transcript (the line after the command), or "" if never sent. */
export function rcptReply(transcript: string): string {
  const lines = transcript.split("\n");
  const at = lines.findIndex((line) => /^\s*[-~]> RCPT TO:/.test(line));
  return at < 0 ? "" : (lines[at + 1] ?? "");
}

export interface StoreEntry {
  sha3: string;
  folder: "inbox" | "spam";
  recipient: string;
  from?: string;
  subject?: string;
  receivedAt: string;
  size: number;
}

const STORE_CLI = `set -a && . ${GATEWAY_ENV_FILE} && set +a && node ${RUNTIME_DIR}/brightchain-store.cjs`;

/** Every entry of the primary's store (brightchain-store list --json on `mail`). */
export async function storeEntries(): Promise<StoreEntry[]> {
  const out = await on("mail", `${STORE_CLI} list --json`);
  return out
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as StoreEntry);
}

/** Mail log of a gateway host: Postfix and the runtime's services, for failure messages. */
export async function mailLog(host: LabHostName, lines = 60): Promise<string> {
  const result = await tryOn(
    host,
    `journalctl -u postfix@- -u postfix -u brightchain-inbound -u brightchain-lookup -n ${lines} --no-pager; postqueue -p`,
  );
  return result.stdout + result.stderr;
}

/** Waits until the store on `mail` holds `count` entries with this subject, and returns them. */
export async function waitForStoreEntries(subject: string, count = 1, deadlineMs = 90_000): Promise<StoreEntry[]> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const found = (await storeEntries()).filter((entry) => entry.subject === subject);
    if (found.length >= count) return found;
    if (Date.now() > deadline) {
      throw new Error(
        `mail: ${count} store entr${count === 1 ? "y" : "ies"} with subject ${JSON.stringify(subject)} not there within ${deadlineMs} ms; found ${found.length}\n${await mailLog("mail")}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** The raw message of a store entry, as received. */
export async function readStoreMessage(sha3: string): Promise<string> {
  return on("mail", `${STORE_CLI} show ${shellQuote(sha3)}`);
}

/** A subject no earlier run or scenario used, so a count of store entries means this message only. */
export function uniqueSubject(label: string): string {
  return `${label} ${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}
