// bench/inbound: the built brightchain-inbound daemon with the embedded store on N messages of 10 KB, against a
// bare loop in the same run that only reads each file and renames it new/ → cur/ (the floor any processor pays).
// Usage: taskset -c 0 npx tsx bench/inbound/run.ts [messages=10000] [concurrency=64]   (one core: taskset)
// BENCH_CPU_PROF=DIR also writes the daemon's V8 CPU profile into DIR.
// BENCH_BEFORE=FILE also runs FILE, an older build of brightchain-inbound.cjs, on an identical drop in the same
// run, so a before/after comparison shares the machine's load (which swings the baseline 1,500–7,700 msgs/s):
//   git archive <commit> runtime/bin runtime/src | tar -x -C DIR && (cd DIR && npx esbuild runtime/bin/brightchain-inbound.ts
//     --bundle --platform=node --target=node18 --format=cjs --outfile=FILE)   (DIR inside the checkout, for node_modules)
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { readFile, rename } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { INBOUND_NODE_OPTIONS } from "../../infra/render/systemd";
import { bundleRuntimeEntry } from "../../test/helpers/runtime-bundle";

const messages = Number(process.argv[2] ?? 10_000);
const concurrency = Number(process.argv[3] ?? 64);
const MESSAGE_BYTES = 10 * 1024;

function fillDrop(dropDir: string): void {
  for (const sub of ["tmp", "new", "cur"]) mkdirSync(join(dropDir, sub), { recursive: true });
  for (let i = 0; i < messages; i++) {
    const head =
      `Delivered-To: user${i % 100}@brightchain.org\r\nReturn-Path: <s@example.net>\r\n` +
      `X-Spam-Status: ${i % 10 === 0 ? "Yes, score=6.1" : "No, score=0.4"} required=5.0 tests=NONE\r\n` +
      `From: Sender <s@example.net>\r\nTo: user${i % 100}@brightchain.org\r\nSubject: bench ${i}\r\n` +
      `Message-ID: <${i}.bench@example.net>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n`;
    const body = `${i} `.padEnd(MESSAGE_BYTES - head.length - 2, "lorem ipsum dolor sit amet ") + "\r\n";
    writeFileSync(join(dropDir, "tmp", `m${i}`), head + body);
    renameSync(join(dropDir, "tmp", `m${i}`), join(dropDir, "new", `m${i}`));
  }
}

async function baseline(dropDir: string): Promise<number> {
  const names = readdirSync(join(dropDir, "new"));
  const started = process.hrtime.bigint();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const name = names[next++]!;
      await readFile(join(dropDir, "new", name));
      await rename(join(dropDir, "new", name), join(dropDir, "cur", `${name}:2,`));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** The built daemon as a child process, as systemd runs it (the unit's node options): msgs/s until new/ is empty, VmRSS from /proc. */
async function daemon(
  daemonPath: string,
  dropDir: string,
  storeDir: string,
): Promise<{ seconds: number; rss: number[]; userSeconds: number; systemSeconds: number }> {
  const child = spawn(
    process.execPath,
    [
      ...INBOUND_NODE_OPTIONS,
      ...(process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
      daemonPath,
    ],
    {
      env: {
        PATH: process.env.PATH,
        EMAIL_DOMAIN: "brightchain.org",
        GATEWAY_MAIL_DROP_DIR: dropDir,
        GATEWAY_ERROR_DIR: join(dropDir, "..", "errors"),
        GATEWAY_STORE_DIR: storeDir,
        GATEWAY_SPAM_ENGINE: "spamassassin",
        GATEWAY_INBOUND_CONCURRENCY: String(concurrency),
      },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const rss: number[] = [];
  const started = process.hrtime.bigint();
  for (;;) {
    const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
    rss.push(Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024);
    if (readdirSync(join(dropDir, "new")).length === 0) break;
    if (child.exitCode !== null) throw new Error(`brightchain-inbound exited with ${child.exitCode}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  // utime + stime in clock ticks (USER_HZ, 100 on Linux): how much of the wall time the daemon spent on CPU.
  const stat = readFileSync(`/proc/${child.pid}/stat`, "utf8")
    .slice(readFileSync(`/proc/${child.pid}/stat`, "utf8").lastIndexOf(")") + 2)
    .split(" ");
  const userSeconds = Number(stat[11]) / 100;
  const systemSeconds = Number(stat[12]) / 100;
  child.kill("SIGTERM");
  if ((await exited) !== 0) throw new Error("brightchain-inbound did not stop cleanly on SIGTERM");
  const delivered = readdirSync(join(dropDir, "cur")).length;
  if (delivered !== messages) throw new Error(`daemon moved ${delivered} of ${messages} to cur/`);
  return { seconds, rss, userSeconds, systemSeconds };
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "bc-bench-inbound-"));
  try {
    fillDrop(join(root, "baseline"));
    fillDrop(join(root, "incoming"));
    const beforePath = process.env.BENCH_BEFORE;
    if (beforePath !== undefined) fillDrop(join(root, "before", "incoming"));
    const baseSeconds = await baseline(join(root, "baseline"));
    const daemonPath = await bundleRuntimeEntry("brightchain-inbound", root);
    const run = await daemon(daemonPath, join(root, "incoming"), join(root, "store"));
    const before =
      beforePath === undefined
        ? undefined
        : await daemon(beforePath, join(root, "before", "incoming"), join(root, "before", "store"));

    const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
    const quarter = Math.max(1, Math.floor(run.rss.length / 4));
    const firstQuarterPeak = Math.max(...run.rss.slice(0, quarter));
    const lastQuarterPeak = Math.max(...run.rss.slice(-quarter));
    const baseRate = messages / baseSeconds;
    const rate = messages / run.seconds;
    console.log(`messages: ${messages} x ${MESSAGE_BYTES / 1024} KB, concurrency ${concurrency}, node ${process.version}`);
    console.log(`baseline read+rename: ${baseRate.toFixed(0)} msgs/s`);
    console.log(
      `brightchain-inbound + store: ${rate.toFixed(0)} msgs/s (${(rate / baseRate).toFixed(2)}x baseline), ${run.seconds.toFixed(1)} s wall`,
    );
    console.log(
      `daemon CPU: user ${run.userSeconds.toFixed(2)} s + system ${run.systemSeconds.toFixed(2)} s = ${(((run.userSeconds + run.systemSeconds) / messages) * 1000).toFixed(2)} ms per message`,
    );
    console.log(
      `daemon peak RSS: ${mb(Math.max(...run.rss))} MB; first-quarter peak ${mb(firstQuarterPeak)} MB, last-quarter peak ${mb(lastQuarterPeak)} MB (${run.rss.length} samples)`,
    );
    if (before !== undefined) {
      const beforeRate = messages / before.seconds;
      console.log(
        `before (${beforePath}): ${beforeRate.toFixed(0)} msgs/s (${(beforeRate / baseRate).toFixed(2)}x baseline), ` +
          `${(((before.userSeconds + before.systemSeconds) / messages) * 1000).toFixed(2)} ms CPU per message, peak RSS ${mb(Math.max(...before.rss))} MB`,
      );
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

void main().then(() => process.exit(0));
