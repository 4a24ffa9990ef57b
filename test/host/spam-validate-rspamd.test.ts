// The rendered Rspamd local.d end to end: a real rspamd on a temp copy of /etc/rspamd with our files overlaid
// (its three worker ports moved to free ones so parallel tests do not collide), and a real Postfix whose
// smtpd_milters is the proxy worker. GTUBE must be refused at SMTP time; clean mail gets the score headers.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, closeSync, cpSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  RSPAMD_CONTROLLER_PORT,
  RSPAMD_NORMAL_PORT,
  RSPAMD_PROXY_PORT,
  spamFiles,
  spamMilterEndpoint,
} from "../../infra/render/spam";
import { exampleRelay } from "../fixtures/nodes";
import { sendMail, startPostfix, type PostfixInstance } from "../helpers/postfix-server";
import { makeTempRoot } from "../helpers/render-to-dir";
import { freePort, waitForPort } from "../helpers/renderer-net";

const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
const node = exampleRelay;
const { root: work, remove: removeWork } = makeTempRoot("bc-rspamd");
let rspamd: ChildProcess | undefined;
let postfix: PostfixInstance | undefined;

beforeAll(async () => {
  chmodSync(work, 0o755);
  const conf = join(work, "conf");
  cpSync("/etc/rspamd", conf, { recursive: true });
  const ports = new Map([
    [RSPAMD_PROXY_PORT, await freePort()],
    [RSPAMD_NORMAL_PORT, await freePort()],
    [RSPAMD_CONTROLLER_PORT, await freePort()],
  ]);
  for (const file of spamFiles(node)) {
    let content = file.content;
    for (const [rendered, free] of ports) content = content.replace(`127.0.0.1:${rendered}"`, `127.0.0.1:${free}"`);
    writeFileSync(join(conf, file.path.replace(/^\/etc\/rspamd\//, "")), content);
  }
  const { uid, gid } = {
    uid: Number(execFileSync("id", ["-u", "_rspamd"]).toString()),
    gid: Number(execFileSync("id", ["-g", "_rspamd"]).toString()),
  };
  const dirs = ["db", "run", "log"].map((d) => join(work, d));
  for (const dir of dirs) {
    mkdirSync(dir);
    chownSync(dir, uid, gid);
  }
  const log = openSync(join(work, "rspamd.out"), "a");
  rspamd = spawn(
    "rspamd",
    [
      "-f",
      "-u",
      "_rspamd",
      "-g",
      "_rspamd",
      "-c",
      join(conf, "rspamd.conf"),
      `--var=CONFDIR=${conf}`,
      `--var=LOCAL_CONFDIR=${conf}`,
      `--var=DBDIR=${dirs[0]}`,
      `--var=RUNDIR=${dirs[1]}`,
      `--var=LOGDIR=${dirs[2]}`,
    ],
    { stdio: ["ignore", log, log] },
  );
  closeSync(log);
  const proxyPort = ports.get(RSPAMD_PROXY_PORT)!;
  await waitForPort(proxyPort, "127.0.0.1", 90_000).catch((error: Error) => {
    throw new Error(`${error.message}\n${readFileSync(join(work, "rspamd.out"), "utf8")}`);
  });

  postfix = await startPostfix({
    main: {
      relay_domains: "brightchain.org",
      relay_transport: "discard:rspamd test",
      smtpd_end_of_data_restrictions: "check_client_access static:HOLD",
      smtpd_milters: spamMilterEndpoint(node)!.replace(`:${RSPAMD_PROXY_PORT}`, `:${proxyPort}`),
      milter_default_action: "tempfail",
    },
  });
}, 120_000);

afterAll(async () => {
  await postfix?.stop();
  if (rspamd && rspamd.exitCode === null && rspamd.signalCode === null) {
    const exited = new Promise((resolve) => rspamd!.once("exit", resolve));
    rspamd.kill("SIGTERM");
    const timer = setTimeout(() => rspamd!.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
  removeWork();
});

describe("Rspamd through its milter proxy and Postfix", () => {
  it("refuses GTUBE at SMTP time with a 5xx", async () => {
    const message = ["From: <spammer@example.net>", "To: <alice@brightchain.org>", "Subject: offer", "", GTUBE, ""].join("\r\n");
    const reply = await sendMail({
      port: postfix!.smtpPort,
      from: "spammer@example.net",
      to: ["alice@brightchain.org"],
      message,
    });
    expect(reply.message?.code, JSON.stringify(reply.message)).toBeGreaterThanOrEqual(550);
    expect(reply.message?.code).toBeLessThan(600);
  });

  it("accepts clean mail with the X-Spamd-Result / X-Spam-Status headers the InboundProcessor reads", async () => {
    const reply = await sendMail({ port: postfix!.smtpPort, from: "friend@example.net", to: ["alice@brightchain.org"] });
    expect(reply.message?.code, JSON.stringify(reply.message)).toBe(250);
    const queueId = /queued as ([0-9A-F]+)/.exec(reply.message!.text)![1]!;
    const headers = execFileSync("postcat", ["-c", postfix!.configDir, "-h", "-q", queueId], { encoding: "utf8" });
    expect(headers).toMatch(/^X-Spamd-Result: default: False \[-?\d+\.\d+ \/ 10\.00\]/m);
    expect(headers).toMatch(/^X-Spam-Status: No, score=-?\d+\.\d+/m);
  });
});
