import { releaseOs } from "../../infra/model/releases";
import { describe, expect, it } from "vitest";
import { postfixDaemonUnit, renderPostfixDropIn, runtimeUnitFiles } from "../../infra/render/systemd";
import { examplePrimary, exampleRelay, nodeMatrix } from "../fixtures/nodes";
import type { GatewayNode } from "../../infra/model/types";

function unit(node: GatewayNode, name: string): string[] {
  const file = runtimeUnitFiles(node).find((f) => f.path.endsWith(name));
  if (!file) throw new Error(`no ${name}`);
  return file.content.split("\n");
}

describe("runtime systemd units", () => {
  it.each(nodeMatrix)("$name: its services run hardened as brightchain from gateway.env", ({ node }) => {
    const services = node.role === "primary" ? ["brightchain-lookup", "brightchain-inbound"] : ["brightchain-lookup"];
    for (const name of services) {
      const lines = unit(node, `${name}.service`);
      for (const line of [
        "User=brightchain",
        "EnvironmentFile=/etc/brightchain/gateway.env",
        // The SASL password is brightchain-send's alone: the daemons cannot open its file.
        "InaccessiblePaths=-/etc/brightchain/brightchain-send.env",
        name === "brightchain-inbound"
          ? "ExecStart=/usr/bin/node --max-old-space-size=64 /opt/brightchain-gateway/brightchain-inbound.cjs"
          : "ExecStart=/usr/bin/node /opt/brightchain-gateway/brightchain-lookup.cjs",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "WantedBy=multi-user.target",
      ]) {
        expect(lines).toContain(line);
      }
      expect(lines.filter((l) => l.startsWith("EnvironmentFile="))).toHaveLength(1);
      expect(lines.some((l) => l.startsWith("MemoryMax="))).toBe(true);
      expect(lines).not.toContain("MemoryDenyWriteExecute=yes");
    }
  });

  it("runs the inbound processor on the primary only: a relay has no drop Maildir", () => {
    expect(runtimeUnitFiles(exampleRelay).map((f) => f.path)).not.toContain("/etc/systemd/system/brightchain-inbound.service");
    expect(runtimeUnitFiles(examplePrimary).map((f) => f.path)).toContain("/etc/systemd/system/brightchain-inbound.service");
  });

  it.each(nodeMatrix.filter(({ node }) => node.role === "primary"))(
    "$name: only the inbound processor may write, and only the spool and store",
    ({ node }) => {
      expect(unit(node, "brightchain-lookup.service").some((l) => l.startsWith("ReadWritePaths="))).toBe(false);
      expect(unit(node, "brightchain-inbound.service")).toContain("ReadWritePaths=/var/spool/brightchain");
    },
  );

  it("gives a store outside the spool its own ReadWritePaths entry, and the spool one entry (one mount, so link(2) works)", () => {
    const elsewhere = { ...examplePrimary, runtime: { ...examplePrimary.runtime, storeDir: "/srv/brightchain-store" } };
    expect(unit(elsewhere, "brightchain-inbound.service")).toContain(
      "ReadWritePaths=/var/spool/brightchain /srv/brightchain-store",
    );
    const nested = { ...examplePrimary, runtime: { ...examplePrimary.runtime, storeDir: "/var/spool/brightchain-store" } };
    expect(unit(nested, "brightchain-inbound.service")).toContain(
      "ReadWritePaths=/var/spool/brightchain /var/spool/brightchain-store",
    );
  });

  it("orders the lookup service before the unit that really runs Postfix on each OS", () => {
    expect(postfixDaemonUnit(examplePrimary)).toBe("postfix@-.service");
    expect(unit(examplePrimary, "brightchain-lookup.service")).toContain("Before=postfix@-.service");
    const rhel: GatewayNode = { ...examplePrimary, os: releaseOs("rhel-9") };
    expect(unit(rhel, "brightchain-lookup.service")).toContain("Before=postfix.service");
    expect(runtimeUnitFiles(rhel).map((f) => f.path)).toContain("/etc/systemd/system/postfix.service.d/brightchain.conf");
    expect(runtimeUnitFiles(examplePrimary).map((f) => f.path)).toContain(
      "/etc/systemd/system/postfix@-.service.d/brightchain.conf",
    );
  });

  it("Postfix waits for the socketmap, OpenDKIM (primary) and the node's spam engine", () => {
    expect(renderPostfixDropIn(examplePrimary)).toContain(
      "After=brightchain-lookup.service opendkim.service spamd.service spamass-milter.service\n",
    );
    expect(renderPostfixDropIn(exampleRelay)).toContain("After=brightchain-lookup.service rspamd.service\n");
    expect(renderPostfixDropIn(exampleRelay)).toContain("Wants=brightchain-lookup.service rspamd.service\n");
  });

  it("limits services to loopback peers unless they talk to a remote BrightChain node", () => {
    expect(unit(examplePrimary, "brightchain-lookup.service")).toContain("IPAddressDeny=any");
    const remote: GatewayNode = {
      ...examplePrimary,
      lookup: { ...examplePrimary.lookup, registry: { kind: "http", url: "https://node.brightchain.org/registry" } },
      runtime: { ...examplePrimary.runtime, nodeUrl: "https://node.brightchain.org" },
    };
    expect(unit(remote, "brightchain-lookup.service")).not.toContain("IPAddressDeny=any");
    expect(unit(remote, "brightchain-inbound.service")).not.toContain("IPAddressDeny=any");
  });
});
