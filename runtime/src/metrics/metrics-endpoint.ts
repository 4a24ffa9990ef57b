// The Prometheus endpoint every daemon serves: GET /metrics in the text exposition format, from the daemon's own
// prom-client registry. Loopback by default (GATEWAY_METRICS_HOST); the firewall opens it only to a configured
// scraper network. A scrape is the only work it does: it never touches the daemon's hot path, and it is bounded
// like every other listener here (few connections, short timeouts, no request body read).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";

export interface MetricsEndpointOptions {
  registry: Registry;
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
}

/** How often a daemon tries again to listen when its metrics port was taken. */
export const METRICS_LISTEN_RETRY_MS = 30_000;

/** A scraper opens one connection; a few more cover a second Prometheus and a person with curl. */
const MAX_CONNECTIONS = 8;
/** A scrape is one small GET; a client slower than this is holding a slot, not scraping. */
const REQUEST_TIMEOUT_MS = 5_000;

/**
 * A registry for one daemon, with Node's process metrics (RSS, CPU, event-loop lag, open file descriptors)
 * beside the daemon's own: a slow event loop is what would make the lookup answer TEMP.
 */
export function daemonRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

export class MetricsEndpoint {
  private readonly server: Server;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: MetricsEndpointOptions) {
    this.server = createServer((request, response) => void this.handle(request, response));
    this.server.maxConnections = MAX_CONNECTIONS;
    this.server.requestTimeout = REQUEST_TIMEOUT_MS;
    this.server.headersTimeout = REQUEST_TIMEOUT_MS;
    this.server.keepAliveTimeout = REQUEST_TIMEOUT_MS;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = (request.url ?? "").split("?")[0];
    if (path !== "/metrics") {
      response.writeHead(404, { "content-type": "text/plain" }).end("only /metrics is served here\n");
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("GET /metrics\n");
      return;
    }
    try {
      const body = await this.options.registry.metrics();
      response.writeHead(200, { "content-type": this.options.registry.contentType });
      response.end(request.method === "HEAD" ? undefined : body);
    } catch (error) {
      // A collector failed (a directory scan, say): the scrape fails visibly and Prometheus records up=0 for it.
      response.writeHead(500, { "content-type": "text/plain" }).end(`collecting metrics failed: ${(error as Error).message}\n`);
    }
  }

  /** Resolves with the bound port once listening. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off("error", reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /**
   * Listens for the daemon's life: when the address is taken or missing it says so through `log` and tries again
   * every METRICS_LISTEN_RETRY_MS. Mail never waits for metrics: a daemon whose endpoint cannot listen still
   * serves Postfix, and the scraper's `up == 0` is what tells (docs/monitoring.md).
   */
  serve(log: (line: string) => void, retryMs = METRICS_LISTEN_RETRY_MS): void {
    const where = `${this.options.host}:${this.options.port}`;
    const attempt = (first: boolean) => {
      this.listen().then(
        (port) => log(`serving metrics on http://${this.options.host}:${port}/metrics${first ? "" : " (listening now)"}`),
        (error: unknown) => {
          if (this.closed) return;
          if (first) log(`cannot serve metrics on ${where}: ${(error as Error).message}; trying again every ${retryMs / 1000} s`);
          this.retryTimer = setTimeout(() => attempt(false), retryMs);
          this.retryTimer.unref();
        },
      );
    };
    attempt(true);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
