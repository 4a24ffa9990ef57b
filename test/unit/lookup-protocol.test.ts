// The socketmap server against raw sockets on an ephemeral port: what Postfix (and a person with nc) sees.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { FileRegistry, HttpRegistry, type RecipientRegistry } from "../../runtime/src/lookup/registry";
import { RecipientLookupService } from "../../runtime/src/lookup/server";
import { SocketmapClient, netstring } from "../helpers/socketmap-client";

const dir = mkdtempSync(join(tmpdir(), "lookup-protocol-"));
const registryFile = join(dir, "recipients");
const clients: SocketmapClient[] = [];
function client(port: number, localAddress?: string): SocketmapClient {
  const c = new SocketmapClient(port, { localAddress });
  clients.push(c);
  return c;
}
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
});

describe("socketmap server with the file registry", () => {
  let registry: FileRegistry;
  // Each test that edits the file sets these to hear the registry's own reload events.
  let onReload: (count: number) => void = () => undefined;
  let onReloadError: (error: Error) => void = () => undefined;
  let service: RecipientLookupService;
  let port: number;

  beforeAll(async () => {
    writeFileSync(
      registryFile,
      "# users synced by the node\nalice@brightchain.org\n\nBob@BrightChain.org  # mixed case in the file\ncarol@example.net\n",
    );
    registry = new FileRegistry(registryFile, { onReload: (n) => onReload(n), onReloadError: (e) => onReloadError(e) });
    service = new RecipientLookupService({
      registry,
      domains: ["brightchain.org", "example.net"],
      port: 0,
      lookupTimeoutMs: 500,
      maxRequestBytes: 1024,
    });
    port = await service.listen();
  });
  afterAll(async () => {
    await service.close();
    registry.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers OK with the canonical address, case-insensitively, and resolves +tag extensions", async () => {
    const c = client(port);
    await c.write(
      Buffer.concat(
        [
          "virtual alice@brightchain.org",
          "virtual ALICE@BrightChain.ORG",
          "virtual bob+lists@brightchain.org",
          "virtual carol@example.net",
        ].map(netstring),
      ),
    );
    expect(await c.replies(4)).toEqual([
      "OK alice@brightchain.org",
      "OK alice@brightchain.org",
      "OK bob@brightchain.org",
      "OK carol@example.net",
    ]);
  });

  it("answers NOTFOUND for unknown users, unserved domains and malformed keys", async () => {
    const c = client(port);
    const keys = [
      "nobody@brightchain.org",
      "alice@elsewhere.org",
      "alice",
      "@brightchain.org",
      "alice@@brightchain.org",
      "a b@brightchain.org",
      "+tag@brightchain.org",
      "",
    ];
    await c.write(Buffer.concat(keys.map((k) => netstring(`virtual ${k}`))));
    expect(await c.replies(keys.length)).toEqual(keys.map(() => "NOTFOUND "));
    expect(c.closed).toBe(false);
  });

  it("answers PERM for an unknown map name and a request without a key", async () => {
    const c = client(port);
    await c.write(Buffer.concat([netstring("aliases alice@brightchain.org"), netstring("virtual")]));
    const replies = await c.replies(2);
    expect(replies[0]).toMatch(/^PERM unknown map name "aliases"; this service answers virtual$/);
    expect(replies[1]).toMatch(/^PERM /);
  });

  it("answers pipelined requests in order, including many in one segment", async () => {
    const c = client(port);
    const keys = Array.from({ length: 500 }, (_, i) =>
      i % 3 === 0 ? "alice@brightchain.org" : i % 3 === 1 ? `x${i}@brightchain.org` : "carol@example.net",
    );
    await c.write(Buffer.concat(keys.map((k) => netstring(`virtual ${k}`))));
    const replies = await c.replies(keys.length);
    expect(replies).toEqual(keys.map((k) => (k.startsWith("x") ? "NOTFOUND " : `OK ${k}`)));
  });

  it("reassembles requests written one byte at a time", async () => {
    const c = client(port);
    const bytes = Buffer.concat([netstring("virtual alice@brightchain.org"), netstring("virtual zed@brightchain.org")]);
    await c.ready;
    for (const byte of bytes) await c.write(Buffer.from([byte]));
    expect(await c.replies(2)).toEqual(["OK alice@brightchain.org", "NOTFOUND "]);
  });

  it("closes only the connection with an oversized length prefix, before the payload arrives", async () => {
    const bystander = client(port);
    const attacker = client(port);
    await attacker.write("999999999:");
    await attacker.until(() => attacker.closed);
    await bystander.write(netstring("virtual alice@brightchain.org"));
    expect(await bystander.replies(1)).toEqual(["OK alice@brightchain.org"]);
  });

  it("closes a connection whose length prefix lies, after answering what came before", async () => {
    const c = client(port);
    await c.write(Buffer.concat([netstring("virtual alice@brightchain.org"), Buffer.from("5:virtual alice@brightchain.org,")]));
    await c.until(() => c.closed);
    expect(c.netstrings()).toEqual(["OK alice@brightchain.org"]);
  });

  it("closes a netstring connection that sends garbage instead of a length", async () => {
    const c = client(port);
    await c.write(Buffer.concat([netstring("virtual alice@brightchain.org"), Buffer.from("xx:virtual alice,")]));
    await c.until(() => c.closed);
    expect(c.netstrings()).toEqual(["OK alice@brightchain.org"]);
  });

  it("closes a line-probe connection that never sends a newline within the size cap", async () => {
    const c = client(port);
    await c.write("virtual " + "a".repeat(4000));
    await c.until(() => c.closed);
    expect(c.text()).toBe("");
  });

  it("serves the guide's line probe on the same port", async () => {
    const c = client(port);
    await c.write("virtual alice@brightchain.org\nvirtual nobody@brightchain.org\r\n");
    c.end();
    await c.until(() => c.closed);
    expect(c.text()).toBe("OK alice@brightchain.org\nNOTFOUND\n");
  });

  it("answers a final probe line that EOF ends instead of a newline", async () => {
    const c = client(port);
    await c.write("virtual bob@brightchain.org");
    c.end();
    await c.until(() => c.closed);
    expect(c.text()).toBe("OK bob@brightchain.org\n");
  });

  it("reloads the registry file on an atomic rename, and keeps the previous set when a line is bad", async () => {
    const reloaded = new Promise<number>((resolve) => (onReload = resolve));
    writeFileSync(join(dir, "recipients.new"), "alice@brightchain.org\ndave@brightchain.org\n");
    renameSync(join(dir, "recipients.new"), registryFile);
    expect(await reloaded).toBe(2);
    const c = client(port);
    await c.write(Buffer.concat([netstring("virtual dave@brightchain.org"), netstring("virtual bob@brightchain.org")]));
    expect(await c.replies(2)).toEqual(["OK dave@brightchain.org", "NOTFOUND "]);

    const refused = new Promise<Error>((resolve) => (onReloadError = resolve));
    writeFileSync(registryFile, "alice@brightchain.org\nerin@brightchain.org\nnot an address\n");
    expect((await refused).message).toBe(
      `${registryFile} line 3: "not an address" is not a recipient address; expected local@domain, one per line (# starts a comment)`,
    );
    expect(registry.find("dave@brightchain.org")).toBe("dave@brightchain.org");
    expect(registry.find("erin@brightchain.org")).toBeUndefined();
  });
  it("keeps every user while the file is missing at a reload, reports it once, and takes the file back", async () => {
    const reported: Error[] = [];
    /** Resolves at the next reported reload error; every report is kept in `reported`. */
    const nextReport = () =>
      new Promise<void>((resolve) => {
        onReloadError = (error) => {
          reported.push(error);
          resolve();
        };
      });
    let missing = nextReport();
    rmSync(registryFile);
    await missing;
    // Further events while the file is still gone (a sync tool touching the directory) say nothing new.
    registry.reload();
    registry.reload();
    expect(reported.map((error) => (error as NodeJS.ErrnoException).code)).toEqual(["ENOENT"]);
    const c = client(port);
    await c.write(Buffer.concat([netstring("virtual alice@brightchain.org"), netstring("virtual dave@brightchain.org")]));
    expect(await c.replies(2)).toEqual(["OK alice@brightchain.org", "OK dave@brightchain.org"]);

    const reloaded = new Promise<number>((resolve) => (onReload = resolve));
    writeFileSync(join(dir, "recipients.new"), "alice@brightchain.org\nfrank@brightchain.org\n");
    renameSync(join(dir, "recipients.new"), registryFile);
    expect(await reloaded).toBe(2);
    expect(registry.find("frank@brightchain.org")).toBe("frank@brightchain.org");
    expect(registry.find("dave@brightchain.org")).toBeUndefined();

    // Missing again after a good reload is a new failure, reported again.
    missing = nextReport();
    rmSync(registryFile);
    await missing;
    expect(reported).toHaveLength(2);
    expect(registry.find("frank@brightchain.org")).toBe("frank@brightchain.org");
  });
});

describe("socketmap server with a registry that fails", () => {
  const services: RecipientLookupService[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await Promise.all(services.splice(0).map((s) => s.close()));
  });
  async function serve(registry: RecipientRegistry, lookupTimeoutMs = 200): Promise<number> {
    const service = new RecipientLookupService({ registry, domains: ["brightchain.org"], port: 0, lookupTimeoutMs });
    services.push(service);
    return service.listen();
  }

  it("answers TEMP when the registry is slower than the deadline, and keeps later answers in order", async () => {
    const slow: RecipientRegistry = {
      find: (address) =>
        address.startsWith("slow") ? new Promise((resolve) => setTimeout(() => resolve(address), 2_000).unref()) : address,
      close: () => undefined,
    };
    const c = client(await serve(slow));
    await c.write(Buffer.concat([netstring("virtual slow@brightchain.org"), netstring("virtual fast@brightchain.org")]));
    const replies = await c.replies(2);
    expect(replies).toEqual(["TEMP recipient registry did not answer within 200 ms", "OK fast@brightchain.org"]);
  });

  it("answers TEMP when the registry throws, without closing the connection", async () => {
    const broken: RecipientRegistry = {
      find: () => {
        throw new Error("disk on fire");
      },
      close: () => undefined,
    };
    const c = client(await serve(broken));
    await c.write(Buffer.concat([netstring("virtual alice@brightchain.org"), netstring("virtual nobody@elsewhere.org")]));
    expect(await c.replies(2)).toEqual(["TEMP recipient registry failed: disk on fire", "NOTFOUND "]);
    expect(c.closed).toBe(false);
  });

  it("keeps a registry error's control characters out of its reply and its log line", async () => {
    const logged: string[] = [];
    const broken: RecipientRegistry = {
      find: () => {
        throw new Error("disk\non fire\x1b[2J");
      },
      close: () => undefined,
    };
    const service = new RecipientLookupService({
      registry: broken,
      domains: ["brightchain.org"],
      port: 0,
      lookupTimeoutMs: 200,
      log: (line) => logged.push(line),
    });
    services.push(service);
    const c = client(await service.listen());
    await c.write("virtual alice@brightchain.org\n");
    await c.until(() => c.text().endsWith("\n"));
    expect(c.text()).toBe("TEMP recipient registry failed: disk\\x0aon fire\\x1b[2J\n");
    expect(logged).toEqual(["recipient registry failed: disk\\x0aon fire\\x1b[2J"]);
  });

  it("answers TEMP when the node's HTTP API is broken", async () => {
    // Answers bytes that are not HTTP. (Not a closed port: a port "known to be free" could be taken by a
    // parallel test between the check and the lookup.)
    const brokenSockets = new Set<Socket>();
    const broken = createServer((socket) => {
      brokenSockets.add(socket);
      socket.end("garbage\r\n\r\n");
    });
    await new Promise<void>((resolve) => broken.listen(0, "127.0.0.1", resolve));
    const c = client(
      await serve(
        new HttpRegistry(`http://127.0.0.1:${(broken.address() as AddressInfo).port}`, { cacheTtlSeconds: 60, timeoutMs: 5_000 }),
        10_000,
      ),
    );
    await c.write(netstring("virtual alice@brightchain.org"));
    const replies = await c.replies(1);
    for (const socket of brokenSockets) socket.destroy();
    await new Promise((resolve) => broken.close(resolve));
    expect(replies[0]).toMatch(/^TEMP recipient registry failed: registry unreachable/);
  });

  it("finishes in-flight lookups on shutdown before closing", async () => {
    let asked!: () => void;
    const lookupStarted = new Promise<void>((resolve) => (asked = resolve));
    const slowish: RecipientRegistry = {
      find: (address) => {
        asked();
        return new Promise((resolve) => setTimeout(() => resolve(address), 100));
      },
      close: () => undefined,
    };
    const service = new RecipientLookupService({
      registry: slowish,
      domains: ["brightchain.org"],
      port: 0,
      lookupTimeoutMs: 1_000,
    });
    const c = client(await service.listen());
    await c.write(netstring("virtual alice@brightchain.org"));
    await lookupStarted;
    await service.close();
    await c.until(() => c.closed);
    expect(c.netstrings()).toEqual(["OK alice@brightchain.org"]);
  });
});

describe("socketmap server limits", () => {
  const registry: RecipientRegistry = {
    find: (address) => (address.startsWith("known") ? address : undefined),
    close: () => undefined,
  };
  const services: RecipientLookupService[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await Promise.all(services.splice(0).map((s) => s.close()));
  });
  async function serve(
    options: Partial<ConstructorParameters<typeof RecipientLookupService>[0]> = {},
  ): Promise<{ port: number; service: RecipientLookupService }> {
    const service = new RecipientLookupService({
      registry,
      domains: ["brightchain.org"],
      port: 0,
      lookupTimeoutMs: 500,
      ...options,
    });
    services.push(service);
    return { port: await service.listen(), service };
  }
  const connected = async (...cs: SocketmapClient[]) => {
    for (const c of cs) await c.ready;
  };

  it("at maxConnections, closes the connection idle the longest to serve a new one", async () => {
    const { port } = await serve({ maxConnections: 2 });
    const first = client(port);
    const second = client(port);
    await connected(first, second);
    // first connected earlier but asked later: second is the one idle the longest.
    await first.write(netstring("virtual known@brightchain.org"));
    expect(await first.replies(1)).toEqual(["OK known@brightchain.org"]);
    const third = client(port);
    await second.until(() => second.closed);
    await third.write(netstring("virtual known@brightchain.org"));
    expect(await third.replies(1)).toEqual(["OK known@brightchain.org"]);
    await first.write(netstring("virtual known@brightchain.org"));
    expect(await first.replies(2)).toEqual(["OK known@brightchain.org", "OK known@brightchain.org"]);
  });

  it("takes the room from the peer address holding the most connections, not from an older one elsewhere", async () => {
    const { port } = await serve({ maxConnections: 3 });
    const postfix = client(port);
    await connected(postfix);
    const flood = [client(port, "127.0.0.2"), client(port, "127.0.0.2")];
    await connected(...flood);
    const another = client(port, "127.0.0.2");
    await flood[0]!.until(() => flood[0]!.closed);
    await postfix.write(netstring("virtual known@brightchain.org"));
    expect(await postfix.replies(1)).toEqual(["OK known@brightchain.org"]);
    await another.write(netstring("virtual known@brightchain.org"));
    expect(await another.replies(1)).toEqual(["OK known@brightchain.org"]);
    expect(flood[1]!.closed).toBe(false);
  });

  it("refuses a new connection only when every open one is owed an answer, and still answers those", async () => {
    let asked!: () => void;
    const lookupStarted = new Promise<void>((resolve) => (asked = resolve));
    const slow: RecipientRegistry = {
      find: (address) => {
        asked();
        return new Promise((resolve) => setTimeout(() => resolve(address), 300));
      },
      close: () => undefined,
    };
    const { port } = await serve({ maxConnections: 1, registry: slow, lookupTimeoutMs: 5_000 });
    const busy = client(port);
    await busy.write(netstring("virtual known@brightchain.org"));
    await lookupStarted;
    const refused = client(port);
    await refused.until(() => refused.closed);
    expect(await busy.replies(1)).toEqual(["OK known@brightchain.org"]);
  });

  it("closes an idle connection after idleTimeoutMs", async () => {
    const { port } = await serve({ idleTimeoutMs: 200 });
    const c = client(port);
    await c.write(netstring("virtual known@brightchain.org"));
    expect(await c.replies(1)).toEqual(["OK known@brightchain.org"]);
    const answeredAt = Date.now();
    await c.until(() => c.closed, 3_000);
    expect(Date.now() - answeredAt).toBeGreaterThanOrEqual(150);
  });

  /** Writes `bytes` one at a time, 100 ms apart, until the server closes the connection; returns how many went. */
  async function drip(c: SocketmapClient, bytes: Buffer): Promise<number> {
    await c.ready;
    let sent = 0;
    while (!c.closed && sent < bytes.length) {
      await c.write(bytes.subarray(sent, ++sent));
      await c.until(() => c.closed, 100).catch(() => undefined);
    }
    return sent;
  }

  it("closes a client that drips a request a byte at a time, although each byte restarts the idle timer", async () => {
    const logged: string[] = [];
    // The idle timeout alone would keep this client for ever: a byte every 100 ms is never 60 s idle.
    const { port } = await serve({ requestDeadlineMs: 300, idleTimeoutMs: 60_000, log: (line) => logged.push(line) });
    const c = client(port);
    const request = netstring("virtual known@brightchain.org\n\x1b[31mforged: line");
    const sent = await drip(c, request);
    expect(c.closed).toBe(true);
    expect(sent).toBeLessThan(request.length);
    expect(c.text()).toBe("");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/^closed 127\.0\.0\.1:\d+: request not complete 300 ms after its first byte \(starts "\d/);
  });

  it("closes a line probe that drips its line, too", async () => {
    const { port } = await serve({ requestDeadlineMs: 300, lineIdleTimeoutMs: 60_000 });
    const c = client(port);
    const line = Buffer.from("virtual known@brightchain.org\n");
    expect(await drip(c, line)).toBeLessThan(line.length);
    expect(c.closed).toBe(true);
  });

  it("logs a dripped request's bytes escaped, on one line", async () => {
    const logged: string[] = [];
    const { port } = await serve({ requestDeadlineMs: 300, idleTimeoutMs: 60_000, log: (line) => logged.push(line) });
    const c = client(port);
    await c.write('60:virtual "x"\\\nbrightchain-lookup: forged\x1b[2J\u0085');
    await c.until(() => c.closed);
    expect(logged).toEqual([
      expect.stringMatching(
        /: request not complete 300 ms after its first byte \(starts "60:virtual \\"x\\"\\\\\\x0abrightchain-lookup: forged\\x1b\[2J\\xc2\\x85"\)$/,
      ),
    ]);
  });

  it("keeps a client whose requests each arrive whole, however long the connection lives", async () => {
    const { port } = await serve({ requestDeadlineMs: 300, idleTimeoutMs: 60_000 });
    const c = client(port);
    const request = netstring("virtual known@brightchain.org");
    // Two halves of each request close together, requests far apart: 8 × 100 ms outlives one deadline.
    for (let i = 1; i <= 8; i++) {
      await c.write(request.subarray(0, 10));
      await c.write(request.subarray(10));
      expect(await c.replies(i)).toHaveLength(i);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(c.closed).toBe(false);
  });

  it("names the byte that broke the framing in its log line", async () => {
    const logged: string[] = [];
    const { port } = await serve({ log: (line) => logged.push(line) });
    const lying = client(port);
    await lying.write("5:virtual known@brightchain.org,");
    await lying.until(() => lying.closed);
    expect(logged).toEqual([
      expect.stringMatching(/^closed 127\.0\.0\.1:\d+: byte 0x61 where the "," after a 5-byte netstring belongs$/),
    ]);
  });

  it("logs a flood of broken connections as one line, then one line with the count of the rest", async () => {
    const logged: string[] = [];
    const { port } = await serve({ log: (line) => logged.push(line) });
    const garbage = async () => {
      const c = client(port);
      await c.write("1:ab");
      await c.until(() => c.closed);
    };
    // Only Date is faked: the 5 s between log lines passes without waiting for it.
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      for (let i = 0; i < 20; i++) await garbage();
      expect(logged).toHaveLength(1);
      vi.setSystemTime(Date.now() + 5_000);
      await garbage();
    } finally {
      vi.useRealTimers();
    }
    expect(logged).toHaveLength(2);
    expect(logged[1]).toMatch(
      /^closed 127\.0\.0\.1:\d+: byte 0x62 where the "," after a 1-byte netstring belongs \(and 19 more since the last such line\)$/,
    );
  });

  it("never answers for a subdomain or a longer name that ends like a served domain", async () => {
    const everyone: RecipientRegistry = { find: (address) => address, close: () => undefined };
    const { port } = await serve({ registry: everyone });
    const c = client(port);
    const keys = ["alice@brightchain.org", "alice@sub.brightchain.org", "alice@notbrightchain.org", "alice@brightchain.org.uk"];
    await c.write(Buffer.concat(keys.map((k) => netstring(`virtual ${k}`))));
    expect(await c.replies(keys.length)).toEqual(["OK alice@brightchain.org", "NOTFOUND ", "NOTFOUND ", "NOTFOUND "]);
  });

  it("answers 20,000 requests from a client that writes them all before reading any, in order", async () => {
    const { port } = await serve();
    const keys = Array.from({ length: 20_000 }, (_, i) =>
      i % 2 === 0 ? `known${i}@brightchain.org` : `unknown${i}@brightchain.org`,
    );
    const c = client(port);
    await c.write(Buffer.concat(keys.map((k) => netstring(`virtual ${k}`))));
    const replies = await c.replies(keys.length);
    expect(replies).toHaveLength(keys.length);
    expect(replies.every((reply, i) => reply === (i % 2 === 0 ? `OK ${keys[i]}` : "NOTFOUND "))).toBe(true);
  });

  it("stops reading a client that pipelines without reading, holding little of its answers, and resumes", async () => {
    // Long canonical answers: 200,000 of them are more than the kernel's socket buffers can hold, so a server
    // without backpressure would have to keep tens of MB of them in its own memory.
    const canonical = `known${"x".repeat(200)}@brightchain.org`;
    const longAnswers: RecipientRegistry = { find: () => canonical, close: () => undefined };
    const { service, port } = await serve({ registry: longAnswers });
    let serverSide: Socket | undefined;
    // The server's own end of the connection: what it has read and what it holds unsent.
    service["server"].once("connection", (socket: Socket) => (serverSide = socket));
    const count = 200_000;
    const request = netstring("virtual known@brightchain.org");
    const reply = netstring(`OK ${canonical}`);
    const greedy = connect(port, "127.0.0.1");
    greedy.on("error", () => undefined);
    // No 'data' listener yet: the client reads nothing until the server has stopped reading it.
    greedy.write(Buffer.concat(Array.from({ length: count }, () => request)));
    let mostHeld = 0;
    await waitUntil(() => {
      mostHeld = Math.max(mostHeld, serverSide?.writableLength ?? 0);
      return serverSide?.isPaused() === true;
    });
    expect(serverSide!.bytesRead).toBeLessThan(count * request.length);
    expect(mostHeld).toBeLessThan(2 * 1024 * 1024);

    let received = 0;
    let last = Buffer.alloc(0);
    greedy.on("data", (chunk: Buffer) => {
      received += chunk.length;
      last = Buffer.concat([last, chunk]).subarray(-reply.length);
    });
    await waitUntil(() => received >= count * reply.length, 30_000);
    greedy.destroy();
    expect(received).toBe(count * reply.length);
    expect(last.equals(reply)).toBe(true);
  }, 60_000);
});

async function waitUntil(check: () => boolean, deadlineMs = 10_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
