// A real Debian Postfix validating recipients at RCPT time through the real RecipientLookupService, and
// delivering accepted mail into a drop Maildir through a virtual(8) brightchain-drop transport.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileRegistry } from "../../runtime/src/lookup/registry";
import { RecipientLookupService } from "../../runtime/src/lookup/server";
import { defaultMessage, freePort, sendMail, startPostfix, waitFor, type PostfixInstance } from "../helpers/postfix-server";

/** virtual(8) refuses uids below virtual_minimum_uid and root; nobody owns the drop Maildir in this test. */
const DROP_UID = 65534;
const DROP_GID = 65534;
const MESSAGE_SIZE_LIMIT = 100_000;

describe("Postfix recipient validation through the lookup service", () => {
  const spool = mkdtempSync(join(tmpdir(), "postfix-lookup-spool-"));
  const dropDir = join(spool, "incoming");
  const registryFile = join(spool, "recipients");
  let registry: FileRegistry;
  let lookup: RecipientLookupService;
  let lookupPort: number;
  let postfix: PostfixInstance;

  const startLookup = async () => {
    lookup = new RecipientLookupService({ registry, domains: ["brightchain.org"], port: lookupPort, lookupTimeoutMs: 1_000 });
    await lookup.listen();
  };

  /** Drop files whose body mentions `marker`, as Postfix wrote them. */
  const delivered = (marker: string) =>
    readdirSync(join(dropDir, "new"))
      .map((name) => readFileSync(join(dropDir, "new", name), "utf8"))
      .filter((text) => text.includes(marker));

  const send = (to: string[], subject: string, extra: { declaredSize?: number; message?: string } = {}) =>
    sendMail({ port: postfix.smtpPort, from: "sender@example.net", to, message: extra.message ?? defaultMessage("sender@example.net", to, subject), declaredSize: extra.declaredSize });

  beforeAll(async () => {
    chmodSync(spool, 0o755);
    for (const sub of ["tmp", "new", "cur"]) mkdirSync(join(dropDir, sub), { recursive: true });
    for (const d of [dropDir, ...["tmp", "new", "cur"].map((s) => join(dropDir, s))]) {
      chownSync(d, DROP_UID, DROP_GID);
      chmodSync(d, 0o750);
    }
    writeFileSync(registryFile, "alice@brightchain.org\nbob@brightchain.org\ncarol@brightchain.org\n");
    registry = new FileRegistry(registryFile);
    lookupPort = await freePort();
    await startLookup();
    postfix = await startPostfix({
      main: {
        mydomain: "brightchain.org",
        virtual_mailbox_domains: "brightchain.org",
        virtual_mailbox_maps: `socketmap:inet:127.0.0.1:${lookupPort}:virtual`,
        virtual_transport: "brightchain-drop",
        message_size_limit: String(MESSAGE_SIZE_LIMIT),
      },
      master: [
        "brightchain-drop unix - n n - - virtual",
        `  -o virtual_mailbox_base=${spool}`,
        "  -o virtual_mailbox_maps=static:incoming/",
        `  -o virtual_uid_maps=static:${DROP_UID}`,
        `  -o virtual_gid_maps=static:${DROP_GID}`,
        "  -o virtual_minimum_uid=100",
      ].join("\n"),
    });
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
    const deliveredTo = delivered("case-and-tag").map((text) => /^Delivered-To: (.*)$/im.exec(text)![1]!.toLowerCase()).sort();
    expect(deliveredTo).toEqual(["bob+lists@brightchain.org", "carol@brightchain.org"]);
  });

  it("turns one transaction to 3 recipients into 3 drop files", async () => {
    const to = ["alice@brightchain.org", "bob@brightchain.org", "carol@brightchain.org"];
    const reply = await send(to, "three-recipients");
    expect(reply.rcpt.map((r) => r.code)).toEqual([250, 250, 250]);
    expect(reply.message!.code).toBe(250);
    await waitFor("three drop files", () => delivered("three-recipients").length === 3);
    const deliveredTo = delivered("three-recipients").map((text) => /^Delivered-To: (.*)$/m.exec(text)![1]).sort();
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
});
