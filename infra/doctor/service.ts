// What a sending server and an attacker see of the node: STARTTLS with a trusted chain for the host name and
// time left, no TLS below 1.2, no relaying for strangers, and nothing but mail listening from outside.
import { FIREWALL_SCRIPT, loopbackOnlyPorts } from "../render/firewall";
import type { GatewayNode } from "../model/types";
import { createHash } from "node:crypto";
import type { CertificateSummary, CheckResult, DnsLookup, DoctorNetwork, SmtpTarget, TlsHandshake } from "./types";

const DAY_MS = 86_400_000;
/** certbot renews 30 days before expiry: under 21 days left, renewal has been failing for over a week. */
export const EXPIRY_WARN_DAYS = 21;
export const EXPIRY_FAIL_DAYS = 7;

const where = (target: SmtpTarget): string =>
  target.address.includes(":") ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`;

/** RFC 6125 matching: exact, or a wildcard standing for exactly the left-most label. */
export function certificateNames(hostname: string, names: string[]): boolean {
  const host = hostname.toLowerCase();
  return names.some((name) =>
    name.startsWith("*.") ? host.split(".").slice(1).join(".") === name.slice(2) && host.split(".").length > 2 : name === host,
  );
}

const renewFix = (node: GatewayNode): string =>
  `run \`certbot renew\` on ${node.host.hostname} and read /var/log/letsencrypt/letsencrypt.log; the certificate is ${node.tls.certFile}`;

/**
 * STARTTLS on `target` (one handshake, made by the caller so the TLSA check reads the same one): a handshake at all, a chain that verifies, the node's host name in the certificate, and
 * the days left. Three rows from one handshake, so a person sees which of them is wrong.
 */
export function starttlsChecks(node: GatewayNode, target: SmtpTarget, handshake: TlsHandshake, now: Date): CheckResult[] {
  const subject = `STARTTLS ${where(target)}`;
  if (handshake.kind !== "handshake") {
    return [
      {
        group: "tls",
        subject,
        status: "fail",
        detail: `${handshake.kind}: ${handshake.reason}`,
        fix:
          handshake.kind === "no-starttls"
            ? `Postfix on ${node.host.hostname} offers no STARTTLS: check smtpd_tls_cert_file/smtpd_tls_key_file (\`postconf -n | grep tls\`) and the maillog`
            : `nothing answers SMTP at ${where(target)}: is Postfix running (\`systemctl status postfix\`), and port ${target.port} open in the firewall?`,
      },
    ];
  }
  const leaf: CertificateSummary | undefined = handshake.chain[0];
  const results: CheckResult[] = [
    handshake.authorized
      ? {
          group: "tls",
          subject: `${subject} chain`,
          status: "ok",
          detail: `${handshake.protocol}, issued by ${leaf?.issuer ?? "?"}`,
        }
      : {
          group: "tls",
          subject: `${subject} chain`,
          status: "fail",
          detail: `${handshake.protocol}, chain not trusted: ${handshake.authorizationError ?? "unknown reason"} (issuer ${leaf?.issuer ?? "?"})`,
          fix: `serve the full chain (fullchain.pem, not cert.pem) from a public CA in smtpd_tls_cert_file; ${renewFix(node)}`,
        },
  ];
  if (leaf === undefined) return results;
  results.push(
    certificateNames(node.host.hostname, leaf.names)
      ? { group: "tls", subject: `${subject} name`, status: "ok", detail: `${node.host.hostname} in ${leaf.names.join(", ")}` }
      : {
          group: "tls",
          subject: `${subject} name`,
          status: "fail",
          detail: `certificate is for ${leaf.names.join(", ") || leaf.subject}, not ${node.host.hostname}`,
          fix: `issue the certificate for ${node.host.hostname} (\`pulumi up\` runs certbot for gateway:hostname); ${renewFix(node)}`,
        },
  );
  const days = Math.floor((leaf.validTo.getTime() - now.getTime()) / DAY_MS);
  const until = `${days} days left (until ${leaf.validTo.toISOString().slice(0, 10)})`;
  results.push(
    days < EXPIRY_FAIL_DAYS
      ? {
          group: "tls",
          subject: `${subject} expiry`,
          status: "fail",
          detail: days < 0 ? `expired ${-days} days ago` : until,
          fix: renewFix(node),
        }
      : days < EXPIRY_WARN_DAYS
        ? {
            group: "tls",
            subject: `${subject} expiry`,
            status: "warn",
            detail: `${until}; certbot should have renewed it`,
            fix: renewFix(node),
          }
        : { group: "tls", subject: `${subject} expiry`, status: "ok", detail: until },
  );
  return results;
}

/** TLS 1.1 (and 1.0) refused by the server, TLS 1.2 completed. */
export async function tlsFloorCheck(node: GatewayNode, target: SmtpTarget, network: DoctorNetwork): Promise<CheckResult> {
  const subject = `TLS ≥ 1.2 ${where(target)}`;
  const fix = `set smtpd_tls_protocols and smtpd_tls_mandatory_protocols to ">=TLSv1.2" on ${node.host.hostname} (\`pulumi up\` renders them)`;
  const old = await network.starttls(target, node.host.hostname, { minVersion: "TLSv1", maxVersion: "TLSv1.1" });
  const current = await network.starttls(target, node.host.hostname, { minVersion: "TLSv1.2", maxVersion: "TLSv1.2" });
  if (old.kind === "handshake") {
    return { group: "tls", subject, status: "fail", detail: `the server completed a ${old.protocol} handshake`, fix };
  }
  if (old.kind === "refused-by-client") {
    return {
      group: "tls",
      subject,
      status: "warn",
      detail: `this machine's TLS library would not offer TLS 1.1 (${old.reason}): the floor is unproven`,
      fix: "run doctor from a machine whose OpenSSL can still offer TLS 1.1 (Debian 12/13 can at SECLEVEL=0)",
    };
  }
  if (old.kind !== "refused-by-server") {
    return {
      group: "tls",
      subject,
      status: "fail",
      detail: `TLS 1.1 probe: ${old.kind}: ${old.reason}`,
      fix: "see the STARTTLS check above",
    };
  }
  if (current.kind !== "handshake") {
    return {
      group: "tls",
      subject,
      status: "fail",
      detail: `TLS 1.1 refused, but TLS 1.2 did not complete either (${current.kind}: ${current.reason})`,
      fix,
    };
  }
  return { group: "tls", subject, status: "ok", detail: `TLS 1.1 refused (${old.reason}); ${current.protocol} completed` };
}

/** Reserved domains (RFC 2606): a probe that got through would still deliver nowhere. */
export const RELAY_PROBE_SENDER = "doctor-probe@example.net";
export const RELAY_PROBE_RECIPIENT = "doctor-probe@example.com";

/**
 * A stranger asking the node to relay to a foreign domain must be refused at RCPT (554 or 454 Relay access
 * denied). The probe never sends DATA.
 */
export async function openRelayCheck(node: GatewayNode, target: SmtpTarget, network: DoctorNetwork): Promise<CheckResult> {
  const subject = `open relay ${where(target)}`;
  const probe = await network.relayProbe(target, RELAY_PROBE_SENDER, RELAY_PROBE_RECIPIENT);
  if (probe.kind === "failed") {
    return {
      group: "relay",
      subject,
      status: "warn",
      detail: `could not probe: ${probe.reason}`,
      fix: "see the STARTTLS check for this address",
    };
  }
  if (probe.rcpt === undefined) {
    return {
      group: "relay",
      subject,
      status: "warn",
      detail: `MAIL FROM:<${RELAY_PROBE_SENDER}> refused (${probe.mail.code} ${probe.mail.text}): relaying could not be tried`,
      fix: "run doctor from another machine: this one's address may be blocked or rate-limited by the node",
    };
  }
  const { code, text } = probe.rcpt;
  if (code >= 400) {
    return { group: "relay", subject, status: "ok", detail: `RCPT TO:<${RELAY_PROBE_RECIPIENT}> refused: ${code} ${text}` };
  }
  return {
    group: "relay",
    subject,
    status: "fail",
    detail: `OPEN RELAY: RCPT TO:<${RELAY_PROBE_RECIPIENT}> accepted (${code} ${text}) from this machine`,
    fix: `smtpd_relay_restrictions must end in reject_unauth_destination and mynetworks hold loopback only (now: ${node.mynetworks.join(" ")}); \`postconf smtpd_relay_restrictions mynetworks\` on ${node.host.hostname}, then \`pulumi up\``,
  };
}

/** The loopback-only daemons (firewall.ts) must not accept a connection from outside. */
export async function closedPortChecks(node: GatewayNode, address: string, network: DoctorNetwork): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const { port, why } of loopbackOnlyPorts(node)) {
    const [first, last] = typeof port === "number" ? [port, port] : port;
    for (let p = first; p <= last; p++) {
      const target = { address, port: p };
      const state = await network.connect(target);
      results.push(
        state.kind === "open"
          ? {
              group: "ports",
              subject: `closed ${where(target)}`,
              status: "fail",
              detail: `${why}: accepts connections from here`,
              fix: `run \`${FIREWALL_SCRIPT}\` on ${node.host.hostname} (or \`pulumi up\`), and bind the daemon to 127.0.0.1`,
            }
          : { group: "ports", subject: `closed ${where(target)}`, status: "ok", detail: `${why}: ${state.reason}` },
      );
    }
  }
  return results;
}

/** What a TLSA record's data must equal for `cert`: selector 0 whole certificate / 1 public key, matching 0 raw / 1 SHA-256 / 2 SHA-512. */
function tlsaData(cert: CertificateSummary, selector: number, matching: number): string | undefined {
  const source = selector === 0 ? cert.certificateDer : selector === 1 ? cert.publicKeyDer : undefined;
  if (source === undefined) return undefined;
  if (matching === 0) return Buffer.from(source).toString("hex");
  if (matching === 1) return createHash("sha256").update(source).digest("hex");
  if (matching === 2) return createHash("sha512").update(source).digest("hex");
  return undefined;
}

/**
 * DANE (RFC 7672): when `_25._tcp.<host>` has TLSA records, one must match what port 25 serves — usage 3 (and 1)
 * the leaf, usage 2 (and 0) a certificate above it — or a DANE-validating sender defers all mail to the node.
 * Undefined when none is published (nothing to match; the record checks say whether one is expected).
 */
export async function daneCheck(
  node: GatewayNode,
  target: SmtpTarget,
  handshake: TlsHandshake,
  lookup: DnsLookup,
): Promise<CheckResult | undefined> {
  const name = `_25._tcp.${node.host.hostname}`;
  const subject = `TLSA ${name} vs ${where(target)}`;
  let records: string[];
  try {
    records = await lookup(name, "TLSA");
  } catch (error) {
    if ((error as Error).name === "ResolverUnreachableError") throw error;
    return {
      group: "tls",
      subject,
      status: "fail",
      detail: `lookup failed: ${(error as Error).message}`,
      fix: "check the zone's name servers and DNSSEC at the DNS provider",
    };
  }
  if (records.length === 0) return undefined;
  if (handshake.kind !== "handshake") {
    return {
      group: "tls",
      subject,
      status: "fail",
      detail: `TLSA published, but no TLS handshake on ${where(target)} (${handshake.kind})`,
      fix: "see the STARTTLS check above",
    };
  }
  const matches = records.filter((record) => {
    const [usage, selector, matching, data] = record.split(" ");
    const candidates = usage === "3" || usage === "1" ? handshake.chain.slice(0, 1) : handshake.chain.slice(1);
    return candidates.some((cert) => tlsaData(cert, Number(selector), Number(matching)) === data?.toLowerCase());
  });
  if (matches.length > 0)
    return { group: "tls", subject, status: "ok", detail: `${matches[0]!.slice(0, 24)}… matches the served certificate` };
  const leaf = handshake.chain[0];
  const served = leaf ? tlsaData(leaf, 1, 1) : undefined;
  return {
    group: "tls",
    subject,
    status: "fail",
    detail: `no TLSA record matches the certificate served (its key: 3 1 1 ${served ?? "?"}); published: ${records.join(", ")}`,
    fix: `DANE senders defer all mail to ${node.host.hostname}: publish TLSA ${name} 3 1 1 ${served ?? "<sha256 of the served key>"} (\`pulumi up\`), or serve the key the record names (certbot --reuse-key keeps it across renewals)`,
  };
}
