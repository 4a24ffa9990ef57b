// One STARTTLS probe for every TLS check (host suite on loopback, lab suite from `outside`): `openssl s_client`
// offering one protocol version, judged by its exit status and the session it printed, never by a line alone.
// OpenSSL 3.0 prints "Protocol  : TLSv1.2" even when the handshake failed or the server never spoke TLS, and
// "no protocols available" when the client refused to offer the version by itself: neither proves anything
// about the server. test/host/tls-probe.test.ts holds this judge against servers that do and do not accept
// TLS 1.1, a server that never speaks TLS, and a client that refuses by itself.
import { execFile } from "node:child_process";

export type TlsVersion = "TLSv1.1" | "TLSv1.2" | "TLSv1.3";

export type TlsVerdict =
  /** Exit 0 and a negotiated cipher: the session's protocol is the one the server agreed to. */
  | { kind: "handshake"; protocol: string; cipher: string }
  /** The server answered the ClientHello with a protocol_version alert: it refuses what was offered. */
  | { kind: "refused-by-server"; reason: string }
  /** The client never offered the version (its own security level or config): says nothing about the server. */
  | { kind: "refused-by-client"; reason: string }
  /** Anything else: no STARTTLS, plaintext where TLS was expected, connection refused, a timeout. */
  | { kind: "failed"; reason: string };

export interface TlsProbe {
  verdict: TlsVerdict;
  exitCode: number;
  output: string;
}

/** Runs `openssl` with these arguments, "QUIT" on stdin; resolves with its exit status and stdout + stderr. */
export type OpensslRunner = (args: string[]) => Promise<{ exitCode: number; output: string }>;

const VERSION_FLAG: Record<TlsVersion, string> = { "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3" };

/**
 * s_client arguments for a STARTTLS (SMTP) handshake offering only `version` (every version the client allows
 * when undefined). TLS 1.1 is offered at SECLEVEL=0: at Debian's default level the client itself refuses TLS
 * 1.1's SHA-1 signatures, and the probe would then blame the server for the client's refusal.
 */
export function starttlsProbeArgs(target: { host: string; port: number; servername?: string }, version?: TlsVersion): string[] {
  return [
    "s_client",
    "-connect",
    `${target.host}:${target.port}`,
    "-starttls",
    "smtp",
    ...(target.servername === undefined ? [] : ["-servername", target.servername]),
    ...(version === undefined ? [] : [VERSION_FLAG[version]]),
    ...(version === "TLSv1.1" ? ["-cipher", "DEFAULT@SECLEVEL=0"] : []),
  ];
}

const CLIENT_REFUSALS = /no protocols available|legacy sigalg disallowed|no ciphers available|no suitable signature algorithm/;

/** What an s_client run proves; see TlsVerdict. */
export function judgeTlsProbe(exitCode: number, output: string): TlsVerdict {
  const firstError = /^[0-9A-F]+:error:[^\n]*/m.exec(output)?.[0] ?? `exit ${exitCode}, no error line`;
  const clientRefusal = CLIENT_REFUSALS.exec(output);
  if (clientRefusal !== null) return { kind: "refused-by-client", reason: firstError };
  // "New, <cipher's own version>, Cipher is <name>", (NONE) when nothing was negotiated. That version is the
  // cipher's (TLSv1.0 for a TLS 1.1 CBC suite); the session block's Protocol line is the session's, printed for
  // TLS 1.2 and older only (a TLS 1.3 session arrives after the handshake), where the cipher's version is right.
  const negotiated = /^New, (\S+), Cipher is (\S+)$/m.exec(output);
  const protocol = /^\s*Protocol\s*:\s*(TLSv1(?:\.\d)?)\s*$/m.exec(output)?.[1] ?? negotiated?.[1];
  const cipher = negotiated?.[2];
  if (exitCode === 0 && cipher !== undefined && cipher !== "(NONE)" && protocol !== undefined) {
    return { kind: "handshake", protocol, cipher };
  }
  if (exitCode !== 0 && /alert protocol version/.test(output)) return { kind: "refused-by-server", reason: firstError };
  return { kind: "failed", reason: firstError };
}

/** openssl on this machine. */
export const localOpenssl: OpensslRunner = (args) =>
  new Promise((resolve) => {
    const child = execFile("openssl", args, { encoding: "utf8", timeout: 20_000 }, (error, stdout, stderr) => {
      const code = (error as { code?: unknown } | null)?.code;
      resolve({ exitCode: error === null ? 0 : typeof code === "number" ? code : -1, output: `${stdout}${stderr}` });
    });
    child.stdin!.end("QUIT\r\n");
  });

/** One STARTTLS handshake offering `version` (the client's whole range when undefined), judged. */
export async function probeStarttls(
  target: { host: string; port: number; servername?: string },
  version?: TlsVersion,
  run: OpensslRunner = localOpenssl,
): Promise<TlsProbe> {
  const { exitCode, output } = await run(starttlsProbeArgs(target, version));
  return { verdict: judgeTlsProbe(exitCode, output), exitCode, output };
}

/**
 * The check every "TLS 1.2 or newer" test makes: what the server at `target` got wrong, empty when it refused a
 * TLS 1.1 handshake the client did offer and completed TLS 1.2 and 1.3 handshakes at those versions.
 */
export async function tlsFloorViolations(
  target: { host: string; port: number; servername?: string },
  run: OpensslRunner = localOpenssl,
): Promise<string[]> {
  const violations: string[] = [];
  const old = await probeStarttls(target, "TLSv1.1", run);
  if (old.verdict.kind !== "refused-by-server") {
    violations.push(`TLSv1.1 not refused by the server: ${JSON.stringify(old.verdict)}\n${old.output}`);
  }
  for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
    const probe = await probeStarttls(target, version, run);
    if (probe.verdict.kind !== "handshake" || probe.verdict.protocol !== version) {
      violations.push(`${version} not completed: ${JSON.stringify(probe.verdict)}\n${probe.output}`);
    }
  }
  return violations;
}

/** The certificate the server presented, only from a completed handshake (PEM); throws with the transcript otherwise. */
export function presentedCertificate(probe: TlsProbe): string {
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(probe.output)?.[0];
  if (probe.verdict.kind !== "handshake" || pem === undefined) {
    throw new Error(`no completed TLS handshake (${JSON.stringify(probe.verdict)}):\n${probe.output}`);
  }
  return pem;
}
