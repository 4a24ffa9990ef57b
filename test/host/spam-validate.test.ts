// The rendered spam engine configuration as the real Debian tools read it: spamassassin --lint and
// rspamadm configtest/configdump, each on a temp copy of the packaged /etc tree with our files overlaid.
import { spawnSync } from "node:child_process";
import { cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { spamFiles } from "../../infra/render/spam";
import { nodeMatrix } from "../fixtures/nodes";
import { makeTempRoot } from "../helpers/render-to-dir";

const temps: (() => void)[] = [];
afterAll(() => temps.forEach((remove) => remove()));

function fileContent(node: (typeof nodeMatrix)[number]["node"], path: string): string {
  const file = spamFiles(node).find((f) => f.path === path);
  if (!file) throw new Error(`${path} not rendered`);
  return file.content;
}

function spamassassinLint(siteDir: string): { status: number | null; output: string } {
  const run = spawnSync("spamassassin", ["--lint", `--siteconfigpath=${siteDir}`], { encoding: "utf8" });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

function rspamadm(confDir: string, args: string[]): { status: number | null; output: string } {
  const run = spawnSync(
    "rspamadm",
    [`--var=CONFDIR=${confDir}`, `--var=LOCAL_CONFDIR=${confDir}`, ...args, "-c", join(confDir, "rspamd.conf")],
    { encoding: "utf8" },
  );
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("SpamAssassin local.cf", () => {
  const saNodes = nodeMatrix.filter(({ node }) => node.spam.engine === "spamassassin");

  it.each(saNodes)("$name: passes spamassassin --lint", ({ node }) => {
    const { root, remove } = makeTempRoot("bc-sa");
    temps.push(remove);
    cpSync("/etc/spamassassin", root, { recursive: true });
    writeFileSync(join(root, "local.cf"), fileContent(node, "/etc/spamassassin/local.cf"));
    const lint = spamassassinLint(root);
    expect(lint.output).toBe("");
    expect(lint.status).toBe(0);
  });

  it("the lint run would catch a bad directive (so the pass above means something)", () => {
    const { root, remove } = makeTempRoot("bc-sa-bad");
    temps.push(remove);
    cpSync("/etc/spamassassin", root, { recursive: true });
    writeFileSync(join(root, "local.cf"), "required_score five\n");
    expect(spamassassinLint(root).status).not.toBe(0);
  });
});

describe("Rspamd local.d", () => {
  const rspamdNodes = nodeMatrix.filter(({ node }) => node.spam.engine === "rspamd");

  it.each(rspamdNodes)("$name: rspamadm configtest accepts it and the effective config has our values", ({ node }) => {
    const { root, remove } = makeTempRoot("bc-rspamd");
    temps.push(remove);
    cpSync("/etc/rspamd", root, { recursive: true });
    for (const file of spamFiles(node)) {
      writeFileSync(join(root, file.path.replace(/^\/etc\/rspamd\//, "")), file.content);
    }
    const test = rspamadm(root, ["configtest"]);
    expect(test.output).toContain("syntax OK");
    expect(test.status).toBe(0);

    const actions = rspamadm(root, ["configdump", "actions"]).output;
    expect(actions).toMatch(/reject = 10;/);
    expect(actions).toMatch(/add_header = 5;/);
    expect(actions).not.toMatch(/greylist = \d/);

    const workers = rspamadm(root, ["configdump", "worker"]).output;
    for (const port of [11332, 11333, 11334]) expect(workers).toContain(`"127.0.0.1:${port}"`);
    expect(workers).not.toMatch(/"(localhost|\*):1133[2-4]"/);
  });

  it("configtest would catch broken syntax in local.d", () => {
    const { root, remove } = makeTempRoot("bc-rspamd-bad");
    temps.push(remove);
    cpSync("/etc/rspamd", root, { recursive: true });
    writeFileSync(join(root, "local.d", "worker-proxy.inc"), "{{{\n");
    expect(rspamadm(root, ["configtest"]).status).not.toBe(0);
  });
});
