// The runtime's two HTTP clients against a stand-in node that enforces docs/node-api.openapi.yaml: every request
// they send matches the document, and what they do with each answer is the document's `x-gateway-outcome`.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { HttpNodeSink } from "../../runtime/src/inbound/http-node-sink";
import { SinkError, type Handoff } from "../../runtime/src/inbound/sink";
import { HttpRegistry, RegistryUnavailableError } from "../../runtime/src/lookup/registry";
import {
  documentedOutcome,
  loadNodeApiDocument,
  StandInNode,
  type NodeApiAnswer,
  type NodeApiHandler,
} from "../helpers/node-api-stand-in";

const document = loadNodeApiDocument();
const dir = mkdtempSync(join(tmpdir(), "node-api-"));
const nodes: StandInNode[] = [];
afterEach(async () => {
  for (const node of nodes.splice(0)) await node.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function standIn(handler: NodeApiHandler, basePath?: string): Promise<StandInNode> {
  const node = await StandInNode.start(handler, basePath === undefined ? {} : { basePath });
  nodes.push(node);
  return node;
}

const answer =
  (reply: NodeApiAnswer): NodeApiHandler =>
  () =>
    reply;

describe("the document", () => {
  it("is OpenAPI 3.1 with the two operations the runtime calls, every answer given a retry class", () => {
    expect(document.openapi).toBe("3.1.0");
    const operations = Object.values(document.paths).flatMap((methods) => Object.values(methods));
    expect(operations.map((operation) => operation.operationId).sort()).toEqual(["findRecipient", "storeMessage"]);
    for (const operation of operations) {
      expect(operation.responses.default, operation.operationId).toBeDefined();
      for (const [status, response] of Object.entries(operation.responses)) {
        expect(
          ["user", "not-a-user", "stored", "temporary", "refused", "by-class"],
          `${operation.operationId} ${status}`,
        ).toContain(response["x-gateway-outcome"]);
      }
    }
  });
});

describe("the stand-in node", () => {
  it("is a real check: a request off the document is recorded, naming what is wrong", async () => {
    const node = await standIn(answer({ status: 404 }));
    await fetch(`${node.url}/recipients/Bob%40Example`);
    await fetch(`${node.url}/messages/${"0".repeat(128)}?recipient=bob@brightchain.org&folder=trash&extra=1`, {
      method: "PUT",
      headers: { "content-type": "text/plain" },
      body: "x",
    });
    await fetch(`${node.url}/users`);
    expect(node.violations).toEqual([
      expect.stringMatching(/^GET \/recipients\/Bob%40Example: path parameter address "Bob@Example": data must match pattern/),
      'GET /recipients/Bob%40Example: header parameter accept "*/*": data must be equal to constant',
      expect.stringMatching(/query parameter folder "trash": data must be equal to one of the allowed values/),
      expect.stringMatching(/query parameter extra is not in the document/),
      expect.stringMatching(/content-type "text\/plain"; the document accepts message\/rfc822/),
      expect.stringMatching(/the body's SHA3-512 is not the path's/),
      "GET /users: no such operation in the document",
    ]);
  });
});

describe("brightchain-lookup's registry client (GET /recipients/{address})", () => {
  const registry = (node: StandInNode, timeoutMs = 5_000) => new HttpRegistry(node.url, { cacheTtlSeconds: 0, timeoutMs });

  async function outcome(client: HttpRegistry, address: string): Promise<string> {
    try {
      return (await client.find(address)) === undefined ? "not-a-user" : "user";
    } catch (error) {
      expect(error).toBeInstanceOf(RegistryUnavailableError);
      return "temporary";
    }
  }

  it("asks for the address as the document says and takes the canonical form from a 200", async () => {
    const node = await standIn(
      answer({ status: 200, contentType: "application/json", body: '{"address":"alice@brightchain.org"}' }),
      "/api",
    );
    expect(await registry(node).find("alice.smith@brightchain.org")).toBe("alice@brightchain.org");
    expect(node.requests.map((request) => request.path)).toEqual([{ address: "alice.smith@brightchain.org" }]);
    expect(node.violations).toEqual([]);
  });

  it.each([200, 404, 500, 503, 429, 302])("answer %i: does what the document says", async (status) => {
    const reply: NodeApiAnswer =
      status === 200 ? { status, contentType: "application/json", body: '{"address":"bob@brightchain.org"}' } : { status };
    const node = await standIn(answer(reply));
    expect(await outcome(registry(node), "bob@brightchain.org")).toBe(documentedOutcome(document, "findRecipient", status));
    expect(node.violations).toEqual([]);
  });

  it("a 200 without a valid address is temporary, as the document says (the stand-in records the bad answer)", async () => {
    const node = await standIn(answer({ status: 200, contentType: "application/json", body: '{"address":"not an address"}' }));
    expect(await outcome(registry(node), "bob@brightchain.org")).toBe("temporary");
    expect(node.violations).toEqual([expect.stringMatching(/answer 200 body .*must match pattern/)]);
  });

  it("no answer within the deadline is temporary", async () => {
    const node = await standIn(() => "no answer");
    expect(await outcome(registry(node, 100), "bob@brightchain.org")).toBe("temporary");
    expect(node.violations).toEqual([]);
  });
});

describe("brightchain-inbound's node sink (PUT /messages/{sha3})", () => {
  const raw =
    "From: carol@example.net\r\nTo: alice@brightchain.org\r\nMessage-ID: <m1@example.net>\r\nSubject: hi\r\n\r\nhello\r\n";
  const rawPath = join(dir, "message");
  writeFileSync(rawPath, raw);
  const handoff: Handoff = {
    sha3: createHash("sha3-512").update(raw).digest("hex"),
    size: Buffer.byteLength(raw),
    recipient: "alice@brightchain.org",
    folder: "spam",
    spamScore: 7.5,
    messageId: "<m1@example.net>",
    rawPath,
  };

  async function outcome(sink: HttpNodeSink): Promise<string> {
    try {
      await sink.deliver(handoff);
      return "stored";
    } catch (error) {
      expect(error).toBeInstanceOf(SinkError);
      return (error as SinkError).permanent ? "refused" : "temporary";
    }
  }

  it("streams the message with the parameters and headers the document names, under a node URL with a path", async () => {
    const node = await standIn(answer({ status: 201 }), "/api");
    await new HttpNodeSink({ nodeUrl: `${node.url}/` }).deliver(handoff);
    expect(node.violations).toEqual([]);
    const [request] = node.requests;
    expect(request!.path).toEqual({ sha3: handoff.sha3 });
    expect(request!.query).toEqual({ recipient: "alice@brightchain.org", folder: "spam" });
    expect(request!.headers).toMatchObject({ "x-spam-score": "7.5", "x-message-id": "<m1@example.net>" });
    expect(request!.body.toString()).toBe(raw);
  });

  it.each([200, 201, 204, 202, 409, 408, 429, 400, 404, 413, 418, 500, 503])(
    "answer %i: does what the document says",
    async (status) => {
      const reply: NodeApiAnswer =
        status >= 400 && status < 500 && status !== 408 && status !== 429 && status !== 409
          ? { status, contentType: "text/plain", body: "no such user" }
          : { status };
      const node = await standIn(answer(reply));
      expect(await outcome(new HttpNodeSink({ nodeUrl: node.url }))).toBe(documentedOutcome(document, "storeMessage", status));
      expect(node.violations).toEqual([]);
    },
  );

  it("a refusal carries the node's reason to the error dir", async () => {
    const node = await standIn(answer({ status: 404, contentType: "text/plain", body: "no such user" }));
    await expect(new HttpNodeSink({ nodeUrl: node.url }).deliver(handoff)).rejects.toThrow(/node answered 404: no such user/);
  });

  it("no answer within the deadline is temporary", async () => {
    const node = await standIn(() => "no answer");
    expect(await outcome(new HttpNodeSink({ nodeUrl: node.url, timeoutMs: 100 }))).toBe("temporary");
    expect(node.violations).toEqual([]);
  });
});
