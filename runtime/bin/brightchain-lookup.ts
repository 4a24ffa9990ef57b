// brightchain-lookup: the RecipientLookupService daemon Postfix queries through
// virtual_mailbox_maps = socketmap:inet:127.0.0.1:2526:virtual. Configured by /etc/brightchain/gateway.env;
// logs one line per event to stderr, which journald keeps.
import { ConfigError, loadLookupConfig, type LookupConfig } from "../src/config";
import { FileRegistry, HttpRegistry, RegistryFileError, type RecipientRegistry } from "../src/lookup/registry";
import { lookupMetrics } from "../src/lookup/lookup-metrics";
import { RecipientLookupService, escapeForLog } from "../src/lookup/server";
import { MetricsEndpoint, daemonRegistry } from "../src/metrics/metrics-endpoint";

/** sysexits.h EX_CONFIG: systemd shows it, and Restart=on-failure with RestartPreventExitStatus=78 stops looping. */
const EX_CONFIG = 78;

/** One journal line per call, whatever a registry error or a client put in `line`. */
function log(line: string): void {
  process.stderr.write(`brightchain-lookup: ${escapeForLog(line)}\n`);
}

function openRegistry(config: LookupConfig): RecipientRegistry {
  if (config.registryUrl !== undefined) {
    log(`registry ${config.registryUrl} (positive answers cached ${config.lookupCacheTtlSeconds} s)`);
    return new HttpRegistry(config.registryUrl, {
      cacheTtlSeconds: config.lookupCacheTtlSeconds,
      timeoutMs: config.lookupTimeoutMs,
    });
  }
  if (config.registryFile === undefined) {
    throw new ConfigError(
      "GATEWAY_REGISTRY_FILE",
      undefined,
      "the recipient file path (or GATEWAY_REGISTRY_URL for the node's API)",
    );
  }
  let registry: FileRegistry;
  try {
    registry = new FileRegistry(config.registryFile, {
      onReload: (count) => log(`reloaded ${config.registryFile}: ${count} recipients`),
      onReloadError: (error) => log(`reload refused, previous recipients kept: ${error.message}`),
    });
  } catch (error) {
    if (error instanceof RegistryFileError) throw error;
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConfigError("GATEWAY_REGISTRY_FILE", config.registryFile, `a readable file of recipient addresses (${reason})`);
  }
  log(`registry ${config.registryFile}: ${registry.size} recipients`);
  return registry;
}

async function main(): Promise<void> {
  let config: LookupConfig;
  let registry: RecipientRegistry;
  try {
    config = loadLookupConfig();
    registry = openRegistry(config);
  } catch (error) {
    log(`not started: ${(error as Error).message}`);
    process.exit(EX_CONFIG);
  }

  const metricsRegistry = daemonRegistry();
  const observer = lookupMetrics(metricsRegistry, () => service.openConnections);
  // Read by the metrics only when scraped, after this line has run.
  const service = new RecipientLookupService({
    registry,
    domains: config.emailDomains,
    host: config.lookupHost,
    port: config.lookupPort,
    lookupTimeoutMs: config.lookupTimeoutMs,
    log,
    observer,
  });
  const metrics = new MetricsEndpoint({ registry: metricsRegistry, host: config.metricsHost, port: config.metricsPort });
  try {
    await service.listen();
  } catch (error) {
    log(
      `cannot listen on ${config.lookupHost}:${config.lookupPort} (GATEWAY_LOOKUP_HOST/GATEWAY_LOOKUP_PORT): ${(error as Error).message}`,
    );
    registry.close();
    process.exit(EX_CONFIG);
  }
  log(`serving socketmap "virtual" for ${config.emailDomains.join(", ")} on ${config.lookupHost}:${service.port}`);
  // After the socketmap: Postfix is answered whether or not the metrics port can be had (GATEWAY_LOOKUP_METRICS_PORT).
  metrics.serve(log);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: finishing in-flight lookups`);
    void Promise.all([service.close(), metrics.close()]).then(() => {
      registry.close();
      log("stopped");
      process.exit(0);
    });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

void main();
