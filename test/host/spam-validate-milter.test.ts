// The rendered SpamAssassin setup end to end with the real daemons: spamd with the rendered options and
// local.cf, spamass-milter with the rendered flags on the rendered Debian socket, and a real Postfix whose
// smtpd_milters is spamMilterEndpoint(node). GTUBE must be refused at SMTP time; clean mail accepted.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEBIAN_SPAMASS_SOCKET, spamFiles, spamMilterEndpoint } from "../../infra/render/spam";
import { examplePrimary } from "../fixtures/nodes";
import { sendMail, startPostfix, waitFor, type PostfixInstance } from "../helpers/postfix-server";
import { makeTempRoot } from "../helpers/render-to-dir";
import { freePort, waitForPort } from "../helpers/renderer-net";

const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
const node = examplePrimary;
const { root: work, remove: removeWork } = makeTempRoot("bc-spam-milter");
const daemons: ChildProcess[] = [];
let postfix: PostfixInstance | undefined;

function rendered(path: string): string {
  const file = spamFiles(node).find((f) => f.path === path);
  if (!file) throw new Error(`${path} not rendered`);
  return file.content;
}

/** The value of VAR="…" in a rendered /etc/default file. */
function defaultVar(content: string, name: string): string {
  const match = new RegExp(`^${name}="([^"]*)"$`, "m").exec(content);
  if (!match) throw new Error(`${name} not in ${content}`);
  return match[1]!;
}

function start(command: string, args: string[]): ChildProcess {
  const log = openSync(join(work, `${command}.log`), "a");
  const child = spawn(command, args, { stdio: ["ignore", log, log] });
  closeSync(log);
  daemons.push(child);
  return child;
}

/** SIGTERM, then SIGKILL if the daemon is still there after 5 s; resolves once it has exited. */
async function stopDaemon(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

beforeAll(async () => {
  // spamd: the rendered OPTIONS, moved to a free port; the rendered local.cf over the packaged site config.
  // spamd, started as root, drops to nobody before reading its config: the temp dir must be traversable.
  chmodSync(work, 0o755);
  const siteDir = join(work, "spamassassin");
  cpSync("/etc/spamassassin", siteDir, { recursive: true });
  writeFileSync(join(siteDir, "local.cf"), rendered("/etc/spamassassin/local.cf"));
  const spamdPort = await freePort();
  const spamdOptions = defaultVar(rendered("/etc/default/spamd"), "OPTIONS").replace("127.0.0.1:783", `127.0.0.1:${spamdPort}`);
  start("spamd", [
    ...spamdOptions.split(" "),
    "--max-children=1",
    `--siteconfigpath=${siteDir}`,
    `--pidfile=${join(work, "spamd.pid")}`,
  ]);

  postfix = await startPostfix({
    main: {
      relay_domains: "brightchain.org",
      // Accepted mail is thrown away: the test is about the SMTP-time verdict, and nothing may leave.
      relay_transport: "discard:spam milter test",
      // Accepted mail is held in the queue, so the test can read the headers the milter added.
      smtpd_end_of_data_restrictions: "check_client_access static:HOLD",
      smtpd_milters: spamMilterEndpoint(node)!,
      // tempfail, not accept: if the milter were unreachable the test would see 451s, never a silent pass.
      milter_default_action: "tempfail",
    },
  });

  // spamass-milter: the rendered flags, its socket where the rendered SOCKET puts it relative to the queue dir.
  const milterConf = rendered("/etc/default/spamass-milter");
  const socketRelative = defaultVar(milterConf, "SOCKET").replace(/^\/var\/spool\/postfix\//, "");
  expect(defaultVar(milterConf, "SOCKET")).toBe(DEBIAN_SPAMASS_SOCKET);
  const socket = join(postfix.queueDir, socketRelative);
  mkdirSync(join(postfix.queueDir, "spamass"), { recursive: true });
  // -i 127.0.0.1 (skip mail from this host) is dropped here only because the test's mail comes from loopback.
  const flags = defaultVar(milterConf, "OPTIONS").replace("-i 127.0.0.1 ", "").split(" ");
  start("spamass-milter", ["-p", socket, ...flags, "--", "-d", "127.0.0.1", "-p", String(spamdPort)]);
  await waitFor("the spamass-milter socket", () => existsSync(socket));
  // What Debian's init script does with SOCKETOWNER/SOCKETMODE: smtpd runs as postfix.
  const [uid, gid] = [
    Number(execFileSync("id", ["-u", "postfix"]).toString()),
    Number(execFileSync("id", ["-g", "postfix"]).toString()),
  ];
  chownSync(socket, uid, gid);
  chmodSync(socket, 0o660);
  await waitForPort(spamdPort, "127.0.0.1", 60_000).catch((error: Error) => {
    throw new Error(`${error.message}\nspamd: ${readFileSync(join(work, "spamd.log"), "utf8")}`);
  });
}, 120_000);

afterAll(async () => {
  await postfix?.stop();
  await Promise.all(daemons.map(stopDaemon));
  removeWork();
});

describe("SpamAssassin through spamass-milter and Postfix", () => {
  it("refuses GTUBE at SMTP time with 550, before Postfix takes responsibility", async () => {
    const message = ["From: <spammer@example.net>", "To: <alice@brightchain.org>", "Subject: offer", "", GTUBE, ""].join("\r\n");
    const reply = await sendMail({
      port: postfix!.smtpPort,
      from: "spammer@example.net",
      to: ["alice@brightchain.org"],
      message,
    });
    expect(reply.message?.code, JSON.stringify(reply) + postfix!.maillog()).toBe(550);
    expect(reply.message?.text).toContain("Blocked by SpamAssassin");
  });

  it("accepts clean mail with the score headers the InboundProcessor reads", async () => {
    const reply = await sendMail({ port: postfix!.smtpPort, from: "friend@example.net", to: ["alice@brightchain.org"] });
    expect(reply.message?.code).toBe(250);
    const queueId = /queued as ([0-9A-F]+)/.exec(reply.message!.text)![1]!;
    const headers = execFileSync("postcat", ["-c", postfix!.configDir, "-h", "-q", queueId], { encoding: "utf8" });
    expect(headers).toMatch(/^X-Spam-Status: No, score=-?\d+\.\d+ required=5\.0/m);
    expect(headers).not.toMatch(/^Subject: \*+SPAM/m);
  });
});
