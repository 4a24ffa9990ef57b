// bench/inbound: the InboundProcessor with the embedded store on N messages of 10 KB, against a bare loop in
// the same run that only reads each file and renames it new/ → cur/ (the floor any processor pays).
// Usage: npx tsx bench/inbound/run.ts [messages=10000] [concurrency=32]
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { readFile, rename } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InboundProcessor } from "../../runtime/src/inbound/inbound-processor";
import { ContentAddressedStore } from "../../runtime/src/store/content-addressed-store";

const messages = Number(process.argv[2] ?? 10_000);
const concurrency = Number(process.argv[3] ?? 32);
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

interface RssSamples {
  stop(): number[];
}

function sampleRss(everyMs: number): RssSamples {
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(process.memoryUsage().rss), everyMs);
  return {
    stop() {
      clearInterval(timer);
      samples.push(process.memoryUsage().rss);
      return samples;
    },
  };
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

async function processor(dropDir: string, storeDir: string): Promise<{ seconds: number; rss: number[] }> {
  const store = await ContentAddressedStore.open(storeDir);
  const quiet = { info: () => undefined, warn: () => undefined, error: (m: string) => console.error(m) };
  const inbound = new InboundProcessor({
    mailDropDir: dropDir, errorDir: join(dropDir, "..", "errors"), sink: store, spamEngine: "spamassassin",
    spamProbable: 5, concurrency, logger: quiet,
  });
  const rss = sampleRss(100);
  const started = process.hrtime.bigint();
  await inbound.start();
  await inbound.idle();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await inbound.stop();
  await store.close();
  const remaining = readdirSync(join(dropDir, "new")).length;
  if (remaining !== 0 || inbound.counts.delivered !== messages) {
    throw new Error(`processor left ${remaining} in new/ and delivered ${inbound.counts.delivered} of ${messages}`);
  }
  return { seconds, rss: rss.stop() };
}

async function main(): Promise<void> {
  process.env.UV_THREADPOOL_SIZE ??= "16"; // as brightchain-inbound sets it
  const root = mkdtempSync(join(tmpdir(), "bc-bench-inbound-"));
  try {
    fillDrop(join(root, "baseline"));
    fillDrop(join(root, "incoming"));
    const baseSeconds = await baseline(join(root, "baseline"));
    const run = await processor(join(root, "incoming"), join(root, "store"));

    const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
    const quarter = Math.max(1, Math.floor(run.rss.length / 4));
    const firstQuarterPeak = Math.max(...run.rss.slice(0, quarter));
    const lastQuarterPeak = Math.max(...run.rss.slice(-quarter));
    const baseRate = messages / baseSeconds;
    const rate = messages / run.seconds;
    console.log(`messages: ${messages} x ${MESSAGE_BYTES / 1024} KB, concurrency ${concurrency}, node ${process.version}`);
    console.log(`baseline read+rename: ${baseRate.toFixed(0)} msgs/s`);
    console.log(`processor + store:    ${rate.toFixed(0)} msgs/s (${(rate / baseRate).toFixed(2)}x baseline)`);
    console.log(`peak RSS: ${mb(Math.max(...run.rss))} MB; first-quarter peak ${mb(firstQuarterPeak)} MB, last-quarter peak ${mb(lastQuarterPeak)} MB (${run.rss.length} samples)`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

void main().then(() => process.exit(0));
