// The node-API registry behind the socketmap, against a real local HTTP server speaking the documented contract:
// GET <url>/recipients/<address> → 200 {"address": …} | 404; anything else or no answer in time → TEMP.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { HttpRegistry } from "../../runtime/src/lookup/registry";
import { RecipientLookupService } from "../../runtime/src/lookup/server";

describe("HttpRegistry through the lookup service", () => {
  let server: Server;
  let baseUrl: string;
  const requests: string[] = [];
  /** What the fake node answers, by address; missing = 404. */
  let behaviour: Record<string, (respond: (status: number, body?: string) => void) => void> = {};

  beforeAll(async () => {
    server = createServer((request, response) => {
      requests.push(request.url ?? "");
      const address = decodeURIComponent((request.url ?? "").replace(/^\/api\/recipients\//, ""));
      const respond = (status: number, body = "") => response.writeHead(status, { "content-type": "application/json" }).end(body);
      const handler = behaviour[address];
      if (handler === undefined) respond(404, '{"error":"no such recipient"}');
      else handler(respond);
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  });
  beforeEach(() => {
    requests.length = 0;
    behaviour = {};
  });

  // Generous deadlines unless a test is about the deadline: a loaded CI machine must not turn answers into TEMP.
  const lookupService = (cacheTtlSeconds: number, timeoutMs = 5_000, maxCacheEntries?: number) =>
    new RecipientLookupService({
      registry: new HttpRegistry(baseUrl, { cacheTtlSeconds, timeoutMs, maxCacheEntries }),
      domains: ["brightchain.org"],
      port: 0,
      lookupTimeoutMs: 10_000,
    });

  it("answers OK with the node's canonical address and caches the positive answer", async () => {
    behaviour["alice@brightchain.org"] = (respond) => respond(200, '{"address":"Alice@BrightChain.org"}');
    const service = lookupService(300);
    expect(await service.answer("virtual ALICE@brightchain.org")).toEqual({ status: "OK", value: "alice@brightchain.org" });
    expect(await service.answer("virtual alice@brightchain.org")).toEqual({ status: "OK", value: "alice@brightchain.org" });
    expect(requests).toEqual(["/api/recipients/alice%40brightchain.org"]);
  });

  it("does not cache when the TTL is 0", async () => {
    behaviour["alice@brightchain.org"] = (respond) => respond(200, '{"address":"alice@brightchain.org"}');
    const service = lookupService(0);
    await service.answer("virtual alice@brightchain.org");
    await service.answer("virtual alice@brightchain.org");
    expect(requests).toHaveLength(2);
  });

  it("answers NOTFOUND for a 404 and asks again next time (a new user must not wait out a TTL)", async () => {
    const service = lookupService(300);
    expect(await service.answer("virtual nobody@brightchain.org")).toEqual({ status: "NOTFOUND" });
    expect(await service.answer("virtual nobody@brightchain.org")).toEqual({ status: "NOTFOUND" });
    expect(requests).toHaveLength(2);
  });

  it("resolves a +tag key by asking for the full address, then the address without its extension", async () => {
    behaviour["bob@brightchain.org"] = (respond) => respond(200, '{"address":"bob@brightchain.org"}');
    expect(await lookupService(300).answer("virtual bob+news@brightchain.org")).toEqual({
      status: "OK",
      value: "bob@brightchain.org",
    });
    expect(requests).toEqual(["/api/recipients/bob%2Bnews%40brightchain.org", "/api/recipients/bob%40brightchain.org"]);
  });

  it("answers TEMP for a server error, a malformed 200 and a node slower than its deadline", async () => {
    behaviour["err@brightchain.org"] = (respond) => respond(503, "busy");
    behaviour["junk@brightchain.org"] = (respond) => respond(200, "not json");
    behaviour["slow@brightchain.org"] = (respond) =>
      setTimeout(() => respond(200, '{"address":"slow@brightchain.org"}'), 2_000).unref();
    const service = lookupService(300);
    expect(await service.answer("virtual err@brightchain.org")).toEqual({
      status: "TEMP",
      reason: "recipient registry failed: registry answered HTTP 503",
    });
    expect(await service.answer("virtual junk@brightchain.org")).toEqual({
      status: "TEMP",
      reason: 'recipient registry failed: registry answered 200 without a valid "address"',
    });
    expect(await lookupService(300, 150).answer("virtual slow@brightchain.org")).toEqual({
      status: "TEMP",
      reason: "recipient registry failed: registry did not answer within 150 ms",
    });
  });

  it("asks the node again once a cached answer is older than the TTL", async () => {
    behaviour["alice@brightchain.org"] = (respond) => respond(200, '{"address":"alice@brightchain.org"}');
    // Only Date is faked: the HTTP client and the server keep their real timers.
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      const service = lookupService(300);
      await service.answer("virtual alice@brightchain.org");
      vi.setSystemTime(Date.now() + 299_000);
      await service.answer("virtual alice@brightchain.org");
      expect(requests).toHaveLength(1);
      vi.setSystemTime(Date.now() + 2_000);
      expect(await service.answer("virtual alice@brightchain.org")).toEqual({ status: "OK", value: "alice@brightchain.org" });
      expect(requests).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("keeps at most maxCacheEntries answers, dropping the oldest first", async () => {
    for (const user of ["a", "b", "c"]) {
      behaviour[`${user}@brightchain.org`] = (respond) => respond(200, `{"address":"${user}@brightchain.org"}`);
    }
    const service = lookupService(300, 5_000, 2);
    for (const user of ["a", "b", "c", "b", "c"]) await service.answer(`virtual ${user}@brightchain.org`);
    expect(requests).toHaveLength(3);
    await service.answer("virtual a@brightchain.org");
    expect(requests).toEqual(["a", "b", "c", "a"].map((user) => `/api/recipients/${user}%40brightchain.org`));
  });

  it("never asks the node about keys outside the served domains or malformed ones", async () => {
    // The node would say yes: only the served-domain check keeps these out.
    for (const address of ["alice@sub.brightchain.org", "alice@elsewhere.org", "alice@xbrightchain.org"]) {
      behaviour[address] = (respond) => respond(200, `{"address":"${address}"}`);
    }
    const service = lookupService(300);
    expect(await service.answer("virtual alice@sub.brightchain.org")).toEqual({ status: "NOTFOUND" });
    expect(await service.answer("virtual alice@xbrightchain.org")).toEqual({ status: "NOTFOUND" });
    expect(await service.answer("virtual alice@elsewhere.org")).toEqual({ status: "NOTFOUND" });
    expect(await service.answer("virtual <alice@brightchain.org>")).toEqual({ status: "NOTFOUND" });
    expect(requests).toEqual([]);
  });
});
