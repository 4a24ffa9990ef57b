// The bundled daemons started by the rendered units under each Debian release's own systemd and nodejs (12:
// systemd 252 and Node 18; 13: 257 and Node 20), in a booted container (test/helpers/booted-release.ts): every
// sandbox option of docs/hardening.md in force, they must answer lookups, store and refuse drops, serve metrics
// and stop cleanly, with no EPERM, EAFNOSUPPORT or SIGSYS in the journal. For the file registry and embedded
// store (no AF_UNIX), a node API by IP address (IPAddressAllow=, no AF_UNIX) and by host name (AF_UNIX to
// resolve it). The IP filter itself is not exercised: systemd cannot load its BPF programs in a container. The
// debian-12 package layer is built on first use (about 3 minutes, cached beside the lab's base like debian-13's).
import { chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabRelease } from "../../infra/lab/constants";
import type { GatewayNode, HostFile } from "../../infra/model/types";
import { gatewayEnvFiles } from "../../infra/render/gateway-env";
import { runtimeUnitFiles, UNIT_DIR } from "../../infra/render/systemd";
import { examplePrimary, exampleSecrets } from "../fixtures/nodes";
import { bootRelease, type BootedRelease } from "../helpers/booted-release";
import { dropMessageText, waitUntil } from "../helpers/inbound-drop";
import { writeHostFiles } from "../helpers/render-to-dir";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const DAEMONS = ["brightchain-lookup", "brightchain-inbound"] as const;
const TOOLS = "/opt/bc-test";
const NODE_API_PORT = 18555;
const { uid, gid } = examplePrimary.drop;

/** Inside the container: one socketmap query per argument, each answer printed on a line. */
const SOCKETMAP_ASK = `const net = require("node:net");
const [port, ...queries] = process.argv.slice(2);
(async () => {
  for (const query of queries) {
    const answer = await new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), "127.0.0.1");
      let text = "";
      socket.on("data", (chunk) => { text += chunk; if (text.endsWith(",")) { socket.end(); resolve(text); } });
      socket.on("error", reject);
      socket.write(Buffer.byteLength(query) + ":" + query + ",");
    });
    console.log(answer);
  }
})().catch((error) => { console.log(error.code); process.exit(1); });
`;

/** Inside the container: a node API that knows alice and takes every message, counting the hand-offs. */
const NODE_API = `const http = require("node:http"); const fs = require("node:fs");
http.createServer((request, response) => {
  request.resume();
  request.on("end", () => {
    if (request.method === "GET" && request.url.startsWith("/recipients/")) {
      const address = decodeURIComponent(request.url.slice("/recipients/".length));
      if (!address.startsWith("alice@")) return response.writeHead(404).end();
      return response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ address }));
    }
    if (request.method === "PUT") fs.appendFileSync("/var/tmp/node-api-puts", request.url + "\\n");
    response.writeHead(request.method === "PUT" ? 201 : 400).end();
  });
}).listen(${NODE_API_PORT}, "127.0.0.1");
`;

/** Inside a unit with the lookup's sandbox: what the new options refuse, one line each. */
const SANDBOX_PROBE = `const os = require("node:os"); const fs = require("node:fs"); const net = require("node:net");
const attempt = (what, f) => { try { f(); console.log(what + ": allowed"); } catch (e) { console.log(what + ": " + (e.info?.code ?? e.code)); } };
attempt("setpriority", () => os.setPriority(10));
attempt("chown", () => fs.chownSync("/etc/brightchain/recipients", 0, 0));
console.log("shadow group: " + fs.statSync("/etc/shadow").gid);
const server = net.createServer().on("error", (e) => console.log("unix socket: " + e.code));
server.listen("/tmp/probe.sock", () => { console.log("unix socket: allowed"); server.close(); });
`;

type Variant = "local" | "address" | "name";

function variantNode(variant: Variant): GatewayNode {
  if (variant === "local") return examplePrimary;
  const url = `http://${variant === "address" ? "127.0.0.1" : "node-api.test"}:${NODE_API_PORT}`;
  return {
    ...examplePrimary,
    lookup: { ...examplePrimary.lookup, registry: { kind: "http", url } },
    runtime: { ...examplePrimary.runtime, nodeUrl: url },
  };
}

function runtimeFiles(node: GatewayNode): HostFile[] {
  const units = runtimeUnitFiles(node).filter((file) => DAEMONS.some((name) => file.path === `${UNIT_DIR}/${name}.service`));
  return [...units, ...gatewayEnvFiles(node, exampleSecrets)];
}

const RELEASES: LabRelease[] = ["debian-13", "debian-12"];

describe.each(RELEASES)("the runtime sandboxed by its rendered units on %s", (release) => {
  const progress = (line: string): void => console.log(`[${release} boot] ${line}`);
  const bundleDir = mkdtempSync(join(tmpdir(), "bc-sandbox-bundle-"));
  let host: BootedRelease | undefined;
  let drops = 0;

  const mustRun = async (argv: string[]): Promise<string> => {
    const result = await host!.exec(argv);
    expect(result.exitCode, `${argv.join(" ")}:\n${result.output}`).toBe(0);
    return result.stdout;
  };
  const spool = (...parts: string[]): string => join(host!.root, examplePrimary.drop.spoolDir, ...parts);
  const count = (dir: string): number => readdirSync(dir).length;
  /** The daemons' journal since the last call (journalctl's cursor file keeps the place). */
  const newJournal = async (): Promise<string> => {
    const argv = ["journalctl", "-q", "--no-pager", "-o", "cat", "--cursor-file=/var/tmp/journal-cursor"];
    const result = await host!.exec([...argv, ...DAEMONS.flatMap((d) => ["-u", d])]);
    // systemd 252 exits 1 when nothing matches yet.
    expect(result.exitCode === 0 || result.stdout === "", result.output).toBe(true);
    return result.stdout;
  };

  beforeAll(async () => {
    const artifacts = await Promise.all(DAEMONS.map((name) => bundleRuntimeEntry(name, bundleDir)));
    host = await bootRelease(release, progress, async (root, chrootSh) => {
      writeHostFiles(root, [
        ...runtimeFiles(examplePrimary),
        ...artifacts.map((path, i) => ({
          path: `${examplePrimary.runtime.installDir}/${DAEMONS[i]}.cjs`,
          mode: 0o755,
          owner: "root",
          group: "root",
          content: readFileSync(path, "utf8"),
          notify: [],
        })),
      ]);
      mkdirSync(join(root, TOOLS), { recursive: true });
      writeFileSync(join(root, TOOLS, "socketmap-ask.js"), SOCKETMAP_ASK);
      writeFileSync(join(root, TOOLS, "node-api.js"), NODE_API);
      writeFileSync(join(root, TOOLS, "probe.js"), SANDBOX_PROBE);
      writeFileSync(join(root, "etc/hosts"), "127.0.0.1\tlocalhost node-api.test\n::1\tlocalhost\n");
      const { spoolDir, mailDropDir, errorDir } = examplePrimary.drop;
      const directories = [spoolDir, mailDropDir, ...["tmp", "new", "cur"].map((d) => `${mailDropDir}/${d}`), errorDir];
      const prepared = await chrootSh(
        [
          "set -e",
          `groupadd -g ${gid} brightchain`,
          `useradd -r -u ${uid} -g ${gid} -d ${spoolDir} -s /usr/sbin/nologin brightchain 2>/dev/null`,
          ...[...directories, examplePrimary.runtime.storeDir].map((d) => `install -d -o ${uid} -g ${gid} -m 0750 ${d}`),
          `chgrp brightchain /etc/brightchain/*.env && chmod 0640 /etc/brightchain/*.env`,
          `printf 'alice@brightchain.org\\n' > /etc/brightchain/recipients`,
          // Only what this test starts runs: the layer's mail daemons would only cost the machine CPU.
          "systemctl mask --quiet postfix.service postfix@-.service opendkim.service spamd.service spamass-milter.service rspamd.service dovecot.service redis-server.service ssh.service",
        ].join("\n"),
      );
      if (prepared.exitCode !== 0) throw new Error(`preparing the ${release} root:\n${prepared.output}`);
    });
    await newJournal();
  }, 1_800_000);

  afterAll(async () => {
    await host?.stop();
    rmSync(bundleDir, { recursive: true, force: true });
  }, 60_000);

  it.each(["local", "address", "name"] as const)(
    "%s: both daemons start, answer, store, refuse, serve metrics and stop cleanly",
    async (variant) => {
      const node = variantNode(variant);
      writeHostFiles(host!.root, runtimeFiles(node));
      await mustRun(["chgrp", "brightchain", "/etc/brightchain/gateway.env", "/etc/brightchain/brightchain-send.env"]);
      await mustRun(["systemctl", "daemon-reload"]);
      if (variant !== "local")
        await mustRun(["systemd-run", "--collect", "--unit=bc-node-api", "/usr/bin/node", `${TOOLS}/node-api.js`]);
      try {
        await mustRun(["systemctl", "start", ...DAEMONS]);
        const ask = async (): Promise<string> =>
          (
            await host!.exec([
              "node",
              `${TOOLS}/socketmap-ask.js`,
              String(node.lookup.port),
              "virtual alice@brightchain.org",
              "virtual mallory@brightchain.org",
            ])
          ).stdout;
        await waitUntil("the socketmap to answer", async () => (await ask()).startsWith("24:"), 20_000, 200);
        expect(await ask()).toBe("24:OK alice@brightchain.org,\n9:NOTFOUND ,\n");

        const cur = count(spool("incoming", "cur"));
        const errors = count(spool("errors"));
        for (const recipient of ["alice@brightchain.org", "bob@example.net", "alice@brightchain.org"]) {
          const name = `1765000000.M${++drops}P1.sandbox`;
          const temporary = spool("incoming", "tmp", name);
          writeFileSync(temporary, dropMessageText({ recipient, subject: `${variant} ${drops}` }), { mode: 0o600 });
          chownSync(temporary, uid, gid);
          renameSync(temporary, spool("incoming", "new", name));
        }
        await waitUntil("every drop to leave new/", () => count(spool("incoming", "new")) === 0, 30_000, 100);
        expect(count(spool("incoming", "cur"))).toBe(cur + 2);
        expect(count(spool("errors"))).toBe(errors + 2); // the message and its .reason

        for (const port of [node.metrics.lookupPort, node.metrics.inboundPort]) {
          const scrape = await host!.exec([
            "node",
            "-e",
            `fetch("http://127.0.0.1:${port}/metrics").then((r) => r.text()).then((t) => console.log(t))`,
          ]);
          // prom-client reads /proc/self (ProcSubset=pid, ProtectProc=invisible): the process metrics must be there.
          expect(scrape.stdout, scrape.output).toMatch(/^process_open_fds \d+$/m);
        }
      } finally {
        await host!.exec(["systemctl", "stop", ...DAEMONS, ...(variant === "local" ? [] : ["bc-node-api"])]);
      }
      const journal = await newJournal();
      expect(journal).toContain("brightchain-lookup: stopped");
      expect(journal).toMatch(/brightchain-inbound: stopped: 2 delivered, 1 moved to errors, 0 retries/);
      expect(
        journal.split("\n").filter((line) => /EPERM|EACCES|EAFNOSUPPORT|SIGSYS|not permitted|status=31|core-dump/i.test(line)),
      ).toEqual([]);
      for (const name of DAEMONS) {
        expect(await mustRun(["systemctl", "show", "-p", "Result", "-p", "NRestarts", "-p", "ExecMainStatus", name])).toBe(
          "Result=success\nNRestarts=0\nExecMainStatus=0\n",
        );
      }
    },
    120_000,
  );

  it("the sandbox is in force: seccomp, no capabilities, a private user namespace, no AF_UNIX", async () => {
    writeHostFiles(host!.root, runtimeFiles(examplePrimary));
    await mustRun(["systemctl", "daemon-reload"]);
    await mustRun(["systemctl", "start", "brightchain-lookup"]);
    try {
      const pid = (await mustRun(["systemctl", "show", "-p", "MainPID", "--value", "brightchain-lookup"])).trim();
      // Until it execs node, the main process is systemd's, still setting the sandbox up (sd-executor on 257).
      await waitUntil(
        "the lookup's main process to be node",
        async () => (await host!.exec(["cat", `/proc/${pid}/comm`])).stdout.trim() === "node",
        20_000,
        100,
      );
      const status = await mustRun(["cat", `/proc/${pid}/status`]);
      expect(status).toMatch(/^Seccomp:\s+2$/m);
      expect(status).toMatch(/^CapBnd:\s+0+$/m);
      expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
      // PrivateUsers=yes: root and brightchain are the only users mapped.
      const uidMap = (await mustRun(["cat", `/proc/${pid}/uid_map`])).trim().split("\n");
      expect(uidMap.map((line) => line.trim().split(/\s+/).join(" "))).toEqual(["0 0 1", `${uid} ${uid} 1`]);
    } finally {
      await host!.exec(["systemctl", "stop", "brightchain-lookup"]);
    }
    // The lookup's unit with the probe as its program: the same sandbox, asked to do what it must not.
    const unit = runtimeUnitFiles(examplePrimary).find((file) => file.path === `${UNIT_DIR}/brightchain-lookup.service`)!;
    writeHostFiles(host!.root, [
      {
        ...unit,
        path: `${UNIT_DIR}/bc-sandbox-probe.service`,
        content: unit.content
          .replace(/^ExecStart=.*$/m, `ExecStart=/usr/bin/node ${TOOLS}/probe.js`)
          .replace(/^Restart=.*$/m, "Restart=no"),
      },
    ]);
    await mustRun(["systemctl", "daemon-reload"]);
    await mustRun(["systemctl", "start", "--wait", "bc-sandbox-probe"]);
    const said = await mustRun(["journalctl", "-q", "--no-pager", "-o", "cat", "-u", "bc-sandbox-probe"]);
    expect(said).toContain("setpriority: EPERM"); // @resources
    expect(said).toContain("chown: EPERM"); // @privileged
    expect(said).toContain("shadow group: 65534"); // PrivateUsers: group shadow does not exist in there
    expect(said).toContain("unix socket: EAFNOSUPPORT"); // RestrictAddressFamilies without AF_UNIX
  }, 120_000);
});
