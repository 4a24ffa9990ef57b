// The node sink's HTTP request and what it makes of each answer, against plain node:http and node:net servers
// in this process (node-api.test.ts checks the same client against the OpenAPI document's stand-in node).
// Here: the request's exact URL and headers, what the error a user reads in errors/ or the log says, the
// deadline against a node that never finishes, and the message file's descriptor never outliving the request.
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { HttpNodeSink } from "../../runtime/src/inbound/http-node-sink";
import { SinkError, type Handoff } from "../../runtime/src/inbound/sink";
import { waitUntil } from "../helpers/inbound-drop";

const dir = realpathSync(mkdtempSync(join(tmpdir(), "bc-http-sink-")));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const raw = "Delivered-To: alice@brightchain.org\r\nSubject: hi\r\n\r\nhello\r\n";
const rawPath = join(dir, "message");
writeFileSync(rawPath, raw);
const handoff: Handoff = {
  sha3: createHash("sha3-512").update(raw).digest("hex"),
  size: Buffer.byteLength(raw),
  recipient: "alice@brightchain.org",
  folder: "inbox",
  rawPath,
};

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A node answering every request with `answer` after reading its body; records what it received. */
async function node(
  answer: (res: ServerResponse, req: IncomingMessage) => void = (res) => res.writeHead(201).end(),
): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      received.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      answer(res, req);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

async function tcpServer(onConnection: (socket: Socket) => void): Promise<number> {
  const server: TcpServer = createTcpServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(() => new Promise((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

async function failure(promise: Promise<unknown>): Promise<SinkError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SinkError);
  return error as SinkError;
}

/** What an error message starts with: the request, its path cut after 60 characters. */
const where = (url: string) => `PUT ${url}/messages/${handoff.sha3.slice(0, 50)}…`;

function descriptorsOpenOn(path: string): number {
  let count = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) count += 1;
    } catch {
      // The descriptor readdir itself used, closed by now.
    }
  }
  return count;
}

describe("HttpNodeSink: the request", () => {
  it("sends the message under the node's path, trailing slashes dropped, with only the headers it knows", async () => {
    const { url, received } = await node();
    await new HttpNodeSink({ nodeUrl: `${url}/api//` }).deliver(handoff);
    expect(received).toEqual([
      {
        method: "PUT",
        url: `/api/messages/${handoff.sha3}?recipient=alice%40brightchain.org&folder=inbox`,
        headers: expect.objectContaining({ "content-type": "message/rfc822", "content-length": String(handoff.size) }) as object,
        body: raw,
      },
    ]);
    expect(Object.keys(received[0]!.headers).filter((name) => name.startsWith("x-"))).toEqual([]);
  });

  it("sends X-Spam-Score and X-Message-Id when known, the id without CR or LF", async () => {
    const { url, received } = await node();
    await new HttpNodeSink({ nodeUrl: url }).deliver({
      ...handoff,
      folder: "spam",
      spamScore: 0,
      messageId: "<m1@\r\nexample.net>\n",
    });
    expect(received[0]!.headers).toMatchObject({ "x-spam-score": "0", "x-message-id": "<m1@example.net>" });
    expect(received[0]!.url).toContain("folder=spam");
  });

  it("speaks TLS to an https: node URL", async () => {
    let firstByte: number | undefined;
    const port = await tcpServer((socket) =>
      socket.once("data", (data: Buffer) => {
        firstByte = data[0];
        socket.destroy();
      }),
    );
    await failure(new HttpNodeSink({ nodeUrl: `https://127.0.0.1:${port}` }).deliver(handoff));
    expect(firstByte).toBe(0x16); // a TLS handshake record, not the "P" of PUT
  });

  it("never opens the message through a symbolic link: a temporary failure, nothing sent", async () => {
    const { url, received } = await node();
    const link = join(dir, "link-to-message");
    symlinkSync(rawPath, link);
    const error = await failure(new HttpNodeSink({ nodeUrl: url }).deliver({ ...handoff, rawPath: link }));
    expect(error.message).toMatch(new RegExp(`^${escape(where(url))}: ELOOP`));
    expect(error.permanent).toBe(false);
    expect(received).toEqual([]);
  });

  it("a message file that cannot be read fails the request as temporary, naming why", async () => {
    const { url } = await node();
    const directory = join(dir, "a-directory");
    mkdirSync(directory);
    const error = await failure(new HttpNodeSink({ nodeUrl: url }).deliver({ ...handoff, rawPath: directory }));
    expect(error.message).toMatch(/EISDIR/);
    expect(error.permanent).toBe(false);
  });

  it("leaves no descriptor open on the message file, delivered or cut short by the node", async () => {
    const big = join(dir, "big-message");
    writeFileSync(big, Buffer.alloc(16 * 1024 * 1024, "x"));
    const stored = await node();
    await new HttpNodeSink({ nodeUrl: stored.url }).deliver(handoff);
    // Refused before the body was read: the upload stops, the file must be closed with it.
    const port = await tcpServer((socket) => {
      socket.once("data", () => {
        socket.end("HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        socket.destroy();
      });
    });
    await failure(
      new HttpNodeSink({ nodeUrl: `http://127.0.0.1:${port}` }).deliver({ ...handoff, rawPath: big, size: 16 * 1024 * 1024 }),
    );
    await waitUntil("the message files closed", () => descriptorsOpenOn(rawPath) + descriptorsOpenOn(big) === 0, 5_000);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

describe("HttpNodeSink: the answer", () => {
  async function outcome(status: number, body = ""): Promise<string> {
    const { url } = await node((res) => res.writeHead(status, { "content-type": "text/plain" }).end(body));
    try {
      return String(await new HttpNodeSink({ nodeUrl: url }).deliver(handoff));
    } catch (error) {
      return `${(error as SinkError).permanent ? "refused" : "temporary"}: ${(error as Error).message.replace(where(url), "PUT")}`;
    }
  }

  it("2xx is stored and 409 a duplicate; 3xx, 408, 429 and 5xx temporary; other 4xx refused, with the node's reason", async () => {
    const outcomes: Record<number, string> = {};
    for (const status of [200, 299, 409, 300, 304, 399, 400, 404, 408, 429, 499, 500, 503]) {
      outcomes[status] = await outcome(status, status >= 300 && status !== 304 ? ` reason ${status}\n` : "");
    }
    expect(outcomes).toEqual({
      200: "stored",
      299: "stored",
      409: "duplicate",
      300: "temporary: PUT: node answered 300: reason 300",
      304: "temporary: PUT: node answered 304",
      399: "temporary: PUT: node answered 399: reason 399",
      400: "refused: PUT: node answered 400: reason 400",
      404: "refused: PUT: node answered 404: reason 404",
      408: "temporary: PUT: node answered 408: reason 408",
      429: "temporary: PUT: node answered 429: reason 429",
      499: "refused: PUT: node answered 499: reason 499",
      500: "temporary: PUT: node answered 500: reason 500",
      503: "temporary: PUT: node answered 503: reason 503",
    });
  });

  it("a refusal without a body says only the status", async () => {
    expect(await outcome(404)).toBe("refused: PUT: node answered 404");
  });

  it("cuts the node's reason at 300 characters", async () => {
    expect(await outcome(400, "r".repeat(5000))).toBe(`refused: PUT: node answered 400: ${"r".repeat(300)}`);
  });

  it("no node listening is temporary, and says so", async () => {
    const closed = createTcpServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const url = `http://127.0.0.1:${port}`;
    const error = await failure(new HttpNodeSink({ nodeUrl: url }).deliver(handoff));
    expect(error.message).toBe(`${where(url)}: connect ECONNREFUSED 127.0.0.1:${port}`);
    expect(error.permanent).toBe(false);
  });

  it("an answer cut off midway is temporary", async () => {
    const port = await tcpServer((socket) =>
      socket.once("data", () => {
        socket.write("HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial");
        setTimeout(() => socket.destroy(), 50);
      }),
    );
    const error = await failure(new HttpNodeSink({ nodeUrl: `http://127.0.0.1:${port}`, timeoutMs: 10_000 }).deliver(handoff));
    expect(error.permanent).toBe(false);
    expect(error.message).toBe(`${where(`http://127.0.0.1:${port}`)}: aborted`);
  });

  it("gives up at the deadline on a node that keeps the answer trickling, as temporary", async () => {
    const port = await tcpServer((socket) =>
      socket.once("data", () => {
        socket.write("HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n");
        const trickle = setInterval(() => socket.write("."), 20);
        socket.on("close", () => clearInterval(trickle));
        socket.on("error", () => clearInterval(trickle));
      }),
    );
    const started = Date.now();
    const error = await failure(new HttpNodeSink({ nodeUrl: `http://127.0.0.1:${port}`, timeoutMs: 300 }).deliver(handoff));
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(error.permanent).toBe(false);
    expect(error.message).toBe(`${where(`http://127.0.0.1:${port}`)}: no answer within 300 ms`);
  });
});
