// The one description of a gateway node. Every DNS record, host file and host step is derived from a
// GatewayNode by pure functions; nothing here knows about Pulumi, Ansible or I/O. Defaults are applied
// once, in config parsing, never inside renderers.
import type { OsRelease } from "./releases";

export type NodeRole = "primary" | "relay";
export type OsFamily = "debian" | "rhel";
/** The distribution matters where Debian and Ubuntu differ (service names such as spamd vs spamassassin). */
export type OsDistro = "debian" | "ubuntu" | "rhel";
export type SpamEngine = "spamassassin" | "rspamd" | "none";
/**
 * How Postfix writes an accepted recipient's copy into the drop Maildir:
 * `virtual` — Postfix's own virtual(8) (default, no process per message);
 * `pipe` — the guide's brightchain-maildrop script, one recipient per delivery.
 */
export type DropTransport = "virtual" | "pipe";
export type AcmeChallenge = "dns-01" | "http-01";
export type DmarcPolicy = "none" | "quarantine" | "reject";
/**
 * RFC 8461 policy modes: `testing` reports failures (TLS-RPT) but delivers anyway; `enforce` makes a compliant
 * sender defer rather than deliver without a validated TLS connection to a listed MX; `none` withdraws a policy.
 */
export type MtaStsMode = "testing" | "enforce" | "none";

export interface GatewayHost {
  /** Fully qualified host name of this node, e.g. mail.brightchain.org. Also its MX target. */
  hostname: string;
  ipv4: string;
  /** Absent for IPv4-only nodes. */
  ipv6?: string;
}

export interface OperatingSystem {
  /** The exact release (gateway:os): what every package list and version-dependent renderer chooses by. */
  release: OsRelease;
  family: OsFamily;
  distro: OsDistro;
}

export interface SpamSettings {
  engine: SpamEngine;
  /** Score at or above which a message is tagged and filed in the spam folder (guide: 5.0). */
  probableScore: number;
  /** Score at or above which a message is rejected at SMTP time with 550 (guide: 10.0). */
  definiteScore: number;
}

export interface DropSettings {
  transport: DropTransport;
  /** /var/spool/brightchain — home of the brightchain user, parent of incoming/ and errors/. */
  spoolDir: string;
  /** The Maildir Postfix delivers into: <spoolDir>/incoming (holds tmp/, new/, cur/). */
  mailDropDir: string;
  /** Where the InboundProcessor moves messages it cannot hand off: <spoolDir>/errors. */
  errorDir: string;
  /** Fixed uid/gid of the brightchain system user, so virtual(8) can be told them in main.cf. */
  uid: number;
  gid: number;
  user: string;
  group: string;
}

/** A rotation's previous selector (gateway:dkimPrevious): its record stays published through keepUntil. */
export interface DkimPrevious {
  selector: string;
  /** YYYY-MM-DD (UTC): the last day the record is kept; the first `up` after removes it. */
  keepUntil: string;
}

export interface DkimSettings {
  /** DNS selector. */
  selector: string;
  /** Directory holding <selector>.private (generated on the host; never leaves it) and <selector>.txt. */
  keyDir: string;
  keyBits: 2048 | 4096;
  /** `pulumi destroy` leaves the private key on the host (gateway:dkimKeepKeyOnDestroy); otherwise it is shredded. */
  keepKeyOnDestroy?: boolean;
  /** Mid-rotation: the selector signed with before this one (gateway:dkimPrevious). */
  previous?: DkimPrevious;
}

export interface DmarcSettings {
  policy: DmarcPolicy;
  /** mailto: URIs for aggregate reports. */
  rua: string[];
  /** Percentage of mail the policy applies to, 0–100. */
  pct: number;
}

export interface TlsSettings {
  challenge: AcmeChallenge;
  /** ACME account e-mail. */
  acmeEmail: string;
  /** ACME directory URL (Let's Encrypt production by default; the lab points it at pebble). */
  acmeServer: string;
  /** The certbot lineage Postfix serves (gateway:dane.lineage, default the host name): its directory under live/. */
  certName: string;
  /** Path of the certificate chain Postfix serves: /etc/letsencrypt/live/<certName>/fullchain.pem. */
  certFile: string;
  keyFile: string;
}

export interface MtaStsSettings {
  mode: MtaStsMode;
  /** Seconds a sender caches the policy (RFC 8461 caps it at 31557600). */
  maxAgeSeconds: number;
}

/**
 * DANE TLSA for port 25 (gateway:dane), present when enabled: the served lineage's key always has a record; a
 * rollover adds the next lineage's (issued and published before it is served) or the previous one's (kept until
 * a later up once the switch is done).
 */
export interface DaneSettings {
  nextLineage?: string;
  previousLineage?: string;
}

export interface TlsRptSettings {
  /** mailto: or https: URIs that receive RFC 8460 aggregate TLS reports. */
  rua: string[];
}

export interface CaaSettings {
  /** The CA's issuer domain name the CAA `issue` property names, e.g. letsencrypt.org. */
  issuer: string;
  /** RFC 8657 accounturi: only this ACME account may obtain certificates for the nodes' names. */
  accountUri?: string;
  /** Where a CA reports a refused request (RFC 8659 iodef): a mailto: or https: URI. */
  iodef?: string;
}

export type RecipientRegistry =
  | {
      kind: "file";
      path: string;
      /** gateway:recipients, lowercased and sorted: when set the deploy writes the file on every node. */
      addresses?: string[];
    }
  | { kind: "http"; url: string };

export interface LookupSettings {
  /** Loopback port of the RecipientLookupService socketmap (2526). */
  port: number;
  cacheTtlSeconds: number;
  registry: RecipientRegistry;
}

export interface MetricsSettings {
  /**
   * Where the Prometheus endpoints listen: 127.0.0.1 unless `scrapers` names a network, then every address
   * (0.0.0.0, or :: when a scraper network is IPv6) with the firewall admitting only those networks.
   */
  listenHost: string;
  /** brightchain-lookup's GET /metrics (9526). */
  lookupPort: number;
  /** brightchain-inbound's GET /metrics (9527); the primary only runs it. */
  inboundPort: number;
  /** Debian's prometheus-postfix-exporter: Postfix's queues by showq (9154, the exporter's own default). */
  postfixPort: number;
  /** Networks allowed to scrape from outside, as ufw/firewalld take them (203.0.113.0/24, 2001:db8::/64). */
  scrapers: string[];
}

export interface SubmissionSettings {
  /** Port 587 with STARTTLS + SASL (primary only). */
  enabled: boolean;
  /** SASL backend Postfix asks: Dovecot's auth socket. */
  saslBackend: "dovecot";
}

export interface RelaySettings {
  /** Host the relay forwards accepted mail to: the primary's hostname. */
  forwardTo: string;
  /** How long the backup MX keeps mail while the primary is down (Postfix time, e.g. "10d"). */
  queueLifetime: string;
}

export interface RuntimeSettings {
  /** Where the runtime artifact is installed on the host. */
  installDir: string;
  /** /etc/brightchain/gateway.env */
  envFile: string;
  /** Directory of the embedded content-addressed store (InboundProcessor sink). */
  storeDir: string;
  /** BrightChain node API; absent = embedded file registry and local store. */
  nodeUrl?: string;
}

export interface GatewayNode {
  role: NodeRole;
  /** The mail domain served, e.g. brightchain.org. */
  domain: string;
  host: GatewayHost;
  os: OperatingSystem;
  /** 10 for the primary; 20, 30 … for relays. */
  mxPriority: number;
  /** Every gateway node of the domain, primary first: SPF lists them all; the primary owns that record. */
  fleet: GatewayHost[];
  /** The primary's hostname (for a primary, its own). */
  primaryHostname: string;
  spam: SpamSettings;
  drop: DropSettings;
  dkim: DkimSettings;
  dmarc: DmarcSettings;
  tls: TlsSettings;
  lookup: LookupSettings;
  /** The Prometheus endpoints (gateway:metrics). */
  metrics: MetricsSettings;
  /** Present on the primary only. */
  submission?: SubmissionSettings;
  /** Present on relays only. */
  relay?: RelaySettings;
  /** Present on the primary only: its stack publishes the domain's MTA-STS policy, record and Worker. */
  mtaSts?: MtaStsSettings;
  /** Present on the primary when gateway:tlsRpt lists a report URI: a TLS-RPT record without one says nothing. */
  tlsRpt?: TlsRptSettings;
  /** Present when gateway:dane.enabled (the default): this node's `_25._tcp` TLSA records. */
  dane?: DaneSettings;
  /** Present on the primary when the issuing CA is known (Let's Encrypt's ACME server, or gateway:caa.issuer). */
  caa?: CaaSettings;
  /**
   * Present on the primary: whether its stack turns DNSSEC on for the zone (gateway:dnssec). The DS record the
   * registrar needs is a stack output; without it at the registrar the zone is signed but not yet trusted.
   */
  dnssec?: boolean;
  /** message_size_limit and GATEWAY_MAX_MESSAGE_SIZE, bytes (guide: 26214400). */
  maxMessageSize: number;
  /** Networks Postfix trusts to relay without auth: loopback only by default. */
  mynetworks: string[];
  runtime: RuntimeSettings;
}

/** Secrets never sit in the model (it is plain data and gets logged); renderers that need them take them apart. */
export interface GatewaySecrets {
  /** Submission accounts the BrightChain node uses on port 587. */
  submissionUsers: { username: string; password: string }[];
  /** Cloudflare token certbot's dns-01 plugin uses on the host (DNS edit on the zone only). */
  certbotCloudflareToken?: string;
}

/** A file the host must hold, byte for byte. */
export interface HostFile {
  /** Absolute path on the host. */
  path: string;
  /** Octal permission bits, e.g. 0o640. */
  mode: number;
  owner: string;
  group: string;
  content: string;
  /** True when the content carries a secret: adapters must keep it out of logs and diffs. */
  secret?: boolean;
  /** Services to reload (or restart) when this file changes, e.g. ["postfix"]. */
  notify: string[];
}

export type DnsRecordType = "A" | "AAAA" | "MX" | "TXT" | "CAA" | "TLSA";

export interface DnsRecord {
  /** Fully qualified owner name, no trailing dot: brightchain.org, _dmarc.brightchain.org. */
  name: string;
  type: DnsRecordType;
  /**
   * A/AAAA: address; MX: target host; TXT: the text, unquoted (renderers split/quote as the target needs);
   * CAA: the presentation form `0 issue "letsencrypt.org"`, as dig prints it; TLSA: `3 1 1 <lower-case hex>`.
   */
  content: string;
  /** MX only. */
  priority?: number;
  ttl: number;
  /** Why this record exists, for docs and `gateway doctor` (Mail-in-a-Box style). */
  purpose: string;
}

/** A reverse-DNS record that must exist but cannot be set at Cloudflare: exported and checked, not published. */
export interface PtrExpectation {
  address: string;
  /** in-addr.arpa / ip6.arpa name. */
  reverseName: string;
  expectedHostname: string;
}

/** A directory the host must have, with this owner and mode (the spool tree, key directories). */
export interface HostDirectory {
  path: string;
  mode: number;
  owner: string;
  group: string;
}
