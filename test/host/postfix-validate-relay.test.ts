// A relay (backup MX) and a primary, both real Postfix 3.7 from the rendered files, on loopback: the relay
// refuses unknown users and foreign domains at RCPT, forwards accepted mail to the primary's port 25 through
// relay_transport, and the primary drops it into its Maildir. The relay refuses TLS 1.1 and accepts TLS 1.2 and 1.3.
//
// The primary listens on port 25 of a loopback address of its own (127.25.3.7) because the relay's
// relay_transport names port 25, the part under test; the relay's node has relay.forwardTo = that address.
// Other changes from the rendered files: renderedPostfixOptions' (instance paths, a free port for the relay,
// no milters, no submission) with TLS kept on a self-signed cert; a stand-in socketmap; the primary's spool
// owned by nobody (withTestDropSpool); empty mynetworks.
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";
import type { GatewayNode } from "../../infra/model/types";
import {
  renderedPostfixOptions,
  startPostfix,
  waitFor,
  withTestDropSpool,
  type PostfixInstance,
} from "../helpers/postfix-server";
import {
  SmtpClient,
  countFiles,
  createSelfSignedCert,
  scratchDir,
  startSocketmap,
  type SocketmapStandIn,
} from "../helpers/postfix-tools";
import { tlsFloorViolations } from "../helpers/tls-probe";

const PRIMARY_ADDRESS = "127.25.3.7";

async function assertPort25Free(): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", (error) => reject(new Error(`${PRIMARY_ADDRESS}:25 is taken; this test needs it: ${String(error)}`)));
    probe.listen(25, PRIMARY_ADDRESS, resolve);
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

describe("relay forwarding to the primary", () => {
  let root: string;
  let socketmap: SocketmapStandIn;
  let primary: PostfixInstance;
  let relay: PostfixInstance;
  let primaryNode: GatewayNode;

  beforeAll(async () => {
    await assertPort25Free();
    root = scratchDir("h3-relay-");
    socketmap = await startSocketmap(new Set(["alice@brightchain.org"]));
    const cert = await createSelfSignedCert(root, "mail.brightchain.org");
    primaryNode = withTestDropSpool(
      { ...examplePrimary, mynetworks: [], lookup: { ...examplePrimary.lookup, port: socketmap.port } },
      root,
    ).node;
    const relayNode: GatewayNode = {
      ...exampleRelay,
      mynetworks: [],
      lookup: { ...exampleRelay.lookup, port: socketmap.port },
      relay: { ...exampleRelay.relay!, forwardTo: PRIMARY_ADDRESS },
    };
    primary = await startPostfix(renderedPostfixOptions(primaryNode, { cert, smtp: { host: PRIMARY_ADDRESS, port: 25 } }));
    relay = await startPostfix(renderedPostfixOptions(relayNode, { cert }));
  });

  afterAll(async () => {
    await relay?.stop();
    await primary?.stop();
    await socketmap?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("refuses unknown users and foreign domains, and forwards known ones to the primary's drop", async () => {
    const { client } = await SmtpClient.open(relay.smtpPort);
    try {
      expect(await client.command("EHLO sender.example.net")).toMatch(/^250 /);
      expect(await client.command("MAIL FROM:<sender@example.net>")).toMatch(/^250 /);
      expect(await client.command("RCPT TO:<mallory@brightchain.org>")).toMatch(
        /^550 5\.1\.1 .*User unknown in relay recipient table/,
      );
      expect(await client.command("RCPT TO:<someone@example.com>")).toMatch(/^554 5\.7\.1 .*Relay access denied/);
      expect(await client.command("RCPT TO:<alice@brightchain.org>")).toMatch(/^250 /);
      expect(await client.data("From: sender@example.net\nSubject: via the backup MX\n\nhello\n")).toMatch(/^250 /);
      await client.close();
    } finally {
      client.destroy();
    }

    const newDir = join(primaryNode.drop.mailDropDir, "new");
    await waitFor("the forwarded message in the primary's drop", () => countFiles(newDir) === 1, 60_000);
    const message = readFileSync(join(newDir, readdirSync(newDir)[0]!), "utf8");
    expect(message).toMatch(/^Delivered-To: alice@brightchain\.org$/m);
    expect(message).toMatch(/^Received: from mail2\.brightchain\.org/m);
    // The hop relay → primary used TLS (smtp_tls_security_level = may, primary offers STARTTLS).
    expect(message).toMatch(/\(using TLSv1\.[23] /);
    await relay.waitForQueueEmpty();
  });

  it("refuses TLS 1.1 and accepts TLS 1.2 and 1.3 on port 25", async () => {
    // TLS 1.1 is offered at SECLEVEL=0, so only the server can refuse it (test/host/tls-probe.test.ts).
    expect(await tlsFloorViolations({ host: "127.0.0.1", port: relay.smtpPort })).toEqual([]);
  });
});
