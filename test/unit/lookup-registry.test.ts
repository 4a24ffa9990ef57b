// The node-API registry behind the socketmap, against a stand-in node that holds every request and answer to
// docs/node-api.openapi.yaml: GET <url>/recipients/<address> → 200 {"address": …} | 404; anything else or no
// answer in time → TEMP.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { HttpRegistry } from "../../runtime/src/lookup/registry";
import { RecipientLookupService } from "../../runtime/src/lookup/server";
import { StandInNode, type NodeApiAnswer } from "../helpers/node-api-stand-in";

describe("HttpRegistry through the lookup service", () => {
  let node: StandInNode;
  let baseUrl: string;
  let requests: string[] = [];
  /** What the stand-in node answers, by address; missing = 404. */
  let behaviour: Record<string, () => NodeApiAnswer | Promise<NodeApiAnswer>> = {};
  const user = (address: string): NodeApiAnswer => ({
    status: 200,
    contentType: "application/json",
    body: JSON.stringify({ address }),
  });

  beforeAll(async () => {
    node = await StandInNode.start(
      (request) => {
        requests.push(request.url);
        const answer = behaviour[request.path.address ?? ""];
        return answer === undefined ? { status: 404 } : answer();
      },
      { basePath: "/api" },
    );
    baseUrl = node.url;
  });
  afterAll(() => node.close());
  beforeEach(() => {
    requests = [];
    behaviour = {};
  });
  afterEach(() => expect(node.violations.splice(0)).toEqual([]));

  // Generous deadlines unless a test is about the deadline: a loaded CI machine must not turn answers into TEMP.
  const lookupService = (cacheTtlSeconds: number, timeoutMs = 5_000, maxCacheEntries?: number) =>
    new RecipientLookupService({
      registry: new HttpRegistry(baseUrl, { cacheTtlSeconds, timeoutMs, maxCacheEntries }),
      domains: ["brightchain.org"],
      port: 0,
      lookupTimeoutMs: 10_000,
    });

  it("answers OK with the node's canonical address and caches the positive answer", async () => {
    behaviour["alice@brightchain.org"] = () => user("Alice@BrightChain.org");
    const service = lookupService(300);
    expect(await service.answer("virtual ALICE@brightchain.org")).toEqual({ status: "OK", value: "alice@brightchain.org" });
    expect(await service.answer("virtual alice@brightchain.org")).toEqual({ status: "OK", value: "alice@brightchain.org" });
    expect(requests).toEqual(["/api/recipients/alice%40brightchain.org"]);
  });

  it("does not cache when the TTL is 0", async () => {
    behaviour["alice@brightchain.org"] = () => user("alice@brightchain.org");
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
    behaviour["bob@brightchain.org"] = () => user("bob@brightchain.org");
    expect(await lookupService(300).answer("virtual bob+news@brightchain.org")).toEqual({
      status: "OK",
      value: "bob@brightchain.org",
    });
    expect(requests).toEqual(["/api/recipients/bob%2Bnews%40brightchain.org", "/api/recipients/bob%40brightchain.org"]);
  });

  it("answers TEMP for a server error, a malformed 200 and a node slower than its deadline", async () => {
    behaviour["err@brightchain.org"] = () => ({ status: 503 });
    behaviour["junk@brightchain.org"] = () => ({ status: 200, contentType: "application/json", body: "not json" });
    behaviour["slow@brightchain.org"] = () =>
      new Promise((resolve) => setTimeout(() => resolve(user("slow@brightchain.org")), 2_000).unref());
    const service = lookupService(300);
    expect(await service.answer("virtual err@brightchain.org")).toEqual({
      status: "TEMP",
      reason: "recipient registry failed: registry answered HTTP 503",
    });
    expect(await service.answer("virtual junk@brightchain.org")).toEqual({
      status: "TEMP",
      reason: 'recipient registry failed: registry answered 200 without a valid "address"',
    });
    // The document calls such an answer temporary; the stand-in records that it broke the schema.
    expect(node.violations.splice(0)).toEqual(["GET /api/recipients/junk%40brightchain.org: answer 200 body is not JSON"]);
    expect(await lookupService(300, 150).answer("virtual slow@brightchain.org")).toEqual({
      status: "TEMP",
      reason: "recipient registry failed: registry did not answer within 150 ms",
    });
  });

  it("asks the node again once a cached answer is older than the TTL", async () => {
    behaviour["alice@brightchain.org"] = () => user("alice@brightchain.org");
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
    for (const name of ["a", "b", "c"]) behaviour[`${name}@brightchain.org`] = () => user(`${name}@brightchain.org`);
    const service = lookupService(300, 5_000, 2);
    for (const name of ["a", "b", "c", "b", "c"]) await service.answer(`virtual ${name}@brightchain.org`);
    expect(requests).toHaveLength(3);
    await service.answer("virtual a@brightchain.org");
    expect(requests).toEqual(["a", "b", "c", "a"].map((name) => `/api/recipients/${name}%40brightchain.org`));
  });

  it("never asks the node about keys outside the served domains or malformed ones", async () => {
    // The node would say yes: only the served-domain check keeps these out.
    for (const address of ["alice@sub.brightchain.org", "alice@elsewhere.org", "alice@xbrightchain.org"]) {
      behaviour[address] = () => user(address);
    }
    const service = lookupService(300);
    expect(await service.answer("virtual alice@sub.brightchain.org")).toEqual({ status: "NOTFOUND" });
    expect(await service.answer("virtual alice@xbrightchain.org")).toEqual({ status: "NOTFOUND" });
    expect(await service.answer("virtual alice@elsewhere.org")).toEqual({ status: "NOTFOUND" });
    expect(await service.answer("virtual <alice@brightchain.org>")).toEqual({ status: "NOTFOUND" });
    expect(requests).toEqual([]);
  });
});
