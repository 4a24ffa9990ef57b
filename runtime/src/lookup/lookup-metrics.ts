// What brightchain-lookup tells Prometheus: every answer by kind and how long it took, the connections Postfix
// holds open, and how often the connection limit closed or refused one. The service calls a LookupObserver; this
// file is the only one that knows prom-client. An answer costs a few increments of plain numbers: prom-client's
// own inc() and observe() hash their labels on every call (~0.1 and ~0.3 µs here), so the counts are handed to
// it when Prometheus scrapes instead.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { LookupReply } from "./server";

export type LookupAnswer = LookupReply["status"];

/** What the service reports as it works; every call is on the hot path and must stay O(1). */
export interface LookupObserver {
  answered(answer: LookupAnswer, seconds: number): void;
  /** An idle connection was closed to admit a new one at the connection limit. */
  evicted(): void;
  /** A connection was refused at the limit: every open one was waiting for an answer. */
  refused(): void;
}

const ANSWERS: readonly LookupAnswer[] = ["OK", "NOTFOUND", "TEMP", "TIMEOUT", "PERM"];

/**
 * From 50 µs (a file registry answers in a few) to 5 s (past GATEWAY_LOOKUP_TIMEOUT_MS's default of 2 s, where
 * the answer is TEMP anyway).
 */
export const LOOKUP_DURATION_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5];

/** What a metric hands the registry: Histogram.get()'s resolved type. */
type MetricSnapshot = Awaited<ReturnType<Histogram["get"]>>;

/**
 * A histogram whose observation is one bucket increment on plain numbers; it never observes through prom-client.
 * The registry formats a metric from getForPromString() when it has one (prom-client's registry.js; its Histogram
 * has one, its typings declare only get()), and both return the counts here in prom-client's own shape.
 */
class PlainHistogram extends Histogram {
  private readonly bounds: readonly number[];
  private readonly metricName: string;
  private readonly metricHelp: string;
  /** Observations per bucket, not cumulative; the last is above every bound (+Inf). */
  private readonly perBucket: Float64Array;
  private total = 0;
  private observations = 0;

  constructor(config: { name: string; help: string; buckets: readonly number[]; registers: Registry[] }) {
    super({ ...config, buckets: [...config.buckets] });
    this.metricName = config.name;
    this.metricHelp = config.help;
    this.bounds = config.buckets;
    this.perBucket = new Float64Array(config.buckets.length + 1);
  }

  record(value: number): void {
    let bucket = 0;
    // `le` is inclusive, as prom-client's own observe() counts it.
    while (bucket < this.bounds.length && value > this.bounds[bucket]!) bucket++;
    this.perBucket[bucket]! += 1;
    this.total += value;
    this.observations += 1;
  }

  getForPromString(): Promise<MetricSnapshot> {
    return Promise.resolve(this.snapshot());
  }

  override get(): Promise<MetricSnapshot> {
    return Promise.resolve(this.snapshot());
  }

  private snapshot(): MetricSnapshot {
    const bucket = `${this.metricName}_bucket`;
    let cumulative = 0;
    const values: MetricSnapshot["values"] = this.bounds.map((le, i) => ({
      labels: { le },
      value: (cumulative += this.perBucket[i]!),
      metricName: bucket,
    }));
    values.push(
      { labels: { le: "+Inf" }, value: this.observations, metricName: bucket },
      { labels: {}, value: this.total, metricName: `${this.metricName}_sum` },
      { labels: {}, value: this.observations, metricName: `${this.metricName}_count` },
    );
    // The typings declare `type` as a numeric enum the JavaScript never uses: the registry prints this string.
    const type = "histogram" as unknown as MetricSnapshot["type"];
    return { name: this.metricName, help: this.metricHelp, type, values, aggregator: "sum", collect: () => undefined };
  }
}

export function lookupMetrics(registry: Registry, openConnections: () => number): LookupObserver {
  const counts: Record<LookupAnswer, number> = { OK: 0, NOTFOUND: 0, TEMP: 0, TIMEOUT: 0, PERM: 0 };
  const reported: Record<LookupAnswer, number> = { ...counts };
  new Counter({
    name: "brightchain_lookup_answers_total",
    help: "Socketmap and probe requests answered, by answer (OK, NOTFOUND, TEMP, PERM)",
    labelNames: ["answer"] as const,
    registers: [registry],
    collect() {
      // TIMEOUT is a reply the protocol has but this service never sends (a slow registry is TEMP): the four
      // answers Postfix sees from us are always present, so a rate() over each exists before its first one.
      for (const answer of ANSWERS) {
        const delta = counts[answer] - reported[answer];
        if (delta > 0 || answer !== "TIMEOUT") this.labels(answer).inc(delta);
        reported[answer] = counts[answer];
      }
    },
  });
  const duration = new PlainHistogram({
    name: "brightchain_lookup_duration_seconds",
    help: "Time from a complete request to its answer, registry included",
    buckets: LOOKUP_DURATION_BUCKETS,
    registers: [registry],
  });
  new Gauge({
    name: "brightchain_lookup_open_connections",
    help: "Connections open now (Postfix keeps one per smtpd, cleanup and trivial-rewrite process)",
    registers: [registry],
    collect() {
      this.set(openConnections());
    },
  });
  let evicted = 0;
  let refused = 0;
  const reportedLimits = { evicted: 0, refused: 0 };
  new Counter({
    name: "brightchain_lookup_evictions_total",
    help: "Idle connections closed at the connection limit to admit a new one",
    registers: [registry],
    collect() {
      this.inc(evicted - reportedLimits.evicted);
      reportedLimits.evicted = evicted;
    },
  });
  new Counter({
    name: "brightchain_lookup_refused_connections_total",
    help: "Connections refused at the connection limit because every open one awaited an answer",
    registers: [registry],
    collect() {
      this.inc(refused - reportedLimits.refused);
      reportedLimits.refused = refused;
    },
  });
  return {
    answered(answer, seconds) {
      counts[answer] += 1;
      duration.record(seconds);
    },
    evicted: () => void (evicted += 1),
    refused: () => void (refused += 1),
  };
}
