// A real Postfix from Debian for tests: its own config, queue and data directories in a temp dir, services on
// free 127.0.0.1 ports, its log in a file (the bare machine has no syslog), every daemon unchrooted (`postfix
// start` does not populate a chroot), started by `postfix -c DIR start` and stopped by its master's pid.
//
//   const postfix = await startPostfix({ main: { virtual_mailbox_maps: "socketmap:inet:127.0.0.1:2526:virtual" } });
//   // or a node's rendered main.cf/master.cf: startPostfix(renderedPostfixOptions(node, { maildropScript }))
//   const reply = await sendMail({ port: postfix.smtpPort, from: "a@example.net", to: ["b@brightchain.org"] });
//   expect(reply.rcpt[0]!.code).toBe(250);   // reply.greeting / ehlo / mail / rcpt[] / data / message
//   await postfix.waitForQueueEmpty();        // postqueue -c DIR -j, with a deadline
//   expect(await postfix.postconf("message_size_limit")).toBe("26214400");
//   await postfix.stop();                     // SIGTERM to this instance's master pid, temp dir removed
//
// Also: freePort, waitForPort, waitFor (poll with a deadline), portAccepts, processAlive, setMainCf (postconf -e
// + reload), queuedIds, flushQueue, maillog().
import { execFile } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { GatewayNode } from "../../infra/model/types";
import { mainCfSections, renderMasterCf } from "../../infra/render/postfix";
import { MAILDROP_SCRIPT_PATH } from "../../infra/render/spool";

const run = promisify(execFile);

/** A port the kernel just handed out on 127.0.0.1 and nobody holds now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls `check` until it returns true; throws with `what` at the deadline. The poll interval is not a sleep-for-readiness. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, deadlineMs = 15_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export function portAccepts(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export async function waitForPort(port: number, host = "127.0.0.1", deadlineMs = 15_000): Promise<void> {
  await waitFor(`${host}:${port} to accept connections`, () => portAccepts(port, host), deadlineMs);
}

/** A zombie counts as gone: the daemonised master is reparented to PID 1, which may reap it late. */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The Debian stock services, every one with chroot n; `{smtp}` is replaced by the smtpd listener. */
const STOCK_MASTER_CF = `
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;

export interface PostfixOptions {
  /** main.cf parameters added to (or replacing) the harness's own; `{dir}` in a value is the instance's temp dir. */
  main?: Record<string, string>;
  /**
   * Extra master.cf entries (drop transport, submission…), written after the stock services. `{dir}` is the temp
   * dir; `{port:NAME}` a free port allocated for NAME, readable afterwards from `ports.NAME`.
   */
  master?: string;
  /** A whole master.cf instead of the harness's (e.g. a rendered one); the same placeholders apply. */
  replaceMaster?: string;
}

export interface PostfixInstance {
  /** Temp dir holding conf/, queue/, data/ and maillog. */
  dir: string;
  configDir: string;
  queueDir: string;
  maillogFile: string;
  /** The smtpd on 127.0.0.1 (`{port:smtp}`). */
  smtpPort: number;
  ports: Record<string, number>;
  masterPid: number;
  /** `postconf -c DIR -h NAME`: the value Postfix really uses. */
  postconf(name: string): Promise<string>;
  /** `postconf -c DIR -e name=value…` then `postfix reload`. */
  setMainCf(parameters: Record<string, string>): Promise<void>;
  maillog(): string;
  /** IDs of messages still queued (`postqueue -j`). */
  queuedIds(): Promise<string[]>;
  waitForQueueEmpty(deadlineMs?: number): Promise<void>;
  /** Asks the queue manager to retry deferred mail now (`postqueue -f`). */
  flushQueue(): Promise<void>;
  stop(): Promise<void>;
}

/** Runs the postfix command under a pseudo-tty: without one it prints nothing, even why it failed. */
async function postfixCommand(configDir: string, verb: string): Promise<string> {
  try {
    const { stdout } = await run("script", ["-qec", `postfix -c ${configDir} ${verb}`, "/dev/null"]);
    return stdout;
  } catch (error) {
    const { stdout } = error as { stdout?: string };
    throw new Error(`postfix -c ${configDir} ${verb} failed:\n${stdout ?? (error as Error).message}`);
  }
}

function fill(template: string, dir: string, ports: Record<string, number>): string {
  return template.replaceAll("{dir}", dir).replace(/\{port:([a-z0-9_-]+)\}/gi, (_m, name: string) => String(ports[name]));
}

export async function startPostfix(options: PostfixOptions = {}): Promise<PostfixInstance> {
  const dir = mkdtempSync(join(tmpdir(), "postfix-test-"));
  // Postfix daemons run as the postfix user and must traverse the temp dir mkdtemp made 0700.
  chmodSync(dir, 0o755);
  const configDir = join(dir, "conf");
  const queueDir = join(dir, "queue");
  const dataDir = join(dir, "data");
  const maillogFile = join(dir, "maillog");
  for (const d of [configDir, queueDir, dataDir]) mkdirSync(d);
  const { uid, gid } = await postfixIds();
  chownSync(dataDir, uid, gid);

  const master = `{port:smtp} inet n - n - - smtpd\n${STOCK_MASTER_CF}${options.master ?? ""}\n`;
  const masterTemplate = options.replaceMaster ?? master;
  let ports: Record<string, number> = {};
  // A port found free can be taken by a parallel test before the master binds it; `postfix start` waits for
  // the master (master -w) and fails on a bind error, so a fresh set of ports is tried.
  for (let attempt = 1; ; attempt++) {
    ports = {};
    for (const [, name] of masterTemplate.matchAll(/\{port:([a-z0-9_-]+)\}/gi)) ports[name!] ??= await freePort();
    if (ports.smtp === undefined) ports.smtp = await freePort();
    writeConfig(configDir, { dir, queueDir, dataDir, maillogFile }, options, masterTemplate, ports);
    try {
      await postfixCommand(configDir, "start");
      await waitForPort(ports.smtp, "127.0.0.1");
      break;
    } catch (error) {
      const log = existsSync(maillogFile) ? readFileSync(maillogFile, "utf8") : "";
      await stopMaster(queueDir);
      if (attempt < 3 && /address already in use/i.test(log)) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`${(error as Error).message}\n${log}`);
    }
  }
  const masterPid = readMasterPid(queueDir)!;

  const instance: PostfixInstance = {
    dir,
    configDir,
    queueDir,
    maillogFile,
    smtpPort: ports.smtp,
    ports,
    masterPid,
    async postconf(name) {
      const { stdout } = await run("postconf", ["-c", configDir, "-h", name]);
      return stdout.trim();
    },
    async setMainCf(parameters) {
      const assignments = Object.entries(parameters).map(([k, v]) => `${k}=${fill(v, dir, ports)}`);
      await run("postconf", ["-c", configDir, "-e", ...assignments]);
      await postfixCommand(configDir, "reload");
    },
    maillog: () => (existsSync(maillogFile) ? readFileSync(maillogFile, "utf8") : ""),
    async queuedIds() {
      const { stdout } = await run("postqueue", ["-c", configDir, "-j"]);
      return stdout
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => (JSON.parse(line) as { queue_id: string }).queue_id);
    },
    async waitForQueueEmpty(deadlineMs = 30_000) {
      await waitFor(`the queue of ${configDir} to empty`, async () => (await instance.queuedIds()).length === 0, deadlineMs);
    },
    async flushQueue() {
      await run("postqueue", ["-c", configDir, "-f"]);
    },
    async stop() {
      await stopMaster(queueDir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return instance;
}

function writeConfig(
  configDir: string,
  paths: { dir: string; queueDir: string; dataDir: string; maillogFile: string },
  options: PostfixOptions,
  masterTemplate: string,
  ports: Record<string, number>,
): void {
  const main: Record<string, string> = {
    compatibility_level: "3.6",
    queue_directory: paths.queueDir,
    data_directory: paths.dataDir,
    maillog_file: paths.maillogFile,
    maillog_file_prefixes: paths.dir,
    myhostname: "mx.test.invalid",
    inet_interfaces: "127.0.0.1",
    inet_protocols: "ipv4",
    mynetworks: "127.0.0.0/8",
    mydestination: "",
    alias_maps: "",
    alias_database: "",
    // Nothing a test sends may leave the machine.
    default_transport: "error:outbound mail disabled in tests",
    relay_transport: "error:outbound mail disabled in tests",
    // A deferred test message is retried within the test's lifetime, not after the 5-minute default.
    queue_run_delay: "1s",
    minimal_backoff_time: "1s",
    maximal_backoff_time: "2s",
    ...options.main,
  };
  writeFileSync(
    join(configDir, "main.cf"),
    Object.entries(main)
      .map(([k, v]) => `${k} = ${fill(v, paths.dir, ports)}`)
      .join("\n") + "\n",
  );
  writeFileSync(join(configDir, "master.cf"), fill(masterTemplate, paths.dir, ports));
}

let cachedIds: { uid: number; gid: number } | undefined;
async function postfixIds(): Promise<{ uid: number; gid: number }> {
  if (cachedIds === undefined) {
    const [{ stdout: uid }, { stdout: gid }] = await Promise.all([run("id", ["-u", "postfix"]), run("id", ["-g", "postfix"])]);
    cachedIds = { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  }
  return cachedIds;
}

function readMasterPid(queueDir: string): number | undefined {
  const file = join(queueDir, "pid", "master.pid");
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, "utf8").trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** SIGTERM to this instance's master (its children follow it), then waits for it to be gone. */
async function stopMaster(queueDir: string): Promise<void> {
  const pid = readMasterPid(queueDir);
  if (pid === undefined || !processAlive(pid)) return;
  process.kill(pid, "SIGTERM");
  try {
    await waitFor(`postfix master ${pid} to exit`, () => !processAlive(pid), 10_000);
  } catch {
    process.kill(pid, "SIGKILL");
  }
}

export interface SmtpReply {
  code: number;
  /** All lines of the reply, joined with \n, without the codes. */
  text: string;
}

export interface SmtpTranscript {
  greeting: SmtpReply;
  ehlo: SmtpReply;
  mail: SmtpReply;
  rcpt: (SmtpReply & { recipient: string })[];
  /** The reply to DATA (354), absent when no recipient was accepted or MAIL failed. */
  data?: SmtpReply;
  /** The reply after the final dot: 250 queued, 552 too big… */
  message?: SmtpReply;
}

export interface SendMailOptions {
  port: number;
  host?: string;
  from: string;
  to: string[];
  /** Added to MAIL FROM as SIZE=<n> (RFC 1870), so the server can refuse before any data is sent. */
  declaredSize?: number;
  /** The whole message; a small RFC 5322 message naming the recipients by default. */
  message?: string;
  helo?: string;
}

/** A line-oriented SMTP reader: resolves one full (possibly multi-line) reply at a time. */
class SmtpConnection {
  private buffered = "";
  private readonly waiting: ((reply: SmtpReply) => void)[] = [];
  private readonly lines: string[] = [];
  private failure: Error | undefined;
  private failWaiters: ((error: Error) => void)[] = [];

  constructor(readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.buffered += chunk;
      let newline: number;
      while ((newline = this.buffered.indexOf("\n")) >= 0) {
        this.lines.push(this.buffered.slice(0, newline).replace(/\r$/, ""));
        this.buffered = this.buffered.slice(newline + 1);
      }
      this.deliver();
    });
    const fail = (error: Error) => {
      this.failure = error;
      for (const reject of this.failWaiters.splice(0)) reject(error);
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("SMTP server closed the connection")));
  }

  private deliver(): void {
    for (;;) {
      const end = this.lines.findIndex((line) => /^\d{3}( |$)/.test(line));
      if (end < 0 || this.waiting.length === 0) return;
      const replyLines = this.lines.splice(0, end + 1);
      this.waiting.shift()!({ code: Number(replyLines[0]!.slice(0, 3)), text: replyLines.map((l) => l.slice(4)).join("\n") });
      this.failWaiters.shift();
    }
  }

  reply(): Promise<SmtpReply> {
    return new Promise((resolve, reject) => {
      if (this.failure !== undefined && this.lines.length === 0) return reject(this.failure);
      this.waiting.push(resolve);
      this.failWaiters.push(reject);
      this.deliver();
    });
  }

  async command(line: string): Promise<SmtpReply> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }
}

export function defaultMessage(from: string, to: string[], subject = "harness test message"): string {
  return [
    `From: <${from}>`,
    `To: ${to.map((t) => `<${t}>`).join(", ")}`,
    `Subject: ${subject}`,
    `Message-ID: <${Date.now()}.${Math.random().toString(36).slice(2)}@test.invalid>`,
    "",
    "hello from the postfix test harness",
    "",
  ].join("\r\n");
}

/** One SMTP transaction over a raw socket, returning the server's reply at every stage (no client-side retries). */
export async function sendMail(options: SendMailOptions): Promise<SmtpTranscript> {
  const socket = connect(options.port, options.host ?? "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const smtp = new SmtpConnection(socket);
  try {
    const greeting = await smtp.reply();
    const ehlo = await smtp.command(`EHLO ${options.helo ?? "client.test.invalid"}`);
    const size = options.declaredSize === undefined ? "" : ` SIZE=${options.declaredSize}`;
    const mail = await smtp.command(`MAIL FROM:<${options.from}>${size}`);
    const transcript: SmtpTranscript = { greeting, ehlo, mail, rcpt: [] };
    if (mail.code !== 250) return transcript;
    for (const recipient of options.to) transcript.rcpt.push({ recipient, ...(await smtp.command(`RCPT TO:<${recipient}>`)) });
    if (!transcript.rcpt.some((r) => r.code === 250)) return transcript;
    transcript.data = await smtp.command("DATA");
    if (transcript.data.code !== 354) return transcript;
    const message = (options.message ?? defaultMessage(options.from, options.to)).replace(/\r?\n/g, "\r\n");
    // Dot-stuffing (RFC 5321 4.5.2), so a body line starting with "." survives.
    const stuffed = message.replace(/^\./gm, "..");
    socket.write(stuffed.endsWith("\r\n") ? stuffed : `${stuffed}\r\n`);
    transcript.message = await smtp.command(".");
    await smtp.command("QUIT").catch(() => undefined);
    return transcript;
  } finally {
    socket.destroy();
  }
}

/**
 * startPostfix options that run a node's rendered main.cf/master.cf on loopback. Changed from the rendered files,
 * and why: loopback ipv4 only; TLS off (no certificate in tests; TLS has its own tests); milters emptied (no
 * milter daemons run); smtp on the harness's free port; submission dropped (needs Dovecot); the pipe's argv
 * names `maildropScript` when given. `main` overrides go last.
 */
export function renderedPostfixOptions(
  node: GatewayNode,
  options: { maildropScript?: string; main?: Record<string, string> } = {},
): PostfixOptions {
  const rendered = Object.fromEntries(mainCfSections(node).flatMap((section) => section.params.map((p) => [p.key, p.value])));
  let master = renderMasterCf(node)
    .replace(/^smtp inet /m, "127.0.0.1:{port:smtp} inet ")
    .replace(/^submission inet [^\n]*\n(?:[ \t]+[^\n]*\n)*/m, "");
  if (options.maildropScript !== undefined) master = master.replace(MAILDROP_SCRIPT_PATH, options.maildropScript);
  return {
    main: {
      ...rendered,
      inet_interfaces: "127.0.0.1",
      inet_protocols: "ipv4",
      smtpd_tls_security_level: "none",
      smtpd_tls_auth_only: "no",
      smtpd_tls_cert_file: "",
      smtpd_tls_key_file: "",
      smtpd_milters: "",
      non_smtpd_milters: "",
      ...options.main,
    },
    replaceMaster: master,
  };
}
