// The Postfix test harness itself: other host tests trust it to start an isolated instance, change its
// configuration, report its queue and stop it without leaving anything behind.
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { portAccepts, processAlive, sendMail, startPostfix, waitFor } from "../helpers/postfix-server";

describe("postfix test harness", () => {
  it("starts an instance, reloads changed parameters, holds and flushes its queue, and stops cleanly", async () => {
    const postfix = await startPostfix({
      main: {
        virtual_mailbox_domains: "brightchain.org",
        // Every recipient exists and is discarded on delivery; defer_transports holds it in the queue first.
        virtual_mailbox_maps: "static:ok",
        virtual_transport: "discard:",
        defer_transports: "discard",
      },
    });
    try {
      expect(await postfix.postconf("queue_directory")).toBe(postfix.queueDir);
      // postlogd writes the log asynchronously.
      await waitFor("the master's start in the log", () => /daemon started -- version \d+\.\d+/.test(postfix.maillog()));

      const reply = await sendMail({ port: postfix.smtpPort, from: "sender@example.net", to: ["anyone@brightchain.org"] });
      expect(reply.greeting.code).toBe(220);
      expect(reply.message!.code).toBe(250);
      const queueId = /queued as ([0-9A-Za-z]+)/.exec(reply.message!.text)![1]!;
      expect(await postfix.queuedIds()).toEqual([queueId]);

      await postfix.setMainCf({ defer_transports: "" });
      expect(await postfix.postconf("defer_transports")).toBe("");
      await postfix.flushQueue();
      await postfix.waitForQueueEmpty();
      await waitFor("the discard in the log", () =>
        new RegExp(`${queueId}: .*relay=none, .*status=sent`).test(postfix.maillog()),
      );
    } finally {
      await postfix.stop();
    }
    expect(processAlive(postfix.masterPid)).toBe(false);
    expect(existsSync(postfix.dir)).toBe(false);
    expect(await portAccepts(postfix.smtpPort)).toBe(false);
  });
});
