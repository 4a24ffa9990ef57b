// The lab's stand-in for Cloudflare Workers: the program's own Worker scripts (the MTA-STS policy's, render/
// mta-sts.ts) served over HTTPS at their custom domains, as Cloudflare serves them. One small Node process on the
// machine's bridge address runs each script's `fetch` handler for the host name a request names; each custom
// domain gets a certificate from the lab CA, which every lab host trusts as it would a public CA. The deploy
// engine publishes the custom domain's address record, as Cloudflare does when it creates the custom domain.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { httpsGet, labAcmePaths, signWithLabCa } from "./acme";
import { LAB_GATEWAY_IP, LAB_STATE_DIR } from "./constants";
import { readLogTail, startDetached, stopLabProcess } from "./daemon";
import { waitFor } from "./process";
import type { LabProcessRecord } from "./state";

/** Where a custom domain is served: the machine's bridge address, HTTPS's port. */
export const LAB_WORKERS_ADDRESS = LAB_GATEWAY_IP;
export const LAB_WORKERS_PORT = 443;

export interface LabWorkersPaths {
  dir: string;
  /** hostname → { script, cert, key }: read by the host on every request, so a new route needs no restart. */
  routes: string;
  host: string;
  log: string;
}

export function labWorkersPaths(stateDir: string = LAB_STATE_DIR): LabWorkersPaths {
  const dir = join(stateDir, "workers");
  return { dir, routes: join(dir, "routes.json"), host: join(dir, "workers-host.mjs"), log: join(dir, "workers.log") };
}

interface Route {
  script: string;
  cert: string;
  key: string;
}

/**
 * The Workers host, plain JavaScript for the machine's Node: a module Worker's `export default { fetch }` is
 * called with a Request and its Response written back, as Cloudflare's runtime does. A script file that changes
 * is imported again (its mtime is in the module URL).
 */
export const WORKERS_HOST_SCRIPT = `import { readFileSync, statSync } from "node:fs";
import { createServer } from "node:https";
import { createSecureContext } from "node:tls";
import { pathToFileURL } from "node:url";

const [routesFile, address, port] = process.argv.slice(2);
const routes = () => JSON.parse(readFileSync(routesFile, "utf8"));

const server = createServer(
  {
    SNICallback(name, done) {
      const route = routes()[name.toLowerCase()];
      if (route === undefined) return done(new Error("no Worker for " + name));
      done(null, createSecureContext({ cert: readFileSync(route.cert), key: readFileSync(route.key) }));
    },
  },
  async (req, res) => {
    try {
      const hostname = (req.headers.host ?? "").replace(/:\\d+$/, "").toLowerCase();
      const route = routes()[hostname];
      if (route === undefined) return res.writeHead(404).end("no Worker for " + hostname);
      const worker = await import(pathToFileURL(route.script).href + "?mtime=" + statSync(route.script).mtimeMs);
      const headers = Object.entries(req.headers).filter(([, value]) => typeof value === "string");
      const request = new Request("https://" + hostname + req.url, { method: req.method, headers });
      const response = await worker.default.fetch(request, {}, { waitUntil() {}, passThroughOnException() {} });
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    } catch (error) {
      console.error(error);
      res.writeHead(500).end();
    }
  },
);
server.listen(Number(port), address, () => console.log("lab Workers host on " + address + ":" + port));
`;

function readRoutes(paths: LabWorkersPaths): Record<string, Route> {
  return existsSync(paths.routes) ? (JSON.parse(readFileSync(paths.routes, "utf8")) as Record<string, Route>) : {};
}

/** The lab CA's certificate for one custom domain, made once. */
async function certificateFor(paths: LabWorkersPaths, hostname: string): Promise<{ cert: string; key: string }> {
  const cert = join(paths.dir, `${hostname}.crt`);
  if (existsSync(cert)) return { cert, key: join(paths.dir, `${hostname}.key`) };
  return signWithLabCa(labAcmePaths(LAB_STATE_DIR), {
    dir: paths.dir,
    base: hostname,
    commonName: hostname,
    subjectAltName: `DNS:${hostname}`,
  });
}

/** GET https://hostname/ through the Workers host, trusting the lab CA: the route answers once this resolves. */
async function probe(hostname: string): Promise<number> {
  const ca = readFileSync(labAcmePaths(LAB_STATE_DIR).labCaCert, "utf8");
  const answer = await httpsGet(`https://${hostname}/`, ca, { host: LAB_WORKERS_ADDRESS, port: LAB_WORKERS_PORT });
  return answer.status;
}

/**
 * Serves `content` (a module Worker) at https://hostname, starting the Workers host if `running` is undefined;
 * returns the host's process record. Resolves once the host answers for `hostname` with its certificate.
 */
export async function serveLabWorker(
  running: LabProcessRecord | undefined,
  hostname: string,
  scriptName: string,
  content: string,
): Promise<LabProcessRecord> {
  const paths = labWorkersPaths();
  mkdirSync(paths.dir, { recursive: true });
  const script = join(paths.dir, `${scriptName}.mjs`);
  // Renamed into place: the host never imports a half-written script.
  writeFileSync(`${script}.new`, content);
  renameSync(`${script}.new`, script);
  const routes = readRoutes(paths);
  routes[hostname] = { script, ...(await certificateFor(paths, hostname)) };
  writeFileSync(`${paths.routes}.new`, `${JSON.stringify(routes, null, 2)}\n`);
  renameSync(`${paths.routes}.new`, paths.routes);
  let record = running;
  if (record === undefined) {
    writeFileSync(paths.host, WORKERS_HOST_SCRIPT);
    record = startDetached(
      process.execPath,
      [paths.host, paths.routes, LAB_WORKERS_ADDRESS, String(LAB_WORKERS_PORT)],
      paths.log,
      paths.host,
    );
  }
  const digest = createHash("sha256").update(content).digest("hex").slice(0, 12);
  try {
    await waitFor(
      { host: "lab", step: `serve Worker ${scriptName} (${digest}) at https://${hostname}` },
      20_000,
      async () => ((await probe(hostname).catch(() => 0)) > 0 ? true : undefined),
      () => `Workers host log (${paths.log}):\n${readLogTail(paths.log)}`,
    );
  } catch (error) {
    // A host started here that never answered is not recorded in the lab's state: stop it, or it holds the port.
    if (running === undefined) await stopLabProcess("lab", "the Workers host", record);
    throw error;
  }
  return record;
}

/** The script file the Workers host runs for `hostname`: a test may rewrite it to serve something else. */
export function labWorkerScriptFile(hostname: string): string {
  const route = readRoutes(labWorkersPaths())[hostname];
  if (route === undefined) throw new Error(`the lab serves no Worker at ${hostname}`);
  return route.script;
}
