// What every doctor check returns, and the functions checks are given to look at the world: DNS answers, SMTP
// and TLS probes, and a command on the host. Checks are pure over these, so each is unit-tested with fakes.
import type { DnsRecordData } from "./dns-wire";

export type CheckStatus = "ok" | "fail" | "warn";

/** The part of the gateway a check looks at; the table groups by it. */
export type CheckGroup = "dns" | "dnssec" | "ptr" | "policy" | "tls" | "ports" | "relay" | "host";

export interface CheckResult {
  group: CheckGroup;
  /** What was checked, short: `MX brightchain.org`, `STARTTLS 203.0.113.10:25 chain`. */
  subject: string;
  status: CheckStatus;
  /** What was seen. */
  detail: string;
  /** For fail and warn: what to do about it. */
  fix?: string;
  /** For a problem with a published record: why the record exists (DnsRecord.purpose). */
  why?: string;
}

/**
 * The records of `type` at `name` in a canonical text form (see resolver.ts): [] when the name or the type has
 * none. Throws for anything else (SERVFAIL, a timeout); ResolverUnreachableError when no server answers at all.
 */
export type DnsLookup = (name: string, type: string) => Promise<string[]>;

/** An answer to a query with the DO bit: its records with their RRSIGs, and whether the server validated it. */
export interface SecureAnswer {
  /** The name server that answered, `IP:PORT`. */
  server: string;
  rcode: number;
  /** The AD bit: only a validating resolver sets it. */
  authenticated: boolean;
  records: DnsRecordData[];
}

/**
 * Asks for `type` (a number: dns-wire's TYPE_DNSKEY …) at `name` with the DO and AD bits. Throws when no server
 * answers or the answer does not parse, naming what was wrong.
 */
export type DnssecQuery = (name: string, type: number) => Promise<SecureAnswer>;

/** No configured name server answered: doctor cannot run (exit 2), rather than reporting every record missing. */
export class ResolverUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ResolverUnreachableError";
  }
}

export interface SmtpTarget {
  /** The address connected to. */
  address: string;
  port: number;
}

export interface CertificateSummary {
  subject: string;
  issuer: string;
  /** DNS names the certificate is valid for: its subjectAltName DNS entries (its CN when it has none). */
  names: string[];
  validTo: Date;
  /** What a TLSA record's selector 0 (the whole certificate) and 1 (its SubjectPublicKeyInfo) hash. */
  certificateDer?: Uint8Array;
  publicKeyDer?: Uint8Array;
}

export type TlsHandshake =
  /** Completed: the negotiated protocol, and whether the chain verified against the trusted roots. */
  | {
      kind: "handshake";
      protocol: string;
      authorized: boolean;
      authorizationError?: string;
      /** Leaf first. */
      chain: CertificateSummary[];
    }
  /** The server answered the ClientHello with an alert: it refuses what was offered. */
  | { kind: "refused-by-server"; reason: string }
  /** This machine's TLS library would not offer the versions asked for: proves nothing about the server. */
  | { kind: "refused-by-client"; reason: string }
  /** The SMTP server does not advertise STARTTLS, or refused the command. */
  | { kind: "no-starttls"; reason: string }
  /** Could not connect, or the connection broke. */
  | { kind: "failed"; reason: string };

export interface TlsVersionRange {
  minVersion: "TLSv1" | "TLSv1.1" | "TLSv1.2" | "TLSv1.3";
  maxVersion: "TLSv1" | "TLSv1.1" | "TLSv1.2" | "TLSv1.3";
}

export interface SmtpReplySummary {
  code: number;
  text: string;
}

/** The relay probe's transcript: it stops after RCPT (QUIT before DATA), so nothing is ever sent on. */
export type RelayTranscript =
  | { kind: "transcript"; greeting: SmtpReplySummary; mail: SmtpReplySummary; rcpt?: SmtpReplySummary }
  | { kind: "failed"; reason: string };

/** `open`: a TCP connection was accepted. Anything else is the reason it was not (ECONNREFUSED, a timeout …). */
export type PortState = { kind: "open" } | { kind: "closed"; reason: string };

/** An HTTPS GET: the answer and whether the certificate verified for the name asked (trusted roots + --ca). */
export type HttpsAnswer =
  | { kind: "response"; status: number; contentType: string; body: string; authorized: boolean; authorizationError?: string }
  | { kind: "failed"; reason: string };

/** The network probes checks use; network.ts has the real ones. */
export interface DoctorNetwork {
  /** GET https://<host><path> from `address` (the name resolved by doctor's own resolver), SNI and Host `host`. */
  httpsGet(address: string, host: string, path: string): Promise<HttpsAnswer>;
  /** EHLO, STARTTLS, then a TLS handshake offering `versions` (the library's defaults when undefined). */
  starttls(target: SmtpTarget, servername: string, versions?: TlsVersionRange): Promise<TlsHandshake>;
  /** EHLO, MAIL FROM:<sender>, RCPT TO:<recipient>, QUIT. */
  relayProbe(target: SmtpTarget, sender: string, recipient: string): Promise<RelayTranscript>;
  connect(target: SmtpTarget): Promise<PortState>;
}

/** One shell command on the node as root (over SSH with the stack's pinned host key): its exit code and output. */
export type HostCommand = (script: string) => Promise<{ exitCode: number; stdout: string; stderr: string }>;
