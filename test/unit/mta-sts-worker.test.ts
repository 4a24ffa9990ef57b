// The Worker that serves the MTA-STS policy, run as it is: its module source written to a file, imported, and its
// fetch handler called with Node's own Request (the same Fetch API the Workers runtime provides).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MTA_STS_POLICY_PATH, mtaStsPolicyHost, mtaStsPolicyText, mtaStsWorkerScript } from "../../infra/render/mta-sts";
import { examplePrimary } from "../fixtures/nodes";

interface ModuleWorker {
  fetch(request: Request): Promise<Response>;
}

const policy = mtaStsPolicyText(examplePrimary.fleet, { mode: "enforce", maxAgeSeconds: 604800 });
const origin = `https://${mtaStsPolicyHost("brightchain.org")}`;
const dir = mkdtempSync(join(tmpdir(), "mta-sts-worker-"));
let worker: ModuleWorker;

/** The script as Cloudflare receives it, loaded as an ES module (the file name's .mjs, as mainModule). */
async function loadWorker(source: string, name: string): Promise<ModuleWorker> {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(file, source);
  const module = (await import(/* @vite-ignore */ pathToFileURL(file).href)) as { default: ModuleWorker };
  return module.default;
}

beforeAll(async () => {
  worker = await loadWorker(mtaStsWorkerScript(policy), "policy");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("MTA-STS Worker", () => {
  it("serves the policy byte for byte at /.well-known/mta-sts.txt as text/plain", async () => {
    const response = await worker.fetch(new Request(`${origin}${MTA_STS_POLICY_PATH}`));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain");
    expect(await response.text()).toBe(policy);
    expect(policy).toBe("version: STSv1\nmode: enforce\nmx: mail.brightchain.org\nmx: mail2.brightchain.org\nmax_age: 604800\n");
  });

  it("answers a query string on the policy path too (senders may add none, proxies sometimes do)", async () => {
    const response = await worker.fetch(new Request(`${origin}${MTA_STS_POLICY_PATH}?x=1`));
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(policy);
  });

  it.each(["/", "/.well-known/mta-sts.txt/", "/.well-known/mta-sts.TXT", "/.well-known/", "/mta-sts.txt"])(
    "404 at %s",
    async (path) => {
      const response = await worker.fetch(new Request(`${origin}${path}`));
      expect(response.status).toBe(404);
      expect(await response.text()).not.toContain("STSv1");
    },
  );

  it("HEAD is answered like GET; other methods get 405 with Allow", async () => {
    expect((await worker.fetch(new Request(`${origin}${MTA_STS_POLICY_PATH}`, { method: "HEAD" }))).status).toBe(200);
    const post = await worker.fetch(new Request(`${origin}${MTA_STS_POLICY_PATH}`, { method: "POST", body: "x" }));
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  it("a policy holding quotes, backslashes or a script-ending sequence is still served exactly", async () => {
    const hostile = 'version: STSv1\nmode: testing\nmx: a"b\\c`${x}</script>\u2028\nmax_age: 86400\n';
    const served = await loadWorker(mtaStsWorkerScript(hostile), "hostile");
    expect(await (await served.fetch(new Request(`${origin}${MTA_STS_POLICY_PATH}`))).text()).toBe(hostile);
  });
});
