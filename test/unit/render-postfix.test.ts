import { releaseOs } from "../../infra/model/releases";
import { describe, expect, it } from "vitest";
import { examplePrimary, exampleRelay, nodeMatrix } from "../fixtures/nodes";
import type { GatewayNode } from "../../infra/model/types";
import { postfixFiles, renderMainCf, renderMasterCf } from "../../infra/render/postfix";

/** main.cf as Postfix reads it: the last assignment of a name wins, so duplicates are reported separately. */
function mainCfParams(text: string): { params: Map<string, string>; keys: string[] } {
  const params = new Map<string, string>();
  const keys: string[] = [];
  for (const line of text.split("\n")) {
    const match = /^([a-z0-9_-]+)\s*=\s*(.*)$/.exec(line);
    if (match === null) continue;
    keys.push(match[1]!);
    params.set(match[1]!, match[2]!);
  }
  return { params, keys };
}

/** master.cf entries keyed by "service/type", each with its command and -o/argument lines. */
function masterCfEntries(text: string): Map<string, { fields: string[]; args: string[] }> {
  const entries = new Map<string, { fields: string[]; args: string[] }>();
  let current: { fields: string[]; args: string[] } | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    if (/^\s/.test(line)) {
      current!.args.push(line.trim());
      continue;
    }
    const fields = line.split(/\s+/);
    current = { fields, args: [] };
    entries.set(`${fields[0]}/${fields[1]}`, current);
  }
  return entries;
}

const withPipe = (node: GatewayNode): GatewayNode => ({ ...node, drop: { ...node.drop, transport: "pipe" } });

describe.each(nodeMatrix)("main.cf for $name", ({ node }) => {
  const { params, keys } = mainCfParams(renderMainCf(node));

  it("names every parameter once, so no line silently overrides another", () => {
    expect(keys.length).toBe(new Set(keys).size);
  });

  it("never delivers locally, logs to syslog and runs at compatibility level 3.6", () => {
    expect(params.get("mydestination")).toBe("");
    expect(params.get("compatibility_level")).toBe(node.os.family === "rhel" ? "2" : "3.6");
    expect(params.has("maillog_file")).toBe(false);
    expect(params.get("myhostname")).toBe(node.host.hostname);
  });

  it("requires TLS 1.2 or newer in both directions, opportunistic and mandatory", () => {
    for (const key of [
      "smtpd_tls_protocols",
      "smtpd_tls_mandatory_protocols",
      "smtp_tls_protocols",
      "smtp_tls_mandatory_protocols",
    ]) {
      expect(params.get(key), key).toBe("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1");
    }
    expect(params.get("smtpd_tls_cert_file")).toBe(node.tls.certFile);
    expect(params.get("smtpd_tls_key_file")).toBe(node.tls.keyFile);
    expect(params.get("smtp_tls_security_level")).toBe("may");
    // Port 25 cannot require TLS (RFC 3207); 587 does, per service (master.cf test below).
    expect(params.get("smtpd_tls_security_level")).toBe("may");
    expect(params.get("smtpd_tls_mandatory_ciphers")).toBe("high");
  });

  it("never offers AUTH before STARTTLS", () => {
    expect(params.get("smtpd_tls_auth_only")).toBe("yes");
  });

  it("enables SASL on no port-25 path: main.cf has none, only the submission service does", () => {
    expect(keys.filter((key) => key.startsWith("smtpd_sasl_"))).toEqual([]);
    const smtp = masterCfEntries(renderMasterCf(node)).get("smtp/inet")!;
    expect(smtp.args.filter((arg) => arg.includes("sasl"))).toEqual([]);
  });

  it("is not an open relay: strangers reach only the served domain", () => {
    const trusted = node.role === "primary" ? "permit_mynetworks, permit_sasl_authenticated" : "permit_mynetworks";
    expect(params.get("smtpd_relay_restrictions")).toBe(`${trusted}, reject_unauth_destination`);
    expect(params.get("mynetworks")).toBe(node.mynetworks.join(" "));
    expect(params.get("mydestination")).toBe("");
  });

  it("refuses unknown users at RCPT with 550", () => {
    expect(params.get("smtpd_recipient_restrictions")).toBe("reject_non_fqdn_recipient, reject_unlisted_recipient");
    // Postfix's defaults are 550 too, but a 4xx here would make every sender retry for days instead of bouncing.
    expect(params.get("unknown_virtual_mailbox_reject_code")).toBe("550");
    expect(params.get("unknown_relay_recipient_reject_code")).toBe("550");
  });

  it("refuses VRFY, requires HELO and well-formed envelopes", () => {
    expect(params.get("disable_vrfy_command")).toBe("yes");
    expect(params.get("smtpd_helo_required")).toBe("yes");
    expect(params.get("strict_rfc821_envelopes")).toBe("yes");
    expect(params.get("smtpd_sender_restrictions")).toBe("reject_non_fqdn_sender");
  });

  it("refuses SMTP smuggling and unauthorised pipelining where Postfix has the settings (not RHEL 9's 3.5)", () => {
    const has = node.os.family !== "rhel";
    expect(params.get("smtpd_forbid_bare_newline")).toBe(has ? "normalize" : undefined);
    expect(params.get("smtpd_forbid_bare_newline_exclusions")).toBe(has ? "$mynetworks" : undefined);
    expect(params.get("smtpd_forbid_unauth_pipelining")).toBe(has ? "yes" : undefined);
  });

  it("chooses IPv4 only when the node has no IPv6 address", () => {
    expect(params.get("inet_protocols")).toBe(node.host.ipv6 === undefined ? "ipv4" : "all");
  });

  it("keeps every per-file delivery limit at or above message_size_limit", () => {
    expect(params.get("message_size_limit")).toBe(String(node.maxMessageSize));
    expect(Number(params.get("mailbox_size_limit"))).toBeGreaterThanOrEqual(node.maxMessageSize);
    expect(Number(params.get("virtual_mailbox_limit"))).toBeGreaterThanOrEqual(node.maxMessageSize);
  });

  it("validates recipients through the lookup service's socketmap", () => {
    const map = `socketmap:inet:127.0.0.1:${node.lookup.port}:virtual`;
    expect(params.get(node.role === "primary" ? "virtual_mailbox_maps" : "relay_recipient_maps")).toBe(map);
  });
});

describe("primary main.cf", () => {
  it.each(nodeMatrix.filter(({ node }) => node.role === "primary"))(
    "$name delivers the domain through brightchain-drop",
    ({ node }) => {
      const { params } = mainCfParams(renderMainCf(node));
      expect(params.get("virtual_mailbox_domains")).toBe(node.domain);
      expect(params.get("virtual_transport")).toBe("brightchain-drop");
      expect(params.get("recipient_delimiter")).toBe("+");
      expect(params.get("smtpd_relay_restrictions")).toContain("permit_sasl_authenticated");
      expect(params.has("relay_domains")).toBe(false);
    },
  );

  it.each([
    ["spamassassin", "unix:spamass/spamass.sock, inet:127.0.0.1:8891"],
    ["rspamd", "inet:127.0.0.1:11332, inet:127.0.0.1:8891"],
    ["none", "inet:127.0.0.1:8891"],
  ] as const)("with %s has one smtpd_milters list, spam engine before OpenDKIM", (engine, milters) => {
    const text = renderMainCf({ ...examplePrimary, spam: { ...examplePrimary.spam, engine } });
    expect(text.match(/^smtpd_milters\s*=/gm)).toHaveLength(1);
    const { params } = mainCfParams(text);
    expect(params.get("smtpd_milters")).toBe(milters);
    expect(params.get("non_smtpd_milters")).toBe("inet:127.0.0.1:8891");
    expect(params.get("milter_protocol")).toBe("6");
    expect(params.get("milter_default_action")).toBe("tempfail");
  });

  it("limits the pipe transport to one recipient per delivery, and only the pipe", () => {
    expect(mainCfParams(renderMainCf(withPipe(examplePrimary))).params.get("brightchain-drop_destination_recipient_limit")).toBe(
      "1",
    );
    expect(renderMainCf(examplePrimary)).not.toContain("_destination_recipient_limit");
  });

  it("uses the RHEL spamass-milter socket on RHEL", () => {
    const rhel: GatewayNode = { ...examplePrimary, os: releaseOs("rhel-9") };
    expect(mainCfParams(renderMainCf(rhel)).params.get("smtpd_milters")).toBe(
      "unix:/run/spamass-milter/postfix/sock, inet:127.0.0.1:8891",
    );
  });
});

describe("relay main.cf", () => {
  it.each(nodeMatrix.filter(({ node }) => node.role === "relay"))(
    "$name is a backup MX that forwards to the primary",
    ({ node }) => {
      const text = renderMainCf(node);
      const { params } = mainCfParams(text);
      expect(params.get("relay_domains")).toBe(node.domain);
      expect(params.get("relay_transport")).toBe(`relay:[${node.relay!.forwardTo}]:25`);
      expect(params.get("relayhost")).toBe("");
      expect(params.get("maximal_queue_lifetime")).toBe(node.relay!.queueLifetime);
      expect(text).not.toMatch(/^virtual_mailbox_domains/m);
      expect(text).not.toMatch(/^virtual_transport/m);
      expect(text).not.toContain("8891");
      expect(params.has("non_smtpd_milters")).toBe(false);
      expect(params.get("smtpd_relay_restrictions")).not.toContain("sasl");
    },
  );

  it("has no milter settings at all without a spam engine", () => {
    const text = renderMainCf({ ...exampleRelay, spam: { ...exampleRelay.spam, engine: "none" } });
    expect(text).not.toMatch(/^(smtpd_milters|milter_)/m);
  });

  it("names the missing field when relay settings are absent", () => {
    expect(() => renderMainCf({ ...exampleRelay, relay: undefined })).toThrow(/relay\.forwardTo/);
  });
});

describe("master.cf", () => {
  it("runs submission on the primary with TLS required and Dovecot SASL", () => {
    const entries = masterCfEntries(renderMasterCf(examplePrimary));
    const submission = entries.get("submission/inet")!;
    expect(submission.fields.slice(2)).toEqual(["n", "-", "n", "-", "-", "smtpd"]);
    expect(submission.args).toEqual(
      expect.arrayContaining([
        "-o smtpd_tls_security_level=encrypt",
        "-o smtpd_tls_auth_only=yes",
        "-o smtpd_sasl_auth_enable=yes",
        "-o smtpd_sasl_type=dovecot",
        "-o smtpd_sasl_path=private/auth",
        "-o smtpd_sasl_security_options=noanonymous",
        "-o smtpd_client_restrictions=permit_sasl_authenticated,reject",
        "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject",
        "-o smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
      ]),
    );
    // Signed, not spam-scored: examplePrimary runs SpamAssassin on port 25 only.
    expect(submission.args).toContain("-o smtpd_milters=inet:127.0.0.1:8891");
  });

  it("delivers through virtual(8) into the drop Maildir by default; the static map is on the service only", () => {
    const text = renderMasterCf(examplePrimary);
    const drop = masterCfEntries(text).get("brightchain-drop/unix")!;
    expect(drop.fields.at(-1)).toBe("virtual");
    expect(drop.args).toEqual([
      "-o virtual_mailbox_base=/var/spool/brightchain",
      "-o virtual_mailbox_maps=static:incoming/",
      "-o virtual_uid_maps=static:2526",
      "-o virtual_gid_maps=static:2526",
      "-o virtual_minimum_uid=2526",
    ]);
    expect(renderMainCf(examplePrimary)).not.toContain("static:");
  });

  it("delivers through the maildrop script with the pipe transport", () => {
    const drop = masterCfEntries(renderMasterCf(withPipe(examplePrimary))).get("brightchain-drop/unix")!;
    expect(drop.fields.slice(2)).toEqual(["-", "n", "n", "-", "-", "pipe"]);
    expect(drop.args).toEqual(["flags=DRhu user=brightchain", "argv=/usr/local/bin/brightchain-maildrop ${sender} ${recipient}"]);
  });

  it.each(nodeMatrix.filter(({ node }) => node.role === "relay"))("$name has no submission and no drop transport", ({ node }) => {
    const entries = masterCfEntries(renderMasterCf(node));
    expect(entries.has("submission/inet")).toBe(false);
    expect(entries.has("brightchain-drop/unix")).toBe(false);
    expect(entries.has("smtp/inet")).toBe(true);
    expect(entries.has("relay/unix")).toBe(true);
  });
});

describe("postfixFiles", () => {
  it("returns main.cf and master.cf, root-owned 0644, reloading postfix", () => {
    const files = postfixFiles(examplePrimary);
    expect(files.map((f) => [f.path, f.mode, f.owner, f.group, f.notify])).toEqual([
      ["/etc/postfix/main.cf", 0o644, "root", "root", ["postfix"]],
      ["/etc/postfix/master.cf", 0o644, "root", "root", ["postfix"]],
    ]);
    expect(postfixFiles(examplePrimary)).toEqual(files);
  });
});

describe("readable snapshots", () => {
  it("examplePrimary", async () => {
    await expect(renderMainCf(examplePrimary)).toMatchFileSnapshot("__snapshots__/postfix/primary.main.cf");
    await expect(renderMasterCf(examplePrimary)).toMatchFileSnapshot("__snapshots__/postfix/primary.master.cf");
  });
  it("exampleRelay", async () => {
    await expect(renderMainCf(exampleRelay)).toMatchFileSnapshot("__snapshots__/postfix/relay.main.cf");
    await expect(renderMasterCf(exampleRelay)).toMatchFileSnapshot("__snapshots__/postfix/relay.master.cf");
  });
});
