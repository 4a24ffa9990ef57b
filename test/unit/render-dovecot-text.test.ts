// Dovecot for SASL, as each release's Dovecot reads it: the 2.3 syntax on Debian 12, Ubuntu 24.04 and RHEL 9
// line by line, the files only on a primary taking submissions, and the refusals of a duplicate username and of a
// salt crypt(3) cannot carry, each naming the value.
import { describe, expect, it } from "vitest";
import { releaseOs } from "../../infra/model/releases";
import type { GatewayNode } from "../../infra/model/types";
import { dovecotFiles, renderDovecotConf, renderSubmissionPasswd, sha512Crypt } from "../../infra/render/dovecot";
import { examplePrimary, exampleRelay, exampleSecrets } from "../fixtures/nodes";

const debian12: GatewayNode = { ...examplePrimary, os: releaseOs("debian-12") };

describe("dovecot.conf for Dovecot 2.3", () => {
  it("Debian 12: passwd-file passdb, static userdb, Postfix's auth listener, nothing else", () => {
    expect(renderDovecotConf(debian12).split("\n")).toEqual([
      "# Dovecot for mail.brightchain.org: SASL authentication for Postfix submission only. Rendered by brightchain-gateway.",
      "# No IMAP/POP/LMTP: the gateway stores nothing users read here.",
      "protocols =",
      "# TLS is Postfix's job on port 587; Dovecot only sees the local auth socket.",
      "ssl = no",
      "auth_mechanisms = plain login",
      "# Only the accounts rendered from the stack's secrets, never system (PAM/passwd) accounts.",
      "passdb {",
      "  driver = passwd-file",
      "  args = scheme=SHA512-CRYPT username_format=%u /etc/dovecot/brightchain-submission.passwd",
      "}",
      "# Dovecot insists on a userdb; SASL never uses it, so a static one with an unprivileged identity suffices.",
      "userdb {",
      "  driver = static",
      "  args = uid=dovenull gid=dovenull home=/nonexistent",
      "}",
      "service auth {",
      "  unix_listener /var/spool/postfix/private/auth {",
      "    mode = 0660",
      "    user = postfix",
      "    group = postfix",
      "  }",
      "}",
      "",
    ]);
    expect(renderDovecotConf({ ...examplePrimary, os: releaseOs("rhel-9") })).toBe(renderDovecotConf(debian12));
    expect(renderDovecotConf(examplePrimary)).not.toBe(renderDovecotConf(debian12));
  });
});

describe("Dovecot's files", () => {
  it("on a primary with submission: the conf (root, 0644) and the password file (group dovecot, 0640, secret)", () => {
    expect(dovecotFiles(debian12, exampleSecrets)).toEqual([
      {
        path: "/etc/dovecot/dovecot.conf",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: renderDovecotConf(debian12),
        notify: ["dovecot"],
      },
      {
        path: "/etc/dovecot/brightchain-submission.passwd",
        mode: 0o640,
        owner: "root",
        group: "dovecot",
        content: renderSubmissionPasswd(exampleSecrets),
        secret: true,
        notify: ["dovecot"],
      },
    ]);
  });

  it("none on a relay, on a primary without submission, or with submission disabled", () => {
    expect(dovecotFiles(exampleRelay, exampleSecrets)).toEqual([]);
    expect(dovecotFiles({ ...exampleRelay, submission: { enabled: true, saslBackend: "dovecot" } }, exampleSecrets)).toEqual([]);
    expect(dovecotFiles({ ...examplePrimary, submission: undefined }, exampleSecrets)).toEqual([]);
    expect(dovecotFiles({ ...examplePrimary, submission: { enabled: false, saslBackend: "dovecot" } }, exampleSecrets)).toEqual(
      [],
    );
  });
});

describe("refusals", () => {
  it("a username given twice names the second entry", () => {
    const user = { username: "node", password: "twelve chars long" };
    expect(() => renderSubmissionPasswd({ submissionUsers: [user, user] })).toThrow(
      'secrets.submissionUsers[1].username="node" is a duplicate; accepted: unique usernames',
    );
  });

  it("a password of exactly 12 characters is accepted, 11 refused", () => {
    expect(renderSubmissionPasswd({ submissionUsers: [{ username: "node", password: "123456789012" }] })).toMatch(
      /^node:\{SHA512-CRYPT\}\$6\$/,
    );
    expect(() => renderSubmissionPasswd({ submissionUsers: [{ username: "node", password: "12345678901" }] })).toThrow(
      "secrets.submissionUsers[0].password (for node) is invalid; accepted: at least 12 characters, no line breaks",
    );
  });

  it("a salt outside crypt's alphabet, or longer than 16, or empty is refused naming it", () => {
    for (const salt of ["", "a$b", "x".repeat(17), "ok!", "!ok"]) {
      expect(() => sha512Crypt("password", salt)).toThrow(
        `salt=${JSON.stringify(salt)} is invalid; accepted: 1 to 16 characters of`,
      );
    }
  });

  it("SHA512-CRYPT matches glibc's reference vector; two accounts are two lines", () => {
    // crypt("Hello world!", "$6$saltstring") from Ulrich Drepper's SHA-crypt specification.
    expect(sha512Crypt("Hello world!", "saltstring")).toBe(
      "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    );
    const passwd = renderSubmissionPasswd({
      submissionUsers: [
        { username: "one", password: "first password" },
        { username: "two", password: "second password" },
      ],
    });
    expect(passwd).toMatch(/^one:\{SHA512-CRYPT\}\$6\$[^\n]+\ntwo:\{SHA512-CRYPT\}\$6\$[^\n]+\n$/);
  });
});
