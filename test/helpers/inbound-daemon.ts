// The inbound daemon as the tests run it: in this process (the processor with the options every inbound unit
// test starts from) or as the built brightchain-inbound, a child process with its configuration in GATEWAY_*.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InboundProcessor, type InboundLogger, type InboundProcessorOptions } from "../../runtime/src/inbound/inbound-processor";
import type { Sink } from "../../runtime/src/inbound/sink";
import { makeDropMaildir } from "./inbound-drop";

/** Where a test's daemon reads and writes: the drop Maildir, errors/ and the embedded store. */
export interface InboundLayout {
  dropDir: string;
  errorDir: string;
  storeDir: string;
}

/**
 * A fresh temporary folder for one test (prefix names it, for whoever finds one left behind) with the drop
 * Maildir in it: incoming/{tmp,new,cur}; errors/ and store/ are named, not made (the daemon makes them).
 * Resolved through symbolic links, so paths compare equal to those the kernel reports for open descriptors.
 */
export function makeInboundSpool(prefix: string): InboundLayout & { dir: string } {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  const layout = { dir, dropDir: join(dir, "incoming"), errorDir: join(dir, "errors"), storeDir: join(dir, "store") };
  makeDropMaildir(layout.dropDir);
  return layout;
}

/**
 * The processor's options for a test: brightchain.org served, no spam engine, the default size limit, and
 * retries after 10 to 40 ms instead of seconds, so a retried hand-off is seen within a test's patience.
 */
export function inboundTestOptions(
  layout: Pick<InboundLayout, "dropDir" | "errorDir">,
  sink: Sink,
  logger: InboundLogger,
): InboundProcessorOptions {
  return {
    mailDropDir: layout.dropDir,
    errorDir: layout.errorDir,
    sink,
    spamEngine: "none",
    spamProbable: 5,
    servedDomains: ["brightchain.org"],
    maxMessageSize: 26_214_400,
    concurrency: 4,
    logger,
    retryInitialMs: 10,
    retryMaxMs: 40,
  };
}

export interface LoggedLine {
  level: "info" | "warn" | "error";
  message: string;
}

/** A logger that keeps every line in `logs`, which a test empties (`logs.length = 0`) before each case. */
export function recordingLogger(): { logger: InboundLogger; logs: LoggedLine[] } {
  const logs: LoggedLine[] = [];
  const logger: InboundLogger = {
    info: (message) => logs.push({ level: "info", message }),
    warn: (message) => logs.push({ level: "warn", message }),
    error: (message) => logs.push({ level: "error", message }),
  };
  return { logger, logs };
}

/**
 * Starts a processor with `options` (inboundTestOptions and the test's own) and adds its stop, then its sink's
 * close, to `cleanups`, for the test's afterEach to run.
 */
export async function startInboundProcessor(
  options: InboundProcessorOptions,
  cleanups: (() => Promise<void> | void)[],
): Promise<InboundProcessor> {
  const processor = new InboundProcessor(options);
  await processor.start();
  cleanups.push(async () => {
    await processor.stop();
    await options.sink.close();
  });
  return processor;
}

export interface InboundDaemon {
  child: ChildProcess;
  /** Everything the daemon wrote to stderr so far (its journal lines). */
  stderr: () => string;
  exited: Promise<number | null>;
}

export interface SpawnInboundOptions {
  /** Node options before the bundle (INBOUND_NODE_OPTIONS, as the unit runs it). */
  nodeOptions?: readonly string[];
  /** Another user to run as (the unit's brightchain user would not be root). */
  user?: { uid: number; gid: number };
}

/**
 * Starts the bundled brightchain-inbound at `daemonPath` on `layout`, serving brightchain.org with no spam
 * engine; `env` adds to or overrides that. Only PATH is taken from this process: nothing of the test's own
 * environment leaks into the daemon's configuration.
 */
export function spawnInboundDaemon(
  daemonPath: string,
  layout: InboundLayout,
  env: Record<string, string> = {},
  options: SpawnInboundOptions = {},
): InboundDaemon {
  const child = spawn(process.execPath, [...(options.nodeOptions ?? []), daemonPath], {
    env: {
      PATH: process.env.PATH,
      EMAIL_DOMAIN: "brightchain.org",
      GATEWAY_SPAM_ENGINE: "none",
      GATEWAY_MAIL_DROP_DIR: layout.dropDir,
      GATEWAY_ERROR_DIR: layout.errorDir,
      GATEWAY_STORE_DIR: layout.storeDir,
      ...env,
    },
    uid: options.user?.uid,
    gid: options.user?.gid,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, stderr: () => stderr, exited };
}

/** SIGKILLs each child still running and waits for it to exit; empties `children`. */
export async function killChildren(children: ChildProcess[]): Promise<void> {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  }
}
