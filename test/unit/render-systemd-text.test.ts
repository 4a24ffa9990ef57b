// The runtime's systemd units word for word on a primary whose node API is an IPv6 literal: every sandboxing
// setting, the address allow list (the literal without its brackets), the memory limits, and Postfix's drop-in
// ordering it after the lookup and the milters; plus the host-path rules of infra/render/index.ts.
import { describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { assertUniquePaths, DuplicateHostPathError, hostDirectories, hostFiles } from "../../infra/render";
import { runtimeUnitFiles } from "../../infra/render/systemd";
import { examplePrimary, exampleSecrets } from "../fixtures/nodes";

const node: GatewayNode = {
  ...examplePrimary,
  runtime: { ...examplePrimary.runtime, nodeUrl: "https://[2001:db8::5]:8443/api" },
};

describe("the runtime's unit files, exactly", () => {
  it("brightchain-lookup, brightchain-inbound and Postfix's drop-in", () => {
    expect(runtimeUnitFiles(node)).toEqual([
      {
        path: "/etc/systemd/system/brightchain-lookup.service",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
          "[Unit]",
          "Description=BrightChain Email Gateway recipient lookup (Postfix socketmap on 127.0.0.1:2526)",
          "After=network.target",
          "Before=postfix@-.service",
          "",
          "[Service]",
          "Type=simple",
          "User=brightchain",
          "Group=brightchain",
          "EnvironmentFile=/etc/brightchain/gateway.env",
          "ExecStart=/usr/bin/node /opt/brightchain-gateway/brightchain-lookup.cjs",
          "Restart=on-failure",
          "RestartSec=2s",
          "UMask=0077",
          "",
          "NoNewPrivileges=yes",
          "CapabilityBoundingSet=",
          "AmbientCapabilities=",
          "ProtectSystem=strict",
          "InaccessiblePaths=-/etc/brightchain/brightchain-send.env",
          "ProtectHome=yes",
          "PrivateTmp=yes",
          "PrivateUsers=yes",
          "PrivateDevices=yes",
          "PrivateMounts=yes",
          "PrivateIPC=yes",
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
          "RestrictAddressFamilies=AF_INET AF_INET6",
          "IPAddressDeny=any",
          "IPAddressAllow=localhost",
          "SystemCallArchitectures=native",
          "SystemCallFilter=@system-service",
          "SystemCallFilter=~@privileged @resources",
          "SystemCallErrorNumber=EPERM",
          "MemoryMax=256M",
          "TasksMax=64",
          "",
          "[Install]",
          "WantedBy=multi-user.target",
          "",
        ].join("\n"),
        notify: ["brightchain-lookup"],
      },
      {
        path: "/etc/systemd/system/brightchain-inbound.service",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
          "[Unit]",
          "Description=BrightChain Email Gateway inbound processor (/var/spool/brightchain/incoming)",
          "After=network.target",
          "",
          "[Service]",
          "Type=simple",
          "User=brightchain",
          "Group=brightchain",
          "EnvironmentFile=/etc/brightchain/gateway.env",
          "ExecStart=/usr/bin/node --max-old-space-size=64 /opt/brightchain-gateway/brightchain-inbound.cjs",
          "Restart=on-failure",
          "RestartSec=2s",
          "UMask=0027",
          "",
          "NoNewPrivileges=yes",
          "CapabilityBoundingSet=",
          "AmbientCapabilities=",
          "ProtectSystem=strict",
          "ReadWritePaths=/var/spool/brightchain",
          "InaccessiblePaths=-/etc/brightchain/brightchain-send.env",
          "ProtectHome=yes",
          "PrivateTmp=yes",
          "PrivateUsers=yes",
          "PrivateDevices=yes",
          "PrivateMounts=yes",
          "PrivateIPC=yes",
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
          "RestrictAddressFamilies=AF_INET AF_INET6",
          "IPAddressDeny=any",
          "IPAddressAllow=localhost 2001:db8::5",
          "SystemCallArchitectures=native",
          "SystemCallFilter=@system-service",
          "SystemCallFilter=~@privileged @resources",
          "SystemCallErrorNumber=EPERM",
          "MemoryMax=512M",
          "TasksMax=64",
          "",
          "[Install]",
          "WantedBy=multi-user.target",
          "",
        ].join("\n"),
        notify: ["brightchain-inbound"],
      },
      {
        path: "/etc/systemd/system/postfix@-.service.d/brightchain.conf",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway from the node model.",
          "[Unit]",
          "Wants=brightchain-lookup.service opendkim.service spamd.service spamass-milter.service",
          "After=brightchain-lookup.service opendkim.service spamd.service spamass-milter.service",
          "",
        ].join("\n"),
        notify: [],
      },
    ]);
  });
});

describe("host paths", () => {
  it("a path two renderers produce is refused, naming it", () => {
    expect(() => assertUniquePaths(["/a", "/b", "/a"])).toThrow(new DuplicateHostPathError("/a"));
    expect(() => assertUniquePaths(["/a", "/b", "/a"])).toThrow(
      "two renderers produce /a; each host path must have exactly one owner",
    );
    expect(() => assertUniquePaths(["/a", "/b"])).not.toThrow();
    expect(new DuplicateHostPathError("/a").name).toBe("DuplicateHostPathError");
  });

  it("files and directories come sorted by path, each once", () => {
    const paths = hostFiles(node, exampleSecrets).map((f) => f.path);
    expect(paths).toEqual([...paths].sort());
    expect(new Set(paths).size).toBe(paths.length);
    expect(paths).toContain("/etc/systemd/system/brightchain-lookup.service");
    const directories = hostDirectories(node).map((d) => d.path);
    expect(directories).toEqual([...directories].sort());
    expect(directories).toEqual([
      "/var/spool/brightchain",
      "/var/spool/brightchain/errors",
      "/var/spool/brightchain/incoming",
      "/var/spool/brightchain/incoming/cur",
      "/var/spool/brightchain/incoming/new",
      "/var/spool/brightchain/incoming/tmp",
      "/var/spool/brightchain/store",
    ]);
  });
});
