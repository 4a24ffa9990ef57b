import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InboundProcessor, type InboundLogger } from "../../runtime/src/inbound/inbound-processor";
import { SinkError, type Handoff, type Sink } from "../../runtime/src/inbound/sink";
import { ContentAddressedStore, objectPath, readStoreIndex } from "../../runtime/src/store/content-addressed-store";
import { dropMessage, dropMessageText, waitUntil } from "../helpers/inbound-drop";
import { inboundTestOptions, makeInboundSpool, startInboundProcessor } from "../helpers/inbound-daemon";

let dir: string;
let dropDir: string;
let errorDir: string;
let storeDir: string;
const warnings: string[] = [];
const logger: InboundLogger = { info: () => undefined, warn: (m) => warnings.push(m), error: () => undefined };
const running: (() => Promise<void> | void)[] = [];

beforeEach(() => {
  ({ dir, dropDir, errorDir, storeDir } = makeInboundSpool("bc-inbound-"));
  warnings.length = 0;
});
afterEach(async () => {
  for (const stop of running.splice(0)) await stop();
  rmSync(dir, { recursive: true, force: true });
});

async function startProcessor(
  sink: Sink,
  engine: "none" | "spamassassin" = "none",
  trackedNamesLimit?: number,
): Promise<InboundProcessor> {
  return startInboundProcessor(
    { ...inboundTestOptions({ dropDir, errorDir }, sink, logger), spamEngine: engine, trackedNamesLimit },
    running,
  );
}

const newIsEmpty = () => readdirSync(join(dropDir, "new")).length === 0;

describe("InboundProcessor with the embedded store", () => {
  it("processes what is already in new/ and what arrives later, moving each to cur/", async () => {
    dropMessage(dropDir, "1.early", dropMessageText({ recipient: "alice@brightchain.org", subject: "early" }));
    await startProcessor(await ContentAddressedStore.open(storeDir));
    dropMessage(dropDir, "2.late", dropMessageText({ recipient: "Bob@BrightChain.org", subject: "late" }));
    await waitUntil("both messages in cur/", () => readdirSync(join(dropDir, "cur")).length === 2);

    expect(readdirSync(join(dropDir, "cur")).sort()).toEqual(["1.early:2,", "2.late:2,"]);
    const index = await readStoreIndex(storeDir);
    expect(index.map((e) => [e.recipient, e.subject, e.folder]).sort()).toEqual([
      ["alice@brightchain.org", "early", "inbox"],
      ["bob@brightchain.org", "late", "inbox"],
    ]);
  });

  it("stores a small message (read whole) and one over 1 MiB (streamed, copied) byte for byte under their SHA3-512", async () => {
    const small = dropMessageText({ recipient: "alice@brightchain.org", subject: "small" });
    const large = dropMessageText({
      recipient: "alice@brightchain.org",
      subject: "large",
      body: "0123456789abcdef\r\n".repeat(131_072),
    });
    dropMessage(dropDir, "small", small);
    dropMessage(dropDir, "large", large);
    await startProcessor(await ContentAddressedStore.open(storeDir));
    await waitUntil("both messages in cur/", newIsEmpty);

    const index = await readStoreIndex(storeDir);
    expect(index.map((e) => e.subject).sort()).toEqual(["large", "small"]);
    for (const text of [small, large]) {
      const sha3 = createHash("sha3-512").update(text).digest("hex");
      expect(index.find((e) => e.sha3 === sha3)?.size).toBe(Buffer.byteLength(text));
      expect(readFileSync(objectPath(storeDir, sha3), "utf8")).toBe(text);
    }
    expect(Buffer.byteLength(large)).toBeGreaterThan(1024 * 1024);
    expect(readdirSync(join(storeDir, "tmp"))).toEqual([]);
  });

  it("files by the SpamAssassin score and warns about an unscanned message", async () => {
    dropMessage(
      dropDir,
      "s",
      dropMessageText({
        recipient: "a@brightchain.org",
        subject: "s",
        extraHeaders: ["X-Spam-Status: Yes, score=7.2 required=5.0 tests=X"],
      }),
    );
    dropMessage(dropDir, "u", dropMessageText({ recipient: "a@brightchain.org", subject: "u" }));
    await startProcessor(await ContentAddressedStore.open(storeDir), "spamassassin");
    await waitUntil("new/ empty", newIsEmpty);
    await waitUntil("two index lines", async () => (await readStoreIndex(storeDir)).length === 2);

    const index = await readStoreIndex(storeDir);
    expect(index.find((e) => e.subject === "s")).toMatchObject({ folder: "spam", spamScore: 7.2 });
    expect(index.find((e) => e.subject === "u")).toMatchObject({ folder: "inbox" });
    expect(warnings.some((w) => w.startsWith("u: no spamassassin score header"))).toBe(true);
  });

  it("moves a message without Delivered-To and an empty file to the error dir, reason beside them", async () => {
    dropMessage(dropDir, "no-rcpt", dropMessageText({ subject: "x" }));
    dropMessage(dropDir, "empty", "");
    // 300 KiB of header lines and no blank line, in a file small enough to be read whole.
    dropMessage(dropDir, "endless", `Delivered-To: a@brightchain.org\r\n${"X-Filler: y\r\n".repeat(25_000)}`);
    await startProcessor(await ContentAddressedStore.open(storeDir));
    await waitUntil("new/ empty", newIsEmpty);

    expect(readdirSync(errorDir).sort()).toEqual([
      "empty",
      "empty.reason",
      "endless",
      "endless.reason",
      "no-rcpt",
      "no-rcpt.reason",
    ]);
    expect(readFileSync(join(errorDir, "no-rcpt.reason"), "utf8")).toContain("no Delivered-To header");
    expect(readFileSync(join(errorDir, "empty.reason"), "utf8")).toContain("the file is empty");
    expect(readFileSync(join(errorDir, "endless.reason"), "utf8")).toContain("no end of the header section within the first");
    expect(await readStoreIndex(storeDir)).toEqual([]);
  });

  it("retries a temporary sink failure without holding up other messages, and delivers once", async () => {
    const delivered: string[] = [];
    let refusals = 3;
    const flakySink: Sink = {
      async deliver(h: Handoff) {
        // Down until the other message got through (proving it was not held up), then for 3 more attempts.
        if (h.subject === "flaky" && (!delivered.includes("steady") || refusals-- > 0)) throw new SinkError("node down", false);
        delivered.push(h.subject ?? "");
      },
      async close() {},
    };
    dropMessage(dropDir, "a", dropMessageText({ recipient: "a@brightchain.org", subject: "flaky" }));
    dropMessage(dropDir, "b", dropMessageText({ recipient: "a@brightchain.org", subject: "steady" }));
    const processor = await startProcessor(flakySink);
    await waitUntil("new/ empty", newIsEmpty);

    expect(delivered).toEqual(["steady", "flaky"]);
    expect(processor.counts).toMatchObject({ delivered: 2, failed: 0 });
    expect(processor.counts.retried).toBeGreaterThanOrEqual(4);
  });

  it("moves a message the sink refuses permanently to the error dir", async () => {
    const refusing: Sink = {
      async deliver() {
        throw new SinkError("node answered 422: mailbox closed", true);
      },
      async close() {},
    };
    dropMessage(dropDir, "r", dropMessageText({ recipient: "a@brightchain.org" }));
    await startProcessor(refusing);
    await waitUntil("new/ empty", newIsEmpty);
    expect(readFileSync(join(errorDir, "r.reason"), "utf8")).toBe("node answered 422: mailbox closed\n");
    expect(existsSync(join(errorDir, "r"))).toBe(true);
  });

  it("holds a bounded number of a backlog's files while the node is down, and delivers all of them once it is back", async () => {
    let nodeUp = false;
    const attempted = new Set<string>();
    const delivered: string[] = [];
    const sink: Sink = {
      async deliver(h: Handoff) {
        attempted.add(h.subject ?? "");
        if (!nodeUp) throw new SinkError("node down", false);
        delivered.push(h.subject ?? "");
      },
      async close() {},
    };
    for (let i = 0; i < 50; i++)
      dropMessage(dropDir, `m${i}`, dropMessageText({ recipient: "a@brightchain.org", subject: `s${i}` }));
    const processor = await startProcessor(sink, "none", 10);
    await waitUntil("ten files retried twice", () => processor.counts.retried >= 20);

    // Ten files cycle through retries; the other forty wait in new/, untouched.
    expect(attempted.size).toBe(10);
    expect(readdirSync(join(dropDir, "new"))).toHaveLength(50);
    nodeUp = true;
    await waitUntil("new/ empty", newIsEmpty);
    expect(delivered.sort()).toEqual(Array.from({ length: 50 }, (_, i) => `s${i}`).sort());
    expect(readdirSync(join(dropDir, "cur"))).toHaveLength(50);
  });
});
