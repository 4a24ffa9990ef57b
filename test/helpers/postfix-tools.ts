// Real Postfix on loopback for tests: a throwaway instance (own config, queue and data directories, own ports)
// run in the foreground by `master -d` so the test owns its pid, a netstring socketmap stand-in for the lookup
// service, a minimal SMTP client, and waits with deadlines instead of sleeps.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
export const POSTFIX_MASTER = "/usr/lib/postfix/sbin/master";

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `check` every 20 ms until it returns true; throws naming `what` once `timeoutMs` has passed. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function portAccepts(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export function countFiles(dir: string): number {
  try {
    return readdirSync(dir).length;
  } catch {
    return 0;
  }
}

/**
 * Runs a Postfix command under a pseudo-terminal: without one `postfix` reports nothing at all (its messages
 * go to syslog, which this machine lacks), so warnings would pass unseen.
 */
export async function runUnderTty(command: string[]): Promise<{ code: number; output: string }> {
  const quoted = command.map((arg) => `'${arg.replace(/'/g, "'\\''")}'`).join(" ");
  try {
    const { stdout } = await execFileAsync("script", ["-qec", quoted, "/dev/null"], { encoding: "utf8" });
    return { code: 0, output: stdout.replace(/\r/g, "") };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string };
    return { code: typeof failed.code === "number" ? failed.code : 1, output: (failed.stdout ?? "").replace(/\r/g, "") };
  }
}

/**
 * A throwaway EC certificate and key in `dir` (cert.pem, key.pem) for `hostname`. `subjectAltName` (OpenSSL
 * syntax, e.g. "DNS:localhost,IP:127.0.0.1") is for a client that verifies the name, which ignores the CN.
 */
export async function createSelfSignedCert(
  dir: string,
  hostname: string,
  options: { subjectAltName?: string } = {},
): Promise<{ certFile: string; keyFile: string }> {
  const files = { certFile: join(dir, "cert.pem"), keyFile: join(dir, "key.pem") };
  const extensions = options.subjectAltName === undefined ? [] : ["-addext", `subjectAltName=${options.subjectAltName}`];
  await execFileAsync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${hostname}`,
    ...extensions,
    "-keyout",
    files.keyFile,
    "-out",
    files.certFile,
  ]);
  return files;
}

/**
 * Netstring socketmap server (socketmap_table(5)) answering OK for the addresses in `known`, NOTFOUND otherwise.
 * Like the real lookup service it resolves user+tag@domain to user@domain: Postfix sends the tagged form.
 */
export interface SocketmapStandIn {
  port: number;
  lookups: string[];
  close(): Promise<void>;
}

export async function startSocketmap(known: Set<string>): Promise<SocketmapStandIn> {
  const lookups: string[] = [];
  const netstring = (text: string): string => `${Buffer.byteLength(text)}:${text},`;
  const open = new Set<Socket>();
  const server: Server = createServer((socket) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
    let buffered = "";
    socket.on("data", (chunk) => {
      buffered += chunk.toString("utf8");
      for (;;) {
        const match = /^(\d+):/.exec(buffered);
        if (match === null) return;
        const length = Number(match[1]);
        const start = match[0].length;
        if (buffered.length < start + length + 1) return;
        const request = buffered.slice(start, start + length);
        buffered = buffered.slice(start + length + 1);
        const key = request.slice(request.indexOf(" ") + 1).toLowerCase();
        lookups.push(key);
        const untagged = key.replace(/\+[^@]*@/, "@");
        socket.write(netstring(known.has(untagged) ? `OK ${untagged}` : "NOTFOUND "));
      }
    });
    socket.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    lookups,
    // Postfix keeps socketmap connections open between lookups: end them, or close() would wait for them.
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of open) socket.destroy();
      }),
  };
}

/** A scratch directory every Postfix daemon (user postfix) and delivery user (nobody) can traverse. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

export function maildir(root: string, uid: number, gid: number): void {
  for (const sub of ["", "tmp", "new", "cur"]) {
    const path = join(root, sub);
    mkdirSync(path, { recursive: true, mode: 0o750 });
    chownSync(path, uid, gid);
  }
}

/**
 * A Postfix instance from rendered main.cf/master.cf. `mainOverrides` are applied with `postconf -e` and are the
 * only differences from what the renderer wrote (paths of this throwaway instance), besides `masterEdit`.
 */
export class PostfixInstance {
  readonly configDir: string;
  readonly queueDir: string;
  readonly dataDir: string;
  readonly maillog: string;
  private master: ChildProcess | undefined;

  constructor(readonly root: string) {
    this.configDir = join(root, "conf");
    this.queueDir = join(root, "queue");
    this.dataDir = join(root, "data");
    this.maillog = join(root, "maillog");
  }

  /** The parameters that make this a separate instance: nothing else of the rendered files changes. */
  instanceParams(): Record<string, string> {
    return {
      queue_directory: this.queueDir,
      data_directory: this.dataDir,
      maillog_file_prefixes: this.root,
      maillog_file: this.maillog,
    };
  }

  async write(mainCf: string, masterCf: string, mainOverrides: Record<string, string> = {}): Promise<void> {
    for (const dir of [this.configDir, this.queueDir, this.dataDir]) mkdirSync(dir, { recursive: true, mode: 0o755 });
    const postfixUid = Number((await execFileAsync("id", ["-u", "postfix"])).stdout.trim());
    chownSync(this.dataDir, postfixUid, 0);
    writeFileSync(join(this.configDir, "main.cf"), mainCf);
    writeFileSync(join(this.configDir, "master.cf"), masterCf);
    const params = { ...this.instanceParams(), ...mainOverrides };
    await execFileAsync("postconf", ["-c", this.configDir, "-e", ...Object.entries(params).map(([k, v]) => `${k}=${v}`)]);
  }

  async check(): Promise<{ code: number; output: string }> {
    return runUnderTty(["postfix", "-c", this.configDir, "check"]);
  }

  /** Starts master(8) in the foreground as our child and waits until host:port accepts connections. */
  async start(port: number, host = "127.0.0.1"): Promise<void> {
    const checked = await this.check();
    if (checked.code !== 0) throw new Error(`postfix check failed (${checked.code}): ${checked.output}`);
    // detached: master leads its own process group, which is what it signals on SIGTERM to stop its children.
    const master = spawn(POSTFIX_MASTER, ["-c", this.configDir, "-d"], { stdio: "ignore", detached: true });
    this.master = master;
    let exited = false;
    master.once("exit", () => {
      exited = true;
    });
    await waitFor(`postfix master on ${host}:${port}`, async () => {
      if (exited) throw new Error(`postfix master exited early; see ${this.maillog}`);
      return portAccepts(port, host);
    });
  }

  /** The queue as `postqueue -j` describes it: one object per message (queue_name, recipients, …). */
  async queueJson(): Promise<{ queue_name: string; recipients: { address: string; delay_reason?: string }[] }[]> {
    const { stdout } = await execFileAsync("postqueue", ["-c", this.configDir, "-j"], { maxBuffer: 64 * 1024 * 1024 });
    return stdout
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as { queue_name: string; recipients: { address: string; delay_reason?: string }[] });
  }

  async queueSize(): Promise<number> {
    return (await this.queueJson()).length;
  }

  /** Changes main.cf parameters and makes the running master re-read them (SIGHUP, what `postfix reload` sends). */
  async reconfigure(params: Record<string, string>): Promise<void> {
    await execFileAsync("postconf", ["-c", this.configDir, "-e", ...Object.entries(params).map(([k, v]) => `${k}=${v}`)]);
    this.master?.kill("SIGHUP");
  }

  /** `postqueue -f`: attempt delivery of everything queued now. */
  async flush(): Promise<void> {
    await execFileAsync("postqueue", ["-c", this.configDir, "-f"]);
  }

  async queueIsEmpty(): Promise<boolean> {
    const { stdout } = await execFileAsync("postqueue", ["-c", this.configDir, "-j"]);
    return stdout.trim() === "";
  }

  /** SIGTERM to our own master; it passes it on to its process group. Resolves once master has exited. */
  async stop(): Promise<void> {
    const master = this.master;
    this.master = undefined;
    if (master === undefined || master.exitCode !== null || master.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => master.once("exit", () => resolve()));
    master.kill("SIGTERM");
    await exited;
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Rewrites master.cf's listen addresses so the instance answers on loopback ports of the test's choosing. */
export function listenOn(masterCf: string, ports: Record<string, number>): string {
  let text = masterCf;
  for (const [service, port] of Object.entries(ports)) {
    text = text.replace(new RegExp(`^${service} inet `, "m"), `127.0.0.1:${port} inet `);
  }
  return text;
}

/** A minimal SMTP client: sends each command and collects the final reply line, one per command. */
export class SmtpClient {
  private buffer = "";
  private waiters: ((line: string) => void)[] = [];
  private readonly replies: string[] = [];

  private constructor(private readonly socket: ReturnType<typeof connect>) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      let newline: number;
      while ((newline = this.buffer.indexOf("\r\n")) >= 0) {
        const line = this.buffer.slice(0, newline);
        this.buffer = this.buffer.slice(newline + 2);
        // Multi-line replies end with "NNN " (space); only that line completes the reply.
        if (/^\d{3} /.test(line)) this.deliver(line);
      }
    });
  }

  private deliver(line: string): void {
    const waiter = this.waiters.shift();
    if (waiter === undefined) this.replies.push(line);
    else waiter(line);
  }

  static async open(port: number): Promise<{ client: SmtpClient; greeting: string }> {
    const socket = connect({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const client = new SmtpClient(socket);
    return { client, greeting: await client.reply() };
  }

  private reply(): Promise<string> {
    const ready = this.replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async command(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  /** DATA with dot-stuffing; resolves with the reply to the final dot. */
  async data(message: string): Promise<string> {
    const start = await this.command("DATA");
    if (!start.startsWith("354")) return start;
    const body = message.replace(/\r?\n/g, "\r\n").replace(/^\./gm, "..");
    this.socket.write(`${body}${body.endsWith("\r\n") ? "" : "\r\n"}.\r\n`);
    return this.reply();
  }

  async close(): Promise<void> {
    await this.command("QUIT");
    this.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
