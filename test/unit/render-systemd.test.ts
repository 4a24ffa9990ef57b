import { releaseOs } from "../../infra/model/releases";
import { describe, expect, it } from "vitest";
import {
  postfixDaemonUnit,
  remotePeer,
  renderPostfixDropIn,
  runtimeUnitFiles,
  unitAddressFamilies,
  unitIpAllowList,
} from "../../infra/render/systemd";
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
        "WantedBy=multi-user.target",
      ]) {
        expect(lines).toContain(line);
      }
      expect(lines.filter((l) => l.startsWith("EnvironmentFile="))).toHaveLength(1);
      expect(lines.some((l) => l.startsWith("MemoryMax="))).toBe(true);
      expect(lines).not.toContain("MemoryDenyWriteExecute=yes");
    }
  });

  // Each option below lowered systemd-analyze security (docs/hardening.md) and was proven on Debian 12's and 13's
  // systemd with Debian's Node: a mistake here shows as SIGSYS or EPERM in the journal, so each has its own line.
  const local = (name: string) => unit(examplePrimary, name);
  describe.each(["brightchain-lookup.service", "brightchain-inbound.service"])("%s hardening", (name) => {
    it("SystemCallFilter: @system-service, then without @privileged and @resources, EPERM for the rest", () => {
      const lines = local(name);
      expect(lines).toContain("SystemCallFilter=@system-service");
      expect(lines).toContain("SystemCallFilter=~@privileged @resources");
      expect(lines.indexOf("SystemCallFilter=~@privileged @resources")).toBeGreaterThan(
        lines.indexOf("SystemCallFilter=@system-service"),
      );
      expect(lines).toContain("SystemCallErrorNumber=EPERM");
      expect(lines).toContain("SystemCallArchitectures=native");
    });
    it("PrivateUsers=yes", () => expect(local(name)).toContain("PrivateUsers=yes"));
    it("PrivateIPC=yes", () => expect(local(name)).toContain("PrivateIPC=yes"));
    it("no AF_UNIX with the file registry and the embedded store", () =>
      expect(local(name)).toContain("RestrictAddressFamilies=AF_INET AF_INET6"));
    it("IPAddressDeny=any, IPAddressAllow=localhost", () => {
      expect(local(name)).toContain("IPAddressDeny=any");
      expect(local(name)).toContain("IPAddressAllow=localhost");
    });
    it("CapabilityBoundingSet= and AmbientCapabilities= empty", () => {
      expect(local(name)).toContain("CapabilityBoundingSet=");
      expect(local(name)).toContain("AmbientCapabilities=");
    });
    it.each([
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "PrivateDevices=yes",
      "PrivateMounts=yes",
      "ProtectKernelTunables=yes",
      "ProtectKernelModules=yes",
      "ProtectKernelLogs=yes",
      "ProtectControlGroups=yes",
      "ProtectClock=yes",
      "ProtectHostname=yes",
      "ProtectProc=invisible",
      "ProcSubset=pid",
      "RestrictNamespaces=yes",
      "RestrictRealtime=yes",
      "RestrictSUIDSGID=yes",
      "LockPersonality=yes",
      "RemoveIPC=yes",
    ])("%s", (line) => expect(local(name)).toContain(line));
    it("no MemoryDenyWriteExecute: V8's JIT needs writable executable pages", () =>
      expect(local(name).some((line) => line.startsWith("MemoryDenyWriteExecute="))).toBe(false));
  });

  it("UMask: 0077 for the lookup, which writes nothing; 0027 for the inbound processor's group-readable spool", () => {
    expect(local("brightchain-lookup.service")).toContain("UMask=0077");
    expect(local("brightchain-inbound.service")).toContain("UMask=0027");
  });

  it("classifies a remote peer's URL: an IP literal is allowed by address, a host name cannot be", () => {
    expect(remotePeer(undefined)).toEqual({ kind: "none" });
    expect(remotePeer("http://localhost:8080")).toEqual({ kind: "none" });
    expect(remotePeer("https://203.0.113.7/api")).toEqual({ kind: "address", address: "203.0.113.7" });
    expect(remotePeer("https://[2001:db8::7]:8443")).toEqual({ kind: "address", address: "2001:db8::7" });
    expect(remotePeer("https://node.brightchain.org")).toEqual({ kind: "name", host: "node.brightchain.org" });
    expect(unitIpAllowList({ kind: "none" })).toEqual(["localhost"]);
    expect(unitIpAllowList({ kind: "address", address: "2001:db8::7" })).toEqual(["localhost", "2001:db8::7"]);
    expect(unitIpAllowList({ kind: "name", host: "node.brightchain.org" })).toBeUndefined();
    expect(unitIpAllowList({ kind: "name", host: "node.brightchain.org" }, ["203.0.113.0/24"])).toBeUndefined();
    expect(unitAddressFamilies({ kind: "none" })).toEqual(["AF_INET", "AF_INET6"]);
    expect(unitAddressFamilies({ kind: "address", address: "203.0.113.7" })).toEqual(["AF_INET", "AF_INET6"]);
    expect(unitAddressFamilies({ kind: "name", host: "node.brightchain.org" })).toEqual(["AF_INET", "AF_INET6", "AF_UNIX"]);
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
    for (const name of ["brightchain-lookup.service", "brightchain-inbound.service"]) {
      // A host name: no address to allow, and name resolution may need nscd's or systemd-resolved's socket.
      expect(unit(remote, name)).not.toContain("IPAddressDeny=any");
      expect(unit(remote, name).some((line) => line.startsWith("IPAddressAllow="))).toBe(false);
      expect(unit(remote, name)).toContain("RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX");
    }
  });

  it("lets the metrics scrapers' networks through the IP filter the firewall opened for them", () => {
    const scraped: GatewayNode = {
      ...examplePrimary,
      metrics: { ...examplePrimary.metrics, listenHost: "::", scrapers: ["203.0.113.0/24", "2001:db8:5::/64"] },
    };
    for (const name of ["brightchain-lookup.service", "brightchain-inbound.service"]) {
      expect(unit(scraped, name)).toContain("IPAddressDeny=any");
      expect(unit(scraped, name)).toContain("IPAddressAllow=localhost 203.0.113.0/24 2001:db8:5::/64");
      // The endpoint listens on :: for an IPv6 scraper network.
      expect(unit(scraped, name)).toContain("RestrictAddressFamilies=AF_INET AF_INET6");
    }
    const byAddress: GatewayNode = { ...scraped, runtime: { ...scraped.runtime, nodeUrl: "http://198.51.100.9" } };
    expect(unit(byAddress, "brightchain-inbound.service")).toContain(
      "IPAddressAllow=localhost 198.51.100.9 203.0.113.0/24 2001:db8:5::/64",
    );
  });

  it("allows a node API named by IP address, and only it besides loopback", () => {
    const byAddress: GatewayNode = {
      ...examplePrimary,
      lookup: { ...examplePrimary.lookup, registry: { kind: "http", url: "http://[2001:db8::7]:8080/registry" } },
      runtime: { ...examplePrimary.runtime, nodeUrl: "http://203.0.113.7:8080" },
    };
    const lookup = unit(byAddress, "brightchain-lookup.service");
    expect(lookup).toContain("IPAddressDeny=any");
    expect(lookup).toContain("IPAddressAllow=localhost 2001:db8::7");
    expect(lookup).toContain("RestrictAddressFamilies=AF_INET AF_INET6");
    const inbound = unit(byAddress, "brightchain-inbound.service");
    expect(inbound).toContain("IPAddressDeny=any");
    expect(inbound).toContain("IPAddressAllow=localhost 203.0.113.7");
    expect(inbound).toContain("RestrictAddressFamilies=AF_INET AF_INET6");
  });
});
