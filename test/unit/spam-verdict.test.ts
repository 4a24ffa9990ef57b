import { describe, expect, it } from "vitest";
import { headerFields } from "../../runtime/src/inbound/message-file";
import { spamVerdict } from "../../runtime/src/inbound/spam-verdict";

// Header sections as the engines write them. The SpamAssassin ones are `spamassassin -L` 4.0.1 output from
// this machine (GTUBE and a plain note); the Rspamd one is milter_headers' default set (extended + x-spam-status).
const spamassassinGtube = [
  "Delivered-To: alice@brightchain.org",
  "X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on vm",
  "X-Spam-Flag: YES",
  "X-Spam-Level: **************************************************",
  "X-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE,MSGID_SHORT,",
  "\tNO_RECEIVED,NO_RELAYS,TVD_SPACE_RATIO autolearn=no autolearn_force=no",
  "\tversion=4.0.1",
  "Subject: test",
  "",
  "",
].join("\r\n");

const spamassassinProbable = spamassassinGtube.replace("score=1000.0", "score=7.2");

const spamassassinHam = [
  "Delivered-To: alice@brightchain.org",
  "X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on vm",
  "X-Spam-Level: ",
  "X-Spam-Status: No, score=-0.0 required=5.0 tests=MSGID_SHORT,NO_RECEIVED,",
  "\tNO_RELAYS autolearn=ham autolearn_force=no version=4.0.1",
  "Subject: lunch",
  "",
  "",
].join("\r\n");

const rspamdProbable = [
  "Delivered-To: alice@brightchain.org",
  "X-Spamd-Result: default: False [7.20 / 15.00];",
  "\tR_SPF_FAIL(1.00)[-all];",
  "\tMISSING_MID(2.50)[];",
  "\tFROM_HAS_DN(0.00)[]",
  "X-Rspamd-Server: mail",
  "X-Rspamd-Queue-Id: 4F2A1C0123",
  "X-Spam-Status: Yes, score=7.20",
  "X-Rspamd-Score: 7.2",
  "X-Rspamd-Action: add header",
  "Subject: offer",
  "",
  "",
].join("\r\n");

const rspamdHam = [
  "Delivered-To: alice@brightchain.org",
  "X-Spamd-Result: default: False [-0.10 / 15.00];",
  "\tMIME_GOOD(-0.10)[text/plain]",
  "X-Rspamd-Score: -0.1",
  "Subject: hello",
  "",
  "",
].join("\r\n");

async function verdictOf(section: string, engine: "spamassassin" | "rspamd" | "none", probable = 5.0) {
  return spamVerdict(headerFields(Buffer.from(section)), engine, probable);
}

describe("spam verdict from the engine's headers", () => {
  it("files SpamAssassin's GTUBE score and a 7.2 in spam, its ham in inbox", async () => {
    expect(await verdictOf(spamassassinGtube, "spamassassin")).toMatchObject({ folder: "spam", score: 1000 });
    expect(await verdictOf(spamassassinProbable, "spamassassin")).toMatchObject({ folder: "spam", score: 7.2 });
    expect(await verdictOf(spamassassinHam, "spamassassin")).toMatchObject({ folder: "inbox", score: -0 });
  });

  it("reads Rspamd's X-Spamd-Result and X-Rspamd-Score", async () => {
    expect(await verdictOf(rspamdProbable, "rspamd")).toMatchObject({ folder: "spam", score: 7.2 });
    expect(await verdictOf(rspamdHam, "rspamd")).toMatchObject({ folder: "inbox", score: -0.1 });
    const resultOnly = rspamdProbable.replace(/X-Spam-Status.*\r\n|X-Rspamd-Score.*\r\n/g, "");
    expect(await verdictOf(resultOnly, "rspamd")).toMatchObject({ folder: "spam", score: 7.2 });
  });

  it("compares against GATEWAY_SPAM_PROBABLE inclusively", async () => {
    expect(await verdictOf(spamassassinProbable, "spamassassin", 7.2)).toMatchObject({ folder: "spam" });
    expect(await verdictOf(spamassassinProbable, "spamassassin", 7.3)).toMatchObject({ folder: "inbox" });
  });

  it("ignores spam headers entirely when no engine runs (they came from the sender)", async () => {
    expect(await verdictOf(spamassassinGtube, "none")).toEqual({
      folder: "inbox",
      reason: "no spam engine configured",
      unscanned: false,
    });
  });

  it("does not read the other engine's headers", async () => {
    expect(await verdictOf(rspamdHam.replace(/X-Rspamd-Score.*\r\n/, ""), "spamassassin")).toMatchObject({
      folder: "inbox",
      unscanned: true,
    });
  });

  it("files an unscanned message (engine set, no header) in inbox and flags it", async () => {
    const verdict = await verdictOf("Delivered-To: alice@brightchain.org\r\nSubject: x\r\n\r\n", "rspamd");
    expect(verdict).toMatchObject({ folder: "inbox", unscanned: true });
    expect(verdict.score).toBeUndefined();
  });

  it("lets the highest score win, so a forged low header cannot hide the engine's real one", async () => {
    const forged = spamassassinProbable.replace("Subject: test", "X-Spam-Status: No, score=-50.0 required=5.0\r\nSubject: test");
    expect(await verdictOf(forged, "spamassassin")).toMatchObject({ folder: "spam", score: 7.2 });
  });
});

describe("spam verdict: each header an engine writes, on its own", () => {
  const verdict = (engine: "spamassassin" | "rspamd", ...lines: string[]) =>
    spamVerdict(headerFields(Buffer.from(`Delivered-To: alice@brightchain.org\r\n${lines.join("\r\n")}\r\n\r\n`)), engine, 5);

  it.each([
    ["spamassassin", "X-Spam-Status: Yes, score=7.2 required=5.0", 7.2],
    ["spamassassin", "X-Spam-Status: Yes, Score=7.2 required=5.0", 7.2],
    ["spamassassin", "X-Spam-Score: 6.5", 6.5],
    ["rspamd", "X-Spamd-Result: default: True [8.00 / 15.00]", 8],
    ["rspamd", "X-Rspamd-Score: 9.5", 9.5],
    ["rspamd", "X-Spam-Score: 7.20 / 15.00", 7.2],
    ["rspamd", "X-Spam-Status: Yes, score=6.10", 6.1],
    ["rspamd", "X-Spam-Status: Yes, SCORE=6.10", 6.1],
  ] as const)("%s: %s is read as %d", (engine, line, score) => {
    expect(verdict(engine, line)).toEqual({
      folder: "spam",
      score,
      reason: `${engine} score ${score} >= GATEWAY_SPAM_PROBABLE 5`,
      unscanned: false,
    });
  });

  it("says why a scored message stays in inbox", () => {
    expect(verdict("spamassassin", "X-Spam-Score: 1.5")).toEqual({
      folder: "inbox",
      score: 1.5,
      reason: "spamassassin score 1.5 < GATEWAY_SPAM_PROBABLE 5",
      unscanned: false,
    });
  });

  it("says which engine's header is missing when a message was not scanned", () => {
    expect(verdict("spamassassin", "Subject: hi")).toEqual({
      folder: "inbox",
      reason: "no spamassassin score header: the message was not scanned",
      unscanned: true,
    });
  });

  it("skips an engine header without a score and reads the next one", () => {
    expect(verdict("spamassassin", "X-Spam-Status: No, tests=NONE", "X-Spam-Score: 2.5")).toMatchObject({ score: 2.5 });
  });

  it("lets the highest score win whichever order the headers come in", () => {
    expect(verdict("rspamd", "X-Rspamd-Score: -20", "X-Rspamd-Score: 7")).toMatchObject({ folder: "spam", score: 7 });
    expect(verdict("rspamd", "X-Rspamd-Score: 7", "X-Rspamd-Score: -20")).toMatchObject({ folder: "spam", score: 7 });
  });
});
