import { describe, expect, it } from "vitest";
import { firewallApplyCommand, firewallFiles, openPorts, renderFirewallScript } from "../../infra/render/firewall";
import { examplePrimary, nodeMatrix } from "../fixtures/nodes";

describe("firewall renderer", () => {
  it.each(nodeMatrix)("$name: SMTP always open; 587 on the primary only; 80 only for http-01", ({ node }) => {
    const ports = openPorts(node).map((p) => p.port);
    expect(ports[0]).toBe(25);
    expect(ports.includes(587)).toBe(node.role === "primary");
    expect(ports.includes(80)).toBe(node.tls.challenge === "http-01");
  });

  it.each(nodeMatrix)("$name: one 0755 script with the OS's firewall tool, rejecting by default", ({ node }) => {
    const [file] = firewallFiles(node);
    expect(file).toMatchObject({ path: "/usr/local/sbin/brightchain-firewall", mode: 0o755, owner: "root" });
    expect(firewallApplyCommand()).toBe("BRIGHTCHAIN_SSH_PORT=22 /usr/local/sbin/brightchain-firewall");
    expect(firewallApplyCommand(2222)).toBe("BRIGHTCHAIN_SSH_PORT=2222 /usr/local/sbin/brightchain-firewall");
    const script = renderFirewallScript(node);
    expect(script.startsWith("#!/bin/sh\n")).toBe(true);
    expect(script).not.toMatch(/\bdrop\b|deny/i);
    if (node.os.family === "debian") {
      expect(script).toContain("ufw default reject incoming\n");
      // SSH first, on the port the deploy passes: enabling ufw can never cut the deploy's own connection.
      expect(script.indexOf(`ufw allow "\${BRIGHTCHAIN_SSH_PORT:-22}"/tcp`)).toBeLessThan(script.indexOf("ufw allow 25/tcp"));
      expect(script.indexOf("ufw allow 25/tcp")).toBeLessThan(script.indexOf("ufw --force enable"));
      for (const port of ["2526", "783", "8891", "11332:11334"]) expect(script).toContain(`ufw reject ${port}/tcp`);
      expect(script).not.toContain("firewall-cmd");
    } else {
      expect(script).toContain(`fw --add-port="\${BRIGHTCHAIN_SSH_PORT:-22}"/tcp`);
      expect(script).toContain(`fw --add-rich-rule='rule port port="11332-11334" protocol="tcp" reject'`);
      expect(script).not.toContain("ufw");
    }
  });

  it("closes ports an earlier run opened when the node stops needing them", () => {
    const relayScript = renderFirewallScript({ ...examplePrimary, role: "relay", submission: undefined });
    expect(relayScript).toContain("ufw --force delete allow 587/tcp");
    expect(relayScript).toContain("ufw --force delete allow 80/tcp");
    expect(renderFirewallScript(examplePrimary)).not.toContain("delete allow 587");
  });
});
