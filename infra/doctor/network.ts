// The real network probes behind DoctorNetwork: a bare SMTP client over node:net, STARTTLS with node:tls. Every
// wait is bounded: a filtered port or a server that never answers becomes a result, not a hang.
import { X509Certificate } from "node:crypto";
import { connect, type Socket } from "node:net";
import { request } from "node:https";
import {
  connect as tlsConnect,
  rootCertificates,
  type DetailedPeerCertificate,
  type PeerCertificate,
  type TLSSocket,
} from "node:tls";
import type {
  CertificateSummary,
  DoctorNetwork,
  HttpsAnswer,
  PortState,
  RelayTranscript,
  SmtpReplySummary,
  SmtpTarget,
  TlsHandshake,
  TlsVersionRange,
} from "./types";

/** The name doctor says EHLO with: reserved (RFC 2606), so it can never be mistaken for a real client. */
const EHLO_NAME = "doctor.brightchain-gateway.invalid";

/** An error in one line: its code, with OpenSSL's reason (its message is a multi-line dump of the error stack). */
const errorText = (error: unknown): string => {
  const e = error as NodeJS.ErrnoException & { reason?: unknown };
  if (e.code === undefined) return String(e.message ?? error);
  if (typeof e.reason === "string") return `${e.code} (${e.reason})`;
  return e.message.includes(e.code) ? e.code : `${e.code}: ${e.message}`;
};

/** Reads one SMTP reply (all its lines) at a time from a socket. */
class SmtpReader {
  private buffered = "";
  private waiter: { resolve: (reply: SmtpReplySummary) => void; reject: (error: Error) => void } | undefined;
  private failure: Error | undefined;
  private readonly lines: string[] = [];

  constructor(private readonly socket: Socket) {
    socket.on("data", this.onData);
    socket.on("error", this.onFailure);
    socket.on("close", this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buffered += chunk.toString("latin1");
    // A reply line is at most 512 bytes (RFC 5321 4.5.3.1.5); a peer sending megabytes is not an SMTP server.
    if (this.buffered.length > 64 * 1024) return this.onFailure(new Error("more than 64 KiB without a line end"));
    let newline: number;
    while ((newline = this.buffered.indexOf("\n")) >= 0) {
      this.lines.push(this.buffered.slice(0, newline).replace(/\r$/, ""));
      this.buffered = this.buffered.slice(newline + 1);
    }
    this.deliver();
  };

  private readonly onFailure = (error: Error): void => {
    this.failure ??= error;
    this.waiter?.reject(error);
    this.waiter = undefined;
  };

  private readonly onClose = (): void => this.onFailure(new Error("the server closed the connection"));

  private deliver(): void {
    if (this.waiter === undefined) return;
    const end = this.lines.findIndex((line) => /^\d{3}( |$)/.test(line));
    if (end < 0) return;
    const reply = this.lines.splice(0, end + 1);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter.resolve({ code: Number(reply[0]!.slice(0, 3)), text: reply.map((l) => l.slice(4)).join("\n") });
  }

  reply(): Promise<SmtpReplySummary> {
    return new Promise((resolve, reject) => {
      if (this.failure !== undefined) return reject(this.failure);
      this.waiter = { resolve, reject };
      this.deliver();
    });
  }

  command(line: string): Promise<SmtpReplySummary> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  /** Hands the socket over (to TLS): this reader stops listening. */
  release(): Socket {
    this.socket.off("data", this.onData);
    this.socket.off("error", this.onFailure);
    this.socket.off("close", this.onClose);
    return this.socket;
  }
}

function openSocket(target: SmtpTarget, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.address, port: target.port });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs} ms (ETIMEDOUT)`)));
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

function summary(cert: PeerCertificate): CertificateSummary {
  const dnsNames = (cert.subjectaltname ?? "")
    .split(/,\s*/)
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4).toLowerCase());
  const cn = typeof cert.subject?.CN === "string" ? cert.subject.CN : undefined;
  return {
    subject: cn ?? JSON.stringify(cert.subject ?? {}),
    issuer: typeof cert.issuer?.CN === "string" ? cert.issuer.CN : JSON.stringify(cert.issuer ?? {}),
    names: dnsNames.length > 0 ? dnsNames : cn !== undefined ? [cn.toLowerCase()] : [],
    validTo: new Date(cert.valid_to),
    certificateDer: cert.raw,
    publicKeyDer: new X509Certificate(cert.raw).publicKey.export({ type: "spki", format: "der" }),
  };
}

function chainOf(leaf: DetailedPeerCertificate): CertificateSummary[] {
  const chain: CertificateSummary[] = [];
  const seen = new Set<string>();
  for (let cert: DetailedPeerCertificate | undefined = leaf; cert && cert.fingerprint256; cert = cert.issuerCertificate) {
    if (seen.has(cert.fingerprint256)) break;
    seen.add(cert.fingerprint256);
    chain.push(summary(cert));
  }
  return chain;
}

/** OpenSSL's codes for "the server sent an alert refusing the version" vs "this side would not offer it". */
const SERVER_REFUSALS = /ALERT_PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|ALERT_HANDSHAKE_FAILURE/;
const CLIENT_REFUSALS = /NO_PROTOCOLS_AVAILABLE|NO_CIPHERS_AVAILABLE|NO_SUITABLE_SIGNATURE_ALGORITHM|LEGACY_SIGALG/;

const LEGACY = new Set<string>(["TLSv1", "TLSv1.1"]);

export interface NetworkOptions {
  /** PEM certificates trusted besides Node's bundled roots (the lab's ACME CA). */
  extraCa?: string[];
  timeoutMs?: number;
}

export function doctorNetwork(options: NetworkOptions = {}): DoctorNetwork {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const ca = options.extraCa && options.extraCa.length > 0 ? [...rootCertificates, ...options.extraCa] : undefined;

  async function starttls(target: SmtpTarget, servername: string, versions?: TlsVersionRange): Promise<TlsHandshake> {
    let socket: Socket;
    try {
      socket = await openSocket(target, timeoutMs);
    } catch (error) {
      return { kind: "failed", reason: errorText(error) };
    }
    try {
      const smtp = new SmtpReader(socket);
      const greeting = await smtp.reply();
      if (greeting.code !== 220) return { kind: "failed", reason: `greeting ${greeting.code} ${greeting.text}` };
      const ehlo = await smtp.command(`EHLO ${EHLO_NAME}`);
      if (!/^STARTTLS\b/im.test(ehlo.text))
        return { kind: "no-starttls", reason: `EHLO reply does not list STARTTLS (${ehlo.code})` };
      const ready = await smtp.command("STARTTLS");
      if (ready.code !== 220) return { kind: "no-starttls", reason: `STARTTLS answered ${ready.code} ${ready.text}` };
      const plain = smtp.release();
      return await new Promise<TlsHandshake>((resolve) => {
        const secure = tlsConnect({
          socket: plain,
          servername,
          rejectUnauthorized: false,
          // `authorized` is then the chain alone: the name is its own check (service.ts), reported on its own row.
          checkServerIdentity: () => undefined,
          ...(ca ? { ca } : {}),
          ...(versions ?? {}),
          // TLS 1.1 and older need SHA-1 signatures, which OpenSSL 3's default security level will not offer:
          // without this the client, not the server, would refuse, and the floor check would prove nothing.
          ...(versions && LEGACY.has(versions.maxVersion) ? { ciphers: "DEFAULT@SECLEVEL=0" } : {}),
        });
        secure.setTimeout(timeoutMs, () => secure.destroy(new Error(`no TLS handshake within ${timeoutMs} ms (ETIMEDOUT)`)));
        secure.once("secureConnect", () => {
          const authorizationError = secure.authorizationError;
          resolve({
            kind: "handshake",
            protocol: secure.getProtocol() ?? "unknown",
            authorized: secure.authorized,
            ...(authorizationError ? { authorizationError: String(authorizationError) } : {}),
            chain: chainOf(secure.getPeerCertificate(true)),
          });
          secure.end("QUIT\r\n");
        });
        secure.once("error", (error) => {
          const reason = errorText(error);
          if (CLIENT_REFUSALS.test(reason)) resolve({ kind: "refused-by-client", reason });
          else if (SERVER_REFUSALS.test(reason)) resolve({ kind: "refused-by-server", reason });
          else resolve({ kind: "failed", reason });
        });
      });
    } catch (error) {
      return { kind: "failed", reason: errorText(error) };
    } finally {
      socket.destroy();
    }
  }

  async function relayProbe(target: SmtpTarget, sender: string, recipient: string): Promise<RelayTranscript> {
    let socket: Socket;
    try {
      socket = await openSocket(target, timeoutMs);
    } catch (error) {
      return { kind: "failed", reason: errorText(error) };
    }
    try {
      const smtp = new SmtpReader(socket);
      const greeting = await smtp.reply();
      if (greeting.code !== 220) return { kind: "failed", reason: `greeting ${greeting.code} ${greeting.text}` };
      await smtp.command(`EHLO ${EHLO_NAME}`);
      const mail = await smtp.command(`MAIL FROM:<${sender}>`);
      if (mail.code !== 250) return { kind: "transcript", greeting, mail };
      const rcpt = await smtp.command(`RCPT TO:<${recipient}>`);
      // Never DATA: an accepted recipient is the finding, and nothing may be sent through an open relay.
      await smtp.command("RSET").catch(() => undefined);
      await smtp.command("QUIT").catch(() => undefined);
      return { kind: "transcript", greeting, mail, rcpt };
    } catch (error) {
      return { kind: "failed", reason: errorText(error) };
    } finally {
      socket.destroy();
    }
  }

  async function connectPort(target: SmtpTarget): Promise<PortState> {
    try {
      const socket = await openSocket(target, Math.min(timeoutMs, 5_000));
      socket.destroy();
      return { kind: "open" };
    } catch (error) {
      return { kind: "closed", reason: errorText(error) };
    }
  }

  /** A policy file is a few hundred bytes; anything past this is not one. */
  const MAX_BODY = 64 * 1024;

  function httpsGet(address: string, host: string, path: string): Promise<HttpsAnswer> {
    return new Promise((resolve) => {
      const req = request(
        {
          host: address,
          servername: host,
          headers: { Host: host },
          path,
          method: "GET",
          rejectUnauthorized: false,
          ...(ca ? { ca } : {}),
          timeout: timeoutMs,
        },
        (res) => {
          const socket = res.socket as TLSSocket;
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_BODY) req.destroy(new Error(`answer larger than ${MAX_BODY} bytes`));
            else chunks.push(chunk);
          });
          res.on("end", () => {
            // Here `authorized` covers the name too: a sender fetching the policy checks both at once.
            const authorizationError = socket.authorized ? undefined : String(socket.authorizationError ?? "unknown reason");
            resolve({
              kind: "response",
              status: res.statusCode ?? 0,
              contentType: String(res.headers["content-type"] ?? ""),
              body: Buffer.concat(chunks).toString("utf8"),
              authorized: socket.authorized,
              ...(authorizationError ? { authorizationError } : {}),
            });
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms (ETIMEDOUT)`)));
      req.on("error", (error) => resolve({ kind: "failed", reason: errorText(error) }));
      req.end();
    });
  }

  return { starttls, relayProbe, connect: connectPort, httpsGet };
}
