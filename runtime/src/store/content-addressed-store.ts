// The embedded sink: each raw message kept once under its SHA3-512 (objects/<2 hex>/<126 hex>), plus an
// append-only JSON-lines index with one line per (message, recipient) hand-off.
//
// The object is a hard link to the drop file, not a copy: the bytes are on disk once (the Maildir file in cur/
// and the object are one inode) and a hand-off costs one link(2) instead of create + write + fsync + rename.
// That relies on the Maildir contract: a file appears in new/ only complete and fsynced (Postfix's virtual(8)
// and the brightchain-maildrop script both do). Maildir messages are never rewritten in place (flags live in
// the name), so the shared inode is safe; an object keeps the drop file's owner and mode (0600 from Postfix).
// When the store is on another mount than the drop (EXDEV; also two systemd ReadWritePaths= bind mounts), the
// bytes are copied into tmp/, fsynced and renamed into place instead, so objects/ never holds a partial message.
//
// Crash safety: an index line is appended and fdatasynced only after its object's directory entry is durable,
// and before deliver() resolves, so the processor moves a file to cur/ only once its line is durable. kill -9
// can leave a torn last line: open() cuts it off (that hand-off was never acknowledged, so it is redone);
// readStoreIndex() skips it. fsync costs milliseconds here, so hand-offs commit in groups: every hand-off that
// arrived while the previous group was syncing shares one round of directory fsyncs and one index fdatasync.
//
// Idempotence without holding the index in memory: a (sha3, recipient) pair can only be in the index if its
// object exists, and a new message's object does not (its Delivered-To and Received lines make its bytes
// unique). Only when the object is already there — the redo after a crash, in practice — is the index read,
// backwards from its end and only as far back as the object's own age: a few MiB, whatever the index's size.
//
// Only the fsyncs go through libuv's thread pool. The other calls (a link, a 10 KB write, a rename) take a few
// µs, less than the thread-pool round trip that wraps an async call (docs/performance.md, "Inbound").
import { closeSync, constants, fstatSync, fsync, linkSync, openSync, readSync, renameSync, statSync, unlinkSync } from "node:fs";
import { copyFile, mkdir, open, readdir, readFile, rm, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Folder } from "../inbound/spam-verdict";
import { SinkError, type DeliveryResult, type Handoff, type Sink } from "../inbound/sink";

export interface StoreIndexEntry {
  sha3: string;
  recipient: string;
  folder: Folder;
  messageId?: string;
  from?: string;
  subject?: string;
  date?: string;
  size: number;
  spamScore?: number;
  receivedAt: string;
}

const SHA3_HEX = /^[0-9a-f]{128}$/;

export function objectPath(storeDir: string, sha3: string): string {
  if (!SHA3_HEX.test(sha3)) throw new Error(`sha3 ${JSON.stringify(sha3)} is not 128 lower-case hex digits`);
  return join(storeDir, "objects", sha3.slice(0, 2), sha3.slice(2));
}

function indexPath(storeDir: string): string {
  return join(storeDir, "index.jsonl");
}

/** The index's complete lines; an unterminated last line (a crash mid-append) is not one of them. */
function parseIndex(text: Buffer): StoreIndexEntry[] {
  const entries: StoreIndexEntry[] = [];
  for (let start = 0; ;) {
    const newline = text.indexOf(0x0a, start);
    if (newline === -1) return entries;
    const line = text.subarray(start, newline).toString("utf8");
    start = newline + 1;
    if (line.trim() === "") continue;
    try {
      entries.push(JSON.parse(line) as StoreIndexEntry);
    } catch {
      // A complete but unparsable line can only come from outside tampering; stop trusting what follows.
      return entries;
    }
  }
}

/** Reads the index for queries; a torn last line (a crash mid-append) is skipped, never an error. */
export async function readStoreIndex(storeDir: string): Promise<StoreIndexEntry[]> {
  try {
    return parseIndex(await readFile(indexPath(storeDir)));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

function handoffKey(sha3: string, recipient: string): string {
  return `${sha3} ${recipient}`;
}

/** How every index line begins: JSON.stringify keeps the StoreIndexEntry's key order. */
function indexLinePrefix(sha3: string, recipient: string): Buffer {
  return Buffer.from(`{"sha3":"${sha3}","recipient":${JSON.stringify(recipient)},`);
}

/** Reads the index backwards in this many bytes at a time when looking for one hand-off. */
const INDEX_SCAN_CHUNK = 1024 * 1024;

/** link(2) can never put a drop file into this store: another mount, or a filesystem without hard links. */
const LINK_IMPOSSIBLE = new Set(["EXDEV", "ENOTSUP", "EOPNOTSUPP"]);
/**
 * link(2) refuses this one file: a file the daemon does not own under fs.protected_hardlinks (one copied back
 * into new/ by root, say), or one at the link-count limit. The next file may link fine.
 */
const LINK_REFUSED = new Set(["EPERM", "EMLINK"]);

/**
 * Index lines are appended in time order, and a hand-off's line is written after its drop file was (the object's
 * mtime is the drop file's: link(2) keeps it, a copy is younger). A backwards search stops at lines this much
 * older than the object: slack for a stepped clock and for the order within a commit group.
 */
const INDEX_SCAN_SLACK_MS = 10 * 60_000;
const RECEIVED_AT = /"receivedAt":"([^"]+)"/;

type Placement =
  /** The object already existed before this hand-off; `since` is its mtime (ms). */
  | { kind: "present"; since: number }
  /** Linked or renamed into objects/ by this hand-off: its directory must be fsynced before the index line. */
  | { kind: "placed" }
  /** Copied into tmp/ and still open: fsynced and renamed into objects/ by the group commit. */
  | { kind: "copied"; temporary: Temporary };

export class ContentAddressedStore implements Sink {
  private readonly inFlight = new Map<string, Promise<DeliveryResult>>();
  private pending: PendingCommit[] = [];
  private committing = false;
  private copies = 0;
  /** Cleared at the first EXDEV-like failure: every later hand-off copies without trying link(2) first. */
  private linkable = true;

  private constructor(
    readonly storeDir: string,
    private readonly index: FileHandle,
    /** Bytes of complete lines in the index, so a failed append (ENOSPC mid-line) can be cut back off. */
    private indexLength: number,
    private readonly warn: (message: string) => void,
  ) {}

  /** `warn` hears, once, that messages are copied because link(2) cannot reach the store. */
  static async open(storeDir: string, warn: (message: string) => void = () => undefined): Promise<ContentAddressedStore> {
    // All 256 fan-out directories up front: a mkdir on a message's path cost ~0.1 ms per message in a
    // 3,000-message run (CPU profile), and a hand-off then never has to create a directory.
    for (let fanOut = 0; fanOut < 256; fanOut++) {
      await mkdir(join(storeDir, "objects", fanOut.toString(16).padStart(2, "0")), { recursive: true, mode: 0o750 });
    }
    await mkdir(join(storeDir, "tmp"), { recursive: true, mode: 0o750 });
    // Leftovers of a copy a crash interrupted; one daemon owns the store, so nothing in tmp/ is live now.
    for (const leftover of await readdir(join(storeDir, "tmp"))) await rm(join(storeDir, "tmp", leftover), { force: true });
    const handle = await open(indexPath(storeDir), constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o640);
    try {
      const goodLength = completeLinesLength(handle.fd);
      if (goodLength < fstatSync(handle.fd).size) await handle.truncate(goodLength);
      return new ContentAddressedStore(storeDir, handle, goodLength, warn);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  deliver(handoff: Handoff): Promise<DeliveryResult> {
    const key = handoffKey(handoff.sha3, handoff.recipient);
    // Two drop files with the same bytes for the same recipient (Postfix delivered a retry twice) share one
    // hand-off instead of racing to append two index lines.
    const running = this.inFlight.get(key);
    if (running !== undefined) return running;
    const work = this.store(handoff)
      .catch((error: unknown) => {
        // Disk full, EIO, a vanished directory: the store may recover, so the processor retries later.
        throw error instanceof SinkError ? error : new SinkError(`store ${this.storeDir}: ${(error as Error).message}`, false);
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, work);
    return work;
  }

  private async store(handoff: Handoff): Promise<DeliveryResult> {
    const target = objectPath(this.storeDir, handoff.sha3);
    const placement = await this.place(handoff, target);
    if (placement.kind === "present" && this.indexContains(handoff.sha3, handoff.recipient, placement.since)) return "duplicate";
    const entry: StoreIndexEntry = {
      sha3: handoff.sha3,
      recipient: handoff.recipient,
      folder: handoff.folder,
      messageId: handoff.messageId,
      from: handoff.from,
      subject: handoff.subject,
      date: handoff.date,
      size: handoff.size,
      spamScore: handoff.spamScore,
      receivedAt: new Date().toISOString(),
    };
    await new Promise<void>((resolve, reject) => {
      this.pending.push({ placement, target, line: `${JSON.stringify(entry)}\n`, resolve, reject });
      if (!this.committing) void this.commit();
    });
    return "stored";
  }

  private async place(handoff: Handoff, target: string): Promise<Placement> {
    if (this.linkable) {
      // link(2) never follows a symbolic link: the processor refused links before the hand-off.
      try {
        linkSync(handoff.rawPath, target);
        return { kind: "placed" };
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? "";
        if (code === "EEXIST") return { kind: "present", since: statSync(target).mtimeMs };
        if (LINK_IMPOSSIBLE.has(code)) {
          this.linkable = false;
          this.warn(
            `store ${this.storeDir}: cannot hard-link from ${dirname(pathText(handoff.rawPath))} (${code}); copying every message ` +
              `instead (slower, bytes on disk twice). Keep the store on the drop's filesystem and in one ReadWritePaths= entry.`,
          );
        } else if (LINK_REFUSED.has(code)) {
          this.warn(`store ${this.storeDir}: cannot hard-link ${pathText(handoff.rawPath)} (${code}); copying this message`);
        } else {
          throw error;
        }
      }
    }
    // No exception for the usual answer "not there": building one cost more than the stat (CPU profile).
    const existing = statSync(target, { throwIfNoEntry: false });
    if (existing?.size === handoff.size) return { kind: "present", since: existing.mtimeMs };
    return { kind: "copied", temporary: await this.copyToTmp(handoff) };
  }

  /** Copies the object into tmp/ and returns it still open, so the group commit fsyncs it without reopening. */
  private async copyToTmp(handoff: Handoff): Promise<Temporary> {
    // Unique without random bytes: one daemon owns tmp/, empties it on open, and counts its own copies.
    const path = join(this.storeDir, "tmp", `${handoff.sha3.slice(0, 32)}.${process.pid}.${(this.copies += 1)}`);
    try {
      // copyFile lets the kernel move the bytes (copy_file_range) and keeps the drop file's mode.
      await copyFile(handoff.rawPath, path);
      return { path, fd: openSync(path, constants.O_RDONLY) };
    } catch (error) {
      try {
        unlinkSync(path);
      } catch {
        // Never created, or already gone: either way nothing is left in tmp/.
      }
      throw error;
    }
  }

  /**
   * Searches the index from its end for the line of this hand-off, back to lines older than the object
   * (`since`, its mtime): no line for it can be older than its file. A crash's redo reads the last chunk or
   * two, whatever the size of the index. The prefix can only match at the start of a line: inside a JSON string
   * value its quotes would be escaped.
   */
  private indexContains(sha3: string, recipient: string, since: number): boolean {
    const prefix = indexLinePrefix(sha3, recipient);
    const chunk = Buffer.alloc(INDEX_SCAN_CHUNK + prefix.length);
    for (let end = this.indexLength; end > 0;) {
      const start = Math.max(0, end - INDEX_SCAN_CHUNK);
      // Each chunk overlaps the one after it by a prefix's length, so a line cut at the boundary is still found.
      const length = Math.min(end + prefix.length, this.indexLength) - start;
      readExactly(this.index.fd, chunk, length, start);
      const text = chunk.subarray(0, length);
      if (text.includes(prefix)) return true;
      if (oldestLineTime(text, start === 0) < since - INDEX_SCAN_SLACK_MS) return false;
      end = start;
    }
    return false;
  }

  private async commit(): Promise<void> {
    this.committing = true;
    while (this.pending.length > 0) {
      const group = this.pending;
      this.pending = [];
      const synced = await Promise.allSettled(group.map((p) => syncAndPlace(p)));
      const placed = group.filter((_, i) => synced[i]!.status === "fulfilled");
      group.forEach((p, i) => {
        const result = synced[i]!;
        if (result.status === "rejected") p.reject(result.reason as Error);
      });
      if (placed.length === 0) continue;
      const bytes = Buffer.from(placed.map((p) => p.line).join(""));
      try {
        // A link or rename is durable only once its directory is: without this, a crash on a filesystem that
        // does not order metadata like ext4's journal can keep the index line and lose the object it names. A
        // "present" object may be a link an earlier life made and never synced, so its directory is synced too.
        const directories = new Set(placed.map((p) => dirname(p.target)));
        await Promise.all([...directories].map(fsyncDirectory));
        await this.index.write(bytes);
        await this.index.datasync();
        this.indexLength += bytes.length;
        for (const p of placed) p.resolve();
      } catch (error) {
        await this.index.truncate(this.indexLength).catch(() => undefined);
        for (const p of placed) p.reject(error as Error);
      }
    }
    this.committing = false;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
    await this.index.close();
  }
}

/** For a copied object: fsync the copy, then rename it into objects/. Linked and present objects need nothing. */
async function syncAndPlace(pending: PendingCommit): Promise<void> {
  if (pending.placement.kind !== "copied") return;
  const temporary = pending.placement.temporary;
  let stillOpen = true;
  try {
    await new Promise<void>((resolve, reject) => fsync(temporary.fd, (error) => (error === null ? resolve() : reject(error))));
    stillOpen = false;
    closeSync(temporary.fd);
    renameSync(temporary.path, pending.target);
  } catch (error) {
    // Closing twice could close a descriptor another hand-off has since been given.
    if (stillOpen) closeSync(temporary.fd);
    try {
      unlinkSync(temporary.path);
    } catch {
      // Already gone.
    }
    throw error;
  }
}

/** receivedAt of the first whole line in a chunk of the index (ms); Infinity when it has none that parses. */
function oldestLineTime(chunk: Buffer, startsAtLine: boolean): number {
  const lineStart = startsAtLine ? 0 : chunk.indexOf(0x0a) + 1;
  const lineEnd = lineStart === 0 && !startsAtLine ? -1 : chunk.indexOf(0x0a, lineStart);
  if (lineEnd === -1) return Infinity;
  const match = RECEIVED_AT.exec(chunk.toString("utf8", lineStart, lineEnd));
  const time = match === null ? NaN : Date.parse(match[1]!);
  return Number.isNaN(time) ? Infinity : time;
}

function readExactly(fd: number, buffer: Buffer, length: number, position: number): void {
  for (let read = 0; read < length;) {
    const n = readSync(fd, buffer, read, length - read, position + read);
    if (n === 0) throw new Error(`index ended at byte ${position + read}, expected ${position + length}`);
    read += n;
  }
}

/** Length of the index up to its last newline: what follows it is a line a crash tore, never acknowledged. */
function completeLinesLength(fd: number): number {
  const size = fstatSync(fd).size;
  const chunk = Buffer.alloc(64 * 1024);
  for (let end = size; end > 0;) {
    const start = Math.max(0, end - chunk.length);
    readExactly(fd, chunk, end - start, start);
    const newline = chunk.subarray(0, end - start).lastIndexOf(0x0a);
    if (newline !== -1) return start + newline + 1;
    end = start;
  }
  return 0;
}

/** A path for a warning: a Buffer path's bytes one character each (the logger escapes what is not printable). */
function pathText(path: string | Buffer): string {
  return typeof path === "string" ? path : path.toString("latin1");
}

function fsyncDirectory(path: string): Promise<void> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
  return new Promise<void>((resolve, reject) =>
    fsync(fd, (error) => {
      closeSync(fd);
      if (error === null) resolve();
      else reject(error);
    }),
  );
}

interface Temporary {
  path: string;
  /** Kept open from the write to the fsync. */
  fd: number;
}

interface PendingCommit {
  placement: Placement;
  target: string;
  line: string;
  resolve: () => void;
  reject: (error: Error) => void;
}
