// Where a processed message goes: the embedded content-addressed store by default, the BrightChain node's
// API in production. The processor retries a temporary failure and moves a permanent one to the error dir.
import type { Folder } from "./spam-verdict";

export interface Handoff {
  /** SHA3-512 of the raw message, hex: with the recipient, the key that makes a repeated hand-off harmless. */
  sha3: string;
  size: number;
  recipient: string;
  folder: Folder;
  spamScore?: number;
  messageId?: string;
  from?: string;
  subject?: string;
  date?: string;
  /**
   * The raw message on disk; a sink streams or links it from here rather than receiving it in memory. A Buffer
   * when the file's name is not ASCII (the name's bytes, whatever their encoding).
   */
  rawPath: string | Buffer;
}

/**
 * What a hand-off found: the message is new to the sink, or the sink already held (sha3, recipient), as after a
 * crash between the hand-off and the move to cur/. Undefined counts as stored: a sink that cannot tell says nothing.
 */
export type DeliveryResult = "stored" | "duplicate";

export interface Sink {
  /** Resolves once the message is durably accepted. Must be idempotent per (sha3, recipient). */
  deliver(handoff: Handoff): Promise<DeliveryResult | void>;
  close(): Promise<void>;
}

export class SinkError extends Error {
  constructor(
    message: string,
    /** Permanent: retrying can never succeed (the node refused it). Otherwise: retry with backoff. */
    readonly permanent: boolean,
  ) {
    super(message);
    this.name = "SinkError";
  }
}
