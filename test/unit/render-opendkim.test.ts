import { describe, expect, it } from "vitest";
import {
  dkimKeyPaths,
  dkimKeygenCommand,
  dkimMilterEndpoint,
  opendkimFiles,
  parseDkimTxtRecord,
  renderOpendkimConf,
} from "../../infra/render/opendkim";
import { examplePrimary, nodeMatrix } from "../fixtures/nodes";
import type { GatewayNode } from "../../infra/model/types";

// Shape of what opendkim-genkey 2.11 writes (key shortened; the host test parses a real one).
const genkeyOutput = `default._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "
\t  "p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsW00oW46"
\t  "xl45qaygea0FStUnCkKGLMYWIDAQAB" )  ; ----- DKIM key default for brightchain.org
`;

function confLines(node: GatewayNode): Map<string, string> {
  const lines = renderOpendkimConf(node)
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"));
  return new Map(lines.map((l) => [l.split(/\s+/)[0]!, l.replace(/^\S+\s+/, "")]));
}

describe("OpenDKIM renderer", () => {
  it.each(nodeMatrix)("$name: primaries sign and verify on loopback 8891, relays run no OpenDKIM", ({ node }) => {
    if (node.role === "relay") {
      expect(opendkimFiles(node)).toEqual([]);
      expect(dkimMilterEndpoint(node)).toBeUndefined();
      expect(() => renderOpendkimConf(node)).toThrow(/role=relay.*accepted: role=primary/);
      return;
    }
    const conf = confLines(node);
    expect(conf.get("Socket")).toBe("inet:8891@127.0.0.1");
    expect(conf.get("Mode")).toBe("sv");
    expect(conf.get("KeyFile")).toBe("/etc/dkim/default.private");
    expect(conf.get("Selector")).toBe("default");
    expect(conf.get("Domain")).toBe("brightchain.org");
    expect(conf.get("Canonicalization")).toBe("relaxed/simple");
    expect(conf.get("OversignHeaders")).toBe("From");
    expect(conf.get("UserID")).toBe("opendkim");
    expect(conf.get("UMask")).toBe("007");
    expect(conf.get("PidFile")).toBe("/run/opendkim/opendkim.pid");
    expect(conf.get("InternalHosts")).toBe("127.0.0.0/8, ::1/128");
    expect(conf.get("TrustAnchorFile")).toBe(node.os.family === "debian" ? "/usr/share/dns/root.key" : undefined);
    expect(dkimMilterEndpoint(node)).toBe("inet:127.0.0.1:8891");
    const [file] = opendkimFiles(node);
    expect(file).toMatchObject({ path: "/etc/opendkim.conf", mode: 0o644, notify: ["opendkim"] });
  });

  it("derives key paths from keyDir and selector", () => {
    const node: GatewayNode = { ...examplePrimary, dkim: { ...examplePrimary.dkim, keyDir: "/srv/keys/", selector: "s2026" } };
    expect(dkimKeyPaths(node)).toEqual({
      keyDir: "/srv/keys",
      privateKey: "/srv/keys/s2026.private",
      txtRecord: "/srv/keys/s2026.txt",
    });
    expect(confLines(node).get("KeyFile")).toBe("/srv/keys/s2026.private");
  });

  it("keygen keeps an existing key and locks the private key to opendkim", () => {
    const command = dkimKeygenCommand(examplePrimary);
    expect(command).toContain("test -s /etc/dkim/default.private || opendkim-genkey -b 2048");
    expect(command).toContain("-s default -d brightchain.org -D /etc/dkim");
    expect(command).toContain("chmod 0600 /etc/dkim/default.private");
  });

  it("joins the split quoted strings of a genkey record and drops the comment", () => {
    expect(parseDkimTxtRecord(genkeyOutput)).toBe(
      "v=DKIM1; h=sha256; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsW00oW46xl45qaygea0FStUnCkKGLMYWIDAQAB",
    );
  });

  it("rejects text that is not a DKIM key record, saying what was expected", () => {
    expect(() => parseDkimTxtRecord("")).toThrow(/expected the <selector>\.txt opendkim-genkey writes/);
    expect(() => parseDkimTxtRecord('x IN TXT ( "v=spf1 -all" )')).toThrow(/"v=spf1 -all" is not a DKIM key record/);
    expect(() => parseDkimTxtRecord('x IN TXT ( "v=DKIM1; p=abc')).toThrow(/unterminated/);
  });
});
