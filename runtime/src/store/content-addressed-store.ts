// The embedded sink: each raw message kept once under its SHA3-512 (objects/<2 hex>/<126 hex>), plus an
// append-only JSON-lines index with one line per (message, recipient) hand-off.
//
// Crash safety: an object is copied to tmp/, fsynced and only then renamed into place, so objects/ never
// holds a partial message. Its index line is appended and fdatasynced before deliver() resolves, so the
// processor moves a file to cur/ only once its line is durable. kill -9 can leave a torn last line: open()
// cuts it off (that hand-off was never acknowledged, so it is redone); readStoreIndex() skips it.
// fsync costs milliseconds here, so hand-offs commit in groups: every copy that finished while the previous
// group was syncing is fsynced in parallel, renamed, and its index lines written with one fdatasync.
//
// Only the fsyncs go through libuv's thread pool. The other calls (a 10 KB write, a rename, a stat) take a few
// µs, less than the thread-pool round trip that wraps an async call: with everything async the daemon made
// ~65 futex calls per message and spent 1.15 ms of CPU on it (docs/performance.md, "Inbound").
import { closeSync, constants, fsync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { copyFile, mkdir, open, readdir, readFile, rm, truncate, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Folder } from "../inbound/spam-verdict";
import { SinkError, type Handoff, type Sink } from "../inbound/sink";

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

interface ParsedIndex {
  entries: StoreIndexEntry[];
  /** Byte length of the complete, parseable prefix. */
  goodLength: number;
  tornTail: boolean;
}

function parseIndex(text: Buffer): ParsedIndex {
  const entries: StoreIndexEntry[] = [];
  let start = 0;
  let goodLength = 0;
  for (;;) {
    const newline = text.indexOf(0x0a, start);
    if (newline === -1) break;
    const line = text.subarray(start, newline).toString("utf8");
    start = newline + 1;
    if (line.trim() === "") {
      goodLength = start;
      continue;
    }
    try {
      entries.push(JSON.parse(line) as StoreIndexEntry);
      goodLength = start;
    } catch {
      // A complete but unparsable line can only come from outside tampering; stop trusting what follows.
      return { entries, goodLength, tornTail: true };
    }
  }
  return { entries, goodLength, tornTail: start < text.length };
}

/** Reads the index for queries; a torn last line (a crash mid-append) is skipped, never an error. */
export async function readStoreIndex(storeDir: string): Promise<StoreIndexEntry[]> {
  try {
    return parseIndex(await readFile(indexPath(storeDir))).entries;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

function handoffKey(sha3: string, recipient: string): string {
  return `${sha3} ${recipient}`;
}

export class ContentAddressedStore implements Sink {
  private readonly delivered = new Set<string>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private pending: PendingCommit[] = [];
  private committing = false;
  private copies = 0;

  private constructor(
    readonly storeDir: string,
    private readonly index: FileHandle,
    /** Bytes of complete lines in the index, so a failed append (ENOSPC mid-line) can be cut back off. */
    private indexLength: number,
  ) {}

  static async open(storeDir: string): Promise<ContentAddressedStore> {
    // All 256 fan-out directories up front: a mkdir on a message's path cost ~0.1 ms per message in a
    // 3,000-message run (CPU profile), and a hand-off then never has to create a directory.
    for (let fanOut = 0; fanOut < 256; fanOut++) {
      await mkdir(join(storeDir, "objects", fanOut.toString(16).padStart(2, "0")), { recursive: true, mode: 0o750 });
    }
    await mkdir(join(storeDir, "tmp"), { recursive: true, mode: 0o750 });
    // Leftovers of a copy a crash interrupted; one daemon owns the store, so nothing in tmp/ is live now.
    for (const leftover of await readdir(join(storeDir, "tmp"))) await rm(join(storeDir, "tmp", leftover), { force: true });
    let parsed: ParsedIndex = { entries: [], goodLength: 0, tornTail: false };
    try {
      parsed = parseIndex(await readFile(indexPath(storeDir)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    if (parsed.tornTail) await truncate(indexPath(storeDir), parsed.goodLength);
    const handle = await open(indexPath(storeDir), constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o640);
    const store = new ContentAddressedStore(storeDir, handle, parsed.goodLength);
    for (const entry of parsed.entries) store.delivered.add(handoffKey(entry.sha3, entry.recipient));
    return store;
  }

  has(sha3: string, recipient: string): boolean {
    return this.delivered.has(handoffKey(sha3, recipient));
  }

  deliver(handoff: Handoff): Promise<void> {
    const key = handoffKey(handoff.sha3, handoff.recipient);
    if (this.delivered.has(key)) return Promise.resolve();
    // Two drop files with the same bytes for the same recipient (Postfix delivered a retry twice) share one
    // hand-off instead of racing to append two index lines.
    const running = this.inFlight.get(key);
    if (running !== undefined) return running;
    const work = this.store(handoff)
      .then(() => {
        this.delivered.add(key);
      })
      .catch((error: unknown) => {
        // Disk full, EIO, a vanished directory: the store may recover, so the processor retries later.
        throw error instanceof SinkError ? error : new SinkError(`store ${this.storeDir}: ${(error as Error).message}`, false);
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, work);
    return work;
  }

  private async store(handoff: Handoff): Promise<void> {
    const target = objectPath(this.storeDir, handoff.sha3);
    const temporary = this.objectPresent(target, handoff.size) ? undefined : await this.copyToTmp(handoff);
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
      this.pending.push({ temporary, target, line: `${JSON.stringify(entry)}\n`, resolve, reject });
      if (!this.committing) void this.commit();
    });
  }

  private objectPresent(target: string, size: number): boolean {
    // No exception for the usual answer "not there": building one cost more than the stat (CPU profile).
    return statSync(target, { throwIfNoEntry: false })?.size === size;
  }

  /** Writes the object into tmp/ and returns it still open, so the group commit fsyncs it without reopening. */
  private async copyToTmp(handoff: Handoff): Promise<Temporary> {
    // Unique without random bytes: one daemon owns tmp/, empties it on open, and counts its own copies.
    const path = join(this.storeDir, "tmp", `${handoff.sha3.slice(0, 32)}.${process.pid}.${(this.copies += 1)}`);
    let fd: number | undefined;
    try {
      if (handoff.bytes !== undefined) {
        fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o640);
        for (let written = 0; written < handoff.bytes.length;) written += writeSync(fd, handoff.bytes, written);
      } else {
        // A large message was never held in memory: copyFile lets the kernel move its bytes (copy_file_range).
        await copyFile(handoff.rawPath, path);
        fd = openSync(path, constants.O_RDONLY);
      }
      return { path, fd };
    } catch (error) {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // Never created, or already gone: either way nothing is left in tmp/.
      }
      throw error;
    }
  }

  private async commit(): Promise<void> {
    this.committing = true;
    while (this.pending.length > 0) {
      const group = this.pending;
      this.pending = [];
      const synced = await Promise.allSettled(group.map((p) => this.syncAndPlace(p)));
      const placed = group.filter((_, i) => synced[i]!.status === "fulfilled");
      group.forEach((p, i) => {
        const result = synced[i]!;
        if (result.status === "rejected") p.reject(result.reason as Error);
      });
      if (placed.length === 0) continue;
      const bytes = Buffer.from(placed.map((p) => p.line).join(""));
      try {
        // A rename is durable only once its directory is: without this, a crash on a filesystem that does not
        // order metadata like ext4's journal can keep the index line and lose the object it names.
        const directories = new Set(placed.filter((p) => p.temporary !== undefined).map((p) => dirname(p.target)));
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

  private async syncAndPlace(pending: PendingCommit): Promise<void> {
    const temporary = pending.temporary;
    if (temporary === undefined) return;
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

  async close(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
    await this.index.close();
  }
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
  /** The fsync-pending copy in tmp/, or undefined when the object was already in place. */
  temporary: Temporary | undefined;
  target: string;
  line: string;
  resolve: () => void;
  reject: (error: Error) => void;
}
