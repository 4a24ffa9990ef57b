// brightchain-lookup as systemd runs it: configuration from the environment, exit 78 (EX_CONFIG) naming the
// variable on a bad value, one log line per event on stderr, exit 0 after SIGTERM.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";

const BIN = resolve(__dirname, "../../runtime/bin/brightchain-lookup.ts");
const dir = mkdtempSync(join(tmpdir(), "lookup-daemon-"));
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  await new Promise((done) => server.close(done));
  return port;
}

interface Daemon {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
  waitForLog(pattern: RegExp, deadlineMs?: number): Promise<void>;
}

function startDaemon(env: Record<string, string>): Daemon {
  // Only what the test sets: the daemon must not pick up this machine's GATEWAY_* variables.
  const child = spawn(process.execPath, ["--import", "tsx", BIN], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(child);
  let stderr = "";
  const listeners = new Set<() => void>();
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
    for (const listener of listeners) listener();
  });
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  return {
    child,
    stderr: () => stderr,
    exited,
    waitForLog: (pattern, deadlineMs = 10_000) =>
      new Promise<void>((done, fail) => {
        const check = () => {
          if (!pattern.test(stderr)) return;
          listeners.delete(check);
          clearTimeout(timer);
          done();
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          fail(new Error(`no log line matching ${pattern} within ${deadlineMs} ms; stderr:\n${stderr}`));
        }, deadlineMs);
        listeners.add(check);
        void exited.then(() => {
          check();
          if (listeners.has(check)) {
            listeners.delete(check);
            clearTimeout(timer);
            fail(new Error(`daemon exited before logging ${pattern}; stderr:\n${stderr}`));
          }
        });
        check();
      }),
  };
}

function probe(port: number, line: string): Promise<string> {
  return new Promise((done, fail) => {
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.on("data", (chunk) => (answer += chunk.toString()));
    socket.on("error", fail);
    socket.on("close", () => done(answer));
    socket.end(`${line}\n`);
  });
}

describe("brightchain-lookup refuses bad configuration with EX_CONFIG", () => {
  const registry = join(dir, "good-recipients");
  writeFileSync(registry, "alice@brightchain.org\n");

  it.each<{ name: string; env: Record<string, string>; message: RegExp }>([
    {
      name: "EMAIL_DOMAIN missing",
      env: { GATEWAY_REGISTRY_FILE: registry },
      message: /EMAIL_DOMAIN is not set; expected a mail domain/,
    },
    {
      name: "a port that is not a number",
      env: { EMAIL_DOMAIN: "brightchain.org", GATEWAY_REGISTRY_FILE: registry, GATEWAY_LOOKUP_PORT: "25x" },
      message: /GATEWAY_LOOKUP_PORT="25x" is invalid; expected an integer from 1 to 65535/,
    },
    {
      name: "no registry at all",
      env: { EMAIL_DOMAIN: "brightchain.org" },
      message: /GATEWAY_REGISTRY_FILE is not set; expected the recipient file path/,
    },
    {
      name: "a registry file that does not exist",
      env: { EMAIL_DOMAIN: "brightchain.org", GATEWAY_REGISTRY_FILE: join(dir, "missing") },
      message: /GATEWAY_REGISTRY_FILE=".*missing" is invalid; expected a readable file of recipient addresses \(ENOENT\)/,
    },
  ])("$name", async ({ env, message }) => {
    const daemon = startDaemon(env);
    expect(await daemon.exited).toBe(78);
    expect(daemon.stderr()).toMatch(/^brightchain-lookup: not started: /);
    expect(daemon.stderr()).toMatch(message);
  });

  it("a registry file with a bad line, naming the line", async () => {
    const bad = join(dir, "bad-recipients");
    writeFileSync(bad, "alice@brightchain.org\n# fine\nbob at brightchain.org\n");
    const daemon = startDaemon({ EMAIL_DOMAIN: "brightchain.org", GATEWAY_REGISTRY_FILE: bad });
    expect(await daemon.exited).toBe(78);
    expect(daemon.stderr()).toContain(`${bad} line 3: "bob at brightchain.org" is not a recipient address`);
  });
});

describe("brightchain-lookup serving", () => {
  it("answers the line probe, logs a reload, and exits 0 on SIGTERM", async () => {
    const registry = join(dir, "recipients");
    writeFileSync(registry, "alice@brightchain.org\n");
    const port = await freePort();
    const daemon = startDaemon({
      EMAIL_DOMAIN: "brightchain.org",
      GATEWAY_REGISTRY_FILE: registry,
      GATEWAY_LOOKUP_PORT: String(port),
    });
    await daemon.waitForLog(/serving socketmap "virtual" for brightchain.org on 127\.0\.0\.1:\d+/);
    expect(await probe(port, "virtual alice@brightchain.org")).toBe("OK alice@brightchain.org\n");
    expect(await probe(port, "virtual bob@brightchain.org")).toBe("NOTFOUND\n");

    writeFileSync(join(dir, "recipients.tmp"), "alice@brightchain.org\nbob@brightchain.org\n");
    renameSync(join(dir, "recipients.tmp"), registry);
    await daemon.waitForLog(/reloaded .*recipients: 2 recipients/);
    expect(await probe(port, "virtual bob@brightchain.org")).toBe("OK bob@brightchain.org\n");

    daemon.child.kill("SIGTERM");
    expect(await daemon.exited).toBe(0);
    expect(daemon.stderr()).toMatch(/SIGTERM: finishing in-flight lookups\nbrightchain-lookup: stopped\n$/);
  });
  it("keeps serving its users while the registry file is missing, and says so once", async () => {
    const registry = join(dir, "synced-recipients");
    writeFileSync(registry, "alice@brightchain.org\n");
    const port = await freePort();
    const daemon = startDaemon({
      EMAIL_DOMAIN: "brightchain.org",
      GATEWAY_REGISTRY_FILE: registry,
      GATEWAY_LOOKUP_PORT: String(port),
    });
    await daemon.waitForLog(/serving socketmap/);
    rmSync(registry);
    await daemon.waitForLog(/reload refused, previous recipients kept: ENOENT/);
    expect(await probe(port, "virtual alice@brightchain.org")).toBe("OK alice@brightchain.org\n");

    writeFileSync(`${registry}.tmp`, "alice@brightchain.org\nbob@brightchain.org\n");
    renameSync(`${registry}.tmp`, registry);
    await daemon.waitForLog(/reloaded .*synced-recipients: 2 recipients/);
    expect(await probe(port, "virtual bob@brightchain.org")).toBe("OK bob@brightchain.org\n");
    expect(daemon.stderr().match(/reload refused/g)).toHaveLength(1);
  });
});
