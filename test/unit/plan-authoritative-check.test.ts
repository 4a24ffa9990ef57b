// The authoritative-server checks (DKIM selector served, DANE switch) run by /bin/sh against a stand-in `dig`,
// `date` and `sleep` on PATH: what each server is asked, when the check passes and when it gives up, and the
// exact line an operator reads either way. The host suite runs them against Knot with the real dig; here they run
// in the unit suite, where a changed word of the generated script shows.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { authoritativeCheckCommand, type AuthoritativeCheck } from "../../infra/plan/authoritative";
import { daneSwitchCheckCommand } from "../../infra/plan/dane";
import { dkimPreviousRecordCommand, dkimServedCheckCommand } from "../../infra/plan/dkim-rotation";
import { examplePrimary } from "../fixtures/nodes";

const root = mkdtempSync(join(tmpdir(), "plan-authoritative-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const bin = join(root, "bin");
const state = join(root, "state");
mkdirSync(bin);

function tool(name: string, body: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}
// dig: the NS list from state/ns, a server's answer from state/answers/<server>; every call logged.
tool(
  "dig",
  `echo "$*" >> "${state}/dig.log"
case "$*" in "+short NS "*) cat "${state}/ns" 2>/dev/null; exit 0 ;; esac
for a in "$@"; do case "$a" in @*) cat "${state}/answers/\${a#@}" 2>/dev/null ;; esac; done
exit 0`,
);
// date +%s: a clock that moves state/step seconds on every reading.
tool("date", `t=$(cat "${state}/clock"); echo "$t"; echo $((t + $(cat "${state}/step"))) > "${state}/clock"`);
// sleep: logged, then state/after-sleep is run (a server catching up while the check waits).
tool("sleep", `echo "sleep $*" >> "${state}/dig.log"; if [ -f "${state}/after-sleep" ]; then sh "${state}/after-sleep"; fi`);

beforeEach(() => {
  rmSync(state, { recursive: true, force: true });
  mkdirSync(join(state, "answers"), { recursive: true });
  writeFileSync(join(state, "clock"), "1000\n");
  writeFileSync(join(state, "step"), "1\n");
  writeFileSync(join(state, "dig.log"), "");
});

function servers(ns: string, answers: Record<string, string>): void {
  writeFileSync(join(state, "ns"), ns);
  for (const [server, text] of Object.entries(answers)) writeFileSync(join(state, "answers", server), text);
}

function run(command: string) {
  const result = spawnSync("/bin/sh", ["-c", command], {
    encoding: "utf8",
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
  });
  return {
    status: result.status,
    stdout: result.stdout,
    stderr: result.stderr,
    calls: readFileSync(join(state, "dig.log"), "utf8"),
  };
}

const txtCheck = (over: Partial<AuthoritativeCheck> = {}): AuthoritativeCheck => ({
  zone: "brightchain.org",
  name: "sel._domainkey.brightchain.org",
  type: "TXT",
  wanted: "printf '%s\\n' 'v=DKIM1; k=rsa; p=NEW'",
  hint: "fix it at Cloudflare.",
  deadlineSeconds: 300,
  ...over,
});

describe("authoritativeCheckCommand", () => {
  it("asks the zone's NS, then each server without recursion; passes when all serve it, naming them once, sorted", () => {
    // dig prints names with the root dot, in any order, a server possibly twice.
    servers("ns2.example.net.\nns1.example.net.\nns2.example.net.\n", {
      "ns1.example.net": '"v=DKIM1; k=rsa; " "p=NEW"\n',
      "ns2.example.net": '"v=DKIM1; k=rsa; p=NEW"\n"v=DKIM1; k=rsa; p=OLD"\n',
    });
    const result = run(authoritativeCheckCommand(txtCheck()));
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe(
      "sel._domainkey.brightchain.org TXT: served by every authoritative server of brightchain.org (ns1.example.net ns2.example.net)\n",
    );
    expect(result.status).toBe(0);
    expect(result.calls.split("\n")).toEqual([
      "+short NS brightchain.org",
      "+short +norec +time=3 +tries=2 @ns1.example.net sel._domainkey.brightchain.org TXT",
      "+short +norec +time=3 +tries=2 @ns2.example.net sel._domainkey.brightchain.org TXT",
      "",
    ]);
  });

  it("after the deadline: exit 1 naming what was wanted, each server missing it with its answers, then the hint", () => {
    servers("ns1.example.net.\nns2.example.net.\n", {
      "ns1.example.net": '"v=DKIM1; k=rsa; p=NEW"\n',
      "ns2.example.net": '"v=DKIM1; k=rsa; p=OLD"\n"v=spf1 -all"\n',
    });
    writeFileSync(join(state, "step"), "300\n");
    const result = run(authoritativeCheckCommand(txtCheck({ hint: 'say "$HOME" and `id` literally.' })));
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      "sel._domainkey.brightchain.org TXT: not served by every authoritative server of brightchain.org after 300s; " +
        "wanted: v=DKIM1; k=rsa; p=NEW| missing at: ns2.example.net(answered: v=DKIM1; k=rsa; p=OLD|v=spf1 -all|). " +
        'say "$HOME" and `id` literally.\n',
    );
    expect(result.calls).not.toContain("sleep");
  });

  it("a server that does not answer at all is missing with an empty answer", () => {
    servers("ns1.example.net.\n", {});
    writeFileSync(join(state, "step"), "300\n");
    const result = run(authoritativeCheckCommand(txtCheck()));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("missing at: ns1.example.net(answered: ). fix it at Cloudflare.\n");
  });

  it("before the deadline it waits 5 s and asks every server again, passing once the last one serves the record", () => {
    servers("ns1.example.net.\nns2.example.net.\n", {
      "ns1.example.net": '"v=DKIM1; k=rsa; p=NEW"\n',
      "ns2.example.net": '"v=DKIM1; k=rsa; p=OLD"\n',
    });
    writeFileSync(join(state, "after-sleep"), `echo '"v=DKIM1; k=rsa; p=NEW"' > "${state}/answers/ns2.example.net"\n`);
    const result = run(authoritativeCheckCommand(txtCheck()));
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("served by every authoritative server of brightchain.org (ns1.example.net ns2.example.net)");
    expect(result.calls.split("\n").filter((line) => line.startsWith("sleep") || line.includes("@"))).toEqual([
      "+short +norec +time=3 +tries=2 @ns1.example.net sel._domainkey.brightchain.org TXT",
      "+short +norec +time=3 +tries=2 @ns2.example.net sel._domainkey.brightchain.org TXT",
      "sleep 5",
      "+short +norec +time=3 +tries=2 @ns1.example.net sel._domainkey.brightchain.org TXT",
      "+short +norec +time=3 +tries=2 @ns2.example.net sel._domainkey.brightchain.org TXT",
    ]);
  });

  it("gives up at the deadline: with a 10 s deadline and a clock moving 5 s a reading, after one wait", () => {
    servers("ns1.example.net.\n", { "ns1.example.net": '"v=DKIM1; k=rsa; p=OLD"\n' });
    writeFileSync(join(state, "step"), "5\n");
    const result = run(authoritativeCheckCommand(txtCheck({ deadlineSeconds: 10 })));
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^sel\._domainkey\.brightchain\.org TXT: not served .* after 10s; /);
    // Readings: 1000 (deadline 1010), 1005 (wait), 1010 (at the deadline: give up).
    expect(result.calls.split("\n").filter((line) => line === "sleep 5")).toHaveLength(1);
  });

  it("nothing to look for, or no NS records: exit 1 at once, saying which", () => {
    servers("ns1.example.net.\n", { "ns1.example.net": '"x"\n' });
    const empty = run(authoritativeCheckCommand(txtCheck({ wanted: "true" })));
    expect(empty.status).toBe(1);
    expect(empty.stderr).toBe("sel._domainkey.brightchain.org TXT: nothing to look for (the host printed no value)\n");
    expect(empty.calls).toBe("");

    servers("", {});
    const noNs = run(authoritativeCheckCommand(txtCheck()));
    expect(noNs.status).toBe(1);
    expect(noNs.stderr).toBe(
      "brightchain.org: this host's resolver returns no NS records, so its authoritative servers cannot be asked\n",
    );
    expect(noNs.calls).toBe("+short NS brightchain.org\n");
  });

  it("TLSA: dig's grouped upper-case hex is joined and lower-cased before comparing, every wanted line needed", () => {
    servers("ns1.example.net.\n", { "ns1.example.net": "3 1 1 ABCDEF01 2345\n3 1 1 FFEE\n" });
    const check = txtCheck({
      name: "_25._tcp.mail.brightchain.org",
      type: "TLSA",
      wanted: "printf '%s\\n' '3 1 1 abcdef012345' '3 1 1 ffee'",
    });
    const result = run(authoritativeCheckCommand(check));
    expect(result.stdout).toBe(
      "_25._tcp.mail.brightchain.org TLSA: served by every authoritative server of brightchain.org (ns1.example.net)\n",
    );
    expect(result.calls).toContain("@ns1.example.net _25._tcp.mail.brightchain.org TLSA\n");

    servers("ns1.example.net.\n", { "ns1.example.net": "3 1 1 ABCDEF01 2345\n" });
    writeFileSync(join(state, "step"), "300\n");
    const missing = run(authoritativeCheckCommand(check));
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(
      "wanted: 3 1 1 abcdef012345|3 1 1 ffee| missing at: ns1.example.net(answered: 3 1 1 abcdef012345|). ",
    );
  });

  it("the zone and name reach the shell as one word each", () => {
    const command = authoritativeCheckCommand(txtCheck({ zone: "a b", name: "x'y" }));
    expect(command.split("\n").slice(0, 3)).toEqual(["set -eu", "zone='a b'", `name='x'\\''y'`]);
  });
});

describe("the DKIM steps mid-rotation, run by a shell", () => {
  const keyDir = join(root, "dkim");
  const rotating: GatewayNode = {
    ...examplePrimary,
    dkim: { ...examplePrimary.dkim, keyDir, selector: "mail2026", previous: { selector: "default", keepUntil: "2026-03-31" } },
  };
  // opendkim-genkey's layout: the record's strings split over lines, a comment after.
  const txt =
    'mail2026._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "\n\t  "p=MIIBIjAN+/ab" "cd=" )  ; ----- DKIM key mail2026 for brightchain.org\n';

  it("the served check wants the record text built from the new key's file and passes when every server has it", () => {
    mkdirSync(keyDir, { recursive: true });
    writeFileSync(join(keyDir, "mail2026.txt"), txt);
    servers("ns1.example.net.\n", { "ns1.example.net": '"v=DKIM1; h=sha256; k=rsa; p=MIIBIjAN+/ab" "cd="\n' });
    const result = run(dkimServedCheckCommand(rotating));
    expect(result.stdout).toBe(
      "mail2026._domainkey.brightchain.org TXT: served by every authoritative server of brightchain.org (ns1.example.net)\n",
    );
    expect(result.status).toBe(0);
  });

  it("after five minutes without it: the record wanted, the server's answer, and that signing stays with the old selector", () => {
    writeFileSync(join(keyDir, "mail2026.txt"), txt);
    servers("ns1.example.net.\n", { "ns1.example.net": '"v=DKIM1; h=sha256; k=rsa; p=OLD"\n' });
    writeFileSync(join(state, "step"), "300\n");
    const result = run(dkimServedCheckCommand(rotating));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      "mail2026._domainkey.brightchain.org TXT: not served by every authoritative server of brightchain.org after 300s; " +
        "wanted: v=DKIM1; h=sha256; k=rsa; p=MIIBIjAN+/abcd=| missing at: ns1.example.net(answered: v=DKIM1; h=sha256; k=rsa; p=OLD|). " +
        "OpenDKIM keeps signing with default; pulumi up publishes the record itself (check it at Cloudflare); with the Ansible " +
        "playbook, publish the record the key task printed at your DNS provider. Then run again.\n",
    );
  });

  it("a key file without p= stops the step naming the file (it used to exit 1 without a word), asking no server", () => {
    writeFileSync(join(keyDir, "mail2026.txt"), 'mail2026._domainkey IN TXT ( "v=DKIM1; k=rsa" )\n');
    servers("ns1.example.net.\n", {});
    const result = run(dkimServedCheckCommand(rotating));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`${keyDir}/mail2026.txt: no p= key in it, so there is no record to wait for\n`);
    expect(result.calls).toBe("");
  });

  it("the previous selector's record file is printed as it is; a missing or empty one stops the step, saying why", () => {
    const previousTxt = join(keyDir, "default.txt");
    writeFileSync(previousTxt, 'default._domainkey IN TXT ( "v=DKIM1; k=rsa; p=PREV" )\n');
    const printed = run(dkimPreviousRecordCommand(rotating));
    expect(printed).toMatchObject({ status: 0, stdout: 'default._domainkey IN TXT ( "v=DKIM1; k=rsa; p=PREV" )\n', stderr: "" });

    for (const content of [undefined, ""]) {
      rmSync(previousTxt, { force: true });
      if (content !== undefined) writeFileSync(previousTxt, content);
      const refused = run(dkimPreviousRecordCommand(rotating));
      expect(refused.status).toBe(1);
      expect(refused.stdout).toBe("");
      expect(refused.stderr).toBe(
        `${previousTxt}: no record file for the previous selector default; gateway:dkimPrevious.selector must be the selector this host signed with\n`,
      );
    }
  });
});

describe("the DANE switch check, run by a shell with real keys", () => {
  const letsencrypt = join(root, "letsencrypt");
  const switching: GatewayNode = {
    ...examplePrimary,
    dane: { previousLineage: "mail.brightchain.org" },
    tls: { ...examplePrimary.tls, certName: "mail.brightchain.org-2027" },
  };
  /** A certbot lineage's key, and its TLSA 3 1 1 hash as dig prints it: upper case, in groups. */
  function lineage(name: string): { hex: string; dig: string } {
    const live = join(letsencrypt, "live", name);
    mkdirSync(live, { recursive: true });
    const key = join(live, "privkey.pem");
    spawnSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]);
    const der = spawnSync("openssl", ["pkey", "-in", key, "-pubout", "-outform", "DER"]).stdout;
    const hex = spawnSync("sha256sum", { input: der, encoding: "utf8" }).stdout.slice(0, 64);
    return { hex, dig: `3 1 1 ${hex.slice(0, 56).toUpperCase()} ${hex.slice(56).toUpperCase()}` };
  }
  const command = () => daneSwitchCheckCommand(switching)!.replaceAll("/etc/letsencrypt", letsencrypt);

  it("passes once every server serves both keys' records", () => {
    const next = lineage("mail.brightchain.org-2027");
    const previous = lineage("mail.brightchain.org");
    servers("ns1.example.net.\n", { "ns1.example.net": `${previous.dig}\n${next.dig}\n` });
    const result = run(command());
    expect(result.stdout).toBe(
      "_25._tcp.mail.brightchain.org TLSA: served by every authoritative server of brightchain.org (ns1.example.net)\n",
    );
    expect(result.status).toBe(0);

    servers("ns1.example.net.\n", { "ns1.example.net": `${previous.dig}\n` });
    writeFileSync(join(state, "step"), "60\n");
    const missing = run(command());
    expect(missing.status).toBe(1);
    expect(missing.stderr).toBe(
      "_25._tcp.mail.brightchain.org TLSA: not served by every authoritative server of brightchain.org after 60s; " +
        `wanted: 3 1 1 ${next.hex}|3 1 1 ${previous.hex}| missing at: ns1.example.net(answered: 3 1 1 ${previous.hex}|). ` +
        "Postfix keeps serving the key of mail.brightchain.org. Publish mail.brightchain.org-2027's key first: set " +
        "gateway:dane.nextLineage to mail.brightchain.org-2027 (lineage mail.brightchain.org, no previousLineage), " +
        "pulumi up, wait two TTLs of the TLSA records, then switch again.\n",
    );
  });

  it("a key not on the host stops the check at once, naming it, before any server is asked", () => {
    rmSync(join(letsencrypt, "live", "mail.brightchain.org"), { recursive: true, force: true });
    servers("ns1.example.net.\n", {});
    const result = run(command());
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `${letsencrypt}/live/mail.brightchain.org/privkey.pem: no such key; the lineage has not been issued on this host\n`,
    );
    expect(result.calls).toBe("");
  });
});

describe("the DKIM served check outside a rotation", () => {
  it("says signing stays with the previous selector without naming one", () => {
    expect(dkimServedCheckCommand(examplePrimary)).toContain("OpenDKIM keeps signing with the previous selector; ");
  });
});
