// The registry file and the node API client on their own (runtime/src/lookup/registry.ts): the error a bad line
// names, which directory events reload the file, what close() stops, and an HTTP lookup cut short by close().
// test/unit/lookup-protocol.test.ts covers both through the socketmap; these are the cases it does not reach.
import { mkdtempSync, rmSync, writeFileSync, renameSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  FileRegistry,
  HttpRegistry,
  RegistryFileError,
  RegistryUnavailableError,
  parseRegistryFile,
} from "../../runtime/src/lookup/registry";

let dir: string;
let file: string;
const registries: FileRegistry[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "lookup-registry-file-"));
  file = join(dir, "recipients");
});
afterEach(() => {
  for (const registry of registries.splice(0)) registry.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(text: string, events?: ConstructorParameters<typeof FileRegistry>[1]): FileRegistry {
  writeFileSync(file, text);
  const registry = new FileRegistry(file, events);
  registries.push(registry);
  return registry;
}

/** Replaces the file the way a sync tool does: write a sibling, rename it over. */
function replace(text: string): void {
  writeFileSync(`${file}.new`, text);
  renameSync(`${file}.new`, file);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(check: () => boolean, deadlineMs = 5_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${deadlineMs} ms`);
    await sleep(10);
  }
}

describe("parseRegistryFile", () => {
  it("names the file, the line number and the line for an entry that is not an address", () => {
    const text = "alice@brightchain.org\n# a comment\n\n  not-an-address  \nbob@brightchain.org\n";
    let thrown: unknown;
    try {
      parseRegistryFile("/etc/brightchain/recipients", text);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(RegistryFileError);
    const error = thrown as RegistryFileError;
    expect(error.name).toBe("RegistryFileError");
    expect({ file: error.file, line: error.line, text: error.text }).toEqual({
      file: "/etc/brightchain/recipients",
      line: 4,
      text: "not-an-address",
    });
    expect(error.message).toBe(
      '/etc/brightchain/recipients line 4: "not-an-address" is not a recipient address; expected local@domain, one per line (# starts a comment)',
    );
  });

  it("refuses two addresses on one line, and keeps a comment's text in the line it quotes", () => {
    expect(() => parseRegistryFile("f", "alice@brightchain.org bob@brightchain.org\n")).toThrow(
      'f line 1: "alice@brightchain.org bob@brightchain.org" is not a recipient address',
    );
    expect(() => parseRegistryFile("f", "ok@brightchain.org\r\n\tbad@@x.org # why\r\n")).toThrow(
      'f line 2: "bad@@x.org # why" is not a recipient address',
    );
  });

  it("lowercases entries and ignores comments, blank lines and CRLF endings", () => {
    const addresses = parseRegistryFile(
      "f",
      "# header\r\nAlice@BrightChain.org # owner\r\n\r\n   \r\nbob#not-a-comment@brightchain.org\n",
    );
    expect([...addresses]).toEqual(["alice@brightchain.org", "bob#not-a-comment@brightchain.org"]);
  });
});

describe("FileRegistry", () => {
  it("counts its users, and reloads without event callbacks, keeping the last good list on a bad file", () => {
    const registry = open("alice@brightchain.org\nbob@brightchain.org\n");
    expect(registry.size).toBe(2);
    writeFileSync(file, "carol@brightchain.org\n");
    registry.reload();
    expect(registry.size).toBe(1);
    expect(registry.find("carol@brightchain.org")).toBe("carol@brightchain.org");
    expect(registry.find("alice@brightchain.org")).toBeUndefined();
    writeFileSync(file, "carol@brightchain.org\nbroken line\n");
    expect(() => registry.reload()).not.toThrow();
    rmSync(file);
    expect(() => registry.reload()).not.toThrow();
    expect(registry.find("carol@brightchain.org")).toBe("carol@brightchain.org");
    expect(registry.size).toBe(1);
  });

  it("reloads when its own file is replaced, not when another file in its directory changes", async () => {
    const reloads: number[] = [];
    const registry = open("alice@brightchain.org\n", { onReload: (count) => reloads.push(count) });
    writeFileSync(join(dir, "unrelated"), "x\n");
    writeFileSync(join(dir, "unrelated"), "y\n");
    await sleep(300);
    expect(reloads).toEqual([]);
    replace("alice@brightchain.org\nbob@brightchain.org\n");
    await waitFor(() => reloads.length > 0);
    await sleep(100);
    expect(reloads).toEqual([2]);
    expect(registry.find("bob@brightchain.org")).toBe("bob@brightchain.org");
  });

  it("stops reloading once closed, and can be closed twice", async () => {
    const reloads: number[] = [];
    const errors: Error[] = [];
    const registry = open("alice@brightchain.org\n", { onReload: (n) => reloads.push(n), onReloadError: (e) => errors.push(e) });
    registry.close();
    replace("bob@brightchain.org\n");
    await sleep(300);
    expect(reloads).toEqual([]);
    expect(registry.find("alice@brightchain.org")).toBe("alice@brightchain.org");
    expect(registry.find("bob@brightchain.org")).toBeUndefined();
    expect(() => registry.close()).not.toThrow();
    expect(errors).toEqual([]);
  });

  it("drops a reload already scheduled when closed", async () => {
    const reloads: number[] = [];
    const registry = open("alice@brightchain.org\n", { onReload: (n) => reloads.push(n) });
    replace("bob@brightchain.org\n");
    // The directory event arrives within a few ms; the reload it schedules waits 25 ms more.
    await sleep(5);
    registry.close();
    await sleep(300);
    expect(reloads).toEqual([]);
    expect(registry.find("alice@brightchain.org")).toBe("alice@brightchain.org");
  });
});

describe("HttpRegistry", () => {
  let server: Server;
  let baseUrl: string;
  /** Requests the stand-in holds without answering. */
  let held: (() => void)[] = [];
  let answer: "hold" | "user" | "404" | "503" = "hold";
  beforeEach(async () => {
    held = [];
    answer = "hold";
    server = createServer((request, response) => {
      if (answer === "hold") {
        held.push(() => response.destroy());
        return;
      }
      if (answer === "404" || answer === "503") {
        response.writeHead(Number(answer)).end("no");
        return;
      }
      const address = decodeURIComponent(request.url!.split("/").pop()!);
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ address }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    for (const release of held) release();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("close() aborts a lookup in flight at once instead of waiting out its timeout", async () => {
    const registry = new HttpRegistry(baseUrl, { cacheTtlSeconds: 60, timeoutMs: 30_000 });
    const started = Date.now();
    const lookup = registry.find("alice@brightchain.org") as Promise<string | undefined>;
    await waitFor(() => held.length === 1);
    registry.close();
    await expect(lookup).rejects.toThrow(RegistryUnavailableError);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("names its failures RegistryUnavailableError, with the HTTP status or the deadline", async () => {
    const registry = new HttpRegistry(baseUrl, { cacheTtlSeconds: 60, timeoutMs: 200 });
    const failure = async () => {
      try {
        await registry.find("alice@brightchain.org");
      } catch (error) {
        return { name: (error as Error).name, message: (error as Error).message };
      }
      return undefined;
    };
    expect(await failure()).toEqual({ name: "RegistryUnavailableError", message: "registry did not answer within 200 ms" });
    answer = "503";
    expect(await failure()).toEqual({ name: "RegistryUnavailableError", message: "registry answered HTTP 503" });
    answer = "404";
    expect(await registry.find("alice@brightchain.org")).toBeUndefined();
    registry.close();
  });

  it("leaves no timer behind once the node has answered (a finished lookup holds nothing for its timeout)", async () => {
    answer = "user";
    const registry = new HttpRegistry(baseUrl, { cacheTtlSeconds: 0, timeoutMs: 60_000 });
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;
    // One lookup first: the HTTP client's own timers (keep-alive) exist from then on.
    expect(await registry.find("warm@brightchain.org")).toBe("warm@brightchain.org");
    await sleep(50);
    const before = timers();
    for (const user of ["a", "b", "c"]) expect(await registry.find(`${user}@brightchain.org`)).toBe(`${user}@brightchain.org`);
    answer = "404";
    expect(await registry.find("nobody@brightchain.org")).toBeUndefined();
    await sleep(50);
    expect(timers()).toBeLessThanOrEqual(before);
    registry.close();
  });
});
