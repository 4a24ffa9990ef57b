// The built brightchain-inbound daemon on real files: kill -9 in the middle of a batch, restart, count.
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { INBOUND_NODE_OPTIONS } from "../../infra/render/systemd";
import { objectPath, readStoreIndex } from "../../runtime/src/store/content-addressed-store";
import { type InboundDaemon, killChildren, makeInboundSpool, spawnInboundDaemon } from "../helpers/inbound-daemon";
import { dropMessage, dropMessageText, waitUntil } from "../helpers/inbound-drop";
import { StandInNode } from "../helpers/node-api-stand-in";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

let buildDir: string;
let daemonPath: string;
let dir: string;
let dropDir: string;
let errorDir: string;
let storeDir: string;
const children: ChildProcess[] = [];
const nodes: StandInNode[] = [];

beforeAll(async () => {
  buildDir = mkdtempSync(join(tmpdir(), "bc-inbound-build-"));
  daemonPath = await bundleRuntimeEntry("brightchain-inbound", buildDir);
});
afterAll(() => rmSync(buildDir, { recursive: true, force: true }));

beforeEach(() => {
  ({ dir, dropDir, errorDir, storeDir } = makeInboundSpool("bc-inbound-host-"));
});
afterEach(async () => {
  await killChildren(children);
  for (const node of nodes.splice(0)) await node.close();
  rmSync(dir, { recursive: true, force: true });
});

function startDaemon(extraEnv: Record<string, string> = {}, nodeOptions: string[] = []): InboundDaemon {
  const daemon = spawnInboundDaemon(
    daemonPath,
    { dropDir, errorDir, storeDir },
    { GATEWAY_INBOUND_CONCURRENCY: "4", ...extraEnv },
    { nodeOptions },
  );
  children.push(daemon.child);
  return daemon;
}

function indexLineCount(): number {
  const path = join(storeDir, "index.jsonl");
  if (!existsSync(path)) return 0;
  return readFileSync(path).reduce((n, byte) => (byte === 0x0a ? n + 1 : n), 0);
}

const newIsEmpty = () => readdirSync(join(dropDir, "new")).length === 0;

describe("brightchain-inbound (built daemon, embedded store)", () => {
  it("kill -9 in the middle of 1,000 messages, restart: 0 lost, 0 duplicated, all in cur/", async () => {
    const expected = new Set<string>();
    const sha3ByName = new Map<string, string>();
    const filler = "x".repeat(200);
    for (let i = 0; i < 1000; i++) {
      // Sizes vary so the copy, not just the bookkeeping, is in flight when the kill lands.
      const body = `message ${i}\r\n${filler.repeat(1 + (i % 40))}`;
      const text = dropMessageText({ recipient: `user${i % 50}@brightchain.org`, subject: `m${i}`, body });
      const name = `1764000000.M${i}P1.gateway`;
      dropMessage(dropDir, name, text);
      const sha3 = createHash("sha3-512").update(text).digest("hex");
      sha3ByName.set(name, sha3);
      expected.add(`${sha3} user${i % 50}@brightchain.org`);
    }

    // The window this test is for: a message already in the store (its object placed, its index line perhaps
    // durable) whose drop file is still in new/, so the restart hands it off again and only the store's
    // idempotence keeps it single. A kill lands there most of the time, not always: each kill that missed it
    // is followed by another, later in the batch, until one is seen inside it.
    const inStoreStillInNew = () =>
      readdirSync(join(dropDir, "new")).filter((name) => existsSync(objectPath(storeDir, sha3ByName.get(name)!)));
    let inWindow: string[] = [];
    let atKill = 0;
    let leftInNew = 0;
    let kills = 0;
    while (inWindow.length === 0) {
      expect(kills, "5 kills, none with a message in the store and still in new/").toBeLessThan(5);
      const target = 300 + 100 * kills;
      const daemon = startDaemon();
      await waitUntil(`${target} index lines`, () => indexLineCount() >= target, 60_000, 2);
      daemon.child.kill("SIGKILL");
      await daemon.exited;
      kills += 1;
      atKill = indexLineCount();
      leftInNew = readdirSync(join(dropDir, "new")).length;
      expect(leftInNew, "the kill landed before the batch finished").toBeGreaterThan(0);
      inWindow = inStoreStillInNew();
    }

    const second = startDaemon();
    await waitUntil("new/ empty after restart", newIsEmpty, 60_000);
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);

    const index = await readStoreIndex(storeDir);
    const keys = index.map((e) => `${e.sha3} ${e.recipient}`);
    expect(new Set(keys).size, "duplicated hand-offs").toBe(keys.length);
    expect(new Set(keys)).toEqual(expected);
    expect(readdirSync(join(dropDir, "cur"))).toHaveLength(1000);
    expect(readdirSync(join(storeDir, "tmp"))).toEqual([]);
    for (const entry of index.slice(0, 20)) {
      const object = join(storeDir, "objects", entry.sha3.slice(0, 2), entry.sha3.slice(2));
      expect(createHash("sha3-512").update(readFileSync(object)).digest("hex")).toBe(entry.sha3);
    }
    console.log(
      `kill -9 #${kills} after ${atKill} index lines with ${leftInNew} files still in new/, ${inWindow.length} of them ` +
        `already in the store; after restart ${index.length} entries`,
    );
  });

  it("takes 64 messages with 250 KiB header sections at once within the unit's heap cap, and delivers them all", async () => {
    // Tens of thousands of header fields each: a processor that kept every field while the hand-off waited
    // ran out of V8 heap under --max-old-space-size=64 and crashed on the same files at every restart.
    const header = `Delivered-To: alice@brightchain.org\r\nSubject: wide\r\n${"a:b\r\n".repeat(50_000)}\r\n`;
    for (let i = 0; i < 64; i++) dropMessage(dropDir, `wide.${i}`, `${header}body ${i}\r\n`);
    const daemon = startDaemon({ GATEWAY_INBOUND_CONCURRENCY: "64" }, INBOUND_NODE_OPTIONS);
    await waitUntil("new/ empty", newIsEmpty, 120_000);

    expect(daemon.child.exitCode, daemon.stderr()).toBeNull();
    expect(await readStoreIndex(storeDir)).toHaveLength(64);
    expect(readdirSync(join(dropDir, "cur"))).toHaveLength(64);
  });

  it("moves an unparsable file and one without Delivered-To to the error dir with a reason", async () => {
    dropMessage(dropDir, "binary", Buffer.from([0, 1, 2, 3, 0xff, 0xfe]));
    dropMessage(dropDir, "no-rcpt", dropMessageText({ subject: "lost" }));
    dropMessage(dropDir, "good", dropMessageText({ recipient: "alice@brightchain.org" }));
    const daemon = startDaemon();
    await waitUntil("new/ empty", newIsEmpty);
    daemon.child.kill("SIGTERM");
    expect(await daemon.exited).toBe(0);

    expect(readdirSync(errorDir).sort()).toEqual(["binary", "binary.reason", "no-rcpt", "no-rcpt.reason"]);
    expect(readFileSync(join(errorDir, "binary.reason"), "utf8")).toMatch(/header/);
    expect(readFileSync(join(errorDir, "no-rcpt.reason"), "utf8")).toContain("no Delivered-To header");
    expect(statSync(join(errorDir, "no-rcpt.reason")).mode & 0o777).toBe(0o640);
    expect((await readStoreIndex(storeDir)).map((e) => e.recipient)).toEqual(["alice@brightchain.org"]);
  });

  it("retries the node API after a 503 and delivers once when it answers 200", async () => {
    // The stand-in holds the daemon's requests to docs/node-api.openapi.yaml.
    const node = await StandInNode.start(
      () => (node.requests.length === 1 ? { status: 503, body: "warming up" } : { status: 200, body: "stored" }),
      { basePath: "/api" },
    );
    nodes.push(node);

    const text = dropMessageText({ recipient: "Alice@BrightChain.org", subject: "via api" });
    dropMessage(dropDir, "api", text);
    const daemon = startDaemon({ GATEWAY_NODE_URL: `${node.url}/` });
    await waitUntil("new/ empty", newIsEmpty);
    daemon.child.kill("SIGTERM");
    expect(await daemon.exited).toBe(0);

    const sha3 = createHash("sha3-512").update(text).digest("hex");
    const url = `/api/messages/${sha3}?recipient=alice%40brightchain.org&folder=inbox`;
    expect(node.requests.map((request) => ({ url: request.url, bytes: request.body.length }))).toEqual([
      { url, bytes: Buffer.byteLength(text) },
      { url, bytes: Buffer.byteLength(text) },
    ]);
    expect(node.violations).toEqual([]);
    expect(daemon.stderr()).toContain("node answered 503: warming up");
    expect(readdirSync(join(dropDir, "cur"))).toEqual(["api:2,"]);
  });

  it("refuses to start on a bad variable, naming it, with exit 78", async () => {
    const daemon = startDaemon({ GATEWAY_SPAM_ENGINE: "spamd" });
    expect(await daemon.exited).toBe(78);
    expect(daemon.stderr()).toContain('GATEWAY_SPAM_ENGINE="spamd" is invalid; expected spamassassin, rspamd or none');
  });
});
