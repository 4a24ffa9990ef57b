// brightchain-inbound: the drop-folder daemon. Hands every message Postfix drops into
// GATEWAY_MAIL_DROP_DIR/new to the BrightChain node (GATEWAY_NODE_URL) or, without one, to the embedded
// content-addressed store (GATEWAY_STORE_DIR). Exit 78 (EX_CONFIG) on a bad variable so systemd does not
// restart-loop on it; SIGTERM finishes the messages in flight and exits 0.
import { ConfigError, loadInboundConfig, type InboundConfig } from "../src/config";
import { HttpNodeSink } from "../src/inbound/http-node-sink";
import { inboundMetrics } from "../src/inbound/inbound-metrics";
import { InboundProcessor, type InboundLogger } from "../src/inbound/inbound-processor";
import { oneLine } from "../src/inbound/log-text";
import type { Sink } from "../src/inbound/sink";
import { MetricsEndpoint, daemonRegistry } from "../src/metrics/metrics-endpoint";
import { ContentAddressedStore } from "../src/store/content-addressed-store";

const EX_CONFIG = 78;

// One journal line per message, whatever it quotes: a file name or an error text holding a newline can never
// start a line of its own (the processor also writes every file name escaped).
const logger: InboundLogger = {
  info: (m) => process.stderr.write(`brightchain-inbound: ${oneLine(m)}\n`),
  warn: (m) => process.stderr.write(`brightchain-inbound: warning: ${oneLine(m)}\n`),
  error: (m) => process.stderr.write(`brightchain-inbound: error: ${oneLine(m)}\n`),
};

async function openSink(config: InboundConfig): Promise<{ sink: Sink; description: string }> {
  if (config.nodeUrl !== undefined)
    return { sink: new HttpNodeSink({ nodeUrl: config.nodeUrl }), description: `node API ${config.nodeUrl}` };
  return {
    sink: await ContentAddressedStore.open(config.storeDir, (message) => logger.warn(message)),
    description: `embedded store ${config.storeDir}`,
  };
}

async function main(): Promise<void> {
  // The store's group commit fsyncs many copies at once; libuv's default 4 threads would serialize them.
  // Read when the pool first starts, which is after this line (nothing above did asynchronous I/O).
  process.env.UV_THREADPOOL_SIZE ??= "16";
  let config: InboundConfig;
  let opened: { sink: Sink; description: string };
  try {
    config = loadInboundConfig();
    opened = await openSink(config);
  } catch (error) {
    if (error instanceof ConfigError) {
      logger.error(error.message);
      process.exit(EX_CONFIG);
    }
    throw error;
  }

  const metricsRegistry = daemonRegistry();
  const observer = inboundMetrics(metricsRegistry, {
    mailDropDir: config.mailDropDir,
    errorDir: config.errorDir,
    inFlight: () => processor.inFlight,
  });
  // Read by the metrics only when scraped, after this line has run.
  const processor = new InboundProcessor({
    mailDropDir: config.mailDropDir,
    errorDir: config.errorDir,
    sink: opened.sink,
    spamEngine: config.spamEngine,
    spamProbable: config.spamProbable,
    servedDomains: config.emailDomains,
    maxMessageSize: config.maxMessageSize,
    concurrency: config.inboundConcurrency,
    logger,
    observer,
  });
  const metrics = new MetricsEndpoint({ registry: metricsRegistry, host: config.metricsHost, port: config.metricsPort });

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: finishing messages in flight`);
    void Promise.all([processor.stop(), metrics.close()])
      .then(() => opened.sink.close())
      .then(() => {
        const { delivered, failed, retried } = processor.counts;
        logger.info(`stopped: ${delivered} delivered, ${failed} moved to errors, ${retried} retries`);
        process.exit(0);
      });
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));

  await processor.start();
  logger.info(
    `watching ${config.mailDropDir}/new → ${opened.description} (concurrency ${config.inboundConcurrency}, spam engine ${config.spamEngine})`,
  );
  // After intake started: mail is handed off whether or not the metrics port can be had (GATEWAY_INBOUND_METRICS_PORT).
  metrics.serve((line) => (line.startsWith("cannot") ? logger.error(line) : logger.info(line)));
}

main().catch((error: unknown) => {
  logger.error((error as Error).stack ?? String(error));
  process.exit(1);
});
