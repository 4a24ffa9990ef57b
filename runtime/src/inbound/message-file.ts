// Reads one dropped message once, as a stream: the SHA3-512 of the raw bytes (the message's identity for the
// idempotent hand-off) and a copy of the header section only. The body is never held in memory, so a 25 MB
// message costs one 64 KiB read buffer and its header section here, not 25 MB several times over.
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { MailParser, type AddressObject } from "mailparser";
import type { HeaderLine } from "./spam-verdict";

/** Postfix's own header_size_limit is 100 KiB; anything beyond this is not a header section we accept. */
export const MAX_HEADER_BYTES = 256 * 1024;

export interface ScannedMessage {
  sha3: string;
  size: number;
  /** Bytes up to and including the blank line that ends the headers. */
  headerSection: Buffer;
  /** The whole message, when it was small enough to read in one call. */
  bytes?: Buffer;
}

/** A message that can never be handed off, however often it is retried. */
export class UnprocessableMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnprocessableMessageError";
  }
}

function headerEnd(buffer: Buffer): number {
  const crlf = buffer.indexOf("\r\n\r\n");
  const lf = buffer.indexOf("\n\n");
  if (crlf === -1 && lf === -1) return -1;
  if (crlf === -1) return lf + 2;
  if (lf === -1) return crlf + 4;
  return Math.min(crlf + 4, lf + 2);
}

/** Up to this size a message is read in one call (cheaper than a stream); above it, streamed in 64 KiB reads. */
const READ_WHOLE_BYTES = 1024 * 1024;

export async function scanMessageFile(path: string): Promise<ScannedMessage> {
  // Synchronous for the common small message: open/fstat/read/close take µs each, less than the libuv
  // thread-pool round trip of their async forms. A blocked event loop for at most a 1 MiB read is harmless here.
  const fd = openSync(path, "r");
  let bytes: Buffer | undefined;
  try {
    const { size } = fstatSync(fd);
    if (size === 0) throw new UnprocessableMessageError("the file is empty");
    if (size <= READ_WHOLE_BYTES) bytes = readFileSync(fd);
  } finally {
    closeSync(fd);
  }
  if (bytes !== undefined) {
    const end = headerEnd(bytes.subarray(0, MAX_HEADER_BYTES));
    return {
      sha3: createHash("sha3-512").update(bytes).digest("hex"),
      size: bytes.length,
      headerSection: headerSectionOf(bytes, end),
      bytes,
    };
  }
  const handle = await open(path, "r");
  try {
    return await scanStream(handle);
  } finally {
    await handle.close();
  }
}

function headerSectionOf(prefix: Buffer, end: number): Buffer {
  if (end !== -1) return Buffer.from(prefix.subarray(0, end));
  if (prefix.length > MAX_HEADER_BYTES) {
    throw new UnprocessableMessageError(`no end of the header section within the first ${MAX_HEADER_BYTES} bytes`);
  }
  // A message with headers and no body at all is legal (RFC 5322 makes the body optional).
  return Buffer.concat([prefix, Buffer.from("\r\n\r\n")]);
}

async function scanStream(handle: FileHandle): Promise<ScannedMessage> {
  const hash = createHash("sha3-512");
  let prefix = Buffer.alloc(0);
  let headerSection: Buffer | undefined;
  let size = 0;
  for await (const chunk of handle.createReadStream({ highWaterMark: 64 * 1024, autoClose: false }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
    if (headerSection !== undefined || prefix.length > MAX_HEADER_BYTES) continue;
    prefix = Buffer.concat([prefix, chunk]);
    const end = headerEnd(prefix);
    if (end !== -1) headerSection = headerSectionOf(prefix, end);
  }
  return { sha3: hash.digest("hex"), size, headerSection: headerSection ?? headerSectionOf(prefix, -1) };
}

export interface MessageSummary {
  /** The envelope recipient, from the first Delivered-To header (the one Postfix added last, at the top). */
  recipient: string;
  messageId?: string;
  from?: string;
  subject?: string;
  /** The Date header as ISO 8601, when it parses. */
  date?: string;
  headers: HeaderLine[];
}

const ADDRESS = /^[^\s@<>(),;:"]+@[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/i;

function unfold(line: string): HeaderLine | undefined {
  const colon = line.indexOf(":");
  if (colon <= 0) return undefined;
  return {
    name: line.slice(0, colon).trim().toLowerCase(),
    value: line
      .slice(colon + 1)
      .replace(/\r?\n[ \t]+/g, " ")
      .trim(),
  };
}

function addressText(value: unknown): string | undefined {
  const object = (Array.isArray(value) ? value[0] : value) as AddressObject | undefined;
  return object?.text === undefined || object.text === "" ? undefined : object.text;
}

/** Parses the header section with mailparser: decoded Subject/From, raw header lines in order. */
export function summarizeHeaders(headerSection: Buffer): Promise<MessageSummary> {
  return new Promise((resolve, reject) => {
    const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true });
    let decoded: Map<string, unknown> | undefined;
    let lines: { key: string; line: string }[] | undefined;
    const finish = (): void => {
      if (decoded === undefined || lines === undefined) return;
      const headers = lines.map((l) => unfold(l.line)).filter((h): h is HeaderLine => h !== undefined);
      if (headers.length === 0) {
        reject(new UnprocessableMessageError("no RFC 5322 header lines in the header section"));
        return;
      }
      const deliveredTo = headers.find((h) => h.name === "delivered-to")?.value.replace(/^<|>$/g, "");
      if (deliveredTo === undefined) {
        reject(new UnprocessableMessageError("no Delivered-To header: the envelope recipient is unknown"));
        return;
      }
      if (!ADDRESS.test(deliveredTo)) {
        reject(new UnprocessableMessageError(`Delivered-To ${JSON.stringify(deliveredTo)} is not a mail address`));
        return;
      }
      const date = decoded.get("date");
      const subject = decoded.get("subject");
      const messageId = decoded.get("message-id");
      resolve({
        recipient: deliveredTo.toLowerCase(),
        messageId: typeof messageId === "string" ? messageId : undefined,
        from: addressText(decoded.get("from")),
        subject: typeof subject === "string" ? subject : undefined,
        date: date instanceof Date && !Number.isNaN(date.getTime()) ? date.toISOString() : undefined,
        headers,
      });
    };
    parser.on("headers", (h: Map<string, unknown>) => {
      decoded = h;
      finish();
    });
    parser.on("headerLines", (l: { key: string; line: string }[]) => {
      lines = l;
      finish();
    });
    parser.on("data", (part: { type: string; release?: () => void }) => part.release?.());
    parser.on("error", (error: Error) => reject(new UnprocessableMessageError(`mailparser: ${error.message}`)));
    parser.on("end", () => {
      if (decoded === undefined || lines === undefined) reject(new UnprocessableMessageError("mailparser found no headers"));
    });
    parser.end(headerSection);
  });
}
