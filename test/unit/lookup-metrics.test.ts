// brightchain-lookup's Prometheus endpoint, scraped over HTTP in-process after real socketmap requests: each
// answer is counted under its own label and timed, open connections and evictions are what the service did.
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Histogram, Registry } from "prom-client";
import { LOOKUP_DURATION_BUCKETS, lookupMetrics } from "../../runtime/src/lookup/lookup-metrics";
import type { RecipientRegistry } from "../../runtime/src/lookup/registry";
import { RecipientLookupService, encodeNetstring } from "../../runtime/src/lookup/server";
import { MetricsEndpoint, daemonRegistry } from "../../runtime/src/metrics/metrics-endpoint";
import { waitUntil } from "../helpers/inbound-drop";
import { sample, scrape } from "../helpers/prometheus-text";

/** alice exists; a lookup of broken@ fails in the registry itself, which is what TEMP means. */
const registry: RecipientRegistry = {
  find(address) {
    if (address === "broken@brightchain.org") throw new Error("backend down");
    return address === "alice@brightchain.org" ? address : undefined;
  },
  close: () => undefined,
};

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startLookup(options: { maxConnections?: number } = {}) {
  const metricsRegistry = daemonRegistry();
  const observer = lookupMetrics(metricsRegistry, () => service.openConnections);
  // Read by the metrics only when scraped, after this line has run.
  const service = new RecipientLookupService({
    registry,
    domains: ["brightchain.org"],
    port: 0,
    lookupTimeoutMs: 1_000,
    observer,
    ...options,
  });
  await service.listen();
  const endpoint = new MetricsEndpoint({ registry: metricsRegistry, host: "127.0.0.1", port: 0 });
  const metricsPort = await endpoint.listen();
  cleanups.push(
    () => endpoint.close(),
    () => service.close(),
  );
  return { service, metricsPort };
}

async function open(port: number): Promise<Socket> {
  const socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  cleanups.push(() => void socket.destroy());
  return socket;
}

/** One socketmap request on `socket`, as Postfix sends it; resolves with the netstring reply's payload. */
function ask(socket: Socket, request: string): Promise<string> {
  return new Promise((resolve) => {
    let reply = "";
    const onData = (chunk: Buffer) => {
      reply += chunk.toString();
      const match = /^(\d+):/.exec(reply);
      if (match && reply.length >= match[0].length + Number(match[1]) + 1) {
        socket.off("data", onData);
        resolve(reply.slice(match[0].length, match[0].length + Number(match[1])));
      }
    };
    socket.on("data", onData);
    socket.write(encodeNetstring(request));
  });
}

const answers = (answer: string) => `brightchain_lookup_answers_total{answer="${answer}"}`;

describe("brightchain-lookup metrics", () => {
  it("start with every answer at 0, then count each answer Postfix got under its own label", async () => {
    const { service, metricsPort } = await startLookup();
    const before = await scrape(metricsPort);
    expect(before.status).toBe(200);
    expect(before.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const answer of ["OK", "NOTFOUND", "TEMP", "PERM"]) expect(sample(before, answers(answer))).toBe(0);
    expect(sample(before, "brightchain_lookup_duration_seconds_count")).toBe(0);

    const socket = await open(service.port);
    expect(await ask(socket, "virtual nobody@brightchain.org")).toBe("NOTFOUND ");
    const afterOne = await scrape(metricsPort);
    expect(sample(afterOne, answers("NOTFOUND"))).toBe(1);
    expect(sample(afterOne, answers("OK"))).toBe(0);

    expect(await ask(socket, "virtual alice@brightchain.org")).toBe("OK alice@brightchain.org");
    expect(await ask(socket, "virtual broken@brightchain.org")).toMatch(/^TEMP recipient registry failed: backend down/);
    expect(await ask(socket, "aliases alice@brightchain.org")).toMatch(/^PERM unknown map name/);
    const after = await scrape(metricsPort);
    expect([answers("OK"), answers("NOTFOUND"), answers("TEMP"), answers("PERM")].map((s) => sample(after, s))).toEqual([
      1, 1, 1, 1,
    ]);
    // Each answer timed once; an in-memory registry answers far inside the largest bucket.
    expect(sample(after, "brightchain_lookup_duration_seconds_count")).toBe(4);
    expect(sample(after, 'brightchain_lookup_duration_seconds_bucket{le="5"}')).toBe(4);
    expect(sample(after, "brightchain_lookup_duration_seconds_sum")).toBeLessThan(1);
    expect(sample(after, "brightchain_lookup_open_connections")).toBe(1);

    socket.destroy();
    await waitUntil("the service to forget the closed connection", () => service.openConnections === 0);
    expect(sample(await scrape(metricsPort), "brightchain_lookup_open_connections")).toBe(0);
  });

  it("count an idle connection closed at the connection limit as an eviction", async () => {
    const { service, metricsPort } = await startLookup({ maxConnections: 2 });
    await open(service.port);
    await open(service.port);
    await waitUntil("two connections admitted", () => service.openConnections === 2);
    expect(sample(await scrape(metricsPort), "brightchain_lookup_evictions_total")).toBe(0);
    const third = await open(service.port);
    expect(await ask(third, "virtual alice@brightchain.org")).toBe("OK alice@brightchain.org");
    const scraped = await scrape(metricsPort);
    expect(sample(scraped, "brightchain_lookup_evictions_total")).toBe(1);
    expect(sample(scraped, "brightchain_lookup_refused_connections_total")).toBe(0);
    expect(sample(scraped, "brightchain_lookup_open_connections")).toBe(2);
  });

  it("keep trying a metrics port another process holds, and serve it once free, saying both in the log", async () => {
    const holder = new MetricsEndpoint({ registry: daemonRegistry(), host: "127.0.0.1", port: 0 });
    const port = await holder.listen();
    const lines: string[] = [];
    const endpoint = new MetricsEndpoint({ registry: daemonRegistry(), host: "127.0.0.1", port });
    cleanups.push(() => endpoint.close());
    endpoint.serve((line) => lines.push(line), 50);
    await waitUntil("the refusal to be logged", () => lines.length === 1);
    expect(lines[0]).toMatch(
      new RegExp(`^cannot serve metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*; trying again every 0\\.05 s$`),
    );
    await holder.close();
    await waitUntil("the endpoint to listen", () => lines.length === 2);
    expect(lines[1]).toBe(`serving metrics on http://127.0.0.1:${port}/metrics (listening now)`);
    expect((await scrape(port)).status).toBe(200);
  });

  it("print the latency histogram exactly as prom-client's own Histogram prints the same observations", async () => {
    const ours = new Registry();
    const observer = lookupMetrics(ours, () => 0);
    const reference = new Registry();
    const histogram = new Histogram({
      name: "brightchain_lookup_duration_seconds",
      help: "Time from a complete request to its answer, registry included",
      buckets: LOOKUP_DURATION_BUCKETS,
      registers: [reference],
    });
    // On a bound (le is inclusive), between bounds, past the last, and the smallest.
    for (const seconds of [0.00005, 0.0003, 0.0003, 0.7, 9, 0.000001]) {
      observer.answered("OK", seconds);
      histogram.observe(seconds);
    }
    const series = (text: string) => text.split("\n").filter((line) => line.includes("brightchain_lookup_duration_seconds"));
    expect(series(await ours.metrics())).toEqual(series(await reference.metrics()));
    expect(series(await ours.metrics())).toContain('brightchain_lookup_duration_seconds_bucket{le="0.00005"} 2');
  });

  it("serve /metrics only, to GET and HEAD, with Node's process metrics beside the service's", async () => {
    const { metricsPort } = await startLookup();
    expect((await scrape(metricsPort, "127.0.0.1", "/")).status).toBe(404);
    expect((await scrape(metricsPort, "127.0.0.1", "/metrics", "POST")).status).toBe(405);
    const head = await scrape(metricsPort, "127.0.0.1", "/metrics", "HEAD");
    expect([head.status, head.text]).toEqual([200, ""]);
    const scraped = await scrape(metricsPort);
    expect(sample(scraped, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(scraped.text).toContain("# TYPE brightchain_lookup_duration_seconds histogram");
  });
});
