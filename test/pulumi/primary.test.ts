// The primary stack (Pulumi.yaml + Pulumi.primary.yaml) run through the real program under mocks.
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { hostPlan } from "../../infra/plan";
import { GatewayHost } from "../../infra/pulumi";
import { MAX_STEPS_IN_FLIGHT, laneDependencies } from "../../infra/pulumi/gatewayHost";
import { hostDirectories, hostFiles } from "../../infra/render";
import { dkimRecordText } from "../../infra/render/dns";
import { examplePrimary, exampleSecrets } from "../fixtures/nodes";
import {
  ZONE_ID,
  hostCommandInputs,
  outputValue,
  runProgram,
  type MockedProgram,
  type RegisteredResource,
} from "../helpers/pulumi-program";

let run: MockedProgram;
beforeAll(async () => {
  run = await runProgram("primary");
});

const dnsRecords = () => run.resources.filter((r) => r.type === "cloudflare:index/dnsRecord:DnsRecord");
// The plan's steps; the teardown (the node's delete) is tested in removal-and-drift.test.ts.
const commands = () => run.resources.filter((r) => r.type === "command:remote:Command" && !r.name.endsWith("-teardown"));

describe("primary stack: DNS at Cloudflare", () => {
  it("publishes A, AAAA, MX 10, SPF, DMARC, DKIM, MTA-STS, TLS-RPT, CAA and its TLSA in the zone looked up by name — and nothing else", () => {
    const summary = dnsRecords()
      .map((r) => `${r.inputs.type} ${r.inputs.name}`)
      .sort();
    expect(summary).toEqual([
      "A mail.brightchain.org",
      "AAAA mail.brightchain.org",
      "CAA mail.brightchain.org",
      "CAA mail.brightchain.org",
      "CAA mail2.brightchain.org",
      "CAA mail2.brightchain.org",
      "MX brightchain.org",
      "TLSA _25._tcp.mail.brightchain.org",
      "TXT _dmarc.brightchain.org",
      "TXT _mta-sts.brightchain.org",
      "TXT _smtp._tls.brightchain.org",
      "TXT brightchain.org",
      "TXT default._domainkey.brightchain.org",
    ]);
    for (const r of dnsRecords()) expect(r.inputs.zoneId).toBe(ZONE_ID);
  });

  it("record contents: addresses unproxied, MX 10 to the primary, SPF listing the fleet, DMARC from config", () => {
    const find = (type: string, name: string): RegisteredResource =>
      dnsRecords().find((r) => r.inputs.type === type && r.inputs.name === name)!;
    expect(find("A", "mail.brightchain.org").inputs).toMatchObject({ content: "203.0.113.10", proxied: false, ttl: 3600 });
    expect(find("AAAA", "mail.brightchain.org").inputs).toMatchObject({ content: "2001:db8::10", proxied: false });
    expect(find("MX", "brightchain.org").inputs).toMatchObject({ content: "mail.brightchain.org", priority: 10 });
    expect(find("TXT", "brightchain.org").inputs.content).toBe(
      '"v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 ip4:203.0.113.20 -all"',
    );
    expect(find("TXT", "_dmarc.brightchain.org").inputs.content).toBe(
      '"v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@brightchain.org; pct=100"',
    );
  });

  it("the DKIM record carries the key the host generated, as quoted strings of at most 255 bytes", () => {
    const content = dnsRecords().find((r) => r.inputs.name === "default._domainkey.brightchain.org")!.inputs.content as string;
    const strings = [...content.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
    expect(strings.length).toBeGreaterThan(1);
    for (const s of strings) expect(Buffer.byteLength(s)).toBeLessThanOrEqual(255);
    expect(strings.join("")).toBe(dkimRecordText(run.dkimTxt));
  });

  it("stack outputs: records, DKIM record, PTR expectations, host name and role", async () => {
    const records = await outputValue(run.program.records);
    expect(records).toContainEqual({ name: "brightchain.org", type: "MX", content: "mail.brightchain.org", priority: 10 });
    const dkim = await outputValue(run.program.dkimRecord);
    expect(dkim).toEqual({ name: "default._domainkey.brightchain.org", type: "TXT", content: dkimRecordText(run.dkimTxt) });
    expect(run.program.ptrExpectations).toEqual([
      { address: "203.0.113.10", reverseName: "10.113.0.203.in-addr.arpa", expectedHostname: "mail.brightchain.org" },
      expect.objectContaining({ address: "2001:db8::10", expectedHostname: "mail.brightchain.org" }),
    ]);
    expect(run.program.hostname).toBe("mail.brightchain.org");
    expect(run.program.role).toBe("primary");
  });
});

describe("primary stack: host steps", () => {
  const plan = () =>
    hostPlan(examplePrimary, hostFiles(examplePrimary, exampleSecrets), hostDirectories(examplePrimary), [
      { name: "brightchain-inbound.cjs", content: "" },
      { name: "brightchain-lookup.cjs", content: "" },
    ]);

  it("one remote.Command per plan step, named from the stack and the step id", () => {
    expect(
      commands()
        .map((c) => c.name)
        .sort(),
    ).toEqual(
      plan()
        .map((s) => `node-${s.id}`)
        .sort(),
    );
    expect(run.resources.filter((r) => r.type === "command:remote:CopyToRemote")).toEqual([]);
  });

  it("registers every command only after the steps it runs after (the order `pulumi up` executes them)", () => {
    const order = commands().map((c) => c.name);
    for (const step of plan()) {
      for (const dep of step.after) {
        expect(order.indexOf(`node-${dep}`), `${step.id} after ${dep}`).toBeLessThan(order.indexOf(`node-${step.id}`));
      }
    }
  });

  it("each command is self-contained: the plan's command, its stdin and its triggers, over the stack's SSH connection", () => {
    const byName = new Map(commands().map((c) => [c.name, c]));
    const mainCf = byName.get("node-file-etc-postfix-main-cf")!;
    expect(mainCf.inputs.create).toContain('mv -f "$tmp" /etc/postfix/main.cf');
    expect(mainCf.inputs.stdin).toContain("myhostname = mail.brightchain.org");
    expect(mainCf.inputs.addPreviousOutputInEnv).toBe(false);
    expect(mainCf.inputs.connection).toMatchObject({ host: "203.0.113.10", user: "root", port: 22 });
    expect(byName.get("node-postfix-check")!.inputs.create).toContain("postfix check");
    expect(commands().at(-1)!.name).toBe("node-verify");
  });

  it("pins the configured host key on every command's connection", () => {
    expect(commands().length).toBeGreaterThan(20);
    for (const c of commands())
      expect((c.inputs.connection as { hostKey?: string }).hostKey, c.name).toBe(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP6kEPrnVDpntlskcoYMhNKYDm7NwXlPaA1dPHq31tgv",
      );
  });

  it("keeps the SSH key and secret files secret: connection always, stdin/triggers of secret files, logging off", () => {
    for (const c of commands()) expect(c.secretInputs, c.name).toContain("connection");
    const secretFiles = hostFiles(examplePrimary, exampleSecrets).filter((f) => f.secret);
    expect(secretFiles.length).toBeGreaterThan(0);
    for (const file of secretFiles) {
      const c = commands().find((r) => r.name === `node-file-${file.path.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "")}`)!;
      expect(c.secretInputs).toEqual(expect.arrayContaining(["stdin", "create", "triggers"]));
      expect(c.inputs.logging).toBe("none");
    }
  });
});

describe("primary stack: nothing derived from a secret in a non-secret input", () => {
  it("no trigger hash or sha256 of a secret file, no password, no token appears outside a secret input", () => {
    const steps = hostPlan(examplePrimary, hostFiles(examplePrimary, exampleSecrets), hostDirectories(examplePrimary));
    const derived = new Set<string>([
      ...exampleSecrets.submissionUsers.map((user) => user.password),
      exampleSecrets.certbotCloudflareToken!,
      "cf-api-token-not-real",
      "not-a-real-key",
    ]);
    for (const step of steps.filter((s) => s.secret)) {
      for (const trigger of step.triggers) derived.add(trigger);
      if (step.stdin !== undefined) derived.add(createHash("sha256").update(step.stdin).digest("hex"));
    }
    expect(derived.size).toBeGreaterThan(6);
    // The service steps the secret files notify, and the verification, do carry those hashes: as secrets.
    const carriers = commands().filter((c) => c.secretInputs.includes("triggers") && !c.secretInputs.includes("stdin"));
    expect(carriers.map((c) => c.name)).toEqual(expect.arrayContaining(["node-service-dovecot", "node-verify"]));
    for (const resource of run.resources) {
      for (const [input, value] of Object.entries(resource.inputs)) {
        if (resource.secretInputs.includes(input)) continue;
        const text = JSON.stringify(value) ?? "";
        for (const secret of derived)
          expect(text.includes(secret), `${resource.name}.${input} holds a secret-derived string`).toBe(false);
      }
    }
  });
});

describe("primary stack: a non-root deploy user", () => {
  it("runs each step through sudo -n sh -c with the plan's command intact", async () => {
    const host = new GatewayHost("sudo", {
      node: examplePrimary,
      files: hostFiles(examplePrimary, exampleSecrets),
      directories: hostDirectories(examplePrimary),
      artifacts: [],
      connection: { host: "203.0.113.10", user: "deploy" },
      sudo: true,
    });
    await outputValue(host.verified);
    const check = commands().find((c) => c.name === "sudo-postfix-check")!;
    expect(check.inputs.create).toBe("sudo -n sh -c 'set -eu\npostfix check'");
  });
});

describe("primary stack: triggers follow content", () => {
  // Two GatewayHosts from the same node, one with a changed main.cf value, compared input by input.
  const hostInputs = (name: string, mainCfEdit: (text: string) => string) =>
    hostCommandInputs(
      run,
      name,
      {
        node: examplePrimary,
        artifacts: [{ name: "brightchain-lookup.cjs", content: "x" }],
        connection: { host: "203.0.113.10", user: "root", privateKey: pulumi.secret("k") },
      },
      mainCfEdit,
    );

  it("an unchanged node registers identical inputs; a changed main.cf changes only its step, postfix check, reload and verify", async () => {
    const before = await hostInputs("before", (t) => t);
    const same = await hostInputs("same", (t) => t);
    expect(same).toEqual(before);

    const after = await hostInputs("after", (t) => t.replace(/^message_size_limit = \d+$/m, "message_size_limit = 10485760"));
    expect(after.get("file-etc-postfix-main-cf")!.stdin).toContain("message_size_limit = 10485760");
    const changed = [...after.keys()].filter(
      (id) => JSON.stringify(after.get(id)!.triggers) !== JSON.stringify(before.get(id)!.triggers),
    );
    expect(changed).toEqual(["file-etc-postfix-main-cf", "postfix-check", "postfix-reload", "verify"]);
    const changedAtAll = [...after.keys()].filter((id) => JSON.stringify(after.get(id)) !== JSON.stringify(before.get(id)));
    expect(changedAtAll).toEqual(changed);
  });

  it("a changed SSH connection (rotated key, port, address) changes no step's inputs but the connection: no step re-runs", async () => {
    const reached = (name: string, connection: { host: string; port: number; privateKey: string }) =>
      hostCommandInputs(
        run,
        name,
        {
          node: examplePrimary,
          artifacts: [{ name: "brightchain-lookup.cjs", content: "x" }],
          connection: { ...connection, user: "root", privateKey: pulumi.secret(connection.privateKey) },
        },
        (t) => t,
      );
    const before = await reached("old-key", { host: "203.0.113.10", port: 22, privateKey: "old" });
    const after = await reached("new-key", { host: "2001:db8::10", port: 2222, privateKey: "new" });
    expect([...after.keys()]).toEqual([...before.keys()]);
    for (const [id, inputs] of after) {
      const { connection: newConnection, ...rest } = inputs;
      const { connection: oldConnection, ...restBefore } = before.get(id)!;
      expect(newConnection, id).not.toEqual(oldConnection);
      expect(rest, id).toEqual(restBefore);
      // A connection change is an update, and an update runs this instead of the step: nothing, or a reprint.
      expect(typeof inputs.update, id).toBe("string");
      const nothing = inputs.stdin === undefined ? ":" : "cat >/dev/null";
      const reprints = ["dkim-key", "dane-keys", "verify"].includes(id);
      expect(inputs.update === nothing || reprints, `${id} updates with ${String(inputs.update)}`).toBe(true);
      // Every change of what the step runs is a trigger change, which replaces (re-runs) it instead.
      expect(inputs.triggers as string[], id).toContain(
        createHash("sha256")
          .update(inputs.create as string)
          .digest("hex"),
      );
    }
    expect(after.get("dkim-key")!.update).toBe("cat /etc/dkim/default.txt");
  });
});

describe("primary stack: SSH sessions per host", () => {
  it(`no more than ${MAX_STEPS_IN_FLIGHT} steps can run at once: each lane of steps is a chain`, () => {
    const steps = hostPlan(examplePrimary, hostFiles(examplePrimary, exampleSecrets), hostDirectories(examplePrimary), [
      { name: "brightchain-lookup.cjs", content: "x" },
      { name: "brightchain-inbound.cjs", content: "y" },
    ]);
    const lanes = laneDependencies(steps, MAX_STEPS_IN_FLIGHT);
    const waitsFor = new Map<string, Set<string>>();
    for (const step of steps) {
      const direct = [...step.after, ...(lanes.has(step.id) ? [lanes.get(step.id)!] : [])];
      waitsFor.set(step.id, new Set(direct.flatMap((id) => [id, ...waitsFor.get(id)!])));
    }
    // Any MAX_STEPS_IN_FLIGHT + 1 steps include two of one lane, and one of those waits for the other.
    steps.forEach((step, index) => {
      if (index >= MAX_STEPS_IN_FLIGHT)
        expect(waitsFor.get(step.id)!.has(steps[index - MAX_STEPS_IN_FLIGHT]!.id), step.id).toBe(true);
    });
    expect(steps.length).toBeGreaterThan(2 * MAX_STEPS_IN_FLIGHT);
  });
});
