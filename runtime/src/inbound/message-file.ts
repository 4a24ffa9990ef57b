// Reads one dropped message once, as a stream: the SHA3-512 of the raw bytes (the message's identity for the
// idempotent hand-off) and a copy of the header section only. The body is never held in memory, so a 25 MB
// message costs one 64 KiB read buffer and its header section here, not 25 MB several times over.
//
// Whatever sits in new/ is opened without blocking and without following a link (O_NONBLOCK | O_NOFOLLOW),
// then fstat'ed: a FIFO, a socket, a device, a directory, a symbolic link or a file over the size limit is
// refused before a single byte is read, so no entry can hang the daemon or make it read what is not a message.
import { createHash } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, read, readlinkSync, readSync, type PathLike, type Stats } from "node:fs";
import { promisify } from "node:util";
import libmime from "libmime";
import { parseAddressHeader } from "mailparser";
import type { HeaderLine } from "./spam-verdict";

/** Postfix's own header_size_limit is 100 KiB; anything beyond this is not a header section we accept. */
export const MAX_HEADER_BYTES = 256 * 1024;

/**
 * What Postfix's delivery prepends to a message it accepted at message_size_limit (Delivered-To, Return-Path):
 * the same headroom as the rendered virtual_mailbox_limit, so a drop file over GATEWAY_MAX_MESSAGE_SIZE plus this
 * did not come from this node's Postfix.
 */
export const DELIVERY_HEADROOM_BYTES = 1024 * 1024;

export interface ScannedMessage {
  sha3: string;
  size: number;
  /** Bytes up to and including the blank line that ends the headers. */
  headerSection: Buffer;
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

/** Up to this size a message is read in one call into a buffer kept for the purpose; above it, streamed. */
const READ_WHOLE_BYTES = 1024 * 1024;

/**
 * One buffer for every small message, reused: a fresh 10 KB Buffer per message lives outside V8's heap until a
 * scavenge collects its handle, and thousands of them were most of the daemon's RSS growth under load. Only the
 * synchronous read-and-hash below uses it, so concurrent hand-offs never share it.
 */
let scratch: Buffer | undefined;

/**
 * How a drop file is opened: never waiting (a FIFO with no writer would block the open, and the event loop with
 * it, for good), never through a symbolic link, never as the controlling terminal.
 */
export const DROP_OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY;

/** What an entry that is not a regular file is, in words for its reason file. */
export function entryKind(stats: Stats): string {
  if (stats.isDirectory()) return "a directory";
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isSocket()) return "a socket";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  if (stats.isSymbolicLink()) return "a symbolic link";
  return "not a regular file";
}

/**
 * Opens a drop file for reading. An entry that can never be read as a message is an UnprocessableMessageError
 * naming what it is; ENOENT (gone) and what may pass (EMFILE, EIO, ENOMEM) are thrown as they are.
 */
export function openDropFile(path: PathLike): number {
  try {
    return openSync(path, DROP_OPEN_FLAGS);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ELOOP") {
      let target = "";
      try {
        target = ` to ${JSON.stringify(readlinkSync(path, "latin1"))}`;
      } catch {
        // Gone or replaced since: the open's answer is still the reason.
      }
      throw new UnprocessableMessageError(`a symbolic link${target}: links in new/ are never followed`);
    }
    if (code === "EACCES" || code === "EPERM") {
      throw new UnprocessableMessageError(`cannot be read (${code}): files in new/ must be readable by the daemon's user`);
    }
    // open(2) of a socket, or of a device without a driver.
    if (code === "ENXIO" || code === "ENODEV" || code === "EOPNOTSUPP") {
      throw new UnprocessableMessageError(`not a regular file (open: ${code})`);
    }
    throw error;
  }
}

/** Checks an open drop file before any read: a regular file, not empty, within `maxBytes`. Returns its size. */
function checkedSize(fd: number, maxBytes: number): number {
  const stats = fstatSync(fd);
  if (!stats.isFile()) throw new UnprocessableMessageError(`${entryKind(stats)}, not a message file`);
  if (stats.size === 0) throw new UnprocessableMessageError("the file is empty");
  if (stats.size > maxBytes) throw new UnprocessableMessageError(tooLarge(stats.size, maxBytes));
  return stats.size;
}

function tooLarge(size: number, maxBytes: number): string {
  return (
    `${size} bytes, over the ${maxBytes}-byte limit for a drop file (GATEWAY_MAX_MESSAGE_SIZE plus ` +
    `${DELIVERY_HEADROOM_BYTES} bytes for the headers delivery adds); not read`
  );
}

/**
 * Scans one drop file, reading at most `maxBytes` of it (and one more byte to see that it does not go on): a
 * file that grows past the limit while it is read is refused as one that was too large from the start.
 */
export async function scanMessageFile(path: PathLike, maxBytes: number): Promise<ScannedMessage> {
  // Synchronous for the common small message: open/fstat/read/close take µs each, less than the libuv
  // thread-pool round trip of their async forms. A blocked event loop for at most a 1 MiB read is harmless here.
  const fd = openDropFile(path);
  let streamed = false;
  try {
    const size = checkedSize(fd, maxBytes);
    if (size <= READ_WHOLE_BYTES) {
      scratch ??= Buffer.allocUnsafe(READ_WHOLE_BYTES);
      let length = 0;
      while (length < size) {
        const read = readSync(fd, scratch, length, size - length, length);
        if (read === 0) break;
        length += read;
      }
      const bytes = scratch.subarray(0, length);
      return { sha3: createHash("sha3-512").update(bytes).digest("hex"), size: length, headerSection: headerSectionOf(bytes) };
    }
    streamed = true;
  } finally {
    if (!streamed) closeSync(fd);
  }
  // The same descriptor: reopening by name could open whatever replaced the file in between.
  try {
    return await scanStream(fd, maxBytes);
  } finally {
    closeSync(fd);
  }
}

/** Where the blank line that ends the headers may be found: within MAX_HEADER_BYTES, its own CRLFCRLF included. */
const HEADER_SEARCH_BYTES = MAX_HEADER_BYTES + 4;

/**
 * A copy of the header section from the message's first bytes: the whole message, or at least
 * HEADER_SEARCH_BYTES of it. Copied, so it does not pin the read buffer or the stream's chunks.
 */
function headerSectionOf(prefix: Buffer): Buffer {
  const end = headerEnd(prefix.subarray(0, HEADER_SEARCH_BYTES));
  if (end !== -1) return Buffer.from(prefix.subarray(0, end));
  if (prefix.length > MAX_HEADER_BYTES) {
    throw new UnprocessableMessageError(`no end of the header section within the first ${MAX_HEADER_BYTES} bytes`);
  }
  // A message with headers and no body at all is legal (RFC 5322 makes the body optional).
  return Buffer.concat([prefix, Buffer.from("\r\n\r\n")]);
}

const readAt = promisify(read);
const STREAM_CHUNK_BYTES = 64 * 1024;

async function scanStream(fd: number, maxBytes: number): Promise<ScannedMessage> {
  const hash = createHash("sha3-512");
  const chunk = Buffer.allocUnsafe(STREAM_CHUNK_BYTES);
  let prefix = Buffer.alloc(0);
  let headerSection: Buffer | undefined;
  let size = 0;
  for (;;) {
    const { bytesRead } = await readAt(fd, chunk, 0, chunk.length, size);
    if (bytesRead === 0) break;
    size += bytesRead;
    if (size > maxBytes) {
      throw new UnprocessableMessageError(`grew past the ${maxBytes}-byte limit for a drop file while it was read`);
    }
    const bytes = chunk.subarray(0, bytesRead);
    hash.update(bytes);
    if (headerSection !== undefined || prefix.length >= HEADER_SEARCH_BYTES) continue;
    prefix = Buffer.concat([prefix, bytes]);
    if (headerEnd(prefix.subarray(0, HEADER_SEARCH_BYTES)) !== -1) headerSection = headerSectionOf(prefix);
  }
  return { sha3: hash.digest("hex"), size, headerSection: headerSection ?? headerSectionOf(prefix) };
}

export interface MessageSummary {
  /** The envelope recipient, from the first Delivered-To header (the one Postfix added last, at the top). */
  recipient: string;
  messageId?: string;
  from?: string;
  subject?: string;
  /** The Date header as ISO 8601, when it parses. */
  date?: string;
}

/** The fields summarizeHeaders reads (their first occurrence each). */
const SUMMARY_FIELDS = new Set(["delivered-to", "from", "subject", "message-id", "date"]);

const ADDRESS = /^[^\s@<>(),;:"]+@[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/i;

/** RFC 5322 field name: printable US-ASCII except the colon. */
const FIELD_NAME = /^[!-9;-~]+$/;

function headerField(line: string): HeaderLine | undefined {
  const colon = line.indexOf(":");
  const name = colon > 0 ? line.slice(0, colon).trimEnd() : "";
  return FIELD_NAME.test(name) ? { name: name.toLowerCase(), value: line.slice(colon + 1).trim() } : undefined;
}

/**
 * The header section's fields, unfolded, in order, one at a time: a header section of 256 KiB can hold tens of
 * thousands of fields, and none of them is kept unless its reader keeps it. Headers are UTF-8 (RFC 6532);
 * anything else in raw 8-bit arrives as U+FFFD, never as an error: such a message is still the recipient's mail.
 * A line that is neither a field nor a continuation (no colon, a space in the name) is skipped, as mailparser
 * skips it.
 */
export function* headerFields(headerSection: Buffer): Generator<HeaderLine> {
  let current: string | undefined;
  for (const line of headerSection.toString("utf8").split(/\r?\n/)) {
    if (line === "") break;
    if ((line.startsWith(" ") || line.startsWith("\t")) && current !== undefined) {
      current += ` ${line.trim()}`;
      continue;
    }
    const field = current === undefined ? undefined : headerField(current);
    if (field !== undefined) yield field;
    current = line;
  }
  const last = current === undefined ? undefined : headerField(current);
  if (last !== undefined) yield last;
}

/** RFC 5322's line limit: longer index fields are cut here. */
const MAX_FIELD_CHARS = 998;

/**
 * A fresh copy, at most MAX_FIELD_CHARS long. A substring would keep the whole header section's string alive
 * (V8 slices share their parent) for as long as the hand-off waits on the sink.
 */
function detached(value: string): string {
  return Buffer.from(value.slice(0, MAX_FIELD_CHARS), "utf8").toString("utf8");
}

function decodeWords(value: string): string {
  try {
    return libmime.decodeWords(value);
  } catch {
    // A malformed encoded word stays as the sender wrote it, as mailparser leaves it.
    return value;
  }
}

function messageIdOf(value: string | undefined): string | undefined {
  const id = value === undefined ? "" : decodeWords(value).trim();
  if (id === "") return undefined;
  return `${id.startsWith("<") ? "" : "<"}${id}${id.endsWith(">") ? "" : ">"}`;
}

/**
 * The fields the store indexes, decoded as mailparser decodes them: its parseAddressHeader for From, libmime's
 * encoded-word decoding for Subject and Message-ID. Not a MailParser stream: for a header section its stream
 * set-up and the address parsing of every To/Cc/Return-Path cost ~170 µs per message, half the daemon's CPU
 * (docs/performance.md, "Inbound").
 */
export function summarizeHeaders(headerSection: Buffer): MessageSummary {
  const firsts = new Map<string, string>();
  let fields = 0;
  for (const field of headerFields(headerSection)) {
    fields += 1;
    if (SUMMARY_FIELDS.has(field.name) && !firsts.has(field.name)) firsts.set(field.name, field.value);
  }
  if (fields === 0) throw new UnprocessableMessageError("no RFC 5322 header lines in the header section");
  const first = (name: string): string | undefined => firsts.get(name);
  const deliveredTo = first("delivered-to")?.replace(/^<|>$/g, "");
  if (deliveredTo === undefined) throw new UnprocessableMessageError("no Delivered-To header: the envelope recipient is unknown");
  if (!ADDRESS.test(deliveredTo)) {
    throw new UnprocessableMessageError(`Delivered-To ${JSON.stringify(deliveredTo)} is not a mail address`);
  }
  const fromHeader = first("from");
  const from = fromHeader === undefined ? "" : parseAddressHeader(fromHeader).text;
  const subject = first("subject");
  const dateHeader = first("date");
  const date = dateHeader === undefined ? undefined : new Date(dateHeader);
  const messageId = messageIdOf(first("message-id"));
  return {
    recipient: detached(deliveredTo.toLowerCase()),
    messageId: messageId === undefined ? undefined : detached(messageId),
    from: from === "" ? undefined : detached(from),
    subject: subject === undefined ? undefined : detached(decodeWords(subject)),
    date: date === undefined || Number.isNaN(date.getTime()) ? undefined : date.toISOString(),
  };
}
