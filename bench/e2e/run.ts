// bench/e2e: the whole inbound path under load, against the same Postfix without BrightChain, in one run.
//
//   npx tsx bench/e2e/run.ts [--rounds 4] [--messages 3000] [--sessions 20] [--variants ours,hash,socketmap,lmdb]
//
// Root, on Debian with postfix and postfix-lmdb (.ci/run installs both), after `npm run build -w runtime`: the
// daemons are runtime/dist/*.cjs as deployed (BENCH_RUNTIME_DIR names another build). smtp-source (Postfix's own
// load generator) sends 10 KB messages, one per connection, `sessions` at a time, each to a different known
// recipient (-N: 1user@, 2user@, …), into a throwaway Postfix running the primary's rendered main.cf/master.cf on
// loopback (renderedPostfixOptions: TLS and milters off, mynetworks empty so the client is a stranger). Variants:
//   ours       recipients checked by brightchain-lookup (socketmap, file registry), virtual(8) into the drop
//              Maildir, brightchain-inbound storing into the embedded store; done when the store's index holds
//              every message
//   hash       the same Postfix, virtual_mailbox_maps = hash: of the same users (postmap), virtual(8) into the
//              same Maildir, nothing after it; done when new/ holds every message
//   socketmap  ours without brightchain-inbound (done at new/): the lookup alone
//   lmdb       hash with an lmdb: map (postfix-lmdb): the baseline the lookup is held to
//   socketmap-nice  socketmap with brightchain-lookup at nice -5 (only when asked for): an experiment on whether
//              the lookup's wake-up latency on a busy machine, rather than its CPU, is what it costs
// Every variant gets a fresh Postfix, spool and daemons per round, a warm-up of 2 messages per session (smtpd
// processes forked, daemons' JIT warm), then `sync`; the clock runs from smtp-source's start until the count is
// reached (inotify on the directory or index, re-counted every 250 ms in case inotify dropped events: counting,
// never sleeping). Rounds alternate the variants' order (ours,hash,socketmap,lmdb then lmdb,socketmap,hash,ours),
// so a noisy neighbour on the shared machine hits both sides of a pair alike; ratios are the median of pairs.
// CPU: Postfix's is its master's user + system time with its reaped children's (cutime/cstime) plus its live
// children's, from /proc, before and after the timed batch; each daemon's from its own /proc/PID/stat.
// The daemons run as root here (their units run them as the spool's owner: no difference to the work they do), the
// inbound one with GATEWAY_SPAM_ENGINE=none since no milter adds spam headers; their metrics on free ports.
// BENCH_CPU_PROF=DIR writes the daemons' V8 CPU profiles into DIR; BENCH_LOOKUP_NICE=N runs brightchain-lookup at
// that nice value (an experiment: -5 asks whether its wake-up latency on a busy machine is what the lookup costs).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import {
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  watch,
  writeFileSync,
} from "node:fs";
import { cpus, loadavg, setPriority } from "node:os";
import { join, resolve } from "node:path";
import type { GatewayNode } from "../../infra/model/types";
import { INBOUND_NODE_OPTIONS } from "../../infra/render/systemd";
import { examplePrimary } from "../../test/fixtures/nodes";
import {
  NOBODY,
  freePort,
  renderedPostfixOptions,
  startPostfix,
  waitFor,
  waitForPort,
  withTestDropSpool,
  type PostfixInstance,
} from "../../test/helpers/postfix-server";
import { scratchDir } from "../../test/helpers/postfix-tools";

const VARIANTS = ["ours", "hash", "socketmap", "lmdb", "socketmap-nice"] as const;
type Variant = (typeof VARIANTS)[number];
const DOMAIN = "brightchain.org";
const MESSAGE_BYTES = 10 * 1024;
/** USER_HZ: /proc reports CPU time in these ticks (100 on every Linux build Debian ships). */
const TICKS_PER_SECOND = 100;

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index < 0 ? fallback : (process.argv[index + 1] ?? "");
}

function positiveInteger(name: string, fallback: number): number {
  const raw = option(name, String(fallback));
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} ${raw} is invalid; accepted: a positive integer`);
  return value;
}

const rounds = positiveInteger("rounds", 4);
const messages = positiveInteger("messages", 3000);
const sessions = positiveInteger("sessions", 20);
const warmup = sessions * 2;
const users = Math.max(10_000, messages, warmup);
const variants = option("variants", "ours,hash,socketmap,lmdb").split(",") as Variant[];
for (const variant of variants) {
  if (!VARIANTS.includes(variant)) throw new Error(`--variants ${variant} is invalid; accepted: ${VARIANTS.join(", ")}`);
}
const runtimeDir = resolve(process.env.BENCH_RUNTIME_DIR ?? join(__dirname, "..", "..", "runtime", "dist"));

/** utime, stime, cutime, cstime and ppid of a process, or undefined once it is gone. */
function procStat(pid: number): { user: number; system: number; self: number; children: number; ppid: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return {
    ppid: Number(fields[1]),
    user: Number(fields[11]),
    system: Number(fields[12]),
    self: Number(fields[11]) + Number(fields[12]),
    children: Number(fields[13]) + Number(fields[14]),
  };
}

/**
 * CPU ticks of a Postfix instance: its master with every child it has reaped, plus the children alive now. A
 * child alive at the first reading and reaped by the second is counted whole both times, so the difference is
 * exact (Postfix's daemons fork no grandchildren in these variants).
 */
function postfixTicks(masterPid: number): number {
  const master = procStat(masterPid);
  if (master === undefined) throw new Error(`postfix master ${masterPid} is gone`);
  let ticks = master.self + master.children;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(Number(entry));
    if (stat?.ppid === masterPid) ticks += stat.self;
  }
  return ticks;
}

interface Cpu {
  user: number;
  system: number;
}

function daemonTicks(pid: number): Cpu {
  const stat = procStat(pid);
  if (stat === undefined) throw new Error(`daemon ${pid} is gone`);
  return { user: stat.user, system: stat.system };
}

const total = (cpu: Cpu | undefined) => (cpu === undefined ? 0 : cpu.user + cpu.system);

interface Daemon {
  name: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** A runtime/dist daemon as its unit runs it (node options, env), stderr kept in `logFile`. */
function startDaemon(name: string, nodeOptions: string[], env: Record<string, string>, logFile: string): Daemon {
  const script = join(runtimeDir, `${name}.cjs`);
  if (!existsSync(script)) throw new Error(`${script} is missing: run \`npm run build -w runtime\` first`);
  const profile = process.env.BENCH_CPU_PROF;
  const log = openSync(logFile, "a");
  const child = spawn(
    process.execPath,
    [...nodeOptions, ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : []), script],
    { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, stdio: ["ignore", "ignore", log] },
  );
  closeSync(log);
  const exited = new Promise<number | null>((done) => child.once("exit", done));
  return {
    name,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const code = await exited;
      if (code !== 0) throw new Error(`${name} exited with ${code} on SIGTERM; its log: ${readFileSync(logFile, "utf8")}`);
    },
  };
}

/** Lines in a file, counted incrementally from where the last call stopped. */
function lineCounter(file: string): () => number {
  const chunk = Buffer.alloc(1 << 20);
  let offset = 0;
  let lines = 0;
  return () => {
    if (!existsSync(file)) return 0;
    const fd = openSync(file, "r");
    try {
      for (;;) {
        const read = readSync(fd, chunk, 0, chunk.length, offset);
        if (read === 0) return lines;
        for (let i = chunk.indexOf(0x0a); i >= 0 && i < read; i = chunk.indexOf(0x0a, i + 1)) lines++;
        offset += read;
      }
    } finally {
      closeSync(fd);
    }
  };
}

interface Counter {
  /** What a count is read from: the directory inotify watches. */
  watchDir: string;
  /** Called with each inotify event's file name before count(). */
  seen?(name: string): void;
  count(): number;
}

/**
 * Resolves with the hrtime at which the counter first reached `target`. Re-counted on every inotify event in its
 * directory and every 250 ms (the event queue can overflow); `fatal()` names a reason to give up (a daemon died).
 */
function whenCounted(counter: Counter, target: number, deadlineMs: number, fatal: () => string | undefined): Promise<bigint> {
  return new Promise((done, fail) => {
    const deadline = Date.now() + deadlineMs;
    let finished = false;
    const check = () => {
      if (finished) return;
      const reached = counter.count() >= target;
      const at = process.hrtime.bigint();
      const reason = reached
        ? undefined
        : (fatal() ??
          (Date.now() > deadline
            ? `timed out after ${deadlineMs} ms with ${counter.count()} of ${target} counted in ${counter.watchDir}`
            : undefined));
      if (!reached && reason === undefined) return;
      finished = true;
      watcher.close();
      clearInterval(timer);
      if (reached) done(at);
      else fail(new Error(reason));
    };
    const watcher = watch(counter.watchDir, (_event, name) => {
      if (name !== null) counter.seen?.(name);
      check();
    });
    const timer = setInterval(check, 250);
    check();
  });
}

/** A Maildir's new/, counted from inotify's file names (no readdir per event); listed when they say done, and every 250 ms. */
function maildirCounter(newDir: string, target: number): Counter {
  const names = new Set<string>();
  let listed = 0;
  let lastListing = 0;
  return {
    watchDir: newDir,
    seen: (name) => names.add(name),
    count: () => {
      const now = Date.now();
      if (names.size >= target || now - lastListing >= 250) {
        listed = readdirSync(newDir).length;
        lastListing = now;
      }
      return listed;
    },
  };
}

function smtpSource(port: number, count: number): Promise<void> {
  // One message per connection, as mail from the internet arrives; -N gives each message its own recipient.
  const args = ["-4", "-s", String(sessions), "-m", String(count), "-l", String(MESSAGE_BYTES), "-N"];
  args.push("-f", "bench@example.net", "-t", `user@${DOMAIN}`, "-M", "client.example.net", `127.0.0.1:${port}`);
  return new Promise((done, fail) => {
    const child = spawn("smtp-source", args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", fail);
    child.once("exit", (code) =>
      code === 0 ? done() : fail(new Error(`smtp-source ${args.join(" ")} exited with ${code}: ${stderr}`)),
    );
  });
}

interface RoundResult {
  variant: Variant;
  round: number;
  /** smtp-source's start to its exit: every message accepted (250 after DATA). */
  acceptSeconds: number;
  /** smtp-source's start until every message is stored (ours) or in new/ (the others). */
  seconds: number;
  postfixCpu: number;
  /** Seconds of CPU in the timed batch. */
  lookupCpu?: Cpu;
  inboundCpu?: Cpu;
  deferred: number;
}

/** One fresh setup of `variant`: spool, maps, daemons, Postfix; warm-up; the timed batch; everything removed. */
async function runRound(variant: Variant, round: number): Promise<RoundResult> {
  const dir = scratchDir(`bench-e2e-${variant}-`);
  const daemons: Daemon[] = [];
  let postfix: PostfixInstance | undefined;
  try {
    const addresses = Array.from({ length: users }, (_, i) => `${i + 1}user@${DOMAIN}`);
    const lookupPort = await freePort();
    const registryFile = join(dir, "recipients");
    const base: GatewayNode = {
      ...examplePrimary,
      mynetworks: [],
      lookup: { ...examplePrimary.lookup, port: lookupPort, registry: { kind: "file", path: registryFile } },
    };
    const { node } = withTestDropSpool(base, dir, "virtual");
    const storeDir = join(node.drop.spoolDir, "store");
    mkdirSync(storeDir, { mode: 0o750 });
    chownSync(storeDir, NOBODY.uid, NOBODY.gid);
    const main: Record<string, string> = {};
    if (variant === "hash" || variant === "lmdb") {
      const mapFile = join(dir, "virtual_mailbox");
      writeFileSync(mapFile, addresses.map((address) => `${address} OK\n`).join(""));
      execFileSync("postmap", [`${variant}:${mapFile}`]);
      main.virtual_mailbox_maps = `${variant}:${mapFile}`;
    } else {
      writeFileSync(registryFile, addresses.join("\n") + "\n");
      const lookup = startDaemon(
        "brightchain-lookup",
        [],
        {
          EMAIL_DOMAIN: DOMAIN,
          GATEWAY_LOOKUP_HOST: "127.0.0.1",
          GATEWAY_LOOKUP_PORT: String(lookupPort),
          GATEWAY_REGISTRY_FILE: registryFile,
          // Not the default 9526: another instance on this machine (a test, the lab) may hold it.
          GATEWAY_LOOKUP_METRICS_PORT: String(await freePort()),
        },
        join(dir, "brightchain-lookup.log"),
      );
      daemons.push(lookup);
      await waitForPort(lookupPort);
      // An experiment on scheduling, not a default: does the lookup's wake-up latency on a busy host matter?
      const nice = variant === "socketmap-nice" ? "-5" : process.env.BENCH_LOOKUP_NICE;
      if (nice !== undefined) setPriority(lookup.child.pid!, Number(nice));
    }
    if (variant === "ours") {
      daemons.push(
        startDaemon(
          "brightchain-inbound",
          INBOUND_NODE_OPTIONS,
          {
            EMAIL_DOMAIN: DOMAIN,
            GATEWAY_MAIL_DROP_DIR: node.drop.mailDropDir,
            GATEWAY_ERROR_DIR: node.drop.errorDir,
            GATEWAY_STORE_DIR: storeDir,
            GATEWAY_SPAM_ENGINE: "none",
            GATEWAY_INBOUND_METRICS_PORT: String(await freePort()),
          },
          join(dir, "brightchain-inbound.log"),
        ),
      );
    }
    postfix = await startPostfix(renderedPostfixOptions(node, { main }));
    const masterPid = postfix.masterPid;

    const newDir = join(node.drop.mailDropDir, "new");
    const indexFile = join(storeDir, "index.jsonl");
    const countIndex = lineCounter(indexFile);
    const fatal = () => daemons.filter((d) => d.child.exitCode !== null).map((d) => `${d.name} exited`)[0];
    await smtpSource(postfix.smtpPort, warmup);
    await waitFor(
      `${warmup} warm-up messages`,
      () => (variant === "ours" ? countIndex() : readdirSync(newDir).length) >= warmup,
      60_000,
    );
    execFileSync("sync");

    const target = warmup + messages;
    const deadlineMs = Math.max(120_000, messages * 100);
    const counter: Counter = variant === "ours" ? { watchDir: storeDir, count: countIndex } : maildirCounter(newDir, target);
    const cpuBefore = {
      postfix: postfixTicks(masterPid),
      daemons: daemons.map((d) => daemonTicks(d.child.pid!)),
    };
    const started = process.hrtime.bigint();
    const counted = whenCounted(counter, target, deadlineMs, fatal);
    // An unhandled rejection before smtp-source is done would end the process without cleanup.
    counted.catch(() => undefined);
    await smtpSource(postfix.smtpPort, messages);
    const accepted = process.hrtime.bigint();
    const finished = await counted;
    const postfixCpu = (postfixTicks(masterPid) - cpuBefore.postfix) / TICKS_PER_SECOND;
    const daemonCpu = daemons.map((d, i): Cpu => {
      const after = daemonTicks(d.child.pid!);
      const before = cpuBefore.daemons[i]!;
      return { user: (after.user - before.user) / TICKS_PER_SECOND, system: (after.system - before.system) / TICKS_PER_SECOND };
    });

    if (variant === "ours") {
      await waitFor("new/ to be empty", () => readdirSync(newDir).length === 0, 30_000);
      const stored = readdirSync(join(node.drop.mailDropDir, "cur")).length;
      if (stored !== target) throw new Error(`${stored} of ${target} in cur/ after the store's index counted them all`);
      if (readdirSync(node.drop.errorDir).length !== 0) throw new Error(`messages in ${node.drop.errorDir}`);
    }
    const deferred = postfix.maillog().match(/status=(deferred|bounced)/g)?.length ?? 0;
    const lookupIndex = daemons.findIndex((d) => d.name === "brightchain-lookup");
    const inboundIndex = daemons.findIndex((d) => d.name === "brightchain-inbound");
    return {
      variant,
      round,
      acceptSeconds: Number(accepted - started) / 1e9,
      seconds: Number(finished - started) / 1e9,
      postfixCpu,
      lookupCpu: lookupIndex < 0 ? undefined : daemonCpu[lookupIndex],
      inboundCpu: inboundIndex < 0 ? undefined : daemonCpu[inboundIndex],
      deferred,
    };
  } finally {
    await postfix?.stop();
    for (const daemon of daemons) await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const rate = (seconds: number) => messages / seconds;
const ms = (seconds: number) => ((seconds / messages) * 1000).toFixed(2);

function describe(result: RoundResult): string {
  const daemonsCpu = total(result.lookupCpu) + total(result.inboundCpu);
  const split = (name: string, cpu: Cpu | undefined) =>
    cpu === undefined ? "" : `, ${name} ${ms(total(cpu))} (user ${ms(cpu.user)} + sys ${ms(cpu.system)})`;
  const parts = [
    `round ${result.round + 1} ${result.variant.padEnd(9)}`,
    `${rate(result.seconds).toFixed(0).padStart(4)} msgs/s end to end (${result.seconds.toFixed(1)} s)`,
    `accepted ${rate(result.acceptSeconds).toFixed(0).padStart(4)} msgs/s`,
    `CPU/msg ${ms(result.postfixCpu + daemonsCpu)} ms (postfix ${ms(result.postfixCpu)}` +
      split("lookup", result.lookupCpu) +
      split("inbound", result.inboundCpu) +
      ")",
  ];
  if (result.deferred > 0) parts.push(`${result.deferred} deferred/bounced in the maillog`);
  return parts.join("  ");
}

/** `ours` against `baseline` over the rounds both ran; a target is checked on the end-to-end ratio. */
function compare(results: RoundResult[], ours: Variant, baseline: Variant, what: string, target?: number): string[] {
  const pairs = Array.from({ length: rounds }, (_, round) => ({
    ours: results.find((r) => r.variant === ours && r.round === round),
    base: results.find((r) => r.variant === baseline && r.round === round),
  })).filter((p): p is { ours: RoundResult; base: RoundResult } => p.ours !== undefined && p.base !== undefined);
  if (pairs.length === 0) return [];
  const cpuOf = (r: RoundResult) => r.postfixCpu + total(r.lookupCpu) + total(r.inboundCpu);
  const ratioLine = (label: string, ratio: (p: { ours: RoundResult; base: RoundResult }) => number, goal?: number) => {
    const ratios = pairs.map(ratio).sort((a, b) => a - b);
    const value = median(ratios);
    const verdict = goal === undefined ? "" : `; target ≥ ${goal.toFixed(2)}×: ${value >= goal ? "met" : "NOT met"}`;
    return `  ${label} ${value.toFixed(2)}× (median of ${pairs.length} paired rounds, range ${ratios[0]!.toFixed(2)}–${ratios[ratios.length - 1]!.toFixed(2)}${verdict})`;
  };
  const cpu = (variant: "ours" | "base") => median(pairs.map((p) => cpuOf(p[variant])));
  return [
    `${ours} against ${baseline} (${what}):`,
    `  ${ours.padEnd(9)} ${rate(median(pairs.map((p) => p.ours.seconds))).toFixed(0)} msgs/s end to end (median), ${ms(cpu("ours"))} ms CPU per message`,
    `  ${baseline.padEnd(9)} ${rate(median(pairs.map((p) => p.base.seconds))).toFixed(0)} msgs/s end to end (median), ${ms(cpu("base"))} ms CPU per message`,
    ratioLine(`throughput ${ours}/${baseline}, end to end:`, (p) => p.base.seconds / p.ours.seconds, target),
    ratioLine(`throughput ${ours}/${baseline}, accepted:  `, (p) => p.base.acceptSeconds / p.ours.acceptSeconds),
    ratioLine(`CPU per message ${baseline}/${ours}:       `, (p) => cpuOf(p.base) / cpuOf(p.ours)),
  ];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("run as root: Postfix's daemons and virtual(8) need it");
  const postfixVersion = execFileSync("postconf", ["-h", "mail_version"], { encoding: "utf8" }).trim();
  console.log(
    `${rounds} rounds × ${variants.join(", ")}; ${messages} messages of ${MESSAGE_BYTES / 1024} KB per round after ${warmup} warm-up, ` +
      `${sessions} SMTP sessions, one message per connection; ${users} users`,
  );
  console.log(
    `node ${process.version}, Postfix ${postfixVersion}, ${cpus().length} CPUs, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}; daemons from ${runtimeDir}`,
  );
  const results: RoundResult[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternate the order within each pair, so neither side always runs right after the other's disk writes.
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    for (const variant of order) {
      const result = await runRound(variant, round);
      results.push(result);
      console.log(describe(result));
    }
  }
  console.log(
    `load average after: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  const comparisons = [
    compare(results, "ours", "hash", "the whole path", 0.9),
    compare(results, "socketmap", "lmdb", "the lookup", 0.9),
    compare(results, "socketmap", "hash", "the lookup against Postfix's cheapest map"),
    compare(results, "ours", "socketmap", "brightchain-inbound and its store"),
    compare(results, "socketmap-nice", "lmdb", "the lookup at nice -5"),
    compare(results, "socketmap-nice", "socketmap", "the lookup at nice -5 against nice 0"),
  ];
  for (const line of comparisons.flat()) console.log(line);
  console.log("CPU per message by component, median over the rounds (ms):");
  for (const variant of variants) {
    const runs = results.filter((r) => r.variant === variant);
    const part = (name: string, cpu: (r: RoundResult) => Cpu | undefined) =>
      runs.some((r) => cpu(r) !== undefined)
        ? `, ${name} ${ms(median(runs.map((r) => total(cpu(r)))))} (user ${ms(median(runs.map((r) => cpu(r)!.user)))} + sys ${ms(median(runs.map((r) => cpu(r)!.system)))})`
        : "";
    console.log(
      `  ${variant.padEnd(9)} postfix ${ms(median(runs.map((r) => r.postfixCpu)))}` +
        part("lookup", (r) => r.lookupCpu) +
        part("inbound", (r) => r.inboundCpu),
    );
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
