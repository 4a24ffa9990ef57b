// The order of the built brightchain-inbound's writes and syncs, read from strace on real drops. kill -9 cannot
// test this (the page cache outlives the process; only a power cut loses what was never synced), so the test
// checks what a power cut would need: per message, in the order the kernel received the calls,
//   - a copied object's bytes are fsynced before the copy is renamed into objects/ (a linked object is the drop
//     file itself, fsynced by Postfix before it appeared in new/: the Maildir contract);
//   - the object's directory (objects/xx) is fsynced after the object is placed and before its index line is
//     written;
//   - the index is fdatasynced after that line and before the message is renamed from new/ to cur/;
//   - a refused message's reason file is fsynced before the message leaves new/ (rename or, across
//     filesystems, unlink); a copy into errors/ on another filesystem is fsynced, and errors/ with it, before
//     the original is unlinked.
// It asserts that contract, not the code's shape: any grouping, thread or call order that keeps it passes.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { dropMessage, dropMessageText, makeDropMaildir, waitUntil } from "../helpers/inbound-drop";
import { countFiles } from "../helpers/postfix-tools";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";
import { parseStraceOutput, succeeded, type Syscall } from "../helpers/syscall-trace";

const TRACED = "openat,fsync,fdatasync,rename,renameat,renameat2,write,pwrite64,writev,pwritev,link,linkat,unlink,unlinkat";
const SYNCS = new Set(["fsync", "fdatasync"]);

let buildDir: string;
let daemonPath: string;
const scratch: string[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  buildDir = mkdtempSync(join(tmpdir(), "bc-durability-build-"));
  daemonPath = await bundleRuntimeEntry("brightchain-inbound", buildDir);
});
afterAll(() => rmSync(buildDir, { recursive: true, force: true }));
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  }
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

interface Layout {
  dropDir: string;
  storeDir: string;
  errorDir: string;
}

interface Drop {
  name: string;
  sha3: string;
}

/** Good messages (each its own bytes, so its own object) and refused ones (no Delivered-To: no recipient). */
function dropBatch(dropDir: string, good: number, refused: number): { accepted: Drop[]; rejected: string[] } {
  const accepted: Drop[] = [];
  for (let i = 0; i < good; i++) {
    const text = dropMessageText({ recipient: `user${i}@brightchain.org`, subject: `durable ${i}` });
    const name = `1764000000.M${i}P1.gateway`;
    dropMessage(dropDir, name, text);
    accepted.push({ name, sha3: createHash("sha3-512").update(text).digest("hex") });
  }
  const rejected: string[] = [];
  for (let i = 0; i < refused; i++) {
    const name = `1764000001.M${i}P1.gateway`;
    dropMessage(dropDir, name, dropMessageText({ subject: `no recipient ${i}` }));
    rejected.push(name);
  }
  return { accepted, rejected };
}

/** Runs the daemon under strace until every drop left new/, stops it with SIGTERM, returns the parsed trace. */
async function traceDaemon(layout: Layout, expected: { cur: number; errors: number }): Promise<Syscall[]> {
  const traceFile = join(buildDir, `trace.${Date.now()}`);
  const strace = spawn(
    "strace",
    ["-f", "-y", "-s", "65536", "-e", `trace=${TRACED}`, "-o", traceFile, "--", process.execPath, daemonPath],
    {
      env: {
        PATH: process.env.PATH,
        EMAIL_DOMAIN: "brightchain.org",
        GATEWAY_MAIL_DROP_DIR: layout.dropDir,
        GATEWAY_ERROR_DIR: layout.errorDir,
        GATEWAY_STORE_DIR: layout.storeDir,
        GATEWAY_SPAM_ENGINE: "none",
        GATEWAY_SPAM_PROBABLE: "5",
        GATEWAY_MAX_MESSAGE_SIZE: "26214400",
        GATEWAY_INBOUND_CONCURRENCY: "4",
      },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  children.push(strace);
  let stderr = "";
  strace.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => strace.once("exit", (code) => resolve(code)));
  const counts = () => [join(layout.dropDir, "new"), join(layout.dropDir, "cur"), layout.errorDir].map(countFiles);
  await waitUntil(
    `${expected.cur} files in cur/ and ${expected.errors} in errors/`,
    () => counts().join() === [0, expected.cur, expected.errors].join(),
    60_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; new/, cur/, errors/ hold ${counts().join(", ")}; the daemon said:\n${stderr}`);
  });
  // strace's only child is the daemon; strace exits with the daemon's status once it has written every line.
  const daemonPid = Number(readFileSync(`/proc/${strace.pid}/task/${strace.pid}/children`, "utf8").trim());
  process.kill(daemonPid, "SIGTERM");
  expect(await exited, stderr).toBe(0);
  return parseStraceOutput(readFileSync(traceFile, "utf8"));
}

type Placement = "linked" | "copied";
/** How a refused message reached errors/: one rename, or (another filesystem) a copy, then an unlink. */
type RefusalExit = "renamed" | "copied";

/**
 * The ordering contract for each message, as the list of what broke it (empty when it held), and how each
 * object got into objects/.
 */
function durabilityViolations(
  calls: Syscall[],
  layout: Layout,
  accepted: Drop[],
  rejected: string[],
): { violations: string[]; placements: Placement[]; refusals: RefusalExit[] } {
  const ok = calls.filter(succeeded);
  const syncs = (path: string) => ok.filter((call) => SYNCS.has(call.name) && call.fdPath === path);
  const first = <T>(items: T[]) => (items.length === 0 ? undefined : items[0]);
  const before = (a: Syscall, b: Syscall) => a.returned < b.entered;
  const indexPath = join(layout.storeDir, "index.jsonl");
  const violations: string[] = [];
  const placements: Placement[] = [];
  const refusals: RefusalExit[] = [];

  for (const { name, sha3 } of accepted) {
    const objectDir = join(layout.storeDir, "objects", sha3.slice(0, 2));
    const object = join(objectDir, sha3.slice(2));
    const said = (what: string) => violations.push(`${name} (objects/${sha3.slice(0, 2)}/…): ${what}`);
    const placed = first(ok.filter((call) => /^(link|linkat|rename|renameat2?)$/.test(call.name) && call.paths[1] === object));
    const indexLine = first(
      ok.filter((call) => call.fdPath === indexPath && /write/.test(call.name) && call.args.includes(sha3)),
    );
    const toCur = first(
      ok.filter((call) => call.name.startsWith("rename") && call.paths[0] === join(layout.dropDir, "new", name)),
    );
    if (placed === undefined || indexLine === undefined || toCur === undefined) {
      said(
        `missing from the trace: ${placed ? "" : "object placement "}${indexLine ? "" : "index write "}${toCur ? "" : "rename to cur/"}`,
      );
      continue;
    }
    if (!toCur.paths[1]!.startsWith(join(layout.dropDir, "cur") + "/")) said(`left new/ for ${toCur.paths[1]}, not cur/`);
    if (placed.name.startsWith("link")) placements.push("linked");
    else {
      placements.push("copied");
      const copy = placed.paths[0]!;
      if (!syncs(copy).some((sync) => before(sync, placed)))
        said(`copy ${copy} renamed into objects/ before its bytes were fsynced`);
    }
    if (!syncs(objectDir).some((sync) => before(placed, sync) && before(sync, indexLine))) {
      said(`index line written without objects/${sha3.slice(0, 2)} fsynced between the object's placement and the write`);
    }
    if (!syncs(indexPath).some((sync) => before(indexLine, sync) && before(sync, toCur))) {
      said("renamed to cur/ without the index fdatasynced after its line was written");
    }
    if (!before(indexLine, toCur)) said("renamed to cur/ before its index line was written");
  }

  for (const name of rejected) {
    const said = (what: string) => violations.push(`${name} (refused): ${what}`);
    const source = join(layout.dropDir, "new", name);
    const reasonPath = join(layout.errorDir, `${name}.reason`);
    const left = first(ok.filter((call) => /^(rename|renameat2?|unlink|unlinkat)$/.test(call.name) && call.paths[0] === source));
    const reasonWritten = first(ok.filter((call) => call.fdPath === reasonPath && /write/.test(call.name)));
    if (left === undefined || reasonWritten === undefined) {
      said(`missing from the trace: ${left ? "" : "leaving new/ "}${reasonWritten ? "" : "reason write"}`);
      continue;
    }
    if (!syncs(reasonPath).some((sync) => before(reasonWritten, sync) && before(sync, left))) {
      said(`left new/ (${left.name}) before ${name}.reason was fsynced after its write`);
    }
    if (left.name.startsWith("rename")) {
      refusals.push("renamed");
      continue;
    }
    refusals.push("copied");
    const copy = join(layout.errorDir, name);
    const created = first(ok.filter((call) => call.name === "openat" && call.paths[0] === copy));
    if (created === undefined) {
      said(`unlinked from new/ with no copy created in ${layout.errorDir}`);
      continue;
    }
    if (!syncs(copy).some((sync) => before(sync, left))) said("unlinked from new/ before its copy in errors/ was fsynced");
    if (!syncs(layout.errorDir).some((sync) => before(created, sync) && before(sync, left))) {
      said("unlinked from new/ before errors/ was fsynced after the copy was created in it");
    }
  }
  return { violations, placements, refusals };
}

function scratchDir(parent: string): string {
  const dir = mkdtempSync(join(parent, "bc-durability-"));
  scratch.push(dir);
  return dir;
}

describe("brightchain-inbound's durability order, traced with strace on real drops", () => {
  it("store on the drop's filesystem: linked objects, directory fsync, index line, fdatasync, then cur/", async () => {
    const dir = scratchDir(tmpdir());
    const layout = { dropDir: join(dir, "incoming"), storeDir: join(dir, "store"), errorDir: join(dir, "errors") };
    makeDropMaildir(layout.dropDir);
    const { accepted, rejected } = dropBatch(layout.dropDir, 12, 2);

    const calls = await traceDaemon(layout, { cur: 12, errors: 4 });
    const { violations, placements, refusals } = durabilityViolations(calls, layout, accepted, rejected);
    expect(violations).toEqual([]);
    expect(placements).toEqual(accepted.map(() => "linked"));
    expect(refusals).toEqual(rejected.map(() => "renamed"));
    expect(readFileSync(join(layout.errorDir, `${rejected[0]}.reason`), "utf8")).toContain("no Delivered-To header");
  });

  it("store and errors/ on another filesystem (tmpfs): every copy durable before it counts, the same order after", async () => {
    const dir = scratchDir(tmpdir());
    const other = scratchDir("/dev/shm");
    expect(statSync(other).dev, "/dev/shm must be another filesystem than the temp dir").not.toBe(statSync(dir).dev);
    const layout = { dropDir: join(dir, "incoming"), storeDir: join(other, "store"), errorDir: join(other, "errors") };
    makeDropMaildir(layout.dropDir);
    const { accepted, rejected } = dropBatch(layout.dropDir, 12, 2);

    const calls = await traceDaemon(layout, { cur: 12, errors: 4 });
    const { violations, placements, refusals } = durabilityViolations(calls, layout, accepted, rejected);
    expect(violations).toEqual([]);
    expect(placements).toEqual(accepted.map(() => "copied"));
    expect(refusals).toEqual(rejected.map(() => "copied"));
  });
});
