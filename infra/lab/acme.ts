import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { LAB_ACME_DIRECTORY_URL, LAB_ACME_MANAGEMENT_PORT, LAB_ACME_PORT, LAB_DNS_PORT, LAB_GATEWAY_IP } from "./constants";
import { readLogTail, startDetached } from "./daemon";
import { runStep, waitFor } from "./process";
import { LabProcessRecord } from "./state";

export interface LabAcmePaths {
  dir: string;
  config: string;
  log: string;
  /** The lab's own CA: signs pebble's listener certificate; guests trust it to talk to the ACME server. */
  labCaCert: string;
  labCaKey: string;
  listenerCert: string;
  listenerKey: string;
  /** Pebble's issuing root (regenerated each time pebble starts); guests trust it to accept issued certs. */
  pebbleRoot: string;
}

export function labAcmePaths(stateDir: string): LabAcmePaths {
  const dir = join(stateDir, "acme");
  return {
    dir,
    config: join(dir, "pebble-config.json"),
    log: join(dir, "pebble.log"),
    labCaCert: join(dir, "lab-ca.crt"),
    labCaKey: join(dir, "lab-ca.key"),
    listenerCert: join(dir, "pebble-listener.crt"),
    listenerKey: join(dir, "pebble-listener.key"),
    pebbleRoot: join(dir, "pebble-root.crt"),
  };
}

/**
 * httpPort/tlsPort 80/443: pebble validates http-01 on the real port a certbot on the guest listens on, and
 * resolves the names through the lab DNS (`-dnsserver`), exactly the path Let's Encrypt would take.
 */
export function renderPebbleConfig(paths: LabAcmePaths): string {
  const config = {
    pebble: {
      listenAddress: `${LAB_GATEWAY_IP}:${LAB_ACME_PORT}`,
      managementListenAddress: `${LAB_GATEWAY_IP}:${LAB_ACME_MANAGEMENT_PORT}`,
      certificate: paths.listenerCert,
      privateKey: paths.listenerKey,
      httpPort: 80,
      tlsPort: 443,
      ocspResponderURL: "",
      externalAccountBindingRequired: false,
    },
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

async function makeLabCertificates(paths: LabAcmePaths): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await runStep("lab", "create lab CA", "openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    paths.labCaKey,
    "-out",
    paths.labCaCert,
    "-days",
    "30",
    "-subj",
    "/CN=BrightChain lab CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await signWithLabCa(paths, {
    dir: paths.dir,
    base: "pebble-listener",
    commonName: LAB_GATEWAY_IP,
    subjectAltName: `IP:${LAB_GATEWAY_IP},DNS:acme.lab.test`,
  });
}

/**
 * A server certificate signed by the lab CA, which every lab host and doctor (extraCa) trust as they would a public
 * CA: `<base>.key` and `<base>.crt` in `dir`. subjectAltName as openssl writes it: `DNS:name` or `IP:address`, comma
 * separated.
 */
export async function signWithLabCa(
  paths: Pick<LabAcmePaths, "labCaCert" | "labCaKey">,
  leaf: { dir: string; base: string; commonName: string; subjectAltName: string },
): Promise<{ cert: string; key: string }> {
  const file = (suffix: string) => join(leaf.dir, `${leaf.base}.${suffix}`);
  await runStep("lab", `key for ${leaf.commonName}`, "openssl", [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    file("key"),
    "-out",
    file("csr"),
    "-subj",
    `/CN=${leaf.commonName}`,
  ]);
  writeFileSync(file("ext"), `subjectAltName=${leaf.subjectAltName}\nextendedKeyUsage=serverAuth\n`);
  await runStep("lab", `certificate for ${leaf.commonName}`, "openssl", [
    "x509",
    "-req",
    "-in",
    file("csr"),
    "-CA",
    paths.labCaCert,
    "-CAkey",
    paths.labCaKey,
    "-CAcreateserial",
    "-out",
    file("crt"),
    "-days",
    "30",
    "-extfile",
    file("ext"),
  ]);
  return { cert: file("crt"), key: file("key") };
}

/**
 * GET `url` trusting `ca`, with the body. `connect` sends the request to another address than the URL's host
 * (SNI and Host header stay the URL's): a name the lab serves on a shared listener.
 */
export function httpsGet(
  url: string,
  ca: string,
  connect?: { host: string; port: number },
): Promise<{ status: number; body: string }> {
  const { hostname } = new URL(url);
  // `hostname`, not `host`: request() takes the URL's hostname over an option's host.
  const via = connect ? { hostname: connect.host, port: connect.port, servername: hostname, headers: { host: hostname } } : {};
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, timeout: 2_000, ...via }, (response) => {
      let body = "";
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

export async function startLabAcme(paths: LabAcmePaths): Promise<LabProcessRecord> {
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  await makeLabCertificates(paths);
  writeFileSync(paths.config, renderPebbleConfig(paths));
  const record = startDetached(
    "pebble",
    ["-config", paths.config, "-dnsserver", `${LAB_GATEWAY_IP}:${LAB_DNS_PORT}`],
    paths.log,
    paths.config,
    // No random validation delays, nonce rejections or authorization reuse: lab runs must be deterministic.
    { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" },
  );
  const ca = readFileSync(paths.labCaCert, "utf8");
  let lastError = "";
  const root = await waitFor(
    { host: "lab", step: `start pebble (ACME) on ${LAB_ACME_DIRECTORY_URL}` },
    20_000,
    async () => {
      try {
        const directory = await httpsGet(LAB_ACME_DIRECTORY_URL, ca);
        if (directory.status !== 200) return undefined;
        const roots = await httpsGet(`https://${LAB_GATEWAY_IP}:${LAB_ACME_MANAGEMENT_PORT}/roots/0`, ca);
        return roots.status === 200 && roots.body.includes("BEGIN CERTIFICATE") ? roots.body : undefined;
      } catch (error) {
        lastError = String(error);
        return undefined;
      }
    },
    () => `${lastError}\npebble log (${paths.log}):\n${readLogTail(paths.log)}`,
  );
  writeFileSync(paths.pebbleRoot, root);
  return record;
}
