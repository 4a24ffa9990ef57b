// The socketmap service in-process, over real sockets (runtime/src/lookup/server.ts): how framing is chosen and
// enforced at its exact limits, the timers (idle, line idle, request deadline) that close or keep a connection,
// backpressure on a client that owes many answers, which connection the limit evicts, shutdown, and what is
// logged. test/unit/lookup-daemon.test.ts runs several of these against the daemon in a child process, where a
// mutation run cannot see them; test/unit/lookup-protocol.test.ts covers the ordinary answers.
import { connect, createServer, type Server } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { RecipientRegistry } from "../../runtime/src/lookup/registry";
import { RecipientLookupService, escapeForLog, type LookupServiceOptions } from "../../runtime/src/lookup/server";
import { SocketmapClient, netstring } from "../helpers/socketmap-client";

/** Knows every address starting with "known". */
const knownRegistry: RecipientRegistry = {
  find: (address) => (address.startsWith("known") ? address : undefined),
  close: () => undefined,
};

/** A registry whose answers wait until released; `asked` lists the addresses in the order asked. */
function heldRegistry(knows: (address: string) => boolean = () => true) {
  const waiting: (() => void)[] = [];
  const asked: string[] = [];
  const registry: RecipientRegistry = {
    find: (address) => {
      asked.push(address);
      return new Promise((resolve) => waiting.push(() => resolve(knows(address) ? address : undefined)));
    },
    close: () => undefined,
  };
  return { registry, asked, release: () => waiting.splice(0).forEach((answer) => answer()) };
}

/** A registry that answers each address after the delay `delayOf` gives it. */
function delayedRegistry(delayOf: (address: string) => number): RecipientRegistry {
  return {
    find: (address) => new Promise((resolve) => setTimeout(() => resolve(address), delayOf(address)).unref()),
    close: () => undefined,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const services: RecipientLookupService[] = [];
const clients: SocketmapClient[] = [];
const blockers: Server[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of clients.splice(0)) c.destroy();
  await Promise.all(services.splice(0).map((s) => s.close()));
  for (const b of blockers.splice(0)) b.close();
});

async function serve(
  options: Partial<LookupServiceOptions> = {},
): Promise<{ port: number; service: RecipientLookupService; logged: string[] }> {
  const logged: string[] = [];
  const service = new RecipientLookupService({
    registry: knownRegistry,
    domains: ["brightchain.org"],
    port: 0,
    lookupTimeoutMs: 5_000,
    log: (line) => logged.push(line),
    ...options,
  });
  services.push(service);
  return { port: await service.listen(), service, logged };
}

function client(port: number, options?: ConstructorParameters<typeof SocketmapClient>[1]): SocketmapClient {
  const c = new SocketmapClient(port, options);
  clients.push(c);
  return c;
}

const closedLine = (reason: string) =>
  new RegExp(`^closed 127\\.0\\.0\\.1:\\d+: ${reason.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);

describe("escapeForLog", () => {
  it("escapes C0, DEL, C1 and the Unicode line separators, and nothing else", () => {
    expect(escapeForLog("a\nb\x7fc\u0085d\u2028e\u2029f")).toBe("a\\x0ab\\x7fc\\x85d\\u2028e\\u2029f");
    expect(escapeForLog("alice@brightchain.org é ÿ €")).toBe("alice@brightchain.org é ÿ €");
  });
});

describe("framing", () => {
  it("takes a first byte 0 or 9 as the start of a netstring", async () => {
    const { port } = await serve();
    const zero = client(port);
    await zero.write("0:,");
    expect(await zero.replies(1)).toEqual(['PERM request is not "<map name> <key>"']);
    const nine = client(port);
    await nine.write("9:virtual x,");
    expect(await nine.replies(1)).toEqual(["NOTFOUND "]);
  });

  it("serves a line probe that starts with blank lines, ignores blank lines and trims each line", async () => {
    const { port } = await serve();
    const c = client(port);
    await c.write("\n   \r\n  virtual known@brightchain.org \r\n\nvirtual nobody@brightchain.org\n");
    await c.until(() => c.text().split("\n").length >= 3);
    expect(c.text()).toBe("OK known@brightchain.org\nNOTFOUND\n");
  });

  it("strips only the CR that ends a probe line, not one inside its key", async () => {
    const { port } = await serve();
    const c = client(port);
    await c.write("virtual kn\rown@brightchain.org\r\nvirtual known@brightchain.org\r\n");
    await c.until(() => c.text().split("\n").length >= 3);
    expect(c.text()).toBe("NOTFOUND\nOK known@brightchain.org\n");
  });

  it("keeps a connection netstring once it started so: a line after a netstring breaks it", async () => {
    const { port, logged } = await serve();
    const c = client(port);
    await c.write(netstring("virtual known@brightchain.org"));
    expect(await c.replies(1)).toEqual(["OK known@brightchain.org"]);
    await c.write("virtual known@brightchain.org\n");
    await c.until(() => c.closed);
    expect(c.netstrings()).toEqual(["OK known@brightchain.org"]);
    expect(logged).toEqual([expect.stringMatching(closedLine("byte 0x76 where a netstring length digit belongs"))]);
  });

  it("closes a netstring connection on a control byte where a length belongs, naming it in two hex digits", async () => {
    const { port, logged } = await serve();
    const c = client(port);
    await c.write(Buffer.concat([netstring("virtual known@brightchain.org"), Buffer.from("\n")]));
    await c.until(() => c.closed);
    expect(c.netstrings()).toEqual(["OK known@brightchain.org"]);
    expect(logged).toEqual([expect.stringMatching(closedLine("byte 0x0a where a netstring length digit belongs"))]);
  });

  it("closes a netstring connection whose length is not followed by a colon", async () => {
    const { port, logged } = await serve();
    const c = client(port);
    await c.write("12x");
    await c.until(() => c.closed);
    expect(logged).toEqual([expect.stringMatching(closedLine('byte 0x78 where the ":" after a netstring length belongs'))]);
  });

  it("accepts a netstring of exactly maxRequestBytes and refuses one byte more before its payload arrives", async () => {
    const { port, logged } = await serve({ maxRequestBytes: 1024 });
    const key = `virtual known@brightchain.org${" ".repeat(1024 - "virtual known@brightchain.org".length)}`;
    const exact = client(port);
    await exact.write(netstring(key));
    expect(await exact.replies(1)).toEqual(["OK known@brightchain.org"]);
    const over = client(port);
    await over.write("1025:");
    await over.until(() => over.closed);
    expect(logged).toEqual([expect.stringMatching(closedLine("netstring length over 1024 bytes"))]);
  });

  it("refuses a length of more digits than the limit has, even with leading zeros", async () => {
    const { port, logged } = await serve({ maxRequestBytes: 1024 });
    const c = client(port);
    await c.write("00001:");
    await c.until(() => c.closed);
    expect(logged).toEqual([expect.stringMatching(closedLine("netstring length over 1024 bytes"))]);
  });

  it("uses 4096 bytes as the default request limit", async () => {
    const { port, logged } = await serve();
    const key = `virtual known@brightchain.org${" ".repeat(4096 - "virtual known@brightchain.org".length)}`;
    const exact = client(port);
    await exact.write(netstring(key));
    expect(await exact.replies(1)).toEqual(["OK known@brightchain.org"]);
    const over = client(port);
    await over.write("4097:");
    await over.until(() => over.closed);
    expect(logged).toEqual([expect.stringMatching(closedLine("netstring length over 4096 bytes"))]);
  });

  it("keeps a line of exactly maxRequestBytes without its newline, and closes at one byte more", async () => {
    const { port, logged } = await serve({ maxRequestBytes: 1024, lineIdleTimeoutMs: 60_000 });
    const c = client(port);
    // After one answered line, a partial line of 1,000 bytes: what counts is the unterminated part alone.
    await c.write(`virtual known@brightchain.org\n${"x".repeat(1000)}`);
    await c.until(() => c.text() === "OK known@brightchain.org\n");
    expect(await c.stillOpenAfter(200)).toBe(true);
    await c.write("x".repeat(24));
    expect(await c.stillOpenAfter(200)).toBe(true);
    await c.write("x");
    await c.until(() => c.closed);
    expect(logged).toEqual([expect.stringMatching(closedLine("line longer than 1024 bytes without a newline"))]);
  });
});

describe("timers", () => {
  it("gives a netstring connection the long idle timeout and a line probe the short one", async () => {
    const { port } = await serve({ idleTimeoutMs: 60_000, lineIdleTimeoutMs: 150 });
    const postfix = client(port);
    await postfix.write(netstring("virtual known@brightchain.org"));
    expect(await postfix.replies(1)).toHaveLength(1);
    expect(await postfix.stillOpenAfter(600)).toBe(true);
    await postfix.write(netstring("virtual known@brightchain.org"));
    expect(await postfix.replies(2)).toHaveLength(2);

    const person = client(port);
    await person.write("virtual known@brightchain.org\n");
    await person.until(() => person.closed, 3_000);
    expect(person.text()).toBe("OK known@brightchain.org\n");
  });

  it("does not close an idle connection while an answer is owed on it", async () => {
    const { port } = await serve({ idleTimeoutMs: 150, registry: delayedRegistry(() => 700) });
    const c = client(port);
    await c.write(netstring("virtual known@brightchain.org"));
    expect(await c.replies(1)).toEqual(["OK known@brightchain.org"]);
  });

  it("keeps a connection whose requests completed, however long it then stays quiet", async () => {
    const { port } = await serve({ requestDeadlineMs: 200, idleTimeoutMs: 60_000 });
    const c = client(port);
    const request = netstring("virtual known@brightchain.org");
    await c.write(request.subarray(0, 7));
    await sleep(50);
    await c.write(request.subarray(7));
    expect(await c.replies(1)).toHaveLength(1);
    expect(await c.stillOpenAfter(700)).toBe(true);
    await c.write(request);
    expect(await c.replies(2)).toHaveLength(2);
  });

  it("restarts the request deadline when a segment completes one request and starts the next", async () => {
    const { port, logged } = await serve({ requestDeadlineMs: 1_000, idleTimeoutMs: 60_000 });
    const c = client(port);
    const request = netstring("virtual known@brightchain.org");
    await c.write(request.subarray(0, 10));
    await sleep(600);
    await c.write(Buffer.concat([request.subarray(10), request.subarray(0, 10)]));
    await sleep(600);
    await c.write(request.subarray(10));
    expect(await c.replies(2)).toEqual(["OK known@brightchain.org", "OK known@brightchain.org"]);
    expect(c.closed).toBe(false);
    expect(logged).toEqual([]);
  });

  it("does not hold the registry's slowness against a client: the deadline waits while an answer is owed", async () => {
    const { port, logged } = await serve({
      requestDeadlineMs: 400,
      idleTimeoutMs: 60_000,
      registry: delayedRegistry((address) => (address.startsWith("slow") ? 1_500 : 0)),
    });
    const c = client(port);
    const second = netstring("virtual known@brightchain.org");
    await c.write(Buffer.concat([netstring("virtual slow@brightchain.org"), second.subarray(0, 10)]));
    await sleep(1_000);
    await c.write(second.subarray(10));
    expect(await c.replies(2)).toEqual(["OK slow@brightchain.org", "OK known@brightchain.org"]);
    expect(c.closed).toBe(false);
    expect(logged).toEqual([]);
  });

  it("logs a dripped request's DEL, quote, backslash and high bytes escaped", async () => {
    const { port, logged } = await serve({ requestDeadlineMs: 200, idleTimeoutMs: 60_000 });
    const c = client(port);
    await c.write(Buffer.from([0x39, 0x3a, 0x61, 0x22, 0x5c, 0x7f, 0x7e, 0x20, 0xff]));
    await c.until(() => c.closed);
    expect(logged).toEqual([
      expect.stringMatching(closedLine('request not complete 200 ms after its first byte (starts "9:a\\"\\\\\\x7f~ \\xff")')),
    ]);
  });
});

describe("answers", () => {
  it("answers PERM naming the request's form when the space comes first", async () => {
    const { service } = await serve();
    expect(service.answer(" known@brightchain.org")).toEqual({ status: "PERM", reason: 'request is not "<map name> <key>"' });
    expect(service.answer("virtual")).toEqual({ status: "PERM", reason: 'request is not "<map name> <key>"' });
  });

  it("answers PERM for a map name that only starts like a served one, naming the first 64 bytes and every map", async () => {
    const { service } = await serve({ mapNames: ["virtual", "aliases"] });
    expect(service.answer("virtualx known@brightchain.org")).toEqual({
      status: "PERM",
      reason: 'unknown map name "virtualx"; this service answers virtual, aliases',
    });
    expect(service.answer(`${"m".repeat(100)} known@brightchain.org`)).toEqual({
      status: "PERM",
      reason: `unknown map name "${"m".repeat(64)}"; this service answers virtual, aliases`,
    });
    expect(service.answer("aliases known@brightchain.org")).toEqual({ status: "OK", value: "known@brightchain.org" });
  });

  it("answers NOTFOUND when neither a +tag key nor its base address is a user, from a sync or an async registry", async () => {
    const exact: RecipientRegistry = {
      find: (address) => (address === "known@brightchain.org" ? address : undefined),
      close: () => undefined,
    };
    const { service } = await serve({ registry: exact });
    expect(service.answer("virtual nobody+tag@brightchain.org")).toEqual({ status: "NOTFOUND" });
    expect(service.answer("virtual known+tag@brightchain.org")).toEqual({ status: "OK", value: "known@brightchain.org" });
    const held = heldRegistry((address) => address === "known@brightchain.org");
    const { service: asyncService } = await serve({ registry: held.registry });
    const answers = [
      asyncService.answer("virtual nobody+tag@brightchain.org"),
      asyncService.answer("virtual known+tag@brightchain.org"),
    ];
    while (held.asked.length < 4) {
      held.release();
      await sleep(5);
    }
    held.release();
    expect(await Promise.all(answers)).toEqual([{ status: "NOTFOUND" }, { status: "OK", value: "known@brightchain.org" }]);
    expect(held.asked).toEqual([
      "nobody+tag@brightchain.org",
      "known+tag@brightchain.org",
      "nobody@brightchain.org",
      "known@brightchain.org",
    ]);
  });

  it("answers TEMP for a registry that throws something that is not an Error", async () => {
    const throwing = (value: unknown): RecipientRegistry => ({
      find: () => {
        throw value;
      },
      close: () => undefined,
    });
    const { service } = await serve({ registry: throwing(undefined) });
    expect(service.answer("virtual known@brightchain.org")).toEqual({
      status: "TEMP",
      reason: "recipient registry failed: undefined",
    });
    const { service: other } = await serve({ registry: throwing("disk\non fire") });
    expect(other.answer("virtual known@brightchain.org")).toEqual({
      status: "TEMP",
      reason: "recipient registry failed: disk\\x0aon fire",
    });
  });

  it("logs a failing registry at most once per 5 s", async () => {
    const failing: RecipientRegistry = {
      find: () => {
        throw new Error("down");
      },
      close: () => undefined,
    };
    const { service, logged } = await serve({ registry: failing });
    vi.useFakeTimers({ toFake: ["Date"] });
    const start = Date.now();
    for (let i = 0; i < 3; i++) service.answer("virtual known@brightchain.org");
    expect(logged).toEqual(["recipient registry failed: down"]);
    vi.setSystemTime(start + 5_000);
    service.answer("virtual known@brightchain.org");
    expect(logged).toHaveLength(1);
    vi.setSystemTime(start + 5_001);
    service.answer("virtual known@brightchain.org");
    expect(logged).toEqual(["recipient registry failed: down", "recipient registry failed: down"]);
  });

  it("writes answers in request order when a later one is known first", async () => {
    const { port } = await serve({ registry: delayedRegistry((address) => (address.startsWith("slow") ? 300 : 10)) });
    const c = client(port);
    await c.write(Buffer.concat(["slow", "quick1", "quick2"].map((u) => netstring(`virtual ${u}@brightchain.org`))));
    expect(await c.replies(3)).toEqual(["OK slow@brightchain.org", "OK quick1@brightchain.org", "OK quick2@brightchain.org"]);
  });
});

describe("backpressure", () => {
  it("stops reading a client that does not read its answers, and reads on once it does", async () => {
    // Long answers from a registry that answers at once: 100,000 of them (23 MB) overflow the sockets' buffers, so
    // the service must stop reading, then resume when its socket drains.
    const canonical = `known${"x".repeat(200)}@brightchain.org`;
    const longAnswers: RecipientRegistry = { find: () => canonical, close: () => undefined };
    const { port } = await serve({ registry: longAnswers });
    const count = 100_000;
    const reply = netstring(`OK ${canonical}`);
    const greedy = connect(port, "127.0.0.1");
    greedy.on("error", () => undefined);
    await new Promise((resolve) => greedy.once("connect", resolve));
    greedy.write(Buffer.concat(Array.from({ length: count }, () => netstring("virtual known@brightchain.org"))));
    // Nothing read for a while: the service fills the buffers and has to stop.
    await sleep(500);
    let received = 0;
    let last = Buffer.alloc(0);
    greedy.on("data", (chunk: Buffer) => {
      received += chunk.length;
      last = Buffer.concat([last, chunk]).subarray(-reply.length);
    });
    const deadline = Date.now() + 15_000;
    while (received < count * reply.length && Date.now() < deadline) await sleep(20);
    greedy.destroy();
    expect(received).toBe(count * reply.length);
    expect(last.equals(reply)).toBe(true);
  }, 30_000);

  it("stops reading a client once 256 answers are owed (the default), and reads on once they are written", async () => {
    const held = heldRegistry();
    const { port } = await serve({ registry: held.registry, lookupTimeoutMs: 60_000 });
    const c = client(port);
    const requests = (from: number, count: number) =>
      Buffer.concat(Array.from({ length: count }, (_, i) => netstring(`virtual user${from + i}@brightchain.org`)));
    await c.write(requests(0, 256));
    await c.until(() => held.asked.length === 256);
    await c.write(requests(256, 44));
    await sleep(300);
    expect(held.asked, "no request read past the 256th until answers are written").toHaveLength(256);
    while (c.netstrings().length < 300) {
      held.release();
      await sleep(20);
    }
    expect(held.asked).toHaveLength(300);
    expect(c.netstrings()).toEqual(Array.from({ length: 300 }, (_, i) => `OK user${i}@brightchain.org`));
  });

  it("holds at maxPipelined exactly", async () => {
    const held = heldRegistry();
    const { port } = await serve({ registry: held.registry, lookupTimeoutMs: 60_000, maxPipelined: 3 });
    const c = client(port);
    await c.write(Buffer.concat([1, 2, 3].map((i) => netstring(`virtual user${i}@brightchain.org`))));
    await c.until(() => held.asked.length === 3);
    await c.write(netstring("virtual user4@brightchain.org"));
    await sleep(300);
    expect(held.asked).toHaveLength(3);
    held.release();
    await c.until(() => held.asked.length === 4);
    held.release();
    expect(await c.replies(4)).toHaveLength(4);
  });
});

describe("connections", () => {
  it("forgets closed connections, and survives a peer that resets with an answer owed", async () => {
    const held = heldRegistry();
    const { port, service } = await serve({ registry: held.registry, lookupTimeoutMs: 60_000 });
    const resetting = client(port);
    await resetting.write(netstring("virtual known@brightchain.org"));
    await resetting.until(() => held.asked.length === 1);
    resetting.socket.resetAndDestroy();
    await resetting.until(() => resetting.closed);
    await sleep(100);
    held.release();
    const others = [client(port), client(port)];
    for (const c of others) await c.write(netstring("virtual known@brightchain.org"));
    await sleep(50);
    held.release();
    for (const c of others) expect(await c.replies(1)).toEqual(["OK known@brightchain.org"]);
    expect(service.openConnections).toBe(2);
    for (const c of others) c.destroy();
    await others[0]!.until(() => service.openConnections === 0);
  });

  const connectAll = async (...cs: SocketmapClient[]) => {
    for (const c of cs) await c.ready;
  };
  const ask = async (c: SocketmapClient, n: number) => {
    await c.write(netstring("virtual known@brightchain.org"));
    await c.replies(n);
  };

  it("at the limit, evicts from the peer with the most open connections, counting only those still open", async () => {
    const { port, service, logged } = await serve({ maxConnections: 3 });
    const a1 = client(port, { localAddress: "127.0.0.2" });
    const a2 = client(port, { localAddress: "127.0.0.2" });
    await connectAll(a1, a2);
    a2.destroy();
    await a1.until(() => service.openConnections === 1);
    const b1 = client(port);
    const b2 = client(port);
    await connectAll(b1, b2);
    await a1.until(() => service.openConnections === 3);
    // a1 is idle the longest, but 127.0.0.1 holds two connections and 127.0.0.2 one.
    await ask(b1, 1);
    await ask(b2, 1);
    const c = client(port, { localAddress: "127.0.0.3" });
    await b1.until(() => b1.closed);
    expect(await a1.stillOpenAfter(100)).toBe(true);
    expect(b2.closed).toBe(false);
    await ask(c, 1);
    expect(logged).toEqual([
      "at the connection limit (3): closed the longest-idle connection of 127.0.0.1 for one from 127.0.0.3",
    ]);
  });

  it("at the limit, spares a peer's only connection although it is idle the longest", async () => {
    const { port, service } = await serve({ maxConnections: 3 });
    const b1 = client(port);
    const b2 = client(port);
    await connectAll(b1, b2);
    const a1 = client(port, { localAddress: "127.0.0.2" });
    await connectAll(a1);
    await b1.until(() => service.openConnections === 3);
    await ask(b1, 1);
    await ask(b2, 1);
    client(port, { localAddress: "127.0.0.3" });
    await b1.until(() => b1.closed);
    expect(await a1.stillOpenAfter(100)).toBe(true);
    expect(b2.closed).toBe(false);
  });

  it("at the limit, a peer's closed connections do not hide those it still holds", async () => {
    const { port, service } = await serve({ maxConnections: 4 });
    const b1 = client(port);
    await connectAll(b1);
    const a1 = client(port, { localAddress: "127.0.0.2" });
    const a2 = client(port, { localAddress: "127.0.0.2" });
    const a3 = client(port, { localAddress: "127.0.0.2" });
    await connectAll(a1, a2, a3);
    await b1.until(() => service.openConnections === 4);
    a3.destroy();
    await b1.until(() => service.openConnections === 3);
    const c1 = client(port, { localAddress: "127.0.0.3" });
    await connectAll(c1);
    await b1.until(() => service.openConnections === 4);
    client(port, { localAddress: "127.0.0.4" });
    // 127.0.0.2 still holds two: its longest-idle goes, not the only connection of 127.0.0.1 (older still).
    await a1.until(() => a1.closed);
    expect(await b1.stillOpenAfter(100)).toBe(true);
    expect(a2.closed).toBe(false);
    expect(c1.closed).toBe(false);
  });

  it("logs a refusal at the limit naming the limit and the peer", async () => {
    const held = heldRegistry();
    const { port, logged } = await serve({ maxConnections: 1, registry: held.registry, lookupTimeoutMs: 60_000 });
    const busy = client(port);
    await busy.write(netstring("virtual known@brightchain.org"));
    await busy.until(() => held.asked.length === 1);
    const refused = client(port, { localAddress: "127.0.0.4" });
    await refused.until(() => refused.closed);
    held.release();
    expect(await busy.replies(1)).toEqual(["OK known@brightchain.org"]);
    expect(logged).toEqual(["at the connection limit (1), every connection awaiting an answer: refused one from 127.0.0.4"]);
  });

  it("rejects listen() when the port is taken", async () => {
    const blocker = createServer();
    blockers.push(blocker);
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const taken = (blocker.address() as { port: number }).port;
    const service = new RecipientLookupService({
      registry: knownRegistry,
      domains: ["brightchain.org"],
      port: taken,
      lookupTimeoutMs: 500,
    });
    await expect(service.listen()).rejects.toMatchObject({ code: "EADDRINUSE" });
    const { port, service: listening } = await serve();
    expect(listening.port).toBe(port);
  });
});

describe("shutdown", () => {
  it("ends idle connections at once, even one whose client never closes its side", async () => {
    const { port, service } = await serve({ shutdownGraceMs: 10_000 });
    const postfix = client(port, { allowHalfOpen: true });
    await postfix.write(netstring("virtual known@brightchain.org"));
    expect(await postfix.replies(1)).toHaveLength(1);
    const idle = client(port);
    await idle.ready;
    const started = Date.now();
    services.splice(services.indexOf(service), 1);
    await service.close();
    expect(Date.now() - started).toBeLessThan(2_000);
    await postfix.until(() => postfix.ended);
    await idle.until(() => idle.closed);
  });

  it("drops a connection still owed an answer once the grace time is over", async () => {
    const held = heldRegistry();
    const { port, service } = await serve({ registry: held.registry, lookupTimeoutMs: 60_000, shutdownGraceMs: 200 });
    const c = client(port);
    await c.write(netstring("virtual known@brightchain.org"));
    await c.until(() => held.asked.length === 1);
    const started = Date.now();
    services.splice(services.indexOf(service), 1);
    await service.close();
    expect(Date.now() - started).toBeLessThan(3_000);
    await c.until(() => c.closed);
    expect(c.netstrings()).toEqual([]);
    held.release();
  });
});
