// `gateway doctor`: what is wrong with a deployed node, seen from outside as a sending server sees it (DNS, the
// DNSSEC chain, PTR, the MTA-STS policy, STARTTLS and TLSA, the TLS floor, open relay, ports that must be closed) and, with an SSH
// connection, from the host itself. Every check is a function over injected lookups and probes (types.ts); this file picks the node's
// checks, and runDoctor wires them to the stack's configuration and the real network.
import { isIP } from "node:net";
import type { RemoteConnection } from "../deploy/ssh";
import { runRemote } from "../deploy/ssh";
import { GatewayConfigError, parseGatewayStack, readStackConfigFiles, type FlatConfig } from "../model/config";
import type { GatewayNode } from "../model/types";
import { shellQuote } from "../plan/shell";
import { dnsRecords } from "../render/dns";
import { dmarcReportAuthorizationChecks } from "./dmarc-report";
import { dkimPresenceCheck, ptrChecks, recordChecks } from "./dns";
import { dnssecChecks } from "./dnssec";
import { parseTrustAnchor, type TrustAnchor } from "./dnssec-validate";
import { dropBacklogCheck, hostDkimKey, hostReachCheck, lookupProbeCheck, queueCheck } from "./host";
import { mtaStsPolicyCheck } from "./mta-sts";
import { doctorNetwork } from "./network";
import type { DoctorReport } from "./report";
import { dnsLookup, dnssecQuery } from "./resolver";
import { closedPortChecks, daneCheck, openRelayCheck, starttlsChecks, tlsFloorCheck } from "./service";
import type { CheckResult, DnsLookup, DnssecQuery, DoctorNetwork, HostCommand } from "./types";

export { dsRecordText, parseTrustAnchor, type TrustAnchor } from "./dnssec-validate";
export { formatReport, reportExitCode, reportJson, type DoctorReport } from "./report";
export { dnssecQuery, parseResolverAddress } from "./resolver";
export {
  ResolverUnreachableError,
  type CheckResult,
  type DnsLookup,
  type DnssecQuery,
  type DoctorNetwork,
  type HostCommand,
  type SecureAnswer,
} from "./types";

export interface NodeProbes {
  lookup: DnsLookup;
  /** Queries with the DNSSEC OK bit, for the DNSSEC rows; absent: they are skipped (tests of other checks). */
  dnssec?: DnssecQuery;
  /** DS records standing in for the parent's (--trust-anchor). */
  trustAnchors?: TrustAnchor[];
  network: DoctorNetwork;
  /** Runs a command on the node as root; absent: the host checks are skipped. */
  host?: HostCommand;
  /** Addresses the network checks connect to: the node's own (ipv4, ipv6) unless the lab's are given. */
  addresses: string[];
  /** 25 and 587 unless a test runs Postfix elsewhere. */
  ports: { smtp: number; submission: number };
  /** How the stack republishes its records, for the DNS fixes. */
  publishHint: string;
  now: Date;
}

/** The network cannot reach the address at all (no IPv6 route here): its checks would all fail for that reason alone. */
const NO_ROUTE = /ENETUNREACH|EADDRNOTAVAIL|EAFNOSUPPORT/;

/** Every check for `node`, in the table's order: DNS, PTR, then per address TLS, relay, ports, then the host. */
export async function doctorNode(node: GatewayNode, probes: NodeProbes): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const context = { publishHint: probes.publishHint };
  const ownsDkim = node.role === "primary";
  let dkimKey: string | undefined;
  let host = probes.host;
  if (host) {
    const unreachable = await hostReachCheck(node, host);
    if (unreachable !== undefined) {
      results.push(unreachable);
      host = undefined;
    }
  }
  if (host && ownsDkim) {
    const key = await hostDkimKey(node, host);
    if (key.kind === "key") dkimKey = key.recordText;
    else results.push(key.check);
  }
  const records = dnsRecords(node, dkimKey);
  results.push(...(await recordChecks(node, records, probes.lookup, context)));
  if (ownsDkim && dkimKey === undefined) results.push(await dkimPresenceCheck(node, probes.lookup, context));
  // The primary's stack owns DMARC, so it answers for where the reports go.
  if (node.role === "primary") results.push(...(await dmarcReportAuthorizationChecks(node, probes.lookup)));
  // The primary's stack signs the zone (gateway:dnssec), so it answers for the chain; the relays' TLSA rely on it.
  if (node.role === "primary" && probes.dnssec) {
    results.push(
      ...(await dnssecChecks(node, probes.dnssec, {
        trustAnchors: probes.trustAnchors ?? [],
        now: probes.now,
        publishHint: probes.publishHint,
      })),
    );
  }
  results.push(...(await ptrChecks(node, probes.lookup)));
  const policy = await mtaStsPolicyCheck(node, records, probes.lookup, probes.network, context);
  if (policy !== undefined) results.push(policy);

  for (const address of probes.addresses) {
    const smtp = { address, port: probes.ports.smtp };
    const reach = await probes.network.connect(smtp);
    if (reach.kind === "closed" && NO_ROUTE.test(reach.reason)) {
      results.push({
        group: "tls",
        subject: `reach ${address}`,
        status: "warn",
        detail: `no route from this machine (${reach.reason}): TLS, relay and port checks skipped for this address`,
        fix: "run doctor from a machine with a route to this address (IPv6), or give the address to use with --address",
      });
      continue;
    }
    const handshake = await probes.network.starttls(smtp, node.host.hostname);
    results.push(...starttlsChecks(node, smtp, handshake, probes.now));
    const dane = await daneCheck(node, smtp, handshake, probes.lookup);
    if (dane !== undefined) results.push(dane);
    results.push(await tlsFloorCheck(node, smtp, probes.network));
    if (node.submission?.enabled) {
      const submission = { address, port: probes.ports.submission };
      const submissionHandshake = await probes.network.starttls(submission, node.host.hostname);
      results.push(...starttlsChecks(node, submission, submissionHandshake, probes.now));
      results.push(await tlsFloorCheck(node, submission, probes.network));
    }
    results.push(await openRelayCheck(node, smtp, probes.network));
    results.push(...(await closedPortChecks(node, address, probes.network)));
  }

  if (host) {
    results.push(await lookupProbeCheck(node, host));
    results.push(await queueCheck(node, host, probes.now));
    if (node.role === "primary") results.push(await dropBacklogCheck(node, host, probes.now));
  }
  return results;
}

export interface DoctorOptions {
  stack: string;
  /** Folder holding Pulumi.yaml and Pulumi.<stack>.yaml. */
  projectDir: string;
  /** Laid over the stack files' values (the lab's addresses: labStackConfig(…).overrides). */
  configOverrides?: FlatConfig;
  /** Name servers to ask, `IP` or `IP:PORT` (parseResolverAddress); the system's when empty. */
  resolvers?: string[];
  /** Host name → the addresses to connect to instead of its configured ones (a lab, a NAT). */
  addresses?: Record<string, string[]>;
  /** Runs the host checks over this connection (its hostKey pinned); `true`: the stack's gateway:ssh. */
  ssh?: RemoteConnection | true;
  /** With `ssh: true`: the SSH private key (default: the configuration's, else the SSH agent). */
  privateKey?: string;
  /** PEM certificates trusted besides the public roots (the lab's ACME CA). */
  extraCa?: string[];
  /**
   * DS records in presentation form standing in for the parent's DS set, `brightchain.org. IN DS 2371 13 2 C2B5…`
   * (parseTrustAnchor; --trust-anchor): for a zone whose parent cannot be asked, as the lab's (labZoneTrustAnchor).
   */
  trustAnchors?: string[];
  /**
   * Replace the real resolver or network (tests). `lookup` alone replaces the record lookups and skips the DNSSEC
   * rows (they would ask the real network); give `dnssecQuery` too to run them over it.
   */
  lookup?: DnsLookup;
  dnssecQuery?: DnssecQuery;
  network?: DoctorNetwork;
  now?: Date;
}

/** A HostCommand over SSH: the pinned host key only, sudo when the login is not root (as `gateway drift`). */
export function sshHostCommand(connection: RemoteConnection): HostCommand {
  return (script) =>
    runRemote(
      connection,
      connection.user === undefined || connection.user === "root" ? script : `sudo -n sh -c ${shellQuote(script)}`,
      {
        timeoutMs: 60_000,
      },
    );
}

/** The stack's node doctored: configuration from the stack files, the real resolver and network unless injected. */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const { values } = readStackConfigFiles(options.projectDir, options.stack);
  const flat = { ...values, ...options.configOverrides };
  const { node, ssh } = parseGatewayStack(flat);
  const fleet = new Set(node.fleet.map((h) => h.hostname));
  for (const [host, addresses] of Object.entries(options.addresses ?? {})) {
    if (!fleet.has(host)) {
      throw new GatewayConfigError(
        "--address",
        `${host}=${addresses.join(",")}`,
        `a host of gateway:fleet (${[...fleet].join(", ")})`,
      );
    }
    const bad = addresses.find((a) => isIP(a) === 0);
    if (bad !== undefined) throw new GatewayConfigError("--address", `${host}=${bad}`, "HOST=IP with an IPv4 or IPv6 address");
  }
  let host: HostCommand | undefined;
  if (options.ssh === true) {
    if (ssh.hostKey === undefined) {
      throw new GatewayConfigError(
        "gateway:ssh.hostKey",
        undefined,
        "the host's public key: --on-host never connects to an unpinned host",
      );
    }
    const privateKey = options.privateKey ?? ssh.privateKey;
    host = sshHostCommand({
      host: ssh.host,
      port: ssh.port,
      user: ssh.user,
      hostKey: ssh.hostKey,
      ...(privateKey ? { privateKey } : {}),
    });
  } else if (options.ssh !== undefined) {
    host = sshHostCommand(options.ssh);
  }
  // A malformed one throws parseTrustAnchor's error, naming the value and the form accepted.
  const trustAnchors = (options.trustAnchors ?? []).map(parseTrustAnchor);
  for (const anchor of trustAnchors) {
    if (anchor.zone !== node.domain.toLowerCase())
      throw new GatewayConfigError("--trust-anchor", anchor.text, `a DS record for the stack's zone ${node.domain}`);
  }
  const dnssec = options.dnssecQuery ?? (options.lookup ? undefined : dnssecQuery(options.resolvers ?? []));
  const own = node.host;
  const checks = await doctorNode(node, {
    lookup: options.lookup ?? dnsLookup(options.resolvers ?? []),
    ...(dnssec ? { dnssec } : {}),
    trustAnchors,
    network: options.network ?? doctorNetwork({ ...(options.extraCa ? { extraCa: options.extraCa } : {}) }),
    ...(host ? { host } : {}),
    addresses: options.addresses?.[own.hostname] ?? [own.ipv4, ...(own.ipv6 ? [own.ipv6] : [])],
    ports: { smtp: 25, submission: 587 },
    publishHint: `\`pulumi up --stack ${options.stack}\` publishes it`,
    now: options.now ?? new Date(),
  });
  return { stack: options.stack, host: own.hostname, checks };
}
