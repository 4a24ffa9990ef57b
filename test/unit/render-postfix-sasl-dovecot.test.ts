import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { examplePrimary, exampleRelay, exampleSecrets } from "../fixtures/nodes";
import { dovecotFiles, renderDovecotConf, renderSubmissionPasswd, sha512Crypt } from "../../infra/render/dovecot";

describe("sha512Crypt", () => {
  it.each([
    ["correct horse battery staple", "abcdefgh12345678"],
    ["x", "s"],
    ["a password longer than sixty-four bytes, which exercises the digest repetition path", "./zZ"],
  ])("matches openssl passwd -6 for %j", (password, salt) => {
    const expected = execFileSync("openssl", ["passwd", "-6", "-salt", salt, password], { encoding: "utf8" }).trim();
    expect(sha512Crypt(password, salt)).toBe(expected);
  });
});

describe("submission passwd-file", () => {
  it("is deterministic for the same secrets and salted per user", () => {
    const twice = renderSubmissionPasswd({
      submissionUsers: [
        { username: "a", password: "same password here" },
        { username: "b", password: "same password here" },
      ],
    });
    expect(
      renderSubmissionPasswd({
        submissionUsers: [
          { username: "a", password: "same password here" },
          { username: "b", password: "same password here" },
        ],
      }),
    ).toBe(twice);
    const [a, b] = twice
      .trim()
      .split("\n")
      .map((line) => line.split(":")[1]);
    expect(a).toMatch(/^\{SHA512-CRYPT\}\$6\$[./0-9A-Za-z]{16}\$/);
    expect(a).not.toBe(b);
    expect(twice).not.toContain("same password here");
  });

  it("names the offending entry", () => {
    expect(() => renderSubmissionPasswd({ submissionUsers: [] })).toThrow(/secrets\.submissionUsers is empty/);
    expect(() =>
      renderSubmissionPasswd({ submissionUsers: [{ username: "bad:name", password: "long enough password" }] }),
    ).toThrow(/secrets\.submissionUsers\[0\]\.username="bad:name" is invalid/);
    expect(() => renderSubmissionPasswd({ submissionUsers: [{ username: "u", password: "short" }] })).toThrow(
      /secrets\.submissionUsers\[0\]\.password \(for u\) is invalid; accepted: at least 12 characters/,
    );
  });
});

describe("dovecotFiles", () => {
  it("serves only SASL to Postfix on the primary", () => {
    const conf = renderDovecotConf(examplePrimary);
    expect(conf).toMatch(/^protocols =$/m);
    expect(conf).toContain("unix_listener /var/spool/postfix/private/auth {");
    expect(conf).toMatch(/mode = 0660\n\s+user = postfix\n\s+group = postfix/);
    const settings = conf.split("\n").filter((line) => !line.trimStart().startsWith("#"));
    expect(settings.join("\n")).not.toMatch(/pam|imap|pop3|!include/i);
  });

  it("keeps the password file secret and root:dovecot 0640", () => {
    const files = dovecotFiles(examplePrimary, exampleSecrets);
    expect(files.map((f) => [f.path, f.mode, f.owner, f.group, f.secret ?? false])).toEqual([
      ["/etc/dovecot/dovecot.conf", 0o644, "root", "root", false],
      ["/etc/dovecot/brightchain-submission.passwd", 0o640, "root", "dovecot", true],
    ]);
  });

  it("is empty for a relay", () => {
    expect(dovecotFiles(exampleRelay, exampleSecrets)).toEqual([]);
  });
});
