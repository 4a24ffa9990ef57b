// The BrightChain node's outbound mail: nodemailer to the gateway's submission service (587).
// STARTTLS is required (the SASL password never crosses the wire in clear), a 4xx or a network failure is
// retried with backoff a bounded number of times, and a 5xx is reported at once with the server's own text.
import { readFileSync } from "node:fs";
import { createTransport } from "nodemailer";

export interface SubmissionOptions {
  host: string;
  port: number;
  user?: string;
  pass?: string;
  /** PEM CA bundle for a certificate no public CA signed (lab, tests). */
  caFile?: string;
  /** Total tries, the first included. */
  attempts?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Connect, greeting and idle-socket deadline for each try. */
  timeoutMs?: number;
}

export interface OutgoingMessage {
  from: string;
  to: string[];
  subject?: string;
  text?: string;
  /** A complete RFC 5322 message, sent as is; the envelope still comes from `from`/`to`. */
  raw?: Buffer;
}

export interface SubmissionResult {
  messageId: string;
  /** The server's reply to the end of DATA, e.g. "250 2.0.0 Ok: queued as 4Xyz". */
  response: string;
  accepted: string[];
  attempts: number;
}

export class SubmissionError extends Error {
  constructor(
    message: string,
    /** True when retrying cannot help: a 5xx, a refused login, no STARTTLS, an untrusted certificate. */
    readonly permanent: boolean,
    readonly attempts: number,
    readonly responseCode?: number,
  ) {
    super(message);
    this.name = "SubmissionError";
  }
}

interface NodemailerFailure {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
  message?: string;
}

export interface FailureClass {
  permanent: boolean;
  description: string;
}

// Codes nodemailer gives failures that no retry can fix: a refused login, a server without STARTTLS, an
// envelope or message nodemailer itself rejects.
const PERMANENT_CODES = new Set(["EAUTH", "ETLS", "EENVELOPE", "EMESSAGE", "ENOAUTH"]);
const CERTIFICATE_FAILURE = /certificate|self[- ]signed|unable to verify|CERT_|hostname\/IP does not match/i;

/** Temporary or permanent, by RFC 5321 reply class first, then by what kind of failure nodemailer saw. */
export function classifySubmissionFailure(error: unknown): FailureClass {
  const failure = (typeof error === "object" && error !== null ? error : { message: String(error) }) as NodemailerFailure;
  const stage = failure.command === undefined ? "" : ` (after ${failure.command.split(" ")[0]})`;
  if (typeof failure.responseCode === "number" && failure.responseCode >= 400) {
    const text = failure.response ?? failure.message ?? "";
    return { permanent: failure.responseCode >= 500, description: `server answered ${text}${stage}` };
  }
  const message = failure.message ?? "unknown failure";
  if (CERTIFICATE_FAILURE.test(message)) {
    return {
      permanent: true,
      description: `TLS certificate not trusted: ${message} (set GATEWAY_POSTFIX_CA_FILE for a private CA)`,
    };
  }
  if (failure.code !== undefined && PERMANENT_CODES.has(failure.code))
    return { permanent: true, description: `${failure.code}: ${message}` };
  return { permanent: false, description: `${failure.code ?? "error"}: ${message}` };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function sendViaSubmission(
  message: OutgoingMessage,
  options: SubmissionOptions,
  onRetry: (attempt: number, waitMs: number, reason: string) => void = () => undefined,
): Promise<SubmissionResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const transport = createTransport({
    host: options.host,
    port: options.port,
    secure: false,
    // Refuse to go on when the server does not offer STARTTLS, rather than sending the password in clear.
    requireTLS: true,
    auth: options.user === undefined ? undefined : { user: options.user, pass: options.pass ?? "" },
    tls: {
      minVersion: "TLSv1.2",
      ca: options.caFile === undefined ? undefined : readFileSync(options.caFile),
    },
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  });
  const mail =
    message.raw === undefined
      ? { from: message.from, to: message.to, subject: message.subject, text: message.text ?? "" }
      : { envelope: { from: message.from, to: message.to }, raw: message.raw };

  const attempts = options.attempts ?? 5;
  const initial = options.retryInitialMs ?? 2_000;
  const max = options.retryMaxMs ?? 60_000;
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        const info = (await transport.sendMail(mail)) as {
          messageId: string;
          response: string;
          accepted: (string | { address: string })[];
        };
        const accepted = info.accepted.map((a) => (typeof a === "string" ? a : a.address));
        return { messageId: info.messageId, response: info.response, accepted, attempts: attempt };
      } catch (error) {
        const failure = classifySubmissionFailure(error);
        const code = (error as NodemailerFailure).responseCode;
        const where = `${options.host}:${options.port}`;
        if (failure.permanent) throw new SubmissionError(`${where}: ${failure.description}`, true, attempt, code);
        if (attempt >= attempts) {
          throw new SubmissionError(
            `${where}: still failing after ${attempt} attempts: ${failure.description}`,
            false,
            attempt,
            code,
          );
        }
        const waitMs = Math.min(max, initial * 2 ** (attempt - 1));
        onRetry(attempt, waitMs, failure.description);
        await delay(waitMs);
      }
    }
  } finally {
    transport.close();
  }
}
