// Zero loss under load and faults, on real hosts (issue 12): outside's Postfix sends a steady stream of uniquely
// tagged messages to alice@brightchain.org, finding the MX hosts in the lab DNS like any sender, while a schedule of
// faults runs on the primary, the relay and the BrightChain node behind them. The primary hands mail to a node over
// HTTP (gateway:nodeUrl): a stand-in node in this process speaking docs/node-api.openapi.yaml, which stores each
// (sha3, recipient) once and can be taken down. The primary's /var/spool (Postfix's queue, the drop and the
// errors/ directory) is a small filesystem of its own, so it can be filled. After everything drains: every message
// outside's Postfix accepted is at the node exactly once, no queue holds anything, nothing bounced; the table of
// what each fault did is printed.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deployStackToLab } from "../../infra/deploy";
import { LAB_GATEWAY_IP, LAB_HOSTS, LAB_STATE_DIR } from "../../infra/lab/constants";
import { labHostPaths } from "../../infra/lab/hosts";
import { labDown, labReboot, labStart, labStop, labUp } from "../../infra/lab/lab";
import { GATEWAY_ENV_FILE, mailLog, on, shellQuote, swaksFromOutside, tryOn, waitOnHost } from "../helpers/lab-mail";
import {
  claimLab,
  labTimer,
  PRIMARY_SERVICES,
  readyGatewaysForMail,
  setUpOutside,
  waitForMailSettled,
} from "../helpers/lab-scenarios";
import { StandInNode, type NodeApiAnswer, type NodeApiRequest } from "../helpers/node-api-stand-in";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const repo = path.resolve(__dirname, "../..");
const temp = mkdtempSync(path.join(tmpdir(), "gateway-faults-"));
const dist = path.join(temp, "dist");
const timer = labTimer();
const suiteStarted = Date.now();
const PRIMARY = LAB_HOSTS.find((host) => host.name === "mail")!;

/** At least 2,000 messages (the floor), 4 a second: the stream outlasts the whole fault schedule. */
const STREAM_MESSAGES = 2_000;
const STREAM_RATE_PER_SECOND = 4;
const RUN = `f${Date.now().toString(36)}`;
const STREAM_LOG = "/root/brightchain-fault-stream.log";
/** Room for the queue, the drop and the errors/ directory of a few thousand 10 KB messages, and small to fill. */
const SPOOL_FS_BYTES = 768 * 1024 * 1024;
const FILL_FILE = "/var/spool/brightchain-fault-fill";
const CUT_COMMENT = "brightchain-fault-cut";
/** The gap between two faults: mail flows normally for a while, so each fault starts from a working system. */
const QUIET_MS = 15_000;

/**
 * outside's Postfix, a sender on the internet, resends deferred mail every few seconds instead of Postfix's
 * 5-minute default: the drain is measured on our nodes, not on a foreign sender's patience.
 */
const OUTSIDE_PROMPT_RETRY =
  "postconf -e minimal_backoff_time=5s maximal_backoff_time=15s queue_run_delay=5s && systemctl reload postfix";

/**
 * smtplib into outside's own Postfix (which looks up brightchain.org's MX), one tagged 3 KB message each: the
 * primary's SpamAssassin scans every one, and on 2 shared cores larger bodies made the drain, not the faults, the
 * test's length.
 */
const STREAM_SCRIPT = `
import email.utils, smtplib, sys, time
from email.message import EmailMessage
run, count, rate, log_path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
body = ("stream filler line, so the message is a few kilobytes as plain mail is ...........\\n" * 30)
start = time.time()
with open(log_path, "a", buffering=1) as log:
    for i in range(count):
        due = start + i / rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
        tag = "%s-%05d" % (run, i)
        m = EmailMessage()
        m["From"] = "someone@outside.test"
        m["To"] = "alice@brightchain.org"
        m["Subject"] = "fault stream " + tag
        m["Message-ID"] = "<%s@outside.test>" % tag
        m["Date"] = email.utils.formatdate()
        m.set_content(body)
        try:
            with smtplib.SMTP("127.0.0.1", 25, timeout=30) as s:
                s.send_message(m)
            log.write("%s accepted %.3f\\n" % (tag, time.time()))
        except Exception as e:
            log.write("%s failed %.3f %s\\n" % (tag, time.time(), type(e).__name__))
    log.write("done\\n")
`;

interface Delivery {
  /** Distinct bodies the node holds for this tag: 1, or a duplicate got through as a different message. */
  sha3s: Set<string>;
  /** Hand-offs the node answered (a repeat after a crash is answered 409 and stored once). */
  handOffs: number;
  firstStoredAt: number;
}

/** What the node received, by the stream's tag. */
const delivered = new Map<string, Delivery>();
const violations: string[] = [];
let node: StandInNode | undefined;
let nodePort = 0;

/**
 * Messages at the node that are not the stream's: Postfix's own notices to the postmaster (notify_classes'
 * default, resource and software), which the full spool filesystem makes the primary send.
 */
const notices: { recipient: string; subject: string }[] = [];

function storeAtNode(request: NodeApiRequest): NodeApiAnswer {
  if (request.operationId !== "storeMessage") return { status: 404, contentType: "text/plain", body: "not a node of users" };
  const text = request.body.toString("latin1");
  // By Message-ID, which nothing on the way rewrites (a spam engine may rewrite the Subject).
  const tag = /^Message-ID:\s*<([^@>\s]+)@outside\.test>/im.exec(text)?.[1];
  if (tag === undefined || !tag.startsWith(`${RUN}-`)) {
    notices.push({ recipient: request.query.recipient ?? "", subject: /^Subject:\s*(.*)$/im.exec(text)?.[1]?.trim() ?? "" });
    return { status: 201 };
  }
  const known = delivered.get(tag);
  if (known === undefined) {
    delivered.set(tag, { sha3s: new Set([request.path.sha3!]), handOffs: 1, firstStoredAt: Date.now() });
    return { status: 201 };
  }
  known.handOffs += 1;
  const seen = known.sha3s.has(request.path.sha3!);
  known.sha3s.add(request.path.sha3!);
  return { status: seen ? 409 : 201 };
}

async function startNode(): Promise<void> {
  node = await StandInNode.start(storeAtNode, { host: LAB_GATEWAY_IP, port: nodePort });
  nodePort = node.port;
}

async function stopNode(): Promise<void> {
  if (node === undefined) return;
  violations.push(...node.violations);
  await node.close();
  node = undefined;
}

interface FaultWindow {
  fault: string;
  start: number;
  end: number;
  notes: string[];
}

const windows: FaultWindow[] = [];

async function fault(name: string, work: (notes: string[]) => Promise<void>): Promise<void> {
  const window: FaultWindow = { fault: name, start: Date.now(), end: 0, notes: [] };
  windows.push(window);
  try {
    await timer.timed(`fault: ${name}`, () => work(window.notes));
  } finally {
    window.end = Date.now();
  }
  await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
}

const mainPid = async (unit: string): Promise<string> => (await on("mail", `systemctl show -p MainPID --value ${unit}`)).trim();

/** kill -9 of a runtime daemon's every process; systemd's Restart=on-failure brings it back under a new pid. */
async function killAndAwaitRestart(unit: string, notes: string[]): Promise<void> {
  const before = await mainPid(unit);
  await on("mail", `systemctl kill --signal=KILL ${unit}`);
  await waitOnHost(
    "mail",
    `${unit} restarted by systemd`,
    `systemctl is-active ${unit} && systemctl show -p MainPID --value ${unit}`,
    (out, code) => code === 0 && !["", "0", before].includes(out.trim().split("\n").at(-1)!),
    { deadlineMs: 60_000, diagnose: () => mailLog("mail") },
  );
  notes.push(`pid ${before} killed, restarted as ${await mainPid(unit)}`);
}

/**
 * On 2 shared cores the primary's SpamAssassin sets the pace: the backlog the faults leave (mostly on the relay)
 * drains at a few messages a second, slower when the machine is busy with other work.
 */
const DRAIN_DEADLINE_MS = 1_800_000;

/** One Prometheus scrape on a lab host, read with Python (the nodes have no curl): `name{labels} value` lines. */
async function scrape(host: "mail" | "mail2", port: number): Promise<string> {
  return on(
    host,
    `python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:${port}/metrics", timeout=10).read().decode())'`,
  );
}

/** The sum of every sample of `metric` (all label sets) in a scrape. */
function metricSum(text: string, metric: string): number {
  const samples = text.split("\n").filter((line) => line.startsWith(`${metric} `) || line.startsWith(`${metric}{`));
  if (samples.length === 0) throw new Error(`no ${metric} in the scrape:\n${text.slice(0, 2000)}`);
  return samples.reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
}

/**
 * Drained, as the nodes' own metrics say (docs/monitoring.md): the primary's inbound daemon has nothing in new/
 * and nothing in flight, and Postfix's exporter counts no message in any queue, on both nodes; outside (no
 * exporter, a foreign sender) by its queue.
 */
async function waitForDrainInMetrics(deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const inbound = await scrape("mail", 9527);
    const pending = {
      "mail new/": metricSum(inbound, "brightchain_inbound_new_files"),
      "mail in flight": metricSum(inbound, "brightchain_inbound_in_flight"),
      "mail queues": metricSum(await scrape("mail", 9154), "postfix_showq_message_age_seconds_count"),
      "mail2 queues": metricSum(await scrape("mail2", 9154), "postfix_showq_message_age_seconds_count"),
      "outside queue": (await on("outside", "postqueue -j")).split("\n").filter((line) => line.trim() !== "").length,
    };
    if (Object.values(pending).every((count) => count === 0)) return;
    if (Date.now() > deadline) throw new Error(`not drained after ${deadlineMs} ms: ${JSON.stringify(pending)}`);
    await new Promise((resolve) => setTimeout(resolve, 5_000));
  }
}

/** What an admin does once the primary can be reached again, instead of the relay's 5-minute retry timer. */
const flushRelay = () => on("mail2", "postqueue -f");

const relayQueueSize = async (): Promise<number> =>
  (await on("mail2", "postqueue -j")).split("\n").filter((line) => line.trim() !== "").length;

/** The primary's /var/spool on a small filesystem of its own, made before anything is installed on the host. */
async function giveThePrimaryASmallSpool(): Promise<void> {
  const paths = labHostPaths(LAB_STATE_DIR, "mail");
  const image = path.join(paths.dir, "spool.img");
  const staging = mkdtempSync(path.join(tmpdir(), "gateway-faults-spool-"));
  await labStop("mail");
  try {
    execFileSync("truncate", ["-s", String(SPOOL_FS_BYTES), image]);
    // No blocks reserved for root: "full" means full for Postfix and the runtime's users alike.
    execFileSync("mkfs.ext4", ["-q", "-F", "-m", "0", image]);
    execFileSync("mount", ["-o", "loop", image, staging]);
    try {
      execFileSync("cp", ["-a", `${paths.root}/var/spool/.`, staging]);
    } finally {
      execFileSync("umount", [staging]);
    }
    execFileSync("mount", ["-o", "loop", image, `${paths.root}/var/spool`]);
  } finally {
    rmSync(staging, { recursive: true, force: true });
    await labStart("mail");
  }
  const seen = await on("mail", "findmnt -n -o FSTYPE,SIZE --target /var/spool");
  if (!/^ext4\s/.test(seen.trim())) throw new Error(`mail: /var/spool is not on the small spool filesystem: ${seen}`);
}

/** Before lab down removes the host's directory: the loop filesystem mounted in its root must go first. */
function removeTheSmallSpool(): void {
  const spool = `${labHostPaths(LAB_STATE_DIR, "mail").root}/var/spool`;
  if (existsSync(spool)) execFileSync("sh", ["-c", `! mountpoint -q ${shellQuote(spool)} || umount -l ${shellQuote(spool)}`]);
}

interface StreamLine {
  tag: string;
  accepted: boolean;
  at: number;
}

async function streamLog(): Promise<{ lines: StreamLine[]; done: boolean }> {
  const text = await on("outside", `cat ${STREAM_LOG}`);
  const lines: StreamLine[] = [];
  let done = false;
  for (const line of text.split("\n")) {
    if (line === "done") done = true;
    const [tag, outcome, at] = line.split(" ");
    if (tag && (outcome === "accepted" || outcome === "failed"))
      lines.push({ tag, accepted: outcome === "accepted", at: Number(at) * 1000 });
  }
  return { lines, done };
}

const phaseOf = (at: number): string => windows.find((w) => at >= w.start && at < w.end)?.fault ?? "no fault";

interface Row {
  fault: string;
  messages: number;
  accepted: number;
  stored: number;
  duplicated: number;
  lost: number;
  repeatedHandOffs: number;
  drainSeconds: string;
}

let releaseLab: (() => void) | undefined;
let rows: Row[] = [];
let stream: StreamLine[] = [];
const bounced: Record<string, number> = {};

beforeAll(async () => {
  releaseLab = await claimLab();
  for (const entry of readdirSync(path.join(repo, "runtime", "bin")).filter((name) => name.endsWith(".ts"))) {
    await bundleRuntimeEntry(entry.replace(/\.ts$/, ""), dist);
  }
  await timer.timed("lab up", () => labUp({ projectDir: repo, progress: () => undefined }));
  await timer.timed("small spool filesystem", giveThePrimaryASmallSpool);
  const outside = timer.timed("outside setup", async () => {
    await setUpOutside();
    await on("outside", OUTSIDE_PROMPT_RETRY);
  });
  const outsideSettled = outside.then(
    () => undefined,
    () => undefined,
  );
  try {
    await startNode();
    await timer.timed("apply primary", () =>
      deployStackToLab({
        stack: "primary",
        projectDir: repo,
        runtimeDist: dist,
        overrides: { "gateway:nodeUrl": `http://${LAB_GATEWAY_IP}:${nodePort}` },
        progress: () => undefined,
      }),
    );
    await timer.timed("apply relay", () =>
      deployStackToLab({ stack: "relay", projectDir: repo, runtimeDist: dist, progress: () => undefined }),
    );
  } finally {
    await outsideSettled;
  }
  await outside;
  await readyGatewaysForMail();
  timer.timings["setup total"] = (Date.now() - suiteStarted) / 1000;

  await on("outside", `cat > /root/brightchain-fault-stream.py`, STREAM_SCRIPT);
  await on(
    "outside",
    // In a subshell that exits at once: the SSH session ends, the stream goes on detached.
    `rm -f ${STREAM_LOG} && (setsid nohup python3 /root/brightchain-fault-stream.py ${RUN} ${STREAM_MESSAGES} ${STREAM_RATE_PER_SECOND} ${STREAM_LOG} ` +
      ">/root/brightchain-fault-stream.out 2>&1 </dev/null &)",
  );
  const streamStarted = Date.now();
  await new Promise((resolve) => setTimeout(resolve, QUIET_MS));

  await fault("kill -9 brightchain-lookup", (notes) => killAndAwaitRestart("brightchain-lookup", notes));
  await fault("kill -9 brightchain-inbound", (notes) => killAndAwaitRestart("brightchain-inbound", notes));
  await fault("primary's Postfix stopped 60 s", async (notes) => {
    await on("mail", "systemctl stop postfix");
    await new Promise((resolve) => setTimeout(resolve, 60_000));
    notes.push(`relay queue ${await relayQueueSize()} when Postfix came back`);
    await on("mail", "systemctl start postfix");
  });
  await fault("relay→primary path cut 60 s", async (notes) => {
    await on("mail2", `iptables -I OUTPUT 1 -d ${PRIMARY.ipv4} -p tcp --dport 25 -m comment --comment ${CUT_COMMENT} -j DROP`);
    try {
      // The relay tries with what it holds from the last fault; the cut holds it there.
      await flushRelay();
      await new Promise((resolve) => setTimeout(resolve, 60_000));
      notes.push(`relay queue ${await relayQueueSize()} at the end of the cut`);
    } finally {
      await on("mail2", `iptables -D OUTPUT -d ${PRIMARY.ipv4} -p tcp --dport 25 -m comment --comment ${CUT_COMMENT} -j DROP`);
    }
    await flushRelay();
  });
  await fault("primary's spool filesystem full 60 s", async (notes) => {
    await on(
      "mail",
      `avail=$(df --output=avail -B1 /var/spool | tail -1) && fallocate -l $((avail - 1048576)) ${FILL_FILE} && ` +
        `(dd if=/dev/zero of=${FILL_FILE}-tail bs=64k 2>/dev/null; true) && df -h /var/spool | tail -1`,
    );
    try {
      const probe = await swaksFromOutside({
        to: "alice@brightchain.org",
        server: PRIMARY.fqdn,
        extra: ["--quit-after", "FROM"],
      });
      const refusal = /^<[-~*]+ +(452 .*)$/m.exec(probe.transcript)?.[1];
      notes.push(
        refusal === undefined ? `probe: ${probe.transcript.split("\n").slice(-4).join(" | ")}` : `MAIL FROM answered ${refusal}`,
      );
      expect(refusal, probe.transcript).toMatch(/^452 4\.3\.1 /);
      await new Promise((resolve) => setTimeout(resolve, 60_000));
    } finally {
      await on("mail", `rm -f ${FILL_FILE} ${FILL_FILE}-tail`);
    }
    await flushRelay();
  });
  await fault("node API down 2 min", async (notes) => {
    await stopNode();
    try {
      await new Promise((resolve) => setTimeout(resolve, 120_000));
      const backlog = await on("mail", `set -a && . ${GATEWAY_ENV_FILE} && set +a && ls -A "$GATEWAY_MAIL_DROP_DIR/new" | wc -l`);
      notes.push(`${backlog.trim()} files waiting in new/ when the node came back`);
    } finally {
      await startNode();
    }
  });
  await fault("reboot of the primary", async (notes) => {
    const reboot = await labReboot("mail");
    await waitOnHost(
      "mail",
      "every service active after reboot",
      `systemctl is-active ${PRIMARY_SERVICES.join(" ")}`,
      (_o, code) => code === 0,
      {
        deadlineMs: 180_000,
      },
    );
    notes.push(`back in ${reboot.seconds.toFixed(0)} s`);
    await flushRelay();
  });

  // The rest of the stream, then the drain: every queue and new/ empty, and every accepted message at the node.
  await timer.timed("stream end", () =>
    waitOnHost("outside", "the stream's last message", `tail -n 1 ${STREAM_LOG}`, (out) => out.trim() === "done", {
      deadlineMs: STREAM_MESSAGES * 1000,
      intervalMs: 5_000,
    }),
  );
  const streamEnded = Date.now();
  await flushRelay();
  // A drain that never ends still leaves the table: what arrived and what did not is the failure's explanation.
  let drainFailure: unknown;
  await timer
    .timed("drain", async () => {
      await on("outside", "postqueue -f");
      await waitForDrainInMetrics(DRAIN_DEADLINE_MS);
      // The same, read the way an admin would: every queue and new/ empty in one pass.
      await waitForMailSettled(60_000);
    })
    .catch((error: unknown) => (drainFailure = error));
  timer.timings["stream and faults"] = (streamEnded - streamStarted) / 1000;

  stream = (await streamLog()).lines;
  for (const host of ["outside", "mail2", "mail"] as const) {
    bounced[host] = Number(
      (await on(host, "journalctl -u 'postfix*' --no-pager -o cat | grep -c 'status=bounced' || true")).trim(),
    );
  }
  rows = tabulate();
  console.log(formatTable(rows));
  if (drainFailure !== undefined) throw drainFailure;
}, 5_400_000);

afterAll(async () => {
  try {
    await stopNode();
    if (releaseLab) {
      await tryOn(
        "mail2",
        `iptables -D OUTPUT -d ${PRIMARY.ipv4} -p tcp --dport 25 -m comment --comment ${CUT_COMMENT} -j DROP`,
      ).catch(() => undefined);
      removeTheSmallSpool();
      await timer.timed("lab down", () => labDown({ progress: () => undefined }));
    }
  } finally {
    releaseLab?.();
    rmSync(temp, { recursive: true, force: true });
    timer.timings["whole suite"] = (Date.now() - suiteStarted) / 1000;
    console.log(`faults lab timings (s): ${JSON.stringify(timer.timings)}`);
  }
}, 600_000);

function tabulate(): Row[] {
  const names = ["no fault", ...windows.map((w) => w.fault)];
  return names.map((name) => {
    const mine = stream.filter((line) => phaseOf(line.at) === name);
    const accepted = mine.filter((line) => line.accepted);
    const stored = accepted.filter((line) => delivered.has(line.tag));
    const window = windows.find((w) => w.fault === name);
    // Time to drain: from the fault's end until every message accepted before that end was at the node.
    let drainSeconds = "";
    if (window !== undefined) {
      const before = stream.filter((line) => line.accepted && line.at < window.end);
      const last = Math.max(window.end, ...before.map((line) => delivered.get(line.tag)?.firstStoredAt ?? Infinity));
      drainSeconds = Number.isFinite(last) ? ((last - window.end) / 1000).toFixed(1) : "never";
    }
    return {
      fault: name,
      messages: mine.length,
      accepted: accepted.length,
      stored: stored.length,
      duplicated: stored.filter((line) => delivered.get(line.tag)!.sha3s.size > 1).length,
      lost: accepted.length - stored.length,
      repeatedHandOffs: stored.reduce((sum, line) => sum + delivered.get(line.tag)!.handOffs - 1, 0),
      drainSeconds,
    };
  });
}

function formatTable(table: Row[]): string {
  const header = [
    "fault",
    "messages",
    "accepted",
    "stored",
    "duplicated",
    "lost",
    "repeated hand-offs (409)",
    "time to drain (s)",
  ];
  const body = table.map((row) => [
    row.fault,
    row.messages,
    row.accepted,
    row.stored,
    row.duplicated,
    row.lost,
    row.repeatedHandOffs,
    row.drainSeconds,
  ]);
  const notes = windows.map((w) => `- ${w.fault} (${((w.end - w.start) / 1000).toFixed(0)} s): ${w.notes.join("; ")}`);
  const noticeSubjects = [...new Set(notices.map((notice) => `${notice.recipient}: ${notice.subject}`))];
  notes.push(`- ${notices.length} notices from Postfix at the node besides the stream: ${noticeSubjects.join("; ") || "none"}`);
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...body.map((cells) => `| ${cells.join(" | ")} |`),
    "",
    ...notes,
  ].join("\n");
}

describe(`${STREAM_MESSAGES} messages from outside through the MX order while faults hit the primary, the relay and the node`, () => {
  it("had outside's Postfix accept every message of the stream", () => {
    expect(stream.length).toBe(STREAM_MESSAGES);
    expect(stream.filter((line) => !line.accepted)).toEqual([]);
  });

  it("delivered every accepted message to the node exactly once, and nothing else", () => {
    const accepted = new Set(stream.filter((line) => line.accepted).map((line) => line.tag));
    const missing = [...accepted].filter((tag) => !delivered.has(tag));
    const duplicated = [...delivered].filter(([, delivery]) => delivery.sha3s.size > 1).map(([tag]) => tag);
    const unexpected = [...delivered.keys()].filter((tag) => !accepted.has(tag));
    expect({ missing, duplicated, unexpected }).toEqual({ missing: [], duplicated: [], unexpected: [] });
    // Anything else the node got is Postfix telling the postmaster about the faults, never a stream message.
    expect(notices.filter((notice) => notice.recipient !== "postmaster@brightchain.org")).toEqual([]);
    expect(rows.reduce((sum, row) => sum + row.lost, 0)).toBe(0);
  });

  it("left every queue and the drop's new/ empty and bounced nothing, as the metrics show too", async () => {
    await waitForMailSettled(60_000);
    expect(bounced).toEqual({ outside: 0, mail2: 0, mail: 0 });
    const inbound = await scrape("mail", 9527);
    expect(metricSum(inbound, "brightchain_inbound_errors_files")).toBe(0);
    expect(metricSum(inbound, "brightchain_inbound_new_oldest_age_seconds")).toBe(0);
    expect(await on("mail", `set -a && . ${GATEWAY_ENV_FILE} && set +a && ls -A "$GATEWAY_ERROR_DIR"`)).toBe("");
  });

  it("ran every fault of the schedule, and each one hit the stream", () => {
    expect(windows.map((w) => w.fault)).toEqual([
      "kill -9 brightchain-lookup",
      "kill -9 brightchain-inbound",
      "primary's Postfix stopped 60 s",
      "relay→primary path cut 60 s",
      "primary's spool filesystem full 60 s",
      "node API down 2 min",
      "reboot of the primary",
    ]);
    for (const row of rows.filter((r) => r.fault !== "no fault" && !r.fault.startsWith("kill -9"))) {
      expect(row.accepted, `${row.fault}: messages sent while it lasted`).toBeGreaterThan(0);
    }
  });

  it("kept every request to the node within docs/node-api.openapi.yaml", () => {
    expect(violations).toEqual([]);
  });
});
