// Deploy engine 1 on real hosts, then the end-to-end mail scenarios on what it deployed. The bring-up is
// `npm run lab` itself (runLabDemo, what `gateway lab demo` runs): lab up with each host on its stack's release
// (the primary on Debian 13, the relay on Debian 12), both stacks deployed by the Pulumi program's own commands
// over SSH, the demo message sent from outside and found in the store. That first apply is then checked (every
// command, in dependency order), a second run executes nothing and leaves every host file byte-identical and
// each host with exactly the plan's manifest; then every scenario of test/helpers/lab-scenarios.ts, and
// lab down. test/lab/ansible.test.ts runs the same scenarios on nodes the playbook
// deployed, test/lab/swapped.test.ts on the fleet with the releases swapped.
import { createHash } from "node:crypto";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deployStackToLab, labStackConfig, type DeployResult } from "../../infra/deploy";
import { MAX_STEPS_IN_FLIGHT } from "../../infra/pulumi/gatewayHost";
import { LAB_GATEWAY_IP, LAB_STATE_DIR, type LabHostName } from "../../infra/lab/constants";
import { formatReport, runDoctor, type DoctorReport } from "../../infra/doctor";
import { labAcmePaths, signWithLabCa } from "../../infra/lab/acme";
import { runLabDemo, type LabDemoResult } from "../../infra/lab/demo";
import { labSshPaths } from "../../infra/lab/hosts";
import { labDown, labPublishZone, labStatus } from "../../infra/lab/lab";
import { labDnsPaths, labZoneTrustAnchor } from "../../infra/lab/dns";
import { readLabState } from "../../infra/lab/state";
import { labWorkerScriptFile } from "../../infra/lab/workers";
import { waitFor } from "../../infra/lab/process";
import { parseGatewayConfig, parseGatewaySecrets, readStackConfigFiles } from "../../infra/model/config";
import type { HostFile } from "../../infra/model/types";
import { hostPlan, type HostStep } from "../../infra/plan";
import { readRuntimeArtifacts } from "../../infra/plan/artifacts";
import { hostDirectories, hostFiles } from "../../infra/render";
import { expectedManifest, hostManifest, type HostManifest, type ManagedPaths } from "../helpers/lab-ansible";
import {
  on,
  shellQuote,
  storeEntries,
  swaksFromOutside,
  uniqueSubject,
  waitForStoreEntries,
  waitOnHost,
} from "../helpers/lab-mail";
import {
  makeOutsideEnforceDane,
  makeOutsideEnforceMtaSts,
  undoOutsideDane,
  undoOutsideMtaSts,
} from "../helpers/lab-strict-sender";
import {
  claimLab,
  describeMailScenarios,
  labTimer,
  readyGatewaysForMail,
  setUpOutside,
  waitForMailSettled,
} from "../helpers/lab-scenarios";

const repo = path.resolve(__dirname, "../..");
/** What the demo builds (npm run build -w runtime) and deploys. */
const dist = path.join(repo, "runtime", "dist");
const timer = labTimer();
const suiteStarted = Date.now();
const STACKS = [
  { stack: "primary", host: "mail" },
  { stack: "relay", host: "mail2" },
] as const satisfies readonly { stack: string; host: LabHostName }[];

let releaseLab: (() => void) | undefined;
let demo: LabDemoResult | undefined;
const demoLines: string[] = [];
let first: Record<string, DeployResult> = {};
const second: Record<string, DeployResult> = {};
const hashesBefore: Record<string, string> = {};
const hashesAfter: Record<string, string> = {};
const manifestsAfter: Record<string, HostManifest> = {};

/** The stack's host files as the program renders them for the lab. */
function labHostFiles(stack: string): HostFile[] {
  const lab = labStackConfig(stack, repo);
  const flat = { ...readStackConfigFiles(repo, stack).values, ...lab.overrides, ...lab.secrets };
  return hostFiles(parseGatewayConfig(flat), parseGatewaySecrets(flat));
}

/** The steps the program turns into remote commands, with the built runtime this test installs. */
function labHostPlan(stack: string): HostStep[] {
  const lab = labStackConfig(stack, repo);
  const node = parseGatewayConfig({ ...readStackConfigFiles(repo, stack).values, ...lab.overrides });
  // What the program installs from the build: the *.cjs, not the source maps beside them.
  const artifacts = readRuntimeArtifacts(dist, "runtime/dist");
  return hostPlan(node, labHostFiles(stack), hostDirectories(node), artifacts, { sshPort: 22 });
}

/** What the stack's plan manages on its host, as `gateway render`'s manifest lists it. */
function managedPaths(stack: string): ManagedPaths {
  const lab = labStackConfig(stack, repo);
  const node = parseGatewayConfig({ ...readStackConfigFiles(repo, stack).values, ...lab.overrides });
  const octal = (mode: number): string => `0${mode.toString(8).padStart(3, "0")}`;
  return {
    files: labHostFiles(stack).map((file) => ({
      path: file.path,
      mode: octal(file.mode),
      owner: file.owner,
      group: file.group,
      sha256: createHash("sha256").update(file.content).digest("hex"),
      notify: file.notify,
    })),
    directories: hostDirectories(node).map((dir) => ({
      path: dir.path,
      mode: octal(dir.mode),
      owner: dir.owner,
      group: dir.group,
    })),
  };
}

function runtimeShas(): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dist)
      .filter((name) => name.endsWith(".cjs"))
      .map((name) => [
        name,
        createHash("sha256")
          .update(readFileSync(path.join(dist, name)))
          .digest("hex"),
      ]),
  );
}

/** sha256, mode and owner of every host file of the stack, as the host has them. */
async function hostFileFingerprints(stack: string, host: LabHostName): Promise<string> {
  const paths = labHostFiles(stack)
    .map((file) => `'${file.path}'`)
    .join(" ");
  return on(host, `cd / && sha256sum ${paths} && stat -c '%n %a %U:%G' ${paths}`);
}

async function deployAll(into: Record<string, DeployResult>, label: string): Promise<void> {
  for (const { stack } of STACKS) {
    into[stack] = await timer.timed(`${label} ${stack}`, () =>
      deployStackToLab({ stack, projectDir: repo, runtimeDist: dist, progress: () => undefined }),
    );
  }
}

/** `gateway` through its CLI, as a user runs it (the demo's printed command to look at the store). */
async function gateway(args: string[]): Promise<{ status: number | null; output: string; stdout: string }> {
  const child = spawn("node", ["bin/gateway.cjs", ...args], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill(), 600_000);
  const status = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  });
  clearTimeout(timer);
  return { status, stdout, output: `${stdout}${stderr}` };
}

beforeAll(async () => {
  releaseLab = await claimLab();
  // outside becomes the rest of the internet as soon as the demo's lab is up, while the demo deploys.
  const outside = timer.timed("outside setup", async () => {
    await waitFor(
      { host: "lab", step: "the demo's lab up" },
      600_000,
      async () => (labStatus().up ? true : undefined),
      () => "the lab is not up",
    );
    await setUpOutside();
  });
  // Settled before a failed deploy ends the hook: afterAll's lab down must not cut outside's install short.
  const outsideSettled = outside.then(
    () => undefined,
    () => undefined,
  );
  try {
    demo = await timer.timed("demo (lab up, first apply of both stacks, message)", () =>
      runLabDemo(repo, (line) => demoLines.push(line), { holdsLabLock: true, progress: () => undefined }),
    );
    first = demo.deploys;
    for (const { stack } of STACKS) timer.timings[`first apply ${stack}`] = first[stack]!.seconds;
    for (const { stack, host } of STACKS) hashesBefore[stack] = await hostFileFingerprints(stack, host);
    await deployAll(second, "second apply");
    for (const { stack, host } of STACKS) {
      hashesAfter[stack] = await hostFileFingerprints(stack, host);
      manifestsAfter[stack] = await hostManifest(host, managedPaths(stack), Object.keys(runtimeShas()));
    }
  } finally {
    await outsideSettled;
  }
  await outside;
  await readyGatewaysForMail();
  timer.timings["setup total"] = (Date.now() - suiteStarted) / 1000;
}, 3_600_000);

afterAll(async () => {
  try {
    // Down under the lock this file holds: releasing it first for the CLI's own `lab down` let a waiting suite
    // take the lock and then wait 10 minutes for this lab to go away, while our down waited for the lock.
    if (releaseLab) await timer.timed("lab down", () => labDown({ progress: () => undefined }));
    expect(labStatus().up).toBe(false);
  } finally {
    releaseLab?.();
    timer.timings["whole suite"] = (Date.now() - suiteStarted) / 1000;
    console.log(`engine 1 lab timings (s): ${JSON.stringify(timer.timings)}`);
  }
}, 600_000);

describe("npm run lab (the demo) as the bring-up", () => {
  it("ends with the demo message in the store, and the command it prints to look at it works", async () => {
    const said = demoLines.join("\n");
    expect(said).toMatch(
      /landed in the BrightChain store on mail\.brightchain\.org:\n {2}recipient demo@brightchain\.org, folder inbox, subject "Hello from outside\.test"/,
    );
    expect(said).toMatch(/\[demo\] deploying stack primary to mail \(gateway:os debian-13\)/);
    expect(said).toMatch(/\[demo\] deploying stack relay to mail2 \(gateway:os debian-12\)/);
    const look = /npx gateway lab exec mail (.+ list .+)/.exec(said);
    expect(look, said).not.toBeNull();
    const list = await gateway(["lab", "exec", "mail", ...look![1]!.split(" ")]);
    expect(list.status, list.output).toBe(0);
    expect(list.stdout).toMatch(/\tinbox\tdemo@brightchain\.org\talice@outside\.test\tHello from outside\.test\t/);
  });
});

describe("deploy engine 1: the Pulumi program's own commands on lab hosts", () => {
  it("ran every remote command of both stacks on the first apply, in the program's dependency order", () => {
    for (const { stack } of STACKS) {
      // The teardown (its delete is the destroy) runs beside the steps, outside their order.
      const commands = first[stack]!.resources.filter((r) => r.type === "command:remote:Command" && r.name !== `node-teardown`);
      expect(commands.length).toBeGreaterThan(20);
      expect(commands.every((r) => r.action === "create")).toBe(true);
      // Every step started only after each step it depends on (the plan's `after`, the program's dependsOn) ended.
      const byName = new Map(commands.map((r) => [r.name, r]));
      for (const step of labHostPlan(stack)) {
        const resource = byName.get(`node-${step.id}`)!;
        expect(resource, step.id).toBeDefined();
        for (const dependency of step.after) {
          expect(resource.startedAt!, `${step.id} after ${dependency}`).toBeGreaterThanOrEqual(
            byName.get(`node-${dependency}`)!.finishedAt!,
          );
        }
      }
      expect(commands[0]!.name).toBe(`node-os-release`);
      expect(commands.at(-1)!.name).toBe(`node-verify`);
    }
  });

  it(`never had more than ${MAX_STEPS_IN_FLIGHT} SSH sessions open to one host: the program's own cap, not the engine's`, () => {
    for (const { stack } of STACKS) {
      const commands = first[stack]!.resources.filter((r) => r.type === "command:remote:Command");
      const edges = commands.flatMap((r) => [
        { at: r.startedAt!, change: 1 },
        { at: r.finishedAt!, change: -1 },
      ]);
      // Ends before starts at the same millisecond: a lane's next step starts as its predecessor ends.
      edges.sort((a, b) => a.at - b.at || a.change - b.change);
      let open = 0;
      let peak = 0;
      for (const edge of edges) peak = Math.max(peak, (open += edge.change));
      expect(peak, stack).toBeLessThanOrEqual(MAX_STEPS_IN_FLIGHT);
      expect(peak, `${stack}: steps did run side by side`).toBeGreaterThan(1);
    }
  });

  it("leaves Postfix listening on 25 on both nodes", async () => {
    // postfix.service is Debian's wrapper and stays "active" when master has exited: ask the port.
    for (const host of ["mail", "mail2"] as const)
      expect(await on(host, "ss -Htln 'sport = :25'"), host).toMatch(/0\.0\.0\.0:25/);
  });

  it("published the stacks' records to the lab DNS: outside sees both MX and the primary's DKIM key", async () => {
    const mx = (await on("outside", "dig +short MX brightchain.org")).trim().split("\n").sort();
    expect(mx).toEqual(["10 mail.brightchain.org.", "20 mail2.brightchain.org."]);
    // The key in DNS is the public half of the private key the primary signs with.
    const published = (await on("outside", "dig +short TXT default._domainkey.brightchain.org")).replace(/["\s]/g, "");
    const publicKey = (
      await on("mail", "openssl rsa -in /etc/dkim/default.private -pubout -outform DER 2>/dev/null | base64 -w0")
    ).trim();
    expect(publicKey.length).toBeGreaterThan(300);
    expect(published).toBe(`v=DKIM1;h=sha256;k=rsa;p=${publicKey}`);
    expect(await on("outside", `dig +short TXT brightchain.org @${LAB_GATEWAY_IP}`)).toContain("ip4:10.231.0.10");
    expect(await on("outside", "dig +short AAAA mail.brightchain.org")).toBe("");
  });

  it("executes nothing on the second apply: every resource's inputs are identical and no zone is republished", () => {
    for (const { stack } of STACKS) {
      expect(second[stack]!.executed.map((r) => `${r.name}: ${r.action} ${r.changedInputs.join(",")}`)).toEqual([]);
      expect(second[stack]!.zonesPublished).toEqual([]);
      const inputs = (result: DeployResult) =>
        Object.fromEntries(result.resources.map((r) => [`${r.type}::${r.name}`, r.inputsHash]));
      expect(inputs(second[stack]!)).toEqual(inputs(first[stack]!));
    }
  });

  it("leaves every host file byte-identical, with its mode and owner, and equal to what the program renders", () => {
    for (const { stack } of STACKS) {
      expect(hashesAfter[stack]).toBe(hashesBefore[stack]);
      for (const file of labHostFiles(stack)) {
        const sha = createHash("sha256").update(file.content).digest("hex");
        expect(hashesAfter[stack], file.path).toContain(`${sha}  ${file.path}\n`);
        expect(hashesAfter[stack], file.path).toContain(`${file.path} ${file.mode.toString(8)} ${file.owner}:${file.group}\n`);
      }
    }
  });

  it("leaves each host with exactly the plan's manifest: files, directories and runtime (test/lab/ansible.test.ts holds the playbook to the same)", () => {
    for (const { stack } of STACKS)
      expect(manifestsAfter[stack], stack).toEqual(expectedManifest(managedPaths(stack), runtimeShas()));
  });
});

describe("gateway doctor on the fleet engine 1 deployed (DNS through the lab's resolver, --on-host over SSH)", () => {
  const doctor = async (stack: string) => {
    const lab = labStackConfig(stack, repo);
    return runDoctor({
      stack,
      projectDir: repo,
      configOverrides: { ...lab.overrides, ...lab.secrets },
      resolvers: [LAB_GATEWAY_IP],
      // pebble's root (the nodes' certificates) and the lab CA (the Workers host's, like Cloudflare's public one).
      extraCa: [
        readFileSync(labAcmePaths(LAB_STATE_DIR).pebbleRoot, "utf8"),
        readFileSync(labAcmePaths(LAB_STATE_DIR).labCaCert, "utf8"),
      ],
      ssh: true,
      privateKey: readFileSync(labSshPaths(LAB_STATE_DIR).privateKey, "utf8"),
      // The lab has no parent zone to hold brightchain.org's DS: knot's DS stands in for the registrar's.
      trustAnchors: [await labZoneTrustAnchor(labDnsPaths(LAB_STATE_DIR), "brightchain.org")],
    });
  };
  // knot is authoritative and never validates, so the resolver's verdict (the AD bit) can only be '!' here; the
  // chain itself (DNSKEY signed, DS against the anchor, MX signed) is doctor's own validation, in the other rows.
  const resolverVerdict = (check: { subject: string; status: string }) =>
    check.subject === "AD MX brightchain.org" && check.status === "warn";
  const failing = (report: DoctorReport) =>
    report.checks.filter((c) => c.status !== "ok" && !resolverVerdict(c)).map((c) => `${c.subject}: ${c.detail}`);

  it("is green right after deploy on both nodes: records by value, the MTA-STS policy the program's Worker serves, PTR, STARTTLS, TLS floor, no open relay, closed ports, the host's lookup and queues", async () => {
    for (const { stack } of STACKS) {
      const report = await doctor(stack);
      expect(failing(report), formatReport(report)).toEqual([]);
      const subjects = report.checks.map((c) => c.subject);
      expect(subjects).toEqual(
        expect.arrayContaining(["MX brightchain.org", `open relay ${stack === "primary" ? "10.231.0.10" : "10.231.0.20"}:25`]),
      );
      expect(subjects.some((s) => s.startsWith("lookup "))).toBe(true);
      if (stack === "primary") {
        expect(subjects).toEqual(
          expect.arrayContaining(["TXT brightchain.org (v=spf1)", "TLS ≥ 1.2 10.231.0.10:587", "PTR 10.231.0.10"]),
        );
        // The signed zone's chain, checked by doctor itself: each row ✓ (failing() above let none through).
        expect(subjects).toEqual(
          expect.arrayContaining(["DNSKEY brightchain.org", "DS brightchain.org (trust anchor)", "RRSIG MX brightchain.org"]),
        );
        expect(report.checks.find((c) => c.subject === "AD MX brightchain.org")?.detail).toMatch(/not a validating resolver/);
      }
    }
  });

  it("names exactly the fault injected: the primary's lookup service stopped is its one ✗, and green again once started", async () => {
    await on("mail", "systemctl stop brightchain-lookup");
    try {
      const report = await doctor("primary");
      expect(failing(report).map((line) => line.split(":")[0])).toEqual(["lookup 127.0.0.1"]);
    } finally {
      await on("mail", "systemctl start brightchain-lookup");
    }
    await waitFor(
      { host: "mail", step: "brightchain-lookup back" },
      60_000,
      async () => (failing(await doctor("primary")).length === 0 ? true : undefined),
      () => "doctor still reports a problem on mail",
    );
  });

  /** Each fault injected on the live lab turns exactly its own checks ✗, names the cause, and is undone. */
  const faultsOf = async (stack: string) => failing(await doctor(stack));
  const subjects = (lines: string[]) => lines.map((line) => line.split(": ")[0]);

  it("names a changed PTR of the primary, and only that", async () => {
    const faults = await withZoneEdited(
      "0.231.10.in-addr.arpa",
      (zone) => zone.replace(/^10 PTR .*$/m, "10 PTR elsewhere.example."),
      () => faultsOf("primary"),
    );
    expect(subjects(faults)).toEqual(["PTR 10.231.0.10"]);
    expect(faults[0]).toContain("elsewhere.example");
  });

  it("names a deleted DKIM record, and only that", async () => {
    const faults = await withZoneEdited(
      "brightchain.org",
      (zone) => zone.replace(/^default\._domainkey\s[^)]*\)\n/m, ""),
      () => faultsOf("primary"),
    );
    expect(subjects(faults)).toEqual(["TXT default._domainkey.brightchain.org (v=DKIM1)"]);
    expect(faults[0]).toMatch(/missing|no record|not published/i);
  });

  it("names an SPF record that leaves out the relay, and only that", async () => {
    const faults = await withZoneEdited(
      "brightchain.org",
      (zone) => zone.replace(" ip4:10.231.0.20", ""),
      () => faultsOf("primary"),
    );
    expect(subjects(faults)).toEqual(["TXT brightchain.org (v=spf1)"]);
    expect(faults[0]).toContain("v=spf1 ip4:10.231.0.10 -all");
  });

  it("names a certificate for the wrong name on 25 and 587, and the TLSA it no longer matches, and nothing else", async () => {
    const faults = await withCertificateFor(["mail"], "wrong.brightchain.org", () => faultsOf("primary"));
    // The certificate's key is not the one the TLSA record pins either: DANE senders would refuse it too.
    expect(subjects(faults).sort()).toEqual(
      [
        "STARTTLS 10.231.0.10:25 name",
        "STARTTLS 10.231.0.10:587 name",
        "TLSA _25._tcp.mail.brightchain.org vs 10.231.0.10:25",
      ].sort(),
    );
    expect(faults[0]).toContain("certificate is for wrong.brightchain.org, not mail.brightchain.org");
  });

  it("names an MTA-STS policy served with a wrong MX, and only that", async () => {
    const script = labWorkerScriptFile("mta-sts.brightchain.org");
    const served = readFileSync(script, "utf8");
    expect(served).toContain("mx: mail2.brightchain.org");
    writeFileSync(script, served.replace("mx: mail2.brightchain.org", "mx: mail3.brightchain.org"));
    let faults: string[];
    try {
      faults = await faultsOf("primary");
    } finally {
      writeFileSync(script, served);
    }
    expect(subjects(faults)).toEqual(["MTA-STS https://mta-sts.brightchain.org/.well-known/mta-sts.txt"]);
    expect(faults[0]).toContain(
      "mx: mail.brightchain.org, mail3.brightchain.org instead of mail.brightchain.org, mail2.brightchain.org",
    );
  });

  it("names the lookup's port 2526 reachable from outside, and only that", async () => {
    // A forwarder on the public address and a hole in front of the firewall's rules (iptables, not ufw: ufw would
    // turn its own reject rule for the port into the allow, and deleting that would leave the port unmanaged).
    await on(
      "mail",
      `iptables -I INPUT 1 -p tcp --dport 2526 -m comment --comment ${FAULT_COMMENT} -j ACCEPT && { ` +
        `setsid nohup python3 -c ${shellQuote("import socket\ns=socket.socket()\ns.bind(('10.231.0.10',2526))\ns.listen()\nwhile True: s.accept()[0].close()")} ` +
        ">/dev/null 2>&1 </dev/null & echo $! > /run/brightchain-fault-listener.pid; }",
    );
    let faults: string[];
    try {
      faults = await faultsOf("primary");
    } finally {
      await on(
        "mail",
        `kill $(cat /run/brightchain-fault-listener.pid) && rm /run/brightchain-fault-listener.pid && ` +
          `iptables -D INPUT -p tcp --dport 2526 -m comment --comment ${FAULT_COMMENT} -j ACCEPT`,
      );
    }
    expect(subjects(faults)).toEqual(["closed 10.231.0.10:2526"]);
  });

  it("is green again once every fault is undone", async () => {
    expect(await faultsOf("primary")).toEqual([]);
    expect(await faultsOf("relay")).toEqual([]);
  });
});

/** Marks the one firewall rule a fault inserts, so it is removed by itself. */
const FAULT_COMMENT = "brightchain-lab-fault";

/** The zone with its SOA serial raised by `by`: Knot serves a reloaded zone only under a new serial. */
function withSerialRaised(zone: string, by: number): string {
  return zone.replace(
    /(\bSOA\s+\S+\s+\S+\s+(?:\(\s*)?)(\d+)/,
    (_all, head: string, serial: string) => `${head}${Number(serial) + by}`,
  );
}

/** Runs `work` while the lab DNS serves `name` edited, then serves the zone as it was. */
async function withZoneEdited<T>(name: string, edit: (zone: string) => string, work: () => Promise<T>): Promise<T> {
  const original = readLabState()?.zones[name];
  if (original === undefined) throw new Error(`the lab serves no zone ${name}`);
  const edited = edit(original);
  if (edited === original) throw new Error(`the edit of zone ${name} changed nothing:\n${original}`);
  await labPublishZone(name, withSerialRaised(edited, 1));
  try {
    return await work();
  } finally {
    await labPublishZone(name, withSerialRaised(original, 2));
  }
}

/** A certificate for `name` from the lab CA, which every lab host and doctor (extraCa) trust like a public CA. */
async function labCaCertificate(name: string): Promise<{ certificate: string; key: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), "gateway-lab-cert-"));
  try {
    const leaf = await signWithLabCa(labAcmePaths(LAB_STATE_DIR), {
      dir,
      base: "leaf",
      commonName: name,
      subjectAltName: `DNS:${name}`,
    });
    return { certificate: readFileSync(leaf.cert, "utf8"), key: readFileSync(leaf.key, "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs `work` while Postfix on each host serves a certificate for `name` (trusted, but not the host's name). */
async function withCertificateFor<T>(hosts: readonly LabHostName[], name: string, work: () => Promise<T>): Promise<T> {
  const leaf = await labCaCertificate(name);
  const cert = "/etc/postfix/brightchain-fault-cert.pem";
  const key = "/etc/postfix/brightchain-fault-key.pem";
  for (const host of hosts) {
    await on(host, `umask 077 && cat > ${key}`, leaf.key);
    await on(host, `cat > ${cert}`, leaf.certificate);
    await on(
      host,
      `cp -p /etc/postfix/main.cf /root/main.cf.before-fault && postconf -e smtpd_tls_cert_file=${cert} smtpd_tls_key_file=${key} && postfix reload`,
    );
  }
  try {
    return await work();
  } finally {
    for (const host of hosts)
      await on(
        host,
        `cp -p /root/main.cf.before-fault /etc/postfix/main.cf && rm -f /root/main.cf.before-fault ${cert} ${key} && postfix reload`,
      );
  }
}

describe("drift: the host read back on every apply (HostState) and by `gateway drift`", () => {
  const isHostState = (r: { type: string }) => r.type.startsWith("pulumi-nodejs:dynamic");

  it("finds nothing on an untouched node: the second apply's read changed nothing, and gateway drift exits 0", async () => {
    for (const { stack } of STACKS) {
      expect(
        second[stack]!.resources.filter(isHostState).map((r) => r.action),
        stack,
      ).toEqual(["same"]);
      const drift = await gateway(["drift", "--stack", stack, "--lab"]);
      expect(drift.status, drift.output).toBe(0);
      expect(drift.stdout).toContain("no drift");
    }
  });

  it("names a hand edit, a disabled service, a changed mode, a removed DKIM key and an added firewall rule; a re-apply repairs each", async () => {
    await on(
      "mail",
      [
        "echo '# edited by hand' >> /etc/postfix/main.cf",
        "systemctl disable --now brightchain-lookup",
        "chmod 0600 /etc/postfix/master.cf",
        "rm /etc/dkim/default.private",
        "ufw allow 8080/tcp >/dev/null",
      ].join(" && "),
    );
    const drift = await gateway(["drift", "--stack", "primary", "--lab"]);
    expect(drift.status, drift.output).toBe(1);
    const named = drift.stdout.split("\n").filter((line) => line.startsWith("✗"));
    expect(named).toEqual([
      "✗ file /etc/postfix/main.cf: content changed, 0644 root:root (expected: content as deployed, 0644 root:root)",
      "✗ file /etc/postfix/master.cf: content as deployed, 0600 root:root (expected: content as deployed, 0644 root:root)",
      "✗ service brightchain-lookup: disabled, inactive (expected: enabled, active)",
      "✗ dkim key /etc/dkim/default.private: absent (expected: present, 0600 opendkim:opendkim)",
      expect.stringMatching(/^✗ firewall: active; .*allow 8080\/tcp.* \(expected: active; (?!.*8080)/),
    ]);

    const repaired = await deployStackToLab({ stack: "primary", projectDir: repo, runtimeDist: dist, progress: () => undefined });
    const hostState = repaired.resources.find(isHostState)!;
    expect(hostState.action).toBe("update");
    // Pulumi's wire format sorts an object's keys: the engine names them in that order.
    expect(hostState.changedInputs).toEqual(
      [
        "file /etc/postfix/main.cf",
        "file /etc/postfix/master.cf",
        "service brightchain-lookup",
        "dkim key /etc/dkim/default.private",
        "firewall",
      ].sort(),
    );
    const again = await gateway(["drift", "--stack", "primary", "--lab"]);
    expect(again.status, again.output).toBe(0);
    // The key generated again is the one DNS now publishes, and the one OpenDKIM signs with.
    const published = (await on("outside", "dig +short TXT default._domainkey.brightchain.org")).replace(/["\s]/g, "");
    const publicKey = (
      await on("mail", "openssl rsa -in /etc/dkim/default.private -pubout -outform DER 2>/dev/null | base64 -w0")
    ).trim();
    expect(published).toBe(`v=DKIM1;h=sha256;k=rsa;p=${publicKey}`);
  });
});

describe("DANE: a sender that enforces it (outside's unbound validating the signed lab zone, smtp_tls_security_level = dane)", () => {
  beforeAll(() => makeOutsideEnforceDane("brightchain.org"), 600_000);
  afterAll(() => undoOutsideDane(), 300_000);
  const restartValidatingResolver = async () => {
    // Forgets the cached TLSA answers, unbound's and those Postfix's smtp processes keep for the records' TTL:
    // the next delivery looks them up again.
    await on("outside", "systemctl restart unbound && postfix reload");
    await waitOnHost("outside", "unbound answering", "dig +dnssec @127.0.0.1 brightchain.org MX", (out) =>
      /;; flags: [^;]*\bad\b/.test(out),
    );
  };

  it("serves a validated TLSA 3 1 1 for every MX host, and outside delivers over a DANE-verified connection", async () => {
    for (const host of ["mail", "mail2"]) {
      const answer = await on("outside", `dig +dnssec @127.0.0.1 _25._tcp.${host}.brightchain.org TLSA`);
      expect(answer, host).toMatch(/;; flags: [^;]*\bad\b/);
      // dig splits the digest into groups: "3 1 1 6CB2…AB CD01…".
      const digest = /\sTLSA\s+3 1 1 ([0-9A-F ]+)\n/i.exec(answer)?.[1]?.replace(/ /g, "");
      expect(digest, `${host}\n${answer}`).toMatch(/^[0-9A-F]{64}$/i);
    }
    const subject = uniqueSubject("dane");
    const sent = await swaksFromOutside({ to: "alice@brightchain.org", server: "127.0.0.1", subject });
    expect(sent.transcript, sent.transcript).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
    await waitForStoreEntries(subject);
    const log = await on("outside", "journalctl -u 'postfix*' --no-pager -o cat");
    expect(log).toMatch(/Verified TLS connection established to mail\.brightchain\.org\[10\.231\.0\.10\]:25/);
  });

  it("defers, never delivering in clear, while the TLSA records do not match; delivers once they do again", async () => {
    // Nothing else queued on outside: the deferral awaited below can only be this message's.
    await waitForMailSettled();
    const subject = uniqueSubject("dane mismatch");
    const wrongTlsa = (zone: string) =>
      zone.replace(/(TLSA\s+3\s+1\s+1\s+)[0-9a-fA-F]{64}/g, (_all, head: string) => `${head}${"0".repeat(64)}`);
    await withZoneEdited("brightchain.org", wrongTlsa, async () => {
      await restartValidatingResolver();
      const sent = await swaksFromOutside({ to: "alice@brightchain.org", server: "127.0.0.1", subject });
      expect(sent.transcript, sent.transcript).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
      const queued = await waitOnHost(
        "outside",
        "the message deferred for want of a verified certificate",
        "postqueue -j",
        (out) => /"delay_reason": *"[^"]*(not verified|verification failed)/i.test(out),
        { deadlineMs: 120_000, diagnose: async () => on("outside", "journalctl -u 'postfix*' -n 30 --no-pager -o cat") },
      );
      expect(queued).toContain("alice@brightchain.org");
      expect((await storeEntries()).filter((entry) => entry.subject === subject)).toEqual([]);
    });
    await restartValidatingResolver();
    await on("outside", "postqueue -f");
    await waitForStoreEntries(subject, 1, 120_000);
    await waitForMailSettled();
    expect((await storeEntries()).filter((entry) => entry.subject === subject)).toHaveLength(1);
  });
  it("rolls the key over in three ups (next published, switched, old removed), every message DANE-verified on the way", async () => {
    const rollover = (dane: Record<string, string>) => async (step: string) => {
      const deployed = await timer.timed(`dane rollover: ${step}`, () =>
        deployStackToLab({
          stack: "primary",
          projectDir: repo,
          runtimeDist: dist,
          overrides: { "gateway:dane": JSON.stringify(dane) },
          progress: () => undefined,
        }),
      );
      expect(deployed.executed.length, step).toBeGreaterThan(0);
      // As a sender's caches would after the twice-the-TTL wait the page asks for.
      await restartValidatingResolver();
    };
    const published = async () => {
      const answer = await on("outside", "dig +dnssec @127.0.0.1 _25._tcp.mail.brightchain.org TLSA");
      expect(answer).toMatch(/;; flags: [^;]*\bad\b/);
      return [...answer.matchAll(/\sTLSA\s+3 1 1 ([0-9A-F ]+)\n/gi)].map((m) => m[1]!.replace(/ /g, "").toLowerCase()).sort();
    };
    // The SPKI digest of the key port 25 serves: what a TLSA 3 1 1 record must hold.
    const served = async () =>
      (
        await on(
          "outside",
          "openssl s_client -connect 10.231.0.10:25 -starttls smtp -servername mail.brightchain.org </dev/null 2>/dev/null | openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1",
        )
      ).trim();
    const verifiedDeliveries = async () =>
      (await on("outside", "journalctl -u 'postfix*' --no-pager -o cat")).match(
        /Verified TLS connection established to mail\.brightchain\.org\[10\.231\.0\.10\]:25/g,
      )?.length ?? 0;
    const deliversVerified = async (step: string) => {
      const before = await verifiedDeliveries();
      const subject = uniqueSubject(`dane rollover ${step}`);
      const sent = await swaksFromOutside({ to: "alice@brightchain.org", server: "127.0.0.1", subject });
      expect(sent.transcript, sent.transcript).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
      await waitForStoreEntries(subject);
      expect(await verifiedDeliveries(), step).toBeGreaterThan(before);
    };

    const [oldKey] = await published();
    expect(await served()).toBe(oldKey);

    await rollover({ nextLineage: "mail.brightchain.org-2027" })("1. publish the next key");
    const both = await published();
    expect(both).toHaveLength(2);
    const newKey = both.find((digest) => digest !== oldKey)!;
    expect(await served(), "Postfix still serves the old key while the next is only published").toBe(oldKey);
    await deliversVerified("1");

    await rollover({ lineage: "mail.brightchain.org-2027", previousLineage: "mail.brightchain.org" })("2. switch");
    expect(await published()).toEqual(both);
    expect(await served(), "the switch serves the key published in step 1").toBe(newKey);
    await deliversVerified("2");

    await rollover({ lineage: "mail.brightchain.org-2027" })("3. remove the old record");
    expect(await published()).toEqual([newKey]);
    expect(await served()).toBe(newKey);
    await deliversVerified("3");
  });
});

describe("MTA-STS: a sender that enforces the policy the program's Worker serves (outside's postfix-mta-sts-resolver)", () => {
  beforeAll(() => makeOutsideEnforceMtaSts("brightchain.org"), 600_000);
  afterAll(() => undoOutsideMtaSts(), 300_000);

  it("delivers over a connection verified against the policy's MX names", async () => {
    const subject = uniqueSubject("mta-sts");
    const sent = await swaksFromOutside({ to: "alice@brightchain.org", server: "127.0.0.1", subject });
    expect(sent.transcript, sent.transcript).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
    await waitForStoreEntries(subject);
    const log = await on("outside", "journalctl -u 'postfix*' --no-pager -o cat --since '-5min'");
    expect(log).toMatch(/Verified TLS connection established to mail\.brightchain\.org\[10\.231\.0\.10\]:25/);
  });

  it("defers, never delivering unverified, while the MX hosts serve certificates the policy does not match", async () => {
    await waitForMailSettled();
    const subject = uniqueSubject("mta-sts mismatch");
    await withCertificateFor(["mail", "mail2"], "wrong.brightchain.org", async () => {
      const sent = await swaksFromOutside({ to: "alice@brightchain.org", server: "127.0.0.1", subject });
      expect(sent.transcript, sent.transcript).toMatch(/<[-~] +250 2\.0\.0 Ok: queued/);
      await waitOnHost(
        "outside",
        "the message deferred for a certificate the policy does not match",
        "postqueue -j",
        (out) => /"delay_reason": *"[^"]*(not verified|verification failed)/i.test(out),
        { deadlineMs: 120_000, diagnose: async () => on("outside", "journalctl -u 'postfix*' -n 30 --no-pager -o cat") },
      );
      expect((await storeEntries()).filter((entry) => entry.subject === subject)).toEqual([]);
    });
    await on("outside", "postqueue -f");
    await waitForStoreEntries(subject, 1, 120_000);
    await waitForMailSettled();
    expect((await storeEntries()).filter((entry) => entry.subject === subject)).toHaveLength(1);
  });
});

describe("mail end to end on the nodes engine 1 deployed", () => {
  describeMailScenarios(timer);
});
