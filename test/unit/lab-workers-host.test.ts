// The lab's stand-in for Cloudflare Workers (infra/lab/workers.ts) run as the lab runs it: the host script under
// Node with a routes file, a certificate for the custom domain, and the MTA-STS Worker the program renders. What a
// sender fetching the policy gets is what the Worker returns; another host name gets no certificate.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKERS_HOST_SCRIPT } from "../../infra/lab/workers";
import { MTA_STS_POLICY_PATH, mtaStsPolicyText, mtaStsWorkerScript } from "../../infra/render/mta-sts";
import { freePort, waitFor } from "../helpers/postfix-server";

const dir = mkdtempSync(join(tmpdir(), "gateway-workers-host-"));
const file = (name: string) => join(dir, name);
const HOST = "mta-sts.brightchain.org";
const policy = mtaStsPolicyText(
  [
    { hostname: "mail.brightchain.org", ipv4: "203.0.113.10" },
    { hostname: "mail2.brightchain.org", ipv4: "203.0.113.20" },
  ],
  { mode: "enforce", maxAgeSeconds: 604800 },
);
let host: ChildProcess | undefined;
let port = 0;

function get(servername: string, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        servername,
        path,
        headers: { host: servername },
        ca: readFileSync(file("ca.crt")),
        timeout: 5_000,
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, type: String(response.headers["content-type"]), body }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-days", "1", "-subj", "/CN=test CA", "-keyout", file("ca.key"), "-out", file("ca.crt")]);
  openssl(["req", ...ec, "-subj", `/CN=${HOST}`, "-keyout", file("host.key"), "-out", file("host.csr")]);
  writeFileSync(file("host.ext"), `subjectAltName=DNS:${HOST}\n`);
  openssl([
    "x509",
    "-req",
    "-in",
    file("host.csr"),
    "-CA",
    file("ca.crt"),
    "-CAkey",
    file("ca.key"),
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    file("host.ext"),
    "-out",
    file("host.crt"),
  ]);
  writeFileSync(file("mta-sts.mjs"), mtaStsWorkerScript(policy));
  writeFileSync(
    file("routes.json"),
    JSON.stringify({ [HOST]: { script: file("mta-sts.mjs"), cert: file("host.crt"), key: file("host.key") } }),
  );
  writeFileSync(file("host.mjs"), WORKERS_HOST_SCRIPT);
  port = await freePort();
  host = spawn(process.execPath, [file("host.mjs"), file("routes.json"), "127.0.0.1", String(port)], { stdio: "ignore" });
  await waitFor("the Workers host answering", async () => (await get(HOST, "/").catch(() => undefined)) !== undefined, 10_000);
});

afterAll(() => {
  host?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe("the lab's Workers host", () => {
  it("serves the program's MTA-STS Worker at its custom domain: the policy, as text/plain, over the domain's certificate", async () => {
    const answer = await get(HOST, MTA_STS_POLICY_PATH);
    expect(answer).toEqual({ status: 200, type: "text/plain", body: policy });
    expect((await get(HOST, "/elsewhere")).status).toBe(404);
  });

  it("serves a rewritten script at the next request, as a redeployed Worker", async () => {
    writeFileSync(file("mta-sts.mjs"), mtaStsWorkerScript(policy.replace("mode: enforce", "mode: testing")));
    expect((await get(HOST, MTA_STS_POLICY_PATH)).body).toContain("mode: testing");
  });

  it("has no certificate for a name no Worker serves", async () => {
    await expect(get("other.brightchain.org", MTA_STS_POLICY_PATH)).rejects.toThrow();
  });
});
