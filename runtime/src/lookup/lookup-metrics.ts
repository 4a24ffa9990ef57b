// What brightchain-lookup tells Prometheus: every answer by kind and how long it took, the connections Postfix
// holds open, and how often the connection limit closed or refused one. The service calls a LookupObserver; this
// file is the only one that knows prom-client, and every label child is made once, so an answer costs two
// increments and no allocation.
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

export function lookupMetrics(registry: Registry, openConnections: () => number): LookupObserver {
  const answers = new Counter({
    name: "brightchain_lookup_answers_total",
    help: "Socketmap and probe requests answered, by answer (OK, NOTFOUND, TEMP, PERM)",
    labelNames: ["answer"] as const,
    registers: [registry],
  });
  const byAnswer = new Map(ANSWERS.map((answer) => [answer, answers.labels(answer)]));
  // TIMEOUT is a reply the protocol has but this service never sends (a slow registry is TEMP): only the four
  // answers Postfix sees from us start at 0, so a rate() over each exists before its first occurrence.
  for (const answer of ["OK", "NOTFOUND", "TEMP", "PERM"] as const) answers.labels(answer).inc(0);
  const duration = new Histogram({
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
  const evictions = new Counter({
    name: "brightchain_lookup_evictions_total",
    help: "Idle connections closed at the connection limit to admit a new one",
    registers: [registry],
  });
  const refusals = new Counter({
    name: "brightchain_lookup_refused_connections_total",
    help: "Connections refused at the connection limit because every open one awaited an answer",
    registers: [registry],
  });
  return {
    answered(answer, seconds) {
      byAnswer.get(answer)!.inc();
      duration.observe(seconds);
    },
    evicted: () => evictions.inc(),
    refused: () => refusals.inc(),
  };
}
