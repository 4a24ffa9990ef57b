// A real Debian Postfix, configured by the spine's rendered main.cf/master.cf, validating recipients at RCPT
// time through the real RecipientLookupService and delivering through both drop transports (virtual(8) and the
// guide's pipe script).
//
// What the test changes from the rendered files, and why:
//  - node values: the drop spool is a temp dir owned by nobody (withTestDropSpool: an existing unprivileged
//    account, as virtual(8)'s minimum uid and pipe's user= need); the lookup port is the service's free port; mynetworks
//    is empty so loopback is a stranger, like a sender on the internet; maxMessageSize is small so the size
//    tests stay fast.
//  - main.cf/master.cf: what renderedPostfixOptions (test/helpers/postfix-server.ts) changes: the harness's
//    paths and loopback port, TLS and milters off, no submission, the pipe's argv naming a temp copy of the
//    rendered script.
import { readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DropTransport, GatewayNode } from "../../infra/model/types";
import { FileRegistry, HttpRegistry } from "../../runtime/src/lookup/registry";
import { RecipientLookupService } from "../../runtime/src/lookup/server";
import { examplePrimary } from "../fixtures/nodes";
import { StandInNode } from "../helpers/node-api-stand-in";
import {
  defaultMessage,
  freePort,
  renderedPostfixOptions,
  sendMail,
  startPostfix,
  waitFor,
  withTestDropSpool,
  type PostfixInstance,
} from "../helpers/postfix-server";
import { scratchDir } from "../helpers/postfix-tools";
const MESSAGE_SIZE_LIMIT = 100_000;

describe.each<DropTransport>(["virtual", "pipe"])(
  "Postfix recipient validation through the lookup service, %s drop",
  (transport) => {
    const spool = scratchDir(`postfix-lookup-${transport}-`);
    const registryFile = join(spool, "recipients");
    let node: GatewayNode;
    let dropDir: string;
    let registry: FileRegistry;
    let lookup: RecipientLookupService;
    let lookupPort: number;
    let postfix: PostfixInstance;

    /** Short idle timeout: Postfix must survive the service closing its idle socketmap connections. */
    const IDLE_TIMEOUT_MS = 300;
    const startLookup = async () => {
      lookup = new RecipientLookupService({
        registry,
        domains: [node.domain],
        port: lookupPort,
        lookupTimeoutMs: 1_000,
        idleTimeoutMs: IDLE_TIMEOUT_MS,
      });
      await lookup.listen();
    };

    /** Drop files that mention `marker`, as Postfix wrote them. */
    const delivered = (marker: string) =>
      readdirSync(join(dropDir, "new"))
        .map((name) => readFileSync(join(dropDir, "new", name), "utf8"))
        .filter((text) => text.includes(marker));

    const send = (to: string[], subject: string, extra: { declaredSize?: number; message?: string } = {}) =>
      sendMail({
        port: postfix.smtpPort,
        from: "sender@example.net",
        to,
        message: extra.message ?? defaultMessage("sender@example.net", to, subject),
        declaredSize: extra.declaredSize,
      });

    beforeAll(async () => {
      lookupPort = await freePort();
      const spooled = withTestDropSpool(
        {
          ...examplePrimary,
          mynetworks: [],
          maxMessageSize: MESSAGE_SIZE_LIMIT,
          lookup: { ...examplePrimary.lookup, port: lookupPort, registry: { kind: "file", path: registryFile } },
        },
        spool,
        transport,
      );
      node = spooled.node;
      dropDir = node.drop.mailDropDir;
      writeFileSync(registryFile, "alice@brightchain.org\nbob@brightchain.org\ncarol@brightchain.org\n");
      registry = new FileRegistry(registryFile);
      await startLookup();

      postfix = await startPostfix(renderedPostfixOptions(node, { maildropScript: spooled.maildropScript }));
      expect(await postfix.postconf("virtual_mailbox_maps")).toBe(`socketmap:inet:127.0.0.1:${lookupPort}:virtual`);
      expect(await postfix.postconf("message_size_limit")).toBe(String(MESSAGE_SIZE_LIMIT));
    });

    afterAll(async () => {
      await postfix?.stop();
      await lookup?.close();
      registry?.close();
      rmSync(spool, { recursive: true, force: true });
    });

    it("delivers a known recipient into incoming/new with Delivered-To", async () => {
      const reply = await send(["alice@brightchain.org"], "known-recipient");
      expect(reply.rcpt[0]!.code).toBe(250);
      expect(reply.message!.code).toBe(250);
      await waitFor("the drop file", () => delivered("known-recipient").length === 1);
      expect(delivered("known-recipient")[0]).toMatch(/^Delivered-To: alice@brightchain\.org$/m);
    });

    it("rejects an unknown recipient with 550 at RCPT", async () => {
      const reply = await send(["nobody@brightchain.org"], "unknown-recipient");
      expect(reply.rcpt[0]!.code).toBe(550);
      expect(reply.rcpt[0]!.text).toMatch(/5\.1\.1 .*User unknown in virtual mailbox table/);
      expect(reply.data).toBeUndefined();
    });

    it("accepts mixed-case and +tag recipients and delivers them", async () => {
      const reply = await send(["Carol@BrightChain.ORG", "bob+lists@brightchain.org"], "case-and-tag");
      expect(reply.rcpt.map((r) => r.code)).toEqual([250, 250]);
      expect(reply.message!.code).toBe(250);
      await waitFor("two drop files", () => delivered("case-and-tag").length === 2);
      const deliveredTo = delivered("case-and-tag")
        .map((text) => /^Delivered-To: (.*)$/im.exec(text)![1]!.toLowerCase())
        .sort();
      expect(deliveredTo).toEqual(["bob+lists@brightchain.org", "carol@brightchain.org"]);
    });

    it("turns one transaction to 3 recipients into 3 drop files", async () => {
      const to = ["alice@brightchain.org", "bob@brightchain.org", "carol@brightchain.org"];
      const reply = await send(to, "three-recipients");
      expect(reply.rcpt.map((r) => r.code)).toEqual([250, 250, 250]);
      expect(reply.message!.code).toBe(250);
      await waitFor("three drop files", () => delivered("three-recipients").length === 3);
      const deliveredTo = delivered("three-recipients")
        .map((text) => /^Delivered-To: (.*)$/m.exec(text)![1])
        .sort();
      expect(deliveredTo).toEqual(to);
    });

    it("answers 552 to a declared size over message_size_limit, before any data", async () => {
      const reply = await send(["alice@brightchain.org"], "declared-too-big", { declaredSize: MESSAGE_SIZE_LIMIT + 1 });
      expect(reply.mail.code).toBe(552);
      expect(reply.rcpt).toEqual([]);
    });

    it("answers 552 to a message whose data exceeds message_size_limit, and delivers nothing", async () => {
      const body = `${"x".repeat(76)}\r\n`.repeat(Math.ceil((MESSAGE_SIZE_LIMIT * 1.5) / 78));
      const reply = await send(["alice@brightchain.org"], "data-too-big", {
        message: `${defaultMessage("sender@example.net", ["alice@brightchain.org"], "data-too-big")}${body}`,
      });
      expect(reply.rcpt[0]!.code).toBe(250);
      expect(reply.message!.code).toBe(552);
      expect(reply.message!.text).toMatch(/^5\.3\.4 .*(too big|size exceeds)/);
      await postfix.waitForQueueEmpty();
      expect(delivered("data-too-big")).toEqual([]);
    });

    it("answers 451 while the lookup service is down, and accepts the sender's retry once it is back", async () => {
      const closing = Date.now();
      await lookup.close();
      // Postfix holds idle socketmap connections; a clean stop must not wait for them to time out.
      expect(Date.now() - closing).toBeLessThan(1_000);
      const during = await send(["alice@brightchain.org"], "lookup-down");
      expect(during.rcpt[0]!.code).toBe(451);
      expect(during.rcpt[0]!.text).toMatch(/4\.3\.0 .*Temporary lookup failure/);

      await startLookup();
      const retry = await send(["alice@brightchain.org"], "lookup-down");
      expect(retry.rcpt[0]!.code).toBe(250);
      expect(retry.message!.code).toBe(250);
      await waitFor("the retried message in the drop", () => delivered("lookup-down").length === 1);
    });

    it("keeps answering after the service closed Postfix's idle socketmap connections", async () => {
      expect((await send(["alice@brightchain.org"], "before-idle")).rcpt[0]!.code).toBe(250);
      await waitFor("the lookup service to close idle connections", () => lookup.openConnections === 0, IDLE_TIMEOUT_MS * 20);
      const after = await send(["bob@brightchain.org", "nobody@brightchain.org"], "after-idle");
      expect(after.rcpt.map((r) => r.code)).toEqual([250, 550]);
    });

    it("accepts a user added to the registry file without restarting anything", async () => {
      expect((await send(["dave@brightchain.org"], "new-user")).rcpt[0]!.code).toBe(550);
      writeFileSync(
        `${registryFile}.new`,
        "alice@brightchain.org\nbob@brightchain.org\ncarol@brightchain.org\ndave@brightchain.org\n",
      );
      renameSync(`${registryFile}.new`, registryFile);
      await waitFor("the registry to reload", () => registry.find("dave@brightchain.org") !== undefined);
      const reply = await send(["dave@brightchain.org"], "new-user");
      expect(reply.rcpt[0]!.code).toBe(250);
      await waitFor("dave's copy in the drop", () => delivered("new-user").length === 1);
    });

    it("answers 550, not a 4xx that would be retried forever, for a recipient key the service cannot parse", async () => {
      const reply = await send(['"alice smith"@brightchain.org'], "malformed-key");
      expect(reply.rcpt[0]!.code).toBe(550);
      expect(reply.rcpt[0]!.text).toMatch(/User unknown in virtual mailbox table/);
    });

    it("answers 451 while the node's registry API is slower than the lookup deadline", async () => {
      // Never answers alice: the node is hung. The stand-in holds the requests to docs/node-api.openapi.yaml.
      const api = await StandInNode.start(({ path }) =>
        path.address === "alice@brightchain.org" ? "no answer" : { status: 404 },
      );
      const slowRegistry = new HttpRegistry(api.url, {
        cacheTtlSeconds: 0,
        timeoutMs: 2_000,
      });
      await lookup.close();
      lookup = new RecipientLookupService({
        registry: slowRegistry,
        domains: [node.domain],
        port: lookupPort,
        lookupTimeoutMs: 1_000,
      });
      await lookup.listen();
      try {
        const reply = await send(["alice@brightchain.org", "nobody@brightchain.org"], "registry-slow");
        expect(reply.rcpt[0]!.code).toBe(451);
        expect(reply.rcpt[0]!.text).toMatch(/4\.3\.0 .*Temporary lookup failure/);
        expect(reply.rcpt[1]!.code).toBe(550);
      } finally {
        await lookup.close();
        slowRegistry.close();
        await api.close();
        await startLookup();
      }
      expect(api.violations).toEqual([]);
    });
  },
);
