// Where recipients come from. The socketmap server only asks "is this address a user, and what is its canonical
// form"; a registry that throws or rejects is a temporary failure (Postfix answers 4xx and the sender retries).
import { readFileSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { normalizeAddress } from "./address";

export interface RecipientRegistry {
  /**
   * The canonical address when `address` (lowercased local@domain) is a known recipient, else undefined.
   * In-memory registries answer synchronously so the hot path allocates no promise.
   */
  find(address: string): string | undefined | Promise<string | undefined>;
  close(): void;
}

export class RegistryFileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly text: string,
  ) {
    super(
      `${file} line ${line}: ${JSON.stringify(text)} is not a recipient address; expected local@domain, one per line (# starts a comment)`,
    );
    this.name = "RegistryFileError";
  }
}

/** Parses the registry file format: one address per line, blank lines and `#` comments ignored. */
export function parseRegistryFile(file: string, text: string): Set<string> {
  const addresses = new Set<string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const content = lines[i]!.replace(/(^|\s)#.*$/, "").trim();
    if (content === "") continue;
    const parsed = normalizeAddress(content);
    if (parsed === undefined || /\s/.test(content)) throw new RegistryFileError(file, i + 1, lines[i]!.trim());
    addresses.add(parsed.address);
  }
  return addresses;
}

export interface FileRegistryEvents {
  onReload?(count: number): void;
  /**
   * A reload that failed; the previous good set stays in service. Called once per failure: the same error again
   * (the file still missing at the next event) is not reported until a reload has succeeded.
   */
  onReloadError?(error: Error): void;
}

/**
 * GATEWAY_REGISTRY_FILE, the embedded default the node keeps in sync. The whole file is swapped in only when every
 * line parses: serving a partial file would turn a sync glitch into 550s for real users.
 */
export class FileRegistry implements RecipientRegistry {
  private addresses: Set<string>;
  private watcher: FSWatcher | undefined;
  private pendingReload: NodeJS.Timeout | undefined;
  /** The message of the last reload error reported, until a reload succeeds. */
  private reportedError: string | undefined;

  /** Throws (RegistryFileError, or the fs error) when the file cannot be served at start. */
  constructor(
    readonly file: string,
    private readonly events: FileRegistryEvents = {},
  ) {
    this.addresses = parseRegistryFile(file, readFileSync(file, "utf8"));
    // The directory, not the file: sync tools replace the file by rename, which a watch on the old inode misses.
    this.watcher = watch(dirname(file), (_event, name) => {
      if (name !== null && name !== basename(file)) return;
      // One write often fires several events; coalescing avoids reading a half-written file twice.
      clearTimeout(this.pendingReload);
      this.pendingReload = setTimeout(() => this.reload(), 25);
    });
  }

  get size(): number {
    return this.addresses.size;
  }

  find(address: string): string | undefined {
    return this.addresses.has(address) ? address : undefined;
  }

  /** Re-reads the file now; also what the directory watch calls. */
  reload(): void {
    let next: Set<string>;
    try {
      next = parseRegistryFile(this.file, readFileSync(this.file, "utf8"));
    } catch (error) {
      // A missing file mid-rename is not a reason to forget every user.
      const { message } = error as Error;
      if (message !== this.reportedError) this.events.onReloadError?.(error as Error);
      this.reportedError = message;
      return;
    }
    this.reportedError = undefined;
    this.addresses = next;
    this.events.onReload?.(next.size);
  }

  close(): void {
    clearTimeout(this.pendingReload);
    this.watcher?.close();
    this.watcher = undefined;
  }
}

export class RegistryUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RegistryUnavailableError";
  }
}

/**
 * The BrightChain node's API. Contract: `GET <GATEWAY_REGISTRY_URL>/recipients/<url-encoded address>` answers
 * 200 with JSON `{"address": "<canonical address>"}` for a user, 404 for none; anything else (or no answer within
 * the timeout) is a temporary failure. Only positive answers are cached: a user created a minute ago must not be
 * bounced for the rest of a TTL.
 */
export class HttpRegistry implements RecipientRegistry {
  private readonly cache = new Map<string, { address: string; expires: number }>();
  private readonly inflight = new Set<AbortController>();

  constructor(
    readonly baseUrl: string,
    private readonly options: { cacheTtlSeconds: number; timeoutMs: number; maxCacheEntries?: number },
  ) {}

  find(address: string): string | undefined | Promise<string | undefined> {
    const cached = this.cache.get(address);
    if (cached !== undefined) {
      if (cached.expires > Date.now()) return cached.address;
      this.cache.delete(address);
    }
    return this.fetchRecipient(address);
  }

  private async fetchRecipient(address: string): Promise<string | undefined> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.options.timeoutMs);
    this.inflight.add(controller);
    try {
      const url = `${this.baseUrl}/recipients/${encodeURIComponent(address)}`;
      let response: Response;
      try {
        response = await fetch(url, { signal: controller.signal, headers: { accept: "application/json" } });
      } catch (error) {
        throw new RegistryUnavailableError(
          controller.signal.aborted
            ? `registry did not answer within ${this.options.timeoutMs} ms`
            : `registry unreachable: ${(error as Error).message}`,
        );
      }
      if (response.status === 404) {
        await response.body?.cancel();
        return undefined;
      }
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new RegistryUnavailableError(`registry answered HTTP ${response.status}`);
      }
      const body = (await response.json().catch(() => undefined)) as { address?: unknown } | undefined;
      const canonical = typeof body?.address === "string" ? normalizeAddress(body.address) : undefined;
      if (canonical === undefined) throw new RegistryUnavailableError('registry answered 200 without a valid "address"');
      const value = canonical.address;
      this.remember(address, value);
      return value;
    } finally {
      clearTimeout(timer);
      this.inflight.delete(controller);
    }
  }

  private remember(address: string, canonical: string): void {
    if (this.options.cacheTtlSeconds === 0) return;
    const max = this.options.maxCacheEntries ?? 100_000;
    // Map keeps insertion order, so the first key is the oldest entry.
    if (this.cache.size >= max) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(address, { address: canonical, expires: Date.now() + this.options.cacheTtlSeconds * 1000 });
  }

  close(): void {
    for (const controller of this.inflight) controller.abort();
    this.cache.clear();
  }
}
