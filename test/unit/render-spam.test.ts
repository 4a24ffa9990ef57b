import { releaseOs } from "../../infra/model/releases";
import { describe, expect, it } from "vitest";
import { spamFiles, spamMilterEndpoint, spamServices, renderSpamassassinLocalCf } from "../../infra/render/spam";
import { examplePrimary, exampleRelay, nodeMatrix } from "../fixtures/nodes";
import type { GatewayNode } from "../../infra/model/types";

function fileAt(node: GatewayNode, path: string): string {
  const file = spamFiles(node).find((f) => f.path === path);
  if (!file) throw new Error(`no ${path} rendered for this node`);
  return file.content;
}

describe("spam engine renderer", () => {
  it.each(nodeMatrix)("$name: milter endpoint matches the engine and OS", ({ node }) => {
    const endpoint = spamMilterEndpoint(node);
    if (node.spam.engine === "none") expect(endpoint).toBeUndefined();
    if (node.spam.engine === "rspamd") expect(endpoint).toBe("inet:127.0.0.1:11332");
    if (node.spam.engine === "spamassassin") {
      expect(endpoint).toBe(node.os.family === "debian" ? "unix:spamass/spamass.sock" : "unix:/run/spamass-milter/postfix/sock");
    }
  });

  it.each(nodeMatrix)("$name: every file notifies only this engine's services", ({ node }) => {
    const services = spamServices(node);
    for (const file of spamFiles(node)) {
      expect(file.notify.length).toBeGreaterThan(0);
      for (const service of file.notify) expect(services).toContain(service);
      expect(file.mode).toBe(0o644);
    }
    if (node.spam.engine === "none") expect(spamFiles(node)).toEqual([]);
  });

  it("names spamd on Debian and Ubuntu, spamassassin on RHEL", () => {
    expect(spamServices(examplePrimary)).toEqual(["spamd", "spamass-milter"]);
    const ubuntu = { ...examplePrimary, os: releaseOs("ubuntu-24.04") } as const;
    expect(spamServices(ubuntu)).toEqual(["spamd", "spamass-milter"]);
    const rhel = { ...examplePrimary, os: releaseOs("rhel-9") } as const;
    expect(spamServices(rhel)).toEqual(["spamassassin", "spamass-milter"]);
    expect(spamServices(exampleRelay)).toEqual(["rspamd"]);
  });

  it("SpamAssassin tags at probableScore, keeps the message and Subject intact", () => {
    const localCf = renderSpamassassinLocalCf(examplePrimary);
    expect(localCf).toContain("required_score 5.0\n");
    expect(localCf).toContain("report_safe 0\n");
    expect(localCf).not.toContain("add_header");
    expect(localCf).not.toMatch(/rewrite_header/);
  });

  it("spamass-milter rejects at definiteScore, on the socket a chrooted smtpd reaches", () => {
    const milter = fileAt(examplePrimary, "/etc/default/spamass-milter");
    expect(milter).toContain('OPTIONS="-u spamass-milter -i 127.0.0.1 -I -m -r 10"');
    expect(milter).toContain('SOCKET="/var/spool/postfix/spamass/spamass.sock"');
    expect(milter).toContain('SOCKETOWNER="postfix:postfix"');
    expect(fileAt(examplePrimary, "/etc/default/spamd")).toContain("--listen=127.0.0.1:783");
    const rhel: GatewayNode = { ...examplePrimary, os: releaseOs("rhel-9") };
    expect(fileAt(rhel, "/etc/sysconfig/spamass-milter")).toContain('EXTRA_FLAGS="-i 127.0.0.1 -I -m -r 10"');
    expect(fileAt(rhel, "/etc/sysconfig/spamassassin")).toContain("--listen=127.0.0.1:783");
  });

  it("refuses a fractional reject score spamass-milter would truncate", () => {
    const node: GatewayNode = { ...examplePrimary, spam: { ...examplePrimary.spam, definiteScore: 9.5 } };
    expect(() => spamFiles(node)).toThrow(/spam\.definiteScore=9\.5.*integer/);
  });

  it("Rspamd binds loopback only, rejects at definiteScore, tags at probableScore, no greylist", () => {
    const actions = fileAt(exampleRelay, "/etc/rspamd/local.d/actions.conf");
    expect(actions).toContain("reject = 10.0;");
    expect(actions).toContain("add_header = 5.0;");
    expect(actions).toContain("greylist = null;");
    // Rspamd 3.12 (Debian 13) aborts its config transform on a null threshold among the ordered actions.
    expect(actions).not.toContain("rewrite_subject");
    expect(fileAt(exampleRelay, "/etc/rspamd/local.d/worker-proxy.inc")).toContain('bind_socket = "127.0.0.1:11332";');
    expect(fileAt(exampleRelay, "/etc/rspamd/local.d/worker-proxy.inc")).toContain("self_scan = yes;");
    expect(fileAt(exampleRelay, "/etc/rspamd/local.d/worker-normal.inc")).toContain('"127.0.0.1:11333"');
    expect(fileAt(exampleRelay, "/etc/rspamd/local.d/worker-controller.inc")).toContain('"127.0.0.1:11334"');
    expect(fileAt(exampleRelay, "/etc/rspamd/local.d/milter_headers.conf")).toContain('"x-spam-status"');
  });
});
