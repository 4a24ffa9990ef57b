// A real Postfix from Debian for tests: its own config, queue and data directories in a temp dir, services on
// free 127.0.0.1 ports, its log in a file (the bare machine has no syslog), every daemon unchrooted (`postfix
// start` does not populate a chroot), started by `postfix -c DIR start` and stopped by its master's pid.
//
//   const postfix = await startPostfix({ main: { virtual_mailbox_maps: "socketmap:inet:127.0.0.1:2526:virtual" } });
//   // or a node's rendered files, its drop spool in a temp dir of the test's:
//   const { node, maildropScript } = withTestDropSpool(examplePrimary, scratch);
//   const postfix = await startPostfix(renderedPostfixOptions(node, { maildropScript }));
//   const reply = await sendMail({ port: postfix.smtpPort, from: "a@example.net", to: ["b@brightchain.org"] });
//   expect(reply.rcpt[0]!.code).toBe(250);   // reply.greeting / ehlo / mail / rcpt[] / data / message
//   await postfix.waitForQueueEmpty();        // postqueue -c DIR -j, with a deadline
//   expect(await postfix.postconf("message_size_limit")).toBe("26214400");
//   await postfix.stop();                     // SIGTERM to this instance's master pid, temp dir removed
//
// preparePostfix writes an instance without starting it, for `postfix check` (check()) or a start() later.
// Also: freePort, waitForPort, waitFor (poll with a deadline), portAccepts, processAlive, runUnderTty, setMainCf
// (postconf -e + reload), queuedIds, flushQueue, maillog().
import { execFile } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { DropTransport, GatewayNode } from "../../infra/model/types";
import { mainCfSections, renderMasterCf } from "../../infra/render/postfix";
import { MAILDROP_SCRIPT_PATH, renderMaildropScript, spoolDirectories } from "../../infra/render/spool";

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
  /**
   * A whole main.cf instead of the harness's, checked as written (e.g. a rendered one): only the instance's own
   * paths, then `main`, are set in it with `postconf -e`.
   */
  replaceMain?: string;
  /** The smtpd at a fixed address: `{port:smtp}` stands for `port`, and readiness is awaited on `host`. */
  smtp?: { host: string; port: number };
}

export interface QueuedMessage {
  queue_id: string;
  /** active, deferred, hold… */
  queue_name: string;
  recipients: { address: string; delay_reason?: string }[];
}

export interface PostfixInstance {
  /** Temp dir holding conf/, queue/, data/ and maillog. */
  dir: string;
  configDir: string;
  queueDir: string;
  maillogFile: string;
  /** The smtpd's port (`{port:smtp}`), on 127.0.0.1 unless PostfixOptions.smtp names another address. */
  smtpPort: number;
  ports: Record<string, number>;
  /** 0 until start(). */
  masterPid: number;
  /** `postfix -c DIR check`: its exit status and every warning it printed. */
  check(): Promise<{ code: number; output: string }>;
  /** Starts a prepared instance (startPostfix does this itself). */
  start(): Promise<void>;
  /** `postconf -c DIR -h NAME`: the value Postfix really uses. */
  postconf(name: string): Promise<string>;
  /** `postconf -c DIR -e name=value…` then `postfix reload`. */
  setMainCf(parameters: Record<string, string>): Promise<void>;
  maillog(): string;
  /** The queue as `postqueue -j` describes it, one entry per message. */
  queue(): Promise<QueuedMessage[]>;
  /** IDs of messages still queued. */
  queuedIds(): Promise<string[]>;
  waitForQueueEmpty(deadlineMs?: number): Promise<void>;
  /** Asks the queue manager to retry deferred mail now (`postqueue -f`). */
  flushQueue(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs a command under a pseudo-terminal: without one `postfix` prints nothing at all, not even why it failed
 * (its messages go to syslog, which this machine lacks).
 */
export async function runUnderTty(command: string[]): Promise<{ code: number; output: string }> {
  const quoted = command.map((arg) => `'${arg.replace(/'/g, "'\\''")}'`).join(" ");
  try {
    const { stdout } = await run("script", ["-qec", quoted, "/dev/null"], { encoding: "utf8" });
    return { code: 0, output: stdout.replace(/\r/g, "") };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string };
    return { code: typeof failed.code === "number" ? failed.code : 1, output: (failed.stdout ?? "").replace(/\r/g, "") };
  }
}

async function postfixCommand(configDir: string, verb: string): Promise<void> {
  const { code, output } = await runUnderTty(["postfix", "-c", configDir, verb]);
  if (code !== 0) throw new Error(`postfix -c ${configDir} ${verb} failed:\n${output}`);
}

function fill(template: string, dir: string, ports: Record<string, number>): string {
  return template.replaceAll("{dir}", dir).replace(/\{port:([a-z0-9_-]+)\}/gi, (_m, name: string) => String(ports[name]));
}

/** An instance written to its temp dir but not started: check() it, start() it, stop() removes it. */
export async function preparePostfix(options: PostfixOptions = {}): Promise<PostfixInstance> {
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

  const masterTemplate = options.replaceMaster ?? `{port:smtp} inet n - n - - smtpd\n${STOCK_MASTER_CF}${options.master ?? ""}\n`;
  const ports: Record<string, number> = {};
  const configure = async () => {
    for (const name of Object.keys(ports)) delete ports[name];
    if (options.smtp !== undefined) ports.smtp = options.smtp.port;
    for (const [, name] of masterTemplate.matchAll(/\{port:([a-z0-9_-]+)\}/gi)) ports[name!] ??= await freePort();
    ports.smtp ??= await freePort();
    await writeConfig(configDir, { dir, queueDir, dataDir, maillogFile }, options, masterTemplate, ports);
  };
  await configure();
  const maillog = () => (existsSync(maillogFile) ? readFileSync(maillogFile, "utf8") : "");
  let masterPid = 0;

  const instance: PostfixInstance = {
    dir,
    configDir,
    queueDir,
    maillogFile,
    get smtpPort() {
      return ports.smtp!;
    },
    ports,
    get masterPid() {
      return masterPid;
    },
    check: () => runUnderTty(["postfix", "-c", configDir, "check"]),
    async start() {
      // A port found free can be taken by a parallel test before the master binds it; `postfix start` waits for
      // the master (master -w) and fails on a bind error, so a fresh set of ports is tried.
      for (let attempt = 1; ; attempt++) {
        try {
          await postfixCommand(configDir, "start");
          await waitForPort(ports.smtp!, options.smtp?.host ?? "127.0.0.1");
          break;
        } catch (error) {
          const log = maillog();
          await stopMaster(queueDir);
          if (attempt < 3 && /address already in use/i.test(log)) {
            await configure();
            continue;
          }
          rmSync(dir, { recursive: true, force: true });
          throw new Error(`${(error as Error).message}\n${log}`);
        }
      }
      masterPid = readMasterPid(queueDir)!;
    },
    async postconf(name) {
      const { stdout } = await run("postconf", ["-c", configDir, "-h", name]);
      return stdout.trim();
    },
    async setMainCf(parameters) {
      const assignments = Object.entries(parameters).map(([k, v]) => `${k}=${fill(v, dir, ports)}`);
      await run("postconf", ["-c", configDir, "-e", ...assignments]);
      await postfixCommand(configDir, "reload");
    },
    maillog,
    async queue() {
      const { stdout } = await run("postqueue", ["-c", configDir, "-j"], { maxBuffer: 64 * 1024 * 1024 });
      return stdout
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => JSON.parse(line) as QueuedMessage);
    },
    async queuedIds() {
      // showq walks incoming/, active/, deferred/ … one after another: a message the queue manager moves during
      // the walk is listed twice (seen: the same ID from incoming and active). One ID is one message.
      return [...new Set((await instance.queue()).map((message) => message.queue_id))];
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

export async function startPostfix(options: PostfixOptions = {}): Promise<PostfixInstance> {
  const instance = await preparePostfix(options);
  await instance.start();
  return instance;
}

async function writeConfig(
  configDir: string,
  paths: { dir: string; queueDir: string; dataDir: string; maillogFile: string },
  options: PostfixOptions,
  masterTemplate: string,
  ports: Record<string, number>,
): Promise<void> {
  const instancePaths = {
    queue_directory: paths.queueDir,
    data_directory: paths.dataDir,
    maillog_file: paths.maillogFile,
    maillog_file_prefixes: paths.dir,
  };
  writeFileSync(join(configDir, "master.cf"), fill(masterTemplate, paths.dir, ports));
  if (options.replaceMain !== undefined) {
    writeFileSync(join(configDir, "main.cf"), options.replaceMain);
    const assignments = Object.entries({ ...instancePaths, ...options.main }).map(
      ([k, v]) => `${k}=${fill(v, paths.dir, ports)}`,
    );
    await run("postconf", ["-c", configDir, "-e", ...assignments]);
    return;
  }
  const main: Record<string, string> = {
    compatibility_level: "3.6",
    ...instancePaths,
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

/** The account test drop files belong to: it exists everywhere, as pipe's user= needs, and is not root, which virtual(8) refuses. */
export const NOBODY = { uid: 65534, gid: 65534, user: "nobody", group: "nogroup" };

/**
 * `node` with its drop spool under `dir`/spool, made on disk as spoolDirectories says and owned by NOBODY, and
 * the rendered brightchain-maildrop script written into `dir` for renderedPostfixOptions' maildropScript.
 */
export function withTestDropSpool(
  node: GatewayNode,
  dir: string,
  transport: DropTransport = node.drop.transport,
): { node: GatewayNode; maildropScript: string } {
  const spoolDir = join(dir, "spool");
  const spooled: GatewayNode = {
    ...node,
    drop: {
      ...node.drop,
      ...NOBODY,
      transport,
      spoolDir,
      mailDropDir: join(spoolDir, "incoming"),
      errorDir: join(spoolDir, "errors"),
    },
  };
  for (const directory of spoolDirectories(spooled)) {
    mkdirSync(directory.path, { recursive: true, mode: directory.mode });
    chownSync(directory.path, NOBODY.uid, NOBODY.gid);
  }
  const maildropScript = join(dir, "brightchain-maildrop");
  writeFileSync(maildropScript, renderMaildropScript(spooled), { mode: 0o755 });
  return { node: spooled, maildropScript };
}

export interface RenderedPostfixChanges {
  /** The pipe's argv names this script instead of the installed one. */
  maildropScript?: string;
  /** main.cf values set last. */
  main?: Record<string, string>;
  /** Keeps the rendered TLS settings, serving this certificate. */
  cert?: { certFile: string; keyFile: string };
  /** Keeps submission, on the free port `ports.submission`, without its OpenDKIM milter. */
  submission?: boolean;
  /** The smtpd at this address instead of a free loopback port (see PostfixOptions.smtp). */
  smtp?: { host: string; port: number };
}

/**
 * startPostfix options that run a node's rendered main.cf/master.cf on loopback. Changed from the rendered files,
 * and why: loopback ipv4 only; milters emptied (no milter daemons run); smtp on the harness's free port; unless
 * asked for, TLS off (no certificate; TLS has its own tests) and submission dropped (needs Dovecot).
 */
export function renderedPostfixOptions(node: GatewayNode, changes: RenderedPostfixChanges = {}): PostfixOptions {
  const tested = changes.cert === undefined ? node : { ...node, tls: { ...node.tls, ...changes.cert } };
  const rendered = Object.fromEntries(mainCfSections(tested).flatMap((section) => section.params.map((p) => [p.key, p.value])));
  let master = renderMasterCf(tested)
    .replace(/^smtp inet /m, `${changes.smtp?.host ?? "127.0.0.1"}:{port:smtp} inet `)
    .replace(/\n\s+-o smtpd_milters=\S+/g, "");
  master = changes.submission
    ? master.replace(/^submission inet /m, "127.0.0.1:{port:submission} inet ")
    : master.replace(/^submission inet [^\n]*\n(?:[ \t]+[^\n]*\n)*/m, "");
  if (changes.maildropScript !== undefined) master = master.replace(MAILDROP_SCRIPT_PATH, changes.maildropScript);
  const tlsOff = {
    smtpd_tls_security_level: "none",
    smtpd_tls_auth_only: "no",
    smtpd_tls_cert_file: "",
    smtpd_tls_key_file: "",
  };
  return {
    main: {
      ...rendered,
      inet_interfaces: "127.0.0.1",
      inet_protocols: "ipv4",
      ...(changes.cert === undefined ? tlsOff : {}),
      smtpd_milters: "",
      non_smtpd_milters: "",
      ...changes.main,
    },
    replaceMaster: master,
    smtp: changes.smtp,
  };
}
