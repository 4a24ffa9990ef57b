// The end-to-end mail scenarios, run on whatever put the nodes there: the primary stack on `mail`, the relay
// stack on `mail2`, `outside` as the rest of the internet (swaks, and a Postfix of its own for outside.test), the
// lab DNS serving the stacks' MX and DKIM records. test/lab/scenarios.test.ts runs them on nodes deployed by the
// Pulumi program's commands, test/lab/ansible.test.ts on nodes deployed by the playbook; docs/scenarios.md says
// what each proves.
import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { LAB_RECIPIENT_LOCAL_PARTS, LAB_SUBMISSION_USER } from "../../infra/deploy";
import { LAB_HOSTS } from "../../infra/lab/constants";
import { labDown, labReboot, labStart, labStatus, labStop } from "../../infra/lab/lab";
import { takeLabLock } from "../../infra/lab/lock";
import { readLabState } from "../../infra/lab/state";
import {
  GATEWAY_ENV_FILE,
  RUNTIME_DIR,
  mailLog,
  on,
  rcptReply,
  readStoreMessage,
  shellQuote,
  storeEntries,
  swaksFromOutside,
  tryOn,
  uniqueSubject,
  waitForStoreEntries,
  waitOnHost,
} from "./lab-mail";
import { presentedCertificate, probeStarttls, tlsFloorViolations, type OpensslRunner } from "./tls-probe";

export const PRIMARY_SERVICES = [
  "postfix",
  "opendkim",
  "spamd",
  "spamass-milter",
  "dovecot",
  "brightchain-lookup",
  "brightchain-inbound",
];
export const RELAY_SERVICES = ["postfix", "rspamd", "brightchain-lookup"];
const RECIPIENTS = LAB_RECIPIENT_LOCAL_PARTS.map((local) => `${local}@brightchain.org`);
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/** Scored 6 by a local SpamAssassin rule: above the spam-folder threshold (5), below the reject threshold (10). */
const BETWEEN_THRESHOLDS_MARKER = "brightchain-lab-between-thresholds-marker";
const LOCAL_RULE_FILE = "/etc/spamassassin/zz-lab-test.cf";
const PRIMARY = LAB_HOSTS.find((host) => host.name === "mail")!;
const RELAY = LAB_HOSTS.find((host) => host.name === "mail2")!;

/** Seconds per named step, printed by the test file at the end. */
export interface LabTimer {
  timings: Record<string, number>;
  timed<T>(label: string, work: () => Promise<T>): Promise<T>;
}

export function labTimer(): LabTimer {
  const timings: Record<string, number> = {};
  return {
    timings,
    async timed(label, work) {
      const started = Date.now();
      try {
        return await work();
      } finally {
        timings[label] = (Date.now() - started) / 1000;
      }
    },
  };
}

/**
 * Takes the lab lock and makes sure no one else's lab is up; returns the lock's release. A lab that is up while
 * we hold the lock belongs to someone who did not take it: waited for, never taken down. One whose hosts all died
 * (its owner crashed) serves no one, and one left by a crashed `lab up` (state recorded, never ready) is removed
 * from its own record.
 */
export async function claimLab(): Promise<() => void> {
  const release = await takeLabLock(1_800_000);
  try {
    const waitUntil = Date.now() + 600_000;
    while (labStatus().up && labStatus().hosts.some((host) => host.running)) {
      if (Date.now() > waitUntil) throw new Error("another lab stayed up for 10 minutes; not touching it");
      await new Promise((resolve) => setTimeout(resolve, 5_000));
    }
    if (readLabState()) await labDown({ progress: () => undefined });
  } catch (error) {
    release();
    throw error;
  }
  return release;
}

/** `outside` becomes the MTA for outside.test: Postfix delivering to ~/Maildir, swaks, openssl, a DKIM verifier. */
const OUTSIDE_SETUP = [
  "set -eu",
  "export DEBIAN_FRONTEND=noninteractive",
  "echo 'postfix postfix/main_mailer_type select Internet Site' | debconf-set-selections",
  "echo 'postfix postfix/mailname string mx.outside.test' | debconf-set-selections",
  "apt-get install -y -q --no-install-recommends postfix swaks libnet-ssleay-perl libio-socket-ssl-perl python3-dkim dnsutils openssl netcat-openbsd >/dev/null",
  // A short connect timeout: a powered-off primary makes the sender wait for this before it tries the next MX.
  "postconf -e myhostname=mx.outside.test mydomain=outside.test 'mydestination=outside.test, localhost' inet_protocols=ipv4 " +
    "home_mailbox=Maildir/ 'mynetworks=127.0.0.0/8' smtp_connect_timeout=5s smtp_tls_security_level=may",
  "id bob >/dev/null 2>&1 || useradd -m bob",
  "systemctl restart postfix",
].join("\n");

export async function setUpOutside(): Promise<void> {
  await on("outside", OUTSIDE_SETUP);
}

/**
 * brightchain-send's own env file: the daemons' gateway.env holds no SASL password. Its GATEWAY_POSTFIX_CA_FILE
 * names the host's trust store, which holds pebble's root.
 */
const SEND_ENV_FILE = "/etc/brightchain/brightchain-send.env";

/** True once the gateway's own recipient lookup (the map Postfix asks at RCPT) knows `address`. */
function lookupKnows(address: string): string {
  return `for map in $(postconf -h virtual_mailbox_maps relay_recipient_maps | tr ', ' '\\n\\n'); do postmap -q ${shellQuote(address)} "$map" && exit 0; done; exit 1`;
}

/**
 * Both gateways waited for until their lookup knows the users the lab stacks list in gateway:recipients (the
 * deploy wrote the same registry on both) and a sender gets past MAIL FROM: the milters are up (the relay
 * answered 451 there while Rspamd was still starting after its deploy).
 */
export async function readyGatewaysForMail(): Promise<void> {
  for (const host of ["mail", "mail2"] as const) {
    for (const address of RECIPIENTS)
      await waitOnHost(host, `recipient lookup knowing ${address}`, lookupKnows(address), (_out, code) => code === 0);
  }
  for (const host of [PRIMARY, RELAY]) {
    await waitOnHost(
      "outside",
      `${host.name}:25 accepting MAIL FROM`,
      `swaks --to alice@brightchain.org --from someone@outside.test --server ${host.fqdn} --quit-after FROM 2>&1`,
      (out) => /^<- +250 2\.1\.0/m.test(out),
      {
        deadlineMs: 180_000,
        intervalMs: 2_000,
        diagnose: () => mailLog(host.name as "mail" | "mail2"),
      },
    );
  }
}

/** openssl on `outside`, as any sender on the internet would run it. */
const opensslFromOutside: OpensslRunner = async (args) => {
  const run = await tryOn("outside", `openssl ${args.map(shellQuote).join(" ")} 2>&1`, "QUIT\r\n", 60_000);
  return { exitCode: run.exitCode, output: `${run.stdout}${run.stderr}` };
};

/**
 * Waits until no copy of any message can still reach the store: every host's Postfix queue (deferred ones too)
 * and the primary's drop new/ empty, all in one round. Until the store has it, a message is always in a queue
 * or in new/; the round reads them in the direction mail flows (outside, relay, primary, new/), so a message
 * that moves on during the round is met again further down. Only then is a count of store entries final.
 */
export async function waitForMailSettled(deadlineMs = 180_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const pending: string[] = [];
    for (const host of ["outside", "mail2", "mail"] as const) {
      const queue = await tryOn(host, "postqueue -j", undefined, 60_000);
      if (queue.exitCode !== 0 || queue.stdout.trim() !== "") {
        pending.push(`${host}: postqueue -j exited ${queue.exitCode}:\n${queue.stdout}${queue.stderr}`);
      }
    }
    const drop = await tryOn(
      "mail",
      `set -a && . ${GATEWAY_ENV_FILE} && set +a && ls -A "$GATEWAY_MAIL_DROP_DIR/new"`,
      undefined,
      60_000,
    );
    if (drop.exitCode !== 0 || drop.stdout.trim() !== "") {
      pending.push(`mail: the drop's new/ (ls exited ${drop.exitCode}):\n${drop.stdout}${drop.stderr}`);
    }
    if (pending.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`mail still on its way after ${deadlineMs} ms:\n${pending.join("\n")}\n${await mailLog("mail")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

/** Store entries with this subject once nothing can still arrive (waitForMailSettled). */
async function settledEntries(subject: string): Promise<number> {
  await waitForMailSettled();
  return (await storeEntries()).filter((entry) => entry.subject === subject).length;
}

/**
 * brightchain-send on the primary (SASL on 587, as the BrightChain node sends) to bob@outside.test; resolves with
 * the message as bob's Maildir on outside holds it and the file's path there.
 */
export async function sendOutboundToBob(subject: string): Promise<{ message: string; file: string }> {
  const sent = await on(
    "mail",
    `set -a && . ${SEND_ENV_FILE} && set +a && test "$GATEWAY_POSTFIX_USER" = ${shellQuote(LAB_SUBMISSION_USER.username)} && ` +
      `echo 'hello outside' | node ${RUNTIME_DIR}/brightchain-send.cjs --from alice@brightchain.org --to bob@outside.test --subject ${shellQuote(subject)} 2>&1`,
  );
  expect(sent).toMatch(/^accepted for bob@outside\.test: 250 /);
  const file = (
    await waitOnHost(
      "outside",
      "the message in bob's Maildir",
      `grep -l -F ${shellQuote(subject)} /home/bob/Maildir/new/* 2>/dev/null`,
      (_out, code) => code === 0,
      { deadlineMs: 90_000, diagnose: () => mailLog("mail") },
    )
  )
    .trim()
    .split("\n")[0]!;
  return { message: await on("outside", `cat ${shellQuote(file)}`), file };
}

/** dkimverify (python3-dkim) on outside, which fetches the selector's record from the lab DNS as any receiver. */
export async function dkimVerifiesOnOutside(file: string): Promise<boolean> {
  const result = await tryOn("outside", `dkimverify < ${shellQuote(file)} 2>&1`);
  return result.stdout.includes("signature ok");
}

/** Registers every scenario; the file's beforeAll must have deployed both stacks and run readyGatewaysForMail. */
export function describeMailScenarios(timer: LabTimer): void {
  describe("outside → primary: recipients", () => {
    it("delivers a known recipient's message into the BrightChain store, folder inbox", async () => {
      await timer.timed("scenario inbound", async () => {
        const subject = uniqueSubject("known recipient");
        const sent = await swaksFromOutside({ to: "alice@brightchain.org", server: PRIMARY.fqdn, subject });
        expect(sent.transcript, `outside → mail:25\n${sent.transcript}`).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
        const [entry] = await waitForStoreEntries(subject);
        expect(entry).toMatchObject({ folder: "inbox", recipient: "alice@brightchain.org", from: "someone@outside.test" });
        expect(await readStoreMessage(entry!.sha3)).toContain("hello from outside");
        // One inode for the store's object and the Maildir file in cur/: the bytes are on disk once. Under the
        // unit's sandbox this holds only because the spool is one ReadWritePaths= entry (one mount for link(2)).
        const object = `$GATEWAY_STORE_DIR/objects/${entry!.sha3.slice(0, 2)}/${entry!.sha3.slice(2)}`;
        const links = await on(
          "mail",
          `set -a && . ${GATEWAY_ENV_FILE} && set +a && stat -c %h "${object}" && ` +
            `find "$GATEWAY_MAIL_DROP_DIR/cur" -samefile "${object}" | wc -l`,
        );
        expect(links.trim().split("\n")).toEqual(["2", "1"]);
        expect(await on("mail", "journalctl -u brightchain-inbound --no-pager -o cat")).not.toContain("cannot hard-link");
      });
    });

    it.each([
      ["mail", PRIMARY.fqdn],
      ["mail2", RELAY.fqdn],
    ])("refuses an unknown recipient with 550 at RCPT on %s", async (host, server) => {
      const sent = await swaksFromOutside({ to: "nobody-here@brightchain.org", server });
      expect(rcptReply(sent.transcript), `outside → ${host}:25\n${sent.transcript}`).toMatch(/^<[*~]\* +550 5\.1\.1 /);
      expect(sent.transcript).not.toMatch(/ -> DATA/);
    });

    it("delivers a mixed-case recipient once, filed under the canonical address", async () => {
      const subject = uniqueSubject("mixed case");
      const sent = await swaksFromOutside({ to: "Alice@BrightChain.ORG", server: PRIMARY.fqdn, subject });
      expect(sent.transcript, sent.transcript).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
      const entries = await waitForStoreEntries(subject);
      expect(entries.map((entry) => entry.recipient)).toEqual(["alice@brightchain.org"]);
      expect(await settledEntries(subject), "store entries once every queue and new/ are empty").toBe(1);
    });
  });

  describe("primary down: mail goes to the relay by MX order, queues, and arrives once the primary is back", () => {
    it("loses nothing and duplicates nothing", async () => {
      await timer.timed("scenario failover", async () => {
        const subjects = [uniqueSubject("failover one"), uniqueSubject("failover two")];
        await labStop("mail");
        try {
          for (const subject of subjects) {
            // Into outside's own Postfix, which finds brightchain.org's MX in the lab DNS like any sender.
            const sent = await swaksFromOutside({ to: "alice@brightchain.org", server: "127.0.0.1", subject });
            expect(sent.transcript, sent.transcript).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
          }
          await waitOnHost("outside", "its queue handing both messages on", "postqueue -j", (out) => out.trim() === "", {
            deadlineMs: 120_000,
            diagnose: async () => (await tryOn("outside", "postqueue -p; journalctl -u postfix@- -n 30 --no-pager")).stdout,
          });
          const relayQueue = await waitOnHost(
            "mail2",
            "both messages queued for the primary",
            "postqueue -j",
            (out) =>
              out
                .trim()
                .split("\n")
                .filter((l) => l !== "").length === 2,
            {
              diagnose: () => mailLog("mail2"),
            },
          );
          for (const line of relayQueue.trim().split("\n")) {
            const item = JSON.parse(line) as { recipients: { address: string }[] };
            expect(item.recipients.map((r) => r.address)).toEqual(["alice@brightchain.org"]);
          }
        } finally {
          if (!labStatus().hosts.find((host) => host.name === "mail")!.running) await labStart("mail");
        }
        await waitOnHost(
          "mail",
          "every service active after boot",
          `systemctl is-active ${PRIMARY_SERVICES.join(" ")}`,
          (_out, code) => code === 0,
        );
        // Rather than the relay's retry timer: what an admin does once the primary is back.
        await on("mail2", "postqueue -f");
        for (const subject of subjects) await waitForStoreEntries(subject);
        // Counted only once every queue and new/ are empty: a late duplicate would be indexed after an early count.
        await waitForMailSettled();
        const stored = (await storeEntries()).filter((entry) => subjects.includes(entry.subject ?? ""));
        expect(stored.map((entry) => entry.subject).sort()).toEqual([...subjects].sort());
      });
    });
  });

  describe("spam: GTUBE refused at SMTP time, a probable spam filed in the spam folder", () => {
    it("refuses GTUBE with 550 on the primary (SpamAssassin) and 554 on the relay (Rspamd)", async () => {
      for (const [host, server, reply] of [
        ["mail", PRIMARY.fqdn, /<[*~]\* +550 5\.7\.1 .*SpamAssassin/],
        ["mail2", RELAY.fqdn, /<[*~]\* +554 5\.7\.1 .*Gtube/i],
      ] as const) {
        const sent = await swaksFromOutside({
          to: "alice@brightchain.org",
          server,
          subject: uniqueSubject("gtube"),
          body: GTUBE,
        });
        expect(sent.transcript, `outside → ${host}:25\n${sent.transcript}`).toMatch(reply);
        expect(sent.transcript).not.toMatch(/250 2\.0\.0 Ok: queued/);
      }
    });

    it("files a message scoring between the thresholds in the spam folder", async () => {
      await timer.timed("scenario spam folder", async () => {
        await on(
          "mail",
          `cat > ${LOCAL_RULE_FILE}`,
          `body LAB_BETWEEN_THRESHOLDS /${BETWEEN_THRESHOLDS_MARKER}/\nscore LAB_BETWEEN_THRESHOLDS 6.0\n`,
        );
        try {
          await on("mail", "systemctl restart spamd");
          await waitOnHost(
            "mail",
            "spamd answering on 783",
            "systemctl is-active spamd && ss -ltn | grep -q ':783 '",
            (_out, code) => code === 0,
          );
          const subject = uniqueSubject("between thresholds");
          const sent = await swaksFromOutside({
            to: "alice@brightchain.org",
            server: PRIMARY.fqdn,
            subject,
            body: `this line carries ${BETWEEN_THRESHOLDS_MARKER}`,
          });
          expect(sent.transcript, sent.transcript).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
          const [entry] = await waitForStoreEntries(subject);
          expect(entry!.folder).toBe("spam");
          expect(await readStoreMessage(entry!.sha3)).toMatch(/X-Spam-Status: Yes.*LAB_BETWEEN_THRESHOLDS/s);
        } finally {
          await on("mail", `rm -f ${LOCAL_RULE_FILE} && systemctl restart spamd`);
        }
      });
    });
  });

  describe("outbound: submission with SASL, DKIM-signed, verified by the receiver against the lab DNS", () => {
    it("delivers brightchain-send's message to outside with a DKIM signature that verifies", async () => {
      await timer.timed("scenario outbound", async () => {
        const { message, file } = await sendOutboundToBob(uniqueSubject("outbound"));
        expect(message).toMatch(/^DKIM-Signature: .*d=brightchain\.org;/m);
        expect(await dkimVerifiesOnOutside(file)).toBe(true);
      });
    });

    it("refuses to relay through 587 without authentication", async () => {
      const sent = await swaksFromOutside({
        to: "bob@outside.test",
        from: "alice@brightchain.org",
        server: PRIMARY.fqdn,
        port: 587,
        extra: ["--tls"],
      });
      expect(sent.transcript, sent.transcript).toMatch(/<~\* +5\d\d /);
      expect(sent.transcript).not.toMatch(/250 2\.0\.0 Ok: queued/);
    });
  });

  describe("security from outside", () => {
    it("is not an open relay: a foreign recipient on port 25 is refused at RCPT", async () => {
      for (const [host, server] of [
        ["mail", PRIMARY.fqdn],
        ["mail2", RELAY.fqdn],
      ] as const) {
        const sent = await swaksFromOutside({ to: "victim@elsewhere.example", server });
        expect(rcptReply(sent.transcript), `outside → ${host}:25\n${sent.transcript}`).toMatch(
          /^<[*~]\* +554 5\.7\.1 .*Relay access denied/,
        );
      }
    });

    it.each([25, 587])("refuses TLS 1.1 and accepts TLS 1.2 and 1.3 on port %i", async (port) => {
      // TLS 1.1 is offered at SECLEVEL=0, so only the server can refuse it (test/host/tls-probe.test.ts).
      const target = { host: PRIMARY.fqdn, port, servername: PRIMARY.fqdn };
      expect(await tlsFloorViolations(target, opensslFromOutside)).toEqual([]);
    });

    it("answers on 25 and 587 only: the local daemons' ports are unreachable from outside", async () => {
      const probe = async (address: string, port: number) =>
        (await tryOn("outside", `nc -z -w 3 ${address} ${port}`, undefined, 30_000)).exitCode === 0;
      for (const host of [PRIMARY, RELAY]) {
        for (const port of [2526, 783, 8891, 11332, 11333, 11334])
          expect(await probe(host.ipv4, port), `${host.name}:${port} from outside`).toBe(false);
        expect(await probe(host.ipv4, 25), `${host.name}:25 from outside`).toBe(true);
      }
      expect(await probe(PRIMARY.ipv4, 587), "mail:587 from outside").toBe(true);
    });

    it("serves a certificate issued by pebble, and a forced renewal reloads Postfix with the new one", async () => {
      await timer.timed("scenario certificate renewal", async () => {
        // Read from a completed handshake only: a failed one prints no certificate to compare.
        const served = async () => {
          const probe = await probeStarttls(
            { host: PRIMARY.fqdn, port: 25, servername: PRIMARY.fqdn },
            undefined,
            opensslFromOutside,
          );
          return new X509Certificate(presentedCertificate(probe));
        };
        const before = await served();
        expect(before.issuer).toMatch(/Pebble/);
        await on("mail", "certbot renew --force-renewal --no-random-sleep-on-renew 2>&1");
        const deadline = Date.now() + 60_000;
        let after = await served();
        while (after.serialNumber === before.serialNumber) {
          if (Date.now() > deadline) {
            throw new Error(`mail:25 still serves serial ${before.serialNumber}\n${await mailLog("mail")}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 1_000));
          after = await served();
        }
        expect(after.issuer).toMatch(/Pebble/);
      });
    });
  });

  describe("reboot of the primary", () => {
    it("brings every service back and mail flows again", async () => {
      await timer.timed("scenario reboot", async () => {
        await labReboot("mail");
        const states = await waitOnHost(
          "mail",
          "every service active after reboot",
          `systemctl is-active ${PRIMARY_SERVICES.join(" ")}`,
          (_out, code) => code === 0,
        );
        expect(states.trim().split("\n")).toEqual(PRIMARY_SERVICES.map(() => "active"));
        const subject = uniqueSubject("after reboot");
        const sent = await swaksFromOutside({ to: "alice@brightchain.org", server: PRIMARY.fqdn, subject });
        expect(sent.transcript, sent.transcript).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
        await waitForStoreEntries(subject);
        expect(await settledEntries(subject), "store entries once every queue and new/ are empty").toBe(1);
      });
    });

    it("leaves the relay's services running throughout", async () => {
      const states = await on("mail2", `systemctl is-active ${RELAY_SERVICES.join(" ")}`);
      expect(states.trim().split("\n")).toEqual(RELAY_SERVICES.map(() => "active"));
    });
  });
}
