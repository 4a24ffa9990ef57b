// systemd units for the runtime (lookup socketmap, inbound processor) and the ordering drop-in that makes
// Postfix start only after the services its smtpd asks on every connection.
import { isIP } from "node:net";
import type { GatewayNode, HostFile } from "../model/types";
import { sendEnvFile } from "./gateway-env";
import { opendkimEnabled } from "./opendkim";
import { spamServices } from "./spam";

export const UNIT_DIR = "/etc/systemd/system";

/** Debian and Ubuntu's nodejs package and RHEL's nodejs module both install the binary here. */
const NODE_BINARY = "/usr/bin/node";

/**
 * V8 grows its old space lazily up to ~2 GB and gives little back: under a steady stream the processor's RSS
 * crept from 100 to 124 MB over 30,000 messages. Its live heap is small and bounded (at most 2,000 names held;
 * a hand-off waiting on the sink keeps only its index fields, never the header section), so a 64 MB old space
 * keeps it flat near 98 MB at the same speed (docs/performance.md; test/host/inbound-crash: 64 messages of
 * 50,000 header fields at once). Not for
 * the lookup service: its registry is a Set as large as the address list.
 */
export const INBOUND_NODE_OPTIONS = ["--max-old-space-size=64"];

/**
 * The unit that actually runs master(8). Debian's postfix.service is a oneshot /bin/true wrapper and the
 * daemon runs in postfix@-.service, which starts *before* postfix.service: ordering against the wrapper
 * would not hold the real daemon back.
 */
export function postfixDaemonUnit(node: GatewayNode): string {
  return node.os.family === "debian" ? "postfix@-.service" : "postfix.service";
}

interface RuntimeUnit {
  name: "brightchain-lookup" | "brightchain-inbound";
  description: string;
  /** Paths the service may write; everything else is read-only (ProtectSystem=strict). */
  writablePaths: string[];
  memoryMax: string;
  nodeOptions: string[];
  extraUnit: string[];
  /** The service's one peer off this host (the node API), from its URL; Postfix is on loopback. */
  remote: RemotePeer;
  /** Networks that may reach the service besides loopback: the Prometheus scrapers (gateway:metrics.scrapers). */
  scrapers: string[];
  /** 0077 when the service writes nothing anyone else should read. */
  umask: "0027" | "0077";
}

/**
 * What the kernel can be told about a service's peer off this host. An IP literal goes into IPAddressAllow=; a
 * host name cannot (systemd takes addresses only, resolves nothing at start, and the node's addresses may
 * change), so it leaves the service without an IP allow list, and resolving it needs AF_UNIX (nscd,
 * systemd-resolved's varlink socket). "localhost" is loopback, allowed anyway.
 */
export type RemotePeer = { kind: "none" } | { kind: "address"; address: string } | { kind: "name"; host: string };

export function remotePeer(url: string | undefined): RemotePeer {
  if (url === undefined) return { kind: "none" };
  const host = new URL(url).hostname.replace(/^\[(.*)\]$/, "$1");
  if (host === "localhost") return { kind: "none" };
  return isIP(host) === 0 ? { kind: "name", host } : { kind: "address", address: host };
}

/**
 * IPAddressAllow= after IPAddressDeny=any, or undefined: no IP filter for a peer known by name only. The
 * scrapers' networks are there because the filter drops their packets before the metrics endpoint sees them,
 * whatever the firewall admits.
 */
export function unitIpAllowList(remote: RemotePeer, scrapers: readonly string[] = []): string[] | undefined {
  if (remote.kind === "name") return undefined;
  return ["localhost", ...(remote.kind === "address" ? [remote.address] : []), ...scrapers];
}

/**
 * AF_INET6 stays even for a loopback-only service: systemd-analyze scores INET and INET6 as one item (nothing to
 * gain), a host name can resolve to IPv6 first (Node 18 connects to ::1 for "localhost"), and the metrics
 * endpoint listens on :: when a scraper network is IPv6. AF_UNIX only where a host name is resolved: with the
 * file registry and the embedded store neither daemon creates any socket but TCP ones.
 */
export function unitAddressFamilies(remote: RemotePeer): string[] {
  return ["AF_INET", "AF_INET6", ...(remote.kind === "name" ? ["AF_UNIX"] : [])];
}

function renderUnit(node: GatewayNode, unit: RuntimeUnit): string {
  const allow = unitIpAllowList(unit.remote, unit.scrapers);
  const lines = [
    "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
    "[Unit]",
    `Description=${unit.description}`,
    "After=network.target",
    ...unit.extraUnit,
    "",
    "[Service]",
    "Type=simple",
    `User=${node.drop.user}`,
    `Group=${node.drop.group}`,
    `EnvironmentFile=${node.runtime.envFile}`,
    `ExecStart=${[NODE_BINARY, ...unit.nodeOptions, `${node.runtime.installDir}/${unit.name}.cjs`].join(" ")}`,
    "Restart=on-failure",
    "RestartSec=2s",
    // 0027 for the inbound processor: what it writes to the spool and the store is group-readable by
    // brightchain only (brightchain-store, operators in the group); the lookup writes nothing.
    `UMask=${unit.umask}`,
    "",
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "ProtectSystem=strict",
    ...(unit.writablePaths.length > 0 ? [`ReadWritePaths=${unit.writablePaths.join(" ")}`] : []),
    // brightchain-send's env file holds the SASL password, which neither daemon needs: unreadable here even
    // though both run as the user that may read it ("-": no error while the file does not exist).
    `InaccessiblePaths=-${sendEnvFile(node)}`,
    "ProtectHome=yes",
    "PrivateTmp=yes",
    // Only root and brightchain exist in the service's user namespace: it could not act on another user's
    // files or processes even if it gained a capability. Spool and store files are brightchain's own.
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
    // No MemoryDenyWriteExecute: V8's JIT maps writable+executable pages and node would abort.
    `RestrictAddressFamilies=${unitAddressFamilies(unit.remote).join(" ")}`,
    ...(allow === undefined ? [] : ["IPAddressDeny=any", `IPAddressAllow=${allow.join(" ")}`]),
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    // Neither daemon calls any of these (strace of both on Debian 12's Node 18 and 13's Node 20, lookups,
    // drops, the HTTP node API): no chown, setuid, chroot, setrlimit, setpriority, sched_setaffinity.
    "SystemCallFilter=~@privileged @resources",
    "SystemCallErrorNumber=EPERM",
    `MemoryMax=${unit.memoryMax}`,
    "TasksMax=64",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ];
  return lines.join("\n");
}

export function renderLookupUnit(node: GatewayNode): string {
  return renderUnit(node, {
    name: "brightchain-lookup",
    description: `BrightChain Email Gateway recipient lookup (Postfix socketmap on 127.0.0.1:${node.lookup.port})`,
    // Reads the registry, writes nothing.
    writablePaths: [],
    memoryMax: "256M",
    nodeOptions: [],
    remote: remotePeer(node.lookup.registry.kind === "http" ? node.lookup.registry.url : undefined),
    scrapers: node.metrics.scrapers,
    umask: "0077",
    // smtpd asks the socketmap for every RCPT TO; until it answers, Postfix defers all inbound mail.
    extraUnit: [`Before=${postfixDaemonUnit(node)}`],
  });
}

export function renderInboundUnit(node: GatewayNode): string {
  return renderUnit(node, {
    name: "brightchain-inbound",
    description: `BrightChain Email Gateway inbound processor (${node.drop.mailDropDir})`,
    writablePaths: inboundWritablePaths(node),
    memoryMax: "512M",
    nodeOptions: INBOUND_NODE_OPTIONS,
    remote: remotePeer(node.runtime.nodeUrl),
    scrapers: node.metrics.scrapers,
    umask: "0027",
    extraUnit: [],
  });
}

function isWithin(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir.replace(/\/+$/, "")}/`);
}

/**
 * The spool itself, not incoming/ and errors/ one by one: systemd bind-mounts every ReadWritePaths= entry on
 * its own, and link(2) between two mounts fails (EXDEV) even on one filesystem. The store hard-links each
 * message from incoming/ only while both are inside one entry; a store elsewhere gets its own and is copied to.
 */
function inboundWritablePaths(node: GatewayNode): string[] {
  const { spoolDir, mailDropDir, errorDir } = node.drop;
  return [spoolDir, ...[mailDropDir, errorDir, node.runtime.storeDir].filter((path) => !isWithin(path, spoolDir))];
}

/** Services Postfix's smtpd talks to while accepting mail: the socketmap, OpenDKIM, the spam milter. */
export function postfixPrerequisites(node: GatewayNode): string[] {
  return [
    "brightchain-lookup.service",
    ...(opendkimEnabled(node) ? ["opendkim.service"] : []),
    ...spamServices(node).map((service) => `${service}.service`),
  ];
}

/**
 * A drop-in for the Postfix daemon unit: without it Postfix can come up first after a reboot and, with
 * milter_default_action = accept, let through unsigned and unscanned mail until the milters are up.
 */
export function renderPostfixDropIn(node: GatewayNode): string {
  const prerequisites = postfixPrerequisites(node).join(" ");
  return [
    "# Rendered by brightchain-gateway from the node model.",
    "[Unit]",
    `Wants=${prerequisites}`,
    `After=${prerequisites}`,
    "",
  ].join("\n");
}

function unitFile(path: string, content: string, notify: string[]): HostFile {
  return { path, mode: 0o644, owner: "root", group: "root", content, notify };
}

export function runtimeUnitFiles(node: GatewayNode): HostFile[] {
  // A relay forwards to the primary and has no drop Maildir: an inbound processor there would crash-loop on
  // its missing spool. Only the primary runs it.
  const inbound =
    node.role === "primary"
      ? [unitFile(`${UNIT_DIR}/brightchain-inbound.service`, renderInboundUnit(node), ["brightchain-inbound"])]
      : [];
  return [
    unitFile(`${UNIT_DIR}/brightchain-lookup.service`, renderLookupUnit(node), ["brightchain-lookup"]),
    ...inbound,
    // Ordering only takes effect at the next start; restarting Postfix for it would drop connections for nothing.
    unitFile(`${UNIT_DIR}/${postfixDaemonUnit(node)}.d/brightchain.conf`, renderPostfixDropIn(node), []),
  ];
}
