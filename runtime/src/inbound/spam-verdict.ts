// Spam classification from the headers the node's own spam engine added at SMTP time.
// Messages at or above GATEWAY_SPAM_DEFINITE never reach the drop (the milter rejects them), so the only
// decision left here is inbox versus spam folder against GATEWAY_SPAM_PROBABLE.
import type { SpamEngineName } from "../config";

export type Folder = "inbox" | "spam";

export interface HeaderLine {
  /** Lower-case header name. */
  name: string;
  /** Unfolded value, without the name and colon. */
  value: string;
}

export interface SpamVerdict {
  folder: Folder;
  /** The engine's score, or undefined when no header of the configured engine was found. */
  score?: number;
  /** Why the message was filed where it was, for the log and the store index. */
  reason: string;
  /** True when an engine is configured but none of its headers is present: the mail was not scanned. */
  unscanned: boolean;
}

const SCORE = "(-?\\d+(?:\\.\\d+)?)";

// Every header an engine is known to write, with how to read a score out of it.
const ENGINE_HEADERS: Record<Exclude<SpamEngineName, "none">, Record<string, RegExp>> = {
  // spamass-milter / spamd: "X-Spam-Status: Yes, score=7.2 required=5.0 tests=..." and, with
  // `add_header all Score _SCORE_`, "X-Spam-Score: 7.2".
  spamassassin: {
    "x-spam-status": new RegExp(`\\bscore=${SCORE}`, "i"),
    "x-spam-score": new RegExp(`^\\s*${SCORE}`),
  },
  // rspamd milter_headers: "X-Spamd-Result: default: False [7.20 / 15.00]; ...", "X-Rspamd-Score: 7.2",
  // "X-Spam-Score: 7.20 / 15.00" and "X-Spam-Status: Yes, score=7.20".
  rspamd: {
    "x-spamd-result": new RegExp(`^\\s*[\\w-]+:\\s*(?:true|false)\\s*\\[\\s*${SCORE}\\s*/`, "i"),
    "x-rspamd-score": new RegExp(`^\\s*${SCORE}`),
    "x-spam-score": new RegExp(`^\\s*${SCORE}`),
    "x-spam-status": new RegExp(`\\bscore=${SCORE}`, "i"),
  },
};

/**
 * Files a message by its engine's score.
 * - engine "none": spam headers are ignored (any present came from the sender, who could write anything) → inbox.
 * - several headers of the engine: the HIGHEST score wins, so a sender who forges a low-scoring header cannot
 *   lower the engine's real score; forging a high one only sends the sender's own mail to spam.
 * - engine set but none of its headers present: inbox, flagged `unscanned` so the daemon logs a warning. The
 *   milter's `milter_default_action` already decided at SMTP time whether unscanned mail may pass; discarding
 *   or hiding it here would lose mail that Postfix accepted.
 */
export function spamVerdict(headers: Iterable<HeaderLine>, engine: SpamEngineName, probable: number): SpamVerdict {
  if (engine === "none") return { folder: "inbox", reason: "no spam engine configured", unscanned: false };

  const readers = ENGINE_HEADERS[engine];
  let score: number | undefined;
  for (const header of headers) {
    const reader = readers[header.name];
    const match = reader?.exec(header.value);
    if (match === null || match === undefined) continue;
    const value = Number(match[1]);
    if (Number.isFinite(value) && (score === undefined || value > score)) score = value;
  }

  if (score === undefined) {
    return { folder: "inbox", reason: `no ${engine} score header: the message was not scanned`, unscanned: true };
  }
  return score >= probable
    ? { folder: "spam", score, reason: `${engine} score ${score} >= GATEWAY_SPAM_PROBABLE ${probable}`, unscanned: false }
    : { folder: "inbox", score, reason: `${engine} score ${score} < GATEWAY_SPAM_PROBABLE ${probable}`, unscanned: false };
}
