// The built brightchain-inbound daemon, as an unprivileged user (nobody, as the unit's brightchain user would
// be), against what a hostile local process or a bad day leaves in its spool: FIFOs, links, unreadable files,
// oversized files, mail for other domains, names that forge journal lines, an errors/ it cannot write.
import { execFileSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  ftruncateSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { INBOUND_NODE_OPTIONS } from "../../infra/render/systemd";
import { readStoreIndex } from "../../runtime/src/store/content-addressed-store";
import { type InboundDaemon, killChildren, makeInboundSpool, spawnInboundDaemon } from "../helpers/inbound-daemon";
import { dropMessageText, waitUntil } from "../helpers/inbound-drop";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const nobody = {
  uid: Number(execFileSync("id", ["-u", "nobody"], { encoding: "utf8" })),
  gid: Number(execFileSync("id", ["-g", "nobody"], { encoding: "utf8" })),
};

let buildDir: string;
let daemonPath: string;
let storeCli: string;
let dir: string;
let dropDir: string;
let errorDir: string;
let storeDir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  buildDir = mkdtempSync(join(tmpdir(), "bc-inbound-hostile-build-"));
  chmodSync(buildDir, 0o755);
  daemonPath = await bundleRuntimeEntry("brightchain-inbound", buildDir);
  storeCli = await bundleRuntimeEntry("brightchain-store", buildDir);
});
afterAll(() => rmSync(buildDir, { recursive: true, force: true }));

beforeEach(() => {
  ({ dir, dropDir, errorDir, storeDir } = makeInboundSpool("bc-inbound-hostile-"));
  mkdirSync(errorDir);
  mkdirSync(storeDir);
  execFileSync("chown", ["-R", `${nobody.uid}:${nobody.gid}`, dir]);
});
afterEach(async () => {
  await killChildren(children);
  rmSync(dir, { recursive: true, force: true });
});

function startDaemon(extraEnv: Record<string, string> = {}): InboundDaemon {
  const daemon = spawnInboundDaemon(
    daemonPath,
    { dropDir, errorDir, storeDir },
    { GATEWAY_MAX_MESSAGE_SIZE: "26214400", GATEWAY_INBOUND_CONCURRENCY: "8", ...extraEnv },
    { nodeOptions: INBOUND_NODE_OPTIONS, user: nobody },
  );
  children.push(daemon.child);
  return daemon;
}

/** SIGTERM, and the exit code, within `ms`: a daemon blocked in a system call never gets that far. */
async function stopDaemon(daemon: InboundDaemon, ms = 10_000): Promise<number | null> {
  daemon.child.kill("SIGTERM");
  return Promise.race([
    daemon.exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit ${ms} ms after SIGTERM`)), ms)),
  ]);
}

/** A message as Postfix delivers it, owned by the daemon's user: written in tmp/, renamed into new/. */
function drop(name: string, content: string | Buffer): string {
  const temporary = join(dropDir, "tmp", name);
  writeFileSync(temporary, content, { mode: 0o600 });
  chownSync(temporary, nobody.uid, nobody.gid);
  renameSync(temporary, join(dropDir, "new", name));
  return join(dropDir, "new", name);
}

/** A FIFO the daemon's user owns, made in tmp/ and renamed to `path`: it appears complete, as mail does. */
function mkfifo(path: string): void {
  const staging = join(dropDir, "tmp", `fifo.${process.pid}`);
  execFileSync("mkfifo", ["-m", "600", staging]);
  chownSync(staging, nobody.uid, nobody.gid);
  renameSync(staging, path);
}

const newDir = () => join(dropDir, "new");
const newNames = () => readdirSync(newDir());
const newIsEmpty = () => newNames().length === 0;
const inCur = (name: string) => existsSync(join(dropDir, "cur", `${name}:2,`));
const reasonOf = (name: string) => readFileSync(join(errorDir, `${name}.reason`), "utf8");
const stderrLinesAbout = (daemon: InboundDaemon, text: string) =>
  daemon
    .stderr()
    .split("\n")
    .filter((l) => l.includes(text));

describe("brightchain-inbound against hostile entries (built daemon, as nobody)", () => {
  it("is not hung by a FIFO in new/: mail still flows, SIGTERM exits 0, a restart with another FIFO does not hang", async () => {
    mkfifo(join(newDir(), "fifo-before"));
    drop("good-1", dropMessageText({ recipient: "alice@brightchain.org", subject: "one" }));
    const first = startDaemon();
    await waitUntil("good-1 in cur/ past the FIFO", () => inCur("good-1"), 15_000);
    await waitUntil("the FIFO filed in errors/", () => existsSync(join(errorDir, "fifo-before.reason")), 15_000);
    expect(lstatSync(join(errorDir, "fifo-before")).isFIFO()).toBe(true);
    expect(reasonOf("fifo-before")).toBe("a FIFO, not a message file\n");

    mkfifo(join(newDir(), "fifo-while-running"));
    drop("good-2", dropMessageText({ recipient: "alice@brightchain.org", subject: "two" }));
    await waitUntil("new/ empty", newIsEmpty, 15_000);
    expect(lstatSync(join(errorDir, "fifo-while-running")).isFIFO()).toBe(true);
    expect(await stopDaemon(first)).toBe(0);

    mkfifo(join(newDir(), "fifo-at-restart"));
    drop("good-3", dropMessageText({ recipient: "alice@brightchain.org", subject: "three" }));
    const second = startDaemon();
    await waitUntil("new/ empty after the restart", newIsEmpty, 15_000);
    expect(await stopDaemon(second)).toBe(0);
    expect((await readStoreIndex(storeDir)).map((e) => e.subject).sort()).toEqual(["one", "three", "two"]);
    for (const name of ["fifo-before", "fifo-while-running"]) expect(stderrLinesAbout(first, name), name).toHaveLength(1);
    expect(stderrLinesAbout(second, "fifo-at-restart")).toHaveLength(1);
  });

  it("never follows a link, files links, directories, unreadable files, oversized names, mail for other domains in errors/ with a reason and one log line each", async () => {
    // A message a link points at, readable by the daemon's user, outside the spool: it must never be stored.
    const outside = join(dir, "outside.eml");
    const outsideText = dropMessageText({ recipient: "alice@brightchain.org", subject: "outside the spool" });
    writeFileSync(outside, outsideText);
    chownSync(outside, nobody.uid, nobody.gid);
    symlinkSync(outside, join(newDir(), "link-outside"));
    symlinkSync(join(dir, "nothing-here"), join(newDir(), "link-dangling"));
    mkdirSync(join(newDir(), "a-directory"));
    chownSync(join(newDir(), "a-directory"), nobody.uid, nobody.gid);
    // Root's, mode 0600: the daemon's user cannot open it.
    writeFileSync(join(newDir(), "unreadable"), dropMessageText({ recipient: "alice@brightchain.org" }), { mode: 0o600 });
    const long = `1764000000.M1P1.${"h".repeat(255 - 16)}`;
    drop(long, dropMessageText({ subject: "no recipient" }));
    drop("other-domain", dropMessageText({ recipient: "alice@example.net" }));
    drop("subdomain", dropMessageText({ recipient: "alice@sub.brightchain.org" }));
    drop("good", dropMessageText({ recipient: "alice@brightchain.org", subject: "good" }));

    const daemon = startDaemon();
    await waitUntil("new/ empty", newIsEmpty, 30_000);
    expect(await stopDaemon(daemon)).toBe(0);

    expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["good"]);
    const outsideSha3 = createHash("sha3-512").update(outsideText).digest("hex");
    const list = execFileSync(process.execPath, [storeCli, "list", "--json", "--store", storeDir], { encoding: "utf8" });
    expect(list).not.toContain(outsideSha3);
    expect(lstatSync(join(errorDir, "link-outside")).isSymbolicLink()).toBe(true);
    expect(reasonOf("link-outside")).toBe(`a symbolic link to ${JSON.stringify(outside)}: links in new/ are never followed\n`);
    expect(lstatSync(join(errorDir, "link-dangling")).isSymbolicLink()).toBe(true);
    expect(reasonOf("link-dangling")).toContain("a symbolic link to");
    expect(reasonOf("a-directory")).toBe("a directory, not a message file\n");
    expect(reasonOf("unreadable")).toBe("cannot be read (EACCES): files in new/ must be readable by the daemon's user\n");
    expect(reasonOf("other-domain")).toContain('"alice@example.net" is outside the served domains');
    expect(reasonOf("subdomain")).toContain('"alice@sub.brightchain.org" is outside the served domains');
    const short = readdirSync(errorDir).find((n) => n.startsWith("1764000000.M1P1.") && !n.endsWith(".reason"))!;
    expect(reasonOf(short)).toBe(`no Delivered-To header: the envelope recipient is unknown\noriginal name: ${long}\n`);
    for (const name of ["link-outside", "link-dangling", "a-directory", "unreadable", "other-domain", "subdomain", long]) {
      expect(stderrLinesAbout(daemon, `${name}: moved to ${errorDir}`), name).toHaveLength(1);
    }
    expect(daemon.stderr()).not.toContain("unexpected");
  });

  it("writes a name holding a newline escaped: no journal line of the daemon's can be forged", async () => {
    const forged = "x\nbrightchain-inbound: error: forged line";
    drop(forged, dropMessageText({ subject: "no recipient" }));
    drop("esc\x1b[2J", dropMessageText({ subject: "no recipient" }));
    const daemon = startDaemon();
    await waitUntil("new/ empty", newIsEmpty, 15_000);
    expect(await stopDaemon(daemon)).toBe(0);

    const lines = daemon.stderr().trimEnd().split("\n");
    expect(lines.filter((l) => l.startsWith("brightchain-inbound: error: forged"))).toEqual([]);
    expect(lines.every((l) => l.startsWith("brightchain-inbound: "))).toBe(true);
    expect(daemon.stderr()).not.toContain("\x1b");
    expect(stderrLinesAbout(daemon, '"x\\x0abrightchain-inbound: error: forged line": moved to')).toHaveLength(1);
    expect(stderrLinesAbout(daemon, '"esc\\x1b[2J": moved to')).toHaveLength(1);
    expect(readFileSync(join(errorDir, `${forged}.reason`), "utf8")).toContain("no Delivered-To header");
  });

  it("files a 1 GiB drop file over GATEWAY_MAX_MESSAGE_SIZE in errors/ without reading it", async () => {
    const path = drop("huge", dropMessageText({ recipient: "alice@brightchain.org", subject: "huge" }));
    // Sparse: 1 GiB that costs no disk, and seconds of reading and hashing if it is read.
    const fd = openSync(path, "r+");
    ftruncateSync(fd, 1024 ** 3);
    closeSync(fd);
    drop("small", dropMessageText({ recipient: "alice@brightchain.org", subject: "small" }));
    const daemon = startDaemon();
    await waitUntil("new/ empty", newIsEmpty, 60_000);
    // Bytes the daemon read through read(2) in its life: its own bundle and the small message.
    const rchar = Number(/rchar: (\d+)/.exec(readFileSync(`/proc/${daemon.child.pid}/io`, "utf8"))![1]);
    expect(await stopDaemon(daemon)).toBe(0);

    expect(rchar).toBeLessThan(64 * 1024 * 1024);
    expect((await readStoreIndex(storeDir)).map((e) => e.subject)).toEqual(["small"]);
    expect(lstatSync(join(errorDir, "huge")).size).toBe(1024 ** 3);
    expect(reasonOf("huge")).toBe(
      `${1024 ** 3} bytes, over the ${26_214_400 + 1_048_576}-byte limit for a drop file (GATEWAY_MAX_MESSAGE_SIZE plus ` +
        `1048576 bytes for the headers delivery adds); not read\n`,
    );
  });

  it("keeps taking mail while errors/ refuses writes (2,050 refused files waiting), and files them all once it recovers", async () => {
    // More refused files than the 2,000 names the daemon holds: each failed move used to hold its place for good.
    for (let i = 0; i < 2050; i++) drop(`bad-${String(i).padStart(4, "0")}`, dropMessageText({ subject: `bad ${i}` }));
    chmodSync(errorDir, 0o555);
    const daemon = startDaemon();
    await waitUntil("2,000 refused files tried", () => stderrLinesAbout(daemon, "bad-").length >= 2000, 60_000);
    for (let i = 0; i < 5; i++) drop(`good-${i}`, dropMessageText({ recipient: "alice@brightchain.org", subject: `good ${i}` }));
    await waitUntil(
      "good mail in cur/ while errors/ is unwritable",
      () => [0, 1, 2, 3, 4].every((i) => inCur(`good-${i}`)),
      60_000,
    );
    expect(newNames().filter((n) => n.startsWith("bad-"))).toHaveLength(2050);
    expect(stderrLinesAbout(daemon, "EACCES").length).toBeGreaterThan(0);

    chmodSync(errorDir, 0o750);
    await waitUntil("new/ empty once errors/ is writable", newIsEmpty, 90_000);
    expect(await stopDaemon(daemon)).toBe(0);
    const filed = readdirSync(errorDir);
    expect(filed.filter((n) => n.endsWith(".reason"))).toHaveLength(2050);
    expect(filed).toHaveLength(4100);
    expect(reasonOf("bad-2049")).toBe("no Delivered-To header: the envelope recipient is unknown\n");
    expect(daemon.stderr()).not.toContain("unexpected");
  });

  it("keeps a FIFO it cannot move to an errors/ on another filesystem in new/, without hanging or deleting it", async () => {
    const shm = mkdtempSync(join("/dev/shm", "bc-errors-"));
    try {
      chownSync(shm, nobody.uid, nobody.gid);
      mkfifo(join(newDir(), "fifo"));
      drop("good", dropMessageText({ recipient: "alice@brightchain.org" }));
      drop("refused", dropMessageText({ subject: "no recipient" }));
      const daemon = startDaemon({ GATEWAY_ERROR_DIR: join(shm, "errors") });
      await waitUntil("good in cur/", () => inCur("good"), 15_000);
      await waitUntil("refused copied across", () => existsSync(join(shm, "errors", "refused")), 15_000);
      await waitUntil("the FIFO retried", () => stderrLinesAbout(daemon, "a FIFO cannot be moved").length >= 2, 15_000);
      expect(await stopDaemon(daemon)).toBe(0);
      expect(newNames()).toEqual(["fifo"]);
      expect(lstatSync(join(newDir(), "fifo")).isFIFO()).toBe(true);
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });
});
