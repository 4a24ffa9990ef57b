// The embedded sink: each raw message kept once under its SHA3-512 (objects/<2 hex>/<126 hex>), plus an
// append-only JSON-lines index with one line per (message, recipient) hand-off.
//
// Crash safety: an object is written to tmp/, fsynced and renamed into place, so objects/ never holds a
// partial message. An index line is appended and fdatasynced before deliver() resolves, so the processor
// only moves a file to cur/ once its line is durable. kill -9 can leave a torn last line: open() cuts it
// off (that hand-off had not been acknowledged, so it is redone); readStoreIndex() skips it.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, mkdir, open, readFile, rename, stat, truncate, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
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
  private readonly objectDirs = new Set<string>();
  private pendingLines: string[] = [];
  private pendingWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private flushing = false;

  private constructor(
    readonly storeDir: string,
    private readonly index: FileHandle,
    /** Bytes of complete lines in the index, so a failed append (ENOSPC mid-line) can be cut back off. */
    private indexLength: number,
  ) {}

  static async open(storeDir: string): Promise<ContentAddressedStore> {
    await mkdir(join(storeDir, "objects"), { recursive: true, mode: 0o750 });
    await mkdir(join(storeDir, "tmp"), { recursive: true, mode: 0o750 });
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
    await this.writeObject(handoff.sha3, handoff.rawPath, handoff.size);
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
    await this.appendIndexLine(`${JSON.stringify(entry)}\n`);
  }

  private async writeObject(sha3: string, rawPath: string, size: number): Promise<void> {
    const target = objectPath(this.storeDir, sha3);
    try {
      if ((await stat(target)).size === size) return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    const dir = join(this.storeDir, "objects", sha3.slice(0, 2));
    if (!this.objectDirs.has(dir)) {
      await mkdir(dir, { recursive: true, mode: 0o750 });
      this.objectDirs.add(dir);
    }
    const temporary = join(this.storeDir, "tmp", `${sha3.slice(0, 32)}.${process.pid}.${randomBytes(6).toString("hex")}`);
    try {
      // copyFile lets the kernel move the bytes (copy_file_range): the message never passes through the heap.
      await copyFile(rawPath, temporary);
      const handle = await open(temporary, "r");
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, target);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
  }

  // Group commit: concurrent hand-offs share one write + fdatasync instead of paying one each.
  private appendIndexLine(line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pendingLines.push(line);
      this.pendingWaiters.push({ resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.pendingLines.length > 0) {
      const lines = this.pendingLines;
      const waiters = this.pendingWaiters;
      this.pendingLines = [];
      this.pendingWaiters = [];
      const bytes = Buffer.from(lines.join(""));
      try {
        await this.index.write(bytes);
        await this.index.datasync();
        this.indexLength += bytes.length;
        for (const waiter of waiters) waiter.resolve();
      } catch (error) {
        await this.index.truncate(this.indexLength).catch(() => undefined);
        for (const waiter of waiters) waiter.reject(error as Error);
      }
    }
    this.flushing = false;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
    await this.index.close();
  }
}
