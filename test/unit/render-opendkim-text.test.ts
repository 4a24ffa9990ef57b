// OpenDKIM's rendered text word for word: opendkim.conf as the daemon reads it (key padded to column 21), the
// keygen command a host step runs, and the genkey record parser's edge cases (an escaped quote, a comment between
// strings, a record whose key is missing), each error naming what was expected.
import { describe, expect, it } from "vitest";
import { releaseOs } from "../../infra/model/releases";
import type { GatewayNode } from "../../infra/model/types";
import { dkimKeygenCommand, opendkimFiles, parseDkimTxtRecord, renderOpendkimConf } from "../../infra/render/opendkim";
import { examplePrimary } from "../fixtures/nodes";

describe("opendkim.conf, exactly", () => {
  it("Debian: every line, the anchor last", () => {
    expect(renderOpendkimConf(examplePrimary).split("\n")).toEqual([
      "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
      "Syslog              yes",
      "SyslogSuccess       yes",
      "UMask               007",
      "UserID              opendkim",
      "PidFile             /run/opendkim/opendkim.pid",
      "Socket              inet:8891@127.0.0.1",
      "Mode                sv",
      "Domain              brightchain.org",
      "Selector            default",
      "KeyFile             /etc/dkim/default.private",
      "SubDomains          no",
      "Canonicalization    relaxed/simple",
      "OversignHeaders     From",
      "InternalHosts       127.0.0.0/8, ::1/128",
      "ExternalIgnoreList  127.0.0.0/8, ::1/128",
      "TrustAnchorFile     /usr/share/dns/root.key",
      "",
    ]);
  });

  it("RHEL: no anchor file (naming a missing one stops opendkim); only a leading [v6] loses its brackets", () => {
    const node: GatewayNode = {
      ...examplePrimary,
      os: releaseOs("rhel-9"),
      mynetworks: ["10.0.0.0/8", "[2001:db8::]/32", "192.0.2.0/24[x]"],
    };
    const text = renderOpendkimConf(node);
    expect(text).not.toContain("TrustAnchorFile");
    expect(text).toContain("\nInternalHosts       10.0.0.0/8, 2001:db8::/32, 192.0.2.0/24[x]\n");
    expect(text.endsWith("ExternalIgnoreList  10.0.0.0/8, 2001:db8::/32, 192.0.2.0/24[x]\n")).toBe(true);
  });

  it("a relay: the error names the role and what is accepted; no file", () => {
    const relay: GatewayNode = { ...examplePrimary, role: "relay" };
    expect(() => renderOpendkimConf(relay)).toThrow(
      "role=relay: OpenDKIM runs on the primary only (the signing key never leaves it); accepted: role=primary",
    );
    expect(opendkimFiles(relay)).toEqual([]);
    expect(opendkimFiles(examplePrimary)).toEqual([
      {
        path: "/etc/opendkim.conf",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: renderOpendkimConf(examplePrimary),
        notify: ["opendkim"],
      },
    ]);
  });
});

describe("the keygen command, exactly", () => {
  it("creates the directory, keeps an existing key, locks the key and publishes the record's file", () => {
    const node: GatewayNode = { ...examplePrimary, dkim: { selector: "s1", keyDir: "/srv/dkim//", keyBits: 4096 } };
    expect(dkimKeygenCommand(node).split(" && ")).toEqual([
      "install -d -m 0750 -o opendkim -g opendkim /srv/dkim",
      "{ test -s /srv/dkim/s1.private || opendkim-genkey -b 4096 -h sha256 -s s1 -d brightchain.org -D /srv/dkim; }",
      "chown opendkim:opendkim /srv/dkim/s1.private /srv/dkim/s1.txt",
      "chmod 0600 /srv/dkim/s1.private",
      "chmod 0644 /srv/dkim/s1.txt",
    ]);
  });
});

describe("parseDkimTxtRecord's edge cases", () => {
  it("an escaped quote or backslash inside a string is the character itself", () => {
    expect(parseDkimTxtRecord('x IN TXT ( "v=DKIM1; n=a\\"b\\\\c; " "p=AB+/=" )')).toBe('v=DKIM1; n=a"b\\c; p=AB+/=');
  });

  it("a comment between strings is skipped to its line's end, and a comment on the last line to the text's end", () => {
    expect(parseDkimTxtRecord('x IN TXT ( "v=DKIM1; " ; "p=ignored"\n "p=KEY" ) ; "p=also ignored"')).toBe("v=DKIM1; p=KEY");
  });

  it("a key record may end in spaces after its key, and p= may be the first tag after v=", () => {
    expect(parseDkimTxtRecord('"v=DKIM1;p=KEY  "')).toBe("v=DKIM1;p=KEY  ");
  });

  it("refuses a record not starting with v=DKIM1;, one whose p= is not last or not base64, and says which text", () => {
    const expected =
      'is not a DKIM key record; expected the <selector>.txt opendkim-genkey writes, holding "v=DKIM1; … p=<base64 key>"';
    expect(() => parseDkimTxtRecord('"k=rsa; v=DKIM1; p=KEY"')).toThrow(`DKIM TXT record "k=rsa; v=DKIM1; p=KEY" ${expected}`);
    expect(() => parseDkimTxtRecord('"xv=DKIM1; p=KEY"')).toThrow(`"xv=DKIM1; p=KEY" ${expected}`);
    expect(() => parseDkimTxtRecord('"v=DKIM1; p=KEY; t=y"')).toThrow(`"v=DKIM1; p=KEY; t=y" ${expected}`);
    expect(() => parseDkimTxtRecord('"v=DKIM1; p=K*Y"')).toThrow(`"v=DKIM1; p=K*Y" ${expected}`);
    expect(() => parseDkimTxtRecord('"v=DKIM1; xp=KEY"')).toThrow(`"v=DKIM1; xp=KEY" ${expected}`);
    expect(() => parseDkimTxtRecord('"v=DKIM1; p="')).toThrow(`"v=DKIM1; p=" ${expected}`);
    // No quoted string at all: the text itself (its first 120 characters) is named.
    expect(() => parseDkimTxtRecord("no quotes here")).toThrow(`DKIM TXT record "no quotes here" ${expected}`);
    expect(() => parseDkimTxtRecord("y".repeat(200))).toThrow(`DKIM TXT record "${"y".repeat(120)}" ${expected}`);
  });

  it("an unterminated string: the error quotes the text's first 120 characters", () => {
    const text = `x IN TXT ( "v=DKIM1; p=${"A".repeat(200)}`;
    expect(() => parseDkimTxtRecord(text)).toThrow(
      `DKIM TXT record has an unterminated quoted string: ${JSON.stringify(text.slice(0, 120))}`,
    );
    // A backslash as the very last character does not run past the text.
    expect(() => parseDkimTxtRecord('"v=DKIM1; p=A\\')).toThrow(/unterminated quoted string: "\\"v=DKIM1; p=A\\\\"/);
  });
});
