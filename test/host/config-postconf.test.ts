// The property test's other half: a sample of drawn configurations the schema accepts, rendered to main.cf and
// master.cf, pass the real `postconf -n` and `postconf -M` without a warning. The TLS certificate is the only
// change from the rendered files (a self-signed pair made here), as in postfix-validate.test.ts.
import { execFile } from "node:child_process";
import { rmSync } from "node:fs";
import { promisify } from "node:util";
import * as fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GatewayConfigError } from "../../infra/model/config";
import type { GatewayNode } from "../../infra/model/types";
import { renderMainCf, renderMasterCf } from "../../infra/render/postfix";
import { flatten, parse, stackConfig } from "../helpers/config-arbitrary";
import { preparePostfix } from "../helpers/postfix-server";
import { createSelfSignedCert, scratchDir } from "../helpers/postfix-tools";

const execFileAsync = promisify(execFile);

/** A fresh sample each run, as the unit property test draws; the failing node is printed whole. */
const accepted: GatewayNode[] = fc
  .sample(stackConfig, 200)
  .map((config) => parse(flatten(config), false))
  .flatMap((result) => (result instanceof GatewayConfigError ? [] : [result.node]))
  .slice(0, 12);

describe("drawn configurations the schema accepts pass postconf", () => {
  let certDir: string;
  let cert: { certFile: string; keyFile: string };
  beforeAll(async () => {
    certDir = scratchDir("config-postconf-cert-");
    cert = await createSelfSignedCert(certDir, "mail.brightchain.org");
  });
  afterAll(() => rmSync(certDir, { recursive: true, force: true }));

  it("the sample is not empty", () => {
    expect(accepted.length).toBeGreaterThan(0);
  });

  it.each(
    accepted.map((node, i) => ({
      name: `${i}: ${node.role} ${node.os.release} ${node.spam.engine} ${node.drop.transport}`,
      node,
    })),
  )("$name: postconf -n and -M print no warning", async ({ node }) => {
    const tested = { ...node, tls: { ...node.tls, ...cert } };
    const instance = await preparePostfix({ replaceMain: renderMainCf(tested), replaceMaster: renderMasterCf(tested) });
    try {
      const main = await execFileAsync("postconf", ["-c", instance.configDir, "-n"], { encoding: "utf8" });
      expect(main.stderr, JSON.stringify(node)).toBe("");
      const services = await execFileAsync("postconf", ["-c", instance.configDir, "-M"], { encoding: "utf8" });
      expect(services.stderr, JSON.stringify(node)).toBe("");
    } finally {
      await instance.stop();
    }
  });
});
