// A relay (backup MX) and a primary, two real Postfix instances from the spine's rendered files, both asking the
// real RecipientLookupService: the relay refuses unknown users at RCPT (relay_recipient_maps, same socketmap
// name), answers 451 while the lookup is down, and forwards what it accepts to the primary, which delivers
// it into its drop Maildir.
//
// Changed from the rendered files beyond renderedPostfixOptions: the relay forwards to the primary's loopback
// port instead of [mail.brightchain.org]:25; both nodes point at one lookup service and registry; mynetworks is
// empty on both so every client is a stranger.
import { readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { FileRegistry } from "../../runtime/src/lookup/registry";
import { RecipientLookupService } from "../../runtime/src/lookup/server";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";
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

describe("a relay validating through the lookup service and forwarding to the primary", () => {
  const root = scratchDir("postfix-relay-lookup-");
  const registryFile = join(root, "recipients");
  let registry: FileRegistry;
  let lookup: RecipientLookupService;
  let lookupPort: number;
  let primary: PostfixInstance;
  let relay: PostfixInstance;
  let primaryNode: GatewayNode;

  const startLookup = async () => {
    lookup = new RecipientLookupService({ registry, domains: ["brightchain.org"], port: lookupPort, lookupTimeoutMs: 1_000 });
    await lookup.listen();
  };
  const delivered = (marker: string) => {
    const newDir = join(primaryNode.drop.mailDropDir, "new");
    return readdirSync(newDir)
      .map((name) => readFileSync(join(newDir, name), "utf8"))
      .filter((text) => text.includes(marker));
  };
  const sendToRelay = (to: string[], subject: string) =>
    sendMail({
      port: relay.smtpPort,
      from: "sender@example.net",
      to,
      message: defaultMessage("sender@example.net", to, subject),
    });

  beforeAll(async () => {
    writeFileSync(registryFile, "alice@brightchain.org\nbob@brightchain.org\n");
    registry = new FileRegistry(registryFile);
    lookupPort = await freePort();
    await startLookup();
    const lookupSettings = {
      ...examplePrimary.lookup,
      port: lookupPort,
      registry: { kind: "file" as const, path: registryFile },
    };

    primaryNode = withTestDropSpool({ ...examplePrimary, mynetworks: [], lookup: lookupSettings }, root).node;
    primary = await startPostfix(renderedPostfixOptions(primaryNode));

    const relayNode: GatewayNode = { ...exampleRelay, mynetworks: [], lookup: lookupSettings };
    relay = await startPostfix(
      renderedPostfixOptions(relayNode, { main: { relay_transport: `relay:[127.0.0.1]:${primary.smtpPort}` } }),
    );
    expect(await relay.postconf("relay_recipient_maps")).toBe(`socketmap:inet:127.0.0.1:${lookupPort}:virtual`);
  });

  afterAll(async () => {
    await relay?.stop();
    await primary?.stop();
    await lookup?.close();
    registry?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("accepts known and +tag recipients, refuses unknown ones with 550, and the primary delivers the accepted", async () => {
    const reply = await sendToRelay(
      ["alice@brightchain.org", "bob+lists@brightchain.org", "mallory@brightchain.org"],
      "via-relay",
    );
    expect(reply.rcpt.map((r) => r.code)).toEqual([250, 250, 550]);
    expect(reply.rcpt[2]!.text).toMatch(/5\.1\.1 .*User unknown in relay recipient table/);
    expect(reply.message!.code).toBe(250);
    await waitFor("both copies in the primary's drop", () => delivered("via-relay").length === 2);
    const deliveredTo = delivered("via-relay")
      .map((text) => /^Delivered-To: (.*)$/m.exec(text)![1])
      .sort();
    expect(deliveredTo).toEqual(["alice@brightchain.org", "bob+lists@brightchain.org"]);
    await relay.waitForQueueEmpty();
  });

  it("answers 451 while the lookup service is down, then accepts and forwards the retry", async () => {
    await lookup.close();
    const during = await sendToRelay(["alice@brightchain.org"], "relay-lookup-down");
    expect(during.rcpt[0]!.code).toBe(451);
    await startLookup();
    const retry = await sendToRelay(["alice@brightchain.org"], "relay-lookup-down");
    expect(retry.rcpt[0]!.code).toBe(250);
    expect(retry.message!.code).toBe(250);
    await waitFor("the retried message in the primary's drop", () => delivered("relay-lookup-down").length === 1);
  });
});
