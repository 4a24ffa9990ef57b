// Lookup throughput and latency on persistent connections, against a bare netstring echo server measured in the
// same run: the ratio says what the service costs beyond TCP and framing on this machine.
//
//   npx tsx bench/lookup/run.ts [--rounds 5] [--seconds 1] [--connections 8] [--depth 32]
//
// The servers run in a child process (their own core); this process is only the load generator.
import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer, connect, type AddressInfo, type Socket } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import type { FileRegistry } from "../../runtime/src/lookup/registry";
import type { RecipientLookupService } from "../../runtime/src/lookup/server";

const REGISTRY_SIZE = 10_000;
const COMMA = 0x2c;
const COLON = 0x3a;

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index < 0 ? fallback : Number(process.argv[index + 1]);
}

/** The floor: parse a netstring, answer a netstring, nothing else. */
function startEchoServer(): Promise<number> {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    let pending: Buffer | undefined;
    socket.on("data", (chunk: Buffer) => {
      const data = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      pending = undefined;
      let start = 0;
      let out = "";
      for (;;) {
        const colon = data.indexOf(COLON, start);
        if (colon < 0) break;
        const length = Number(data.toString("latin1", start, colon));
        const end = colon + 1 + length;
        if (end >= data.length) break;
        const payload = data.toString("utf8", colon + 1, end);
        out += `${Buffer.byteLength(payload) + 3}:OK ${payload},`;
        start = end + 1;
      }
      if (out !== "") socket.write(out);
      if (start < data.length) pending = data.subarray(start);
    });
    socket.on("error", () => socket.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
}

/**
 * The service bundled by esbuild as brightchain-lookup is: one scope, no per-module export getters. Loaded from
 * source through tsx, every call across a module boundary went through a getter and cost the service ~20%.
 */
async function bundledLookup(dir: string): Promise<{
  FileRegistry: typeof FileRegistry;
  RecipientLookupService: typeof RecipientLookupService;
}> {
  const outfile = join(dir, "lookup-bundle.cjs");
  await build({
    stdin: {
      contents: 'export { FileRegistry } from "./registry"; export { RecipientLookupService } from "./server";',
      resolveDir: join(__dirname, "..", "..", "runtime", "src", "lookup"),
      loader: "ts",
    },
    outfile,
    bundle: true,
    platform: "node",
    target: "node18",
    format: "cjs",
    logLevel: "warning",
  });
  return createRequire(__filename)(outfile) as never;
}

async function serve(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "bench-lookup-"));
  const { FileRegistry, RecipientLookupService } = await bundledLookup(dir);
  const file = join(dir, "recipients");
  writeFileSync(file, Array.from({ length: REGISTRY_SIZE }, (_, i) => `user${i}@brightchain.org`).join("\n") + "\n");
  const registry = new FileRegistry(file);
  const service = new RecipientLookupService({ registry, domains: ["brightchain.org"], port: 0, lookupTimeoutMs: 2_000 });
  const lookupPort = await service.listen();
  const echoPort = await startEchoServer();
  process.send!({ lookupPort, echoPort });
  process.on("disconnect", () => {
    registry.close();
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  });
}

/** Requests a Postfix would send: mostly known users, some +tag, some unknown. */
function requestFor(i: number): Buffer {
  const user = i % 10 === 9 ? `stranger${i}` : i % 10 === 8 ? `user${i % REGISTRY_SIZE}+tag` : `user${i % REGISTRY_SIZE}`;
  const payload = `virtual ${user}@brightchain.org`;
  return Buffer.from(`${Buffer.byteLength(payload)}:${payload},`);
}

interface Result {
  lookups: number;
  seconds: number;
  latenciesUs: Float64Array;
}

/** Runs `connections` clients, each keeping `depth` requests in flight, for `seconds`. */
function load(port: number, connections: number, depth: number, seconds: number): Promise<Result> {
  const requests = Array.from({ length: 1000 }, (_, i) => requestFor(i));
  const latencies: number[] = [];
  let lookups = 0;
  const startedAt = process.hrtime.bigint();
  const stopAt = startedAt + BigInt(Math.round(seconds * 1e9));
  return new Promise((resolve) => {
    let open = connections;
    for (let c = 0; c < connections; c++) {
      const socket: Socket = connect(port, "127.0.0.1");
      socket.setNoDelay(true);
      const sentAt: bigint[] = [];
      let next = c * 97;
      let pending: Buffer | undefined;
      let stopping = false;
      const sendBatch = (count: number) => {
        const now = process.hrtime.bigint();
        const parts: Buffer[] = [];
        for (let k = 0; k < count; k++) {
          parts.push(requests[next++ % requests.length]!);
          sentAt.push(now);
        }
        socket.write(count === 1 ? parts[0]! : Buffer.concat(parts));
      };
      socket.on("connect", () => sendBatch(depth));
      socket.on("data", (chunk: Buffer) => {
        const data = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
        pending = undefined;
        const now = process.hrtime.bigint();
        let start = 0;
        let answered = 0;
        for (;;) {
          const colon = data.indexOf(COLON, start);
          if (colon < 0) break;
          const end = colon + 1 + Number(data.toString("latin1", start, colon));
          if (end >= data.length || data[end] !== COMMA) break;
          latencies.push(Number(now - sentAt.shift()!) / 1000);
          answered++;
          start = end + 1;
        }
        if (start < data.length) pending = data.subarray(start);
        lookups += answered;
        if (now >= stopAt) stopping = true;
        if (!stopping && answered > 0) sendBatch(answered);
        if (stopping && sentAt.length === 0) socket.end();
      });
      socket.on("close", () => {
        if (--open === 0) {
          resolve({
            lookups,
            seconds: Number(process.hrtime.bigint() - startedAt) / 1e9,
            latenciesUs: Float64Array.from(latencies),
          });
        }
      });
    }
  });
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

interface Summary {
  rate: number;
  p50: number;
  p99: number;
}

/** CPU seconds (user + system) the serving process has used: both servers live in it, one measured at a time. */
function serverCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime, in clock ticks (USER_HZ, 100 on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Rounds alternate between the two servers, so a noisy neighbour on the machine hits both alike. */
async function compare(
  serverPid: number,
  ports: { echo: number; lookup: number },
  connections: number,
  depth: number,
  rounds: number,
  seconds: number,
) {
  const rates = { echo: [] as number[], lookup: [] as number[] };
  const latencies = { echo: [] as Float64Array[], lookup: [] as Float64Array[] };
  const cpu = { echo: { seconds: 0, requests: 0 }, lookup: { seconds: 0, requests: 0 } };
  for (let round = 0; round < rounds; round++) {
    for (const server of ["echo", "lookup"] as const) {
      const cpuBefore = serverCpuSeconds(serverPid);
      const result = await load(ports[server], connections, depth, seconds);
      cpu[server].seconds += serverCpuSeconds(serverPid) - cpuBefore;
      cpu[server].requests += result.lookups;
      rates[server].push(result.lookups / result.seconds);
      latencies[server].push(result.latenciesUs);
    }
  }
  const summarize = (server: "echo" | "lookup"): Summary => {
    const all = new Float64Array(latencies[server].reduce((n, l) => n + l.length, 0));
    let offset = 0;
    for (const l of latencies[server]) {
      all.set(l, offset);
      offset += l.length;
    }
    all.sort();
    return { rate: median(rates[server]), p50: percentile(all, 0.5), p99: percentile(all, 0.99) };
  };
  // Paired rounds ran back to back, so their ratio cancels most of the machine's noise; the spread shows the rest.
  const ratios = rates.lookup.map((rate, i) => rate / rates.echo[i]!).sort((a, b) => a - b);
  return {
    echo: summarize("echo"),
    lookup: summarize("lookup"),
    ratio: median(ratios),
    ratioRange: [ratios[0]!, ratios[ratios.length - 1]!],
    // Server CPU per request: what the throughput ratio would be with the server saturated, free of how the
    // machine scheduled the load generator (2 shared CPUs).
    cpuUs: { echo: (cpu.echo.seconds / cpu.echo.requests) * 1e6, lookup: (cpu.lookup.seconds / cpu.lookup.requests) * 1e6 },
  };
}

function line(name: string, s: Summary): string {
  return `  ${name.padEnd(15)} ${Math.round(s.rate).toLocaleString("en").padStart(9)} req/s  p50 ${s.p50.toFixed(0).padStart(5)} µs  p99 ${s.p99.toFixed(0).padStart(5)} µs`;
}

async function main(): Promise<void> {
  const seconds = argument("seconds", 1);
  const rounds = argument("rounds", 5);
  const connections = argument("connections", 8);
  const depth = argument("depth", 32);
  const child: ChildProcess = fork(__filename, ["serve"], { execArgv: process.execArgv });
  const { lookupPort, echoPort } = await new Promise<{ lookupPort: number; echoPort: number }>((resolve) =>
    child.once("message", (m) => resolve(m as never)),
  );
  const ports = { echo: echoPort, lookup: lookupPort };

  const scenarios = [
    { name: "one connection, one request at a time (one smtpd's pattern)", connections: 1, depth: 1 },
    { name: `${connections} connections, one request at a time each`, connections, depth: 1 },
    { name: `${connections} connections, pipelined ${depth} deep`, connections, depth },
  ];
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")} on ${cpus().length} CPUs before the run`,
  );
  console.log(
    `node ${process.version}, ${REGISTRY_SIZE} recipients in the file registry; median of ${rounds} alternating rounds of ${seconds} s`,
  );
  console.log("requests: 80% known users, 10% +tag of a known user, 10% unknown");
  for (const scenario of scenarios) {
    // Warm-up, so both servers are measured after JIT and with their connections' buffers settled.
    await compare(child.pid!, ports, scenario.connections, scenario.depth, 1, 0.3);
    const { echo, lookup, ratio, ratioRange, cpuUs } = await compare(
      child.pid!,
      ports,
      scenario.connections,
      scenario.depth,
      rounds,
      seconds,
    );
    console.log(`\n${scenario.name}`);
    console.log(line("echo server", echo));
    console.log(line("lookup service", lookup));
    console.log(
      `  ratio lookup/echo ${ratio.toFixed(2)}× (median of paired rounds, range ${ratioRange[0]!.toFixed(2)}–${ratioRange[1]!.toFixed(2)}; target ≥ 0.70×); lookup p99 ${lookup.p99 < 1000 ? "<" : "≥"} 1 ms (target < 1 ms)`,
    );
    console.log(
      `  server CPU per request: echo ${cpuUs.echo.toFixed(2)} µs, lookup ${cpuUs.lookup.toFixed(2)} µs (echo/lookup ${(cpuUs.echo / cpuUs.lookup).toFixed(2)}×)`,
    );
  }
  child.disconnect();
}

if (process.argv[2] === "serve") void serve();
else void main();
