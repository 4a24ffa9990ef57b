// The relay stack (Pulumi.yaml + Pulumi.relay.yaml) run through the real program under mocks.
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { hostPlan } from "../../infra/plan";
import { hostDirectories, hostFiles } from "../../infra/render";
import { exampleRelay, exampleSecrets } from "../fixtures/nodes";
import { ZONE_ID, hostCommandInputs, mockDaneHash, outputValue, runProgram, type MockedProgram } from "../helpers/pulumi-program";

let run: MockedProgram;
beforeAll(async () => {
  run = await runProgram("relay");
});

const dnsRecords = () => run.resources.filter((r) => r.type === "cloudflare:index/dnsRecord:DnsRecord");
// The plan's steps; the teardown (the node's delete) is tested in removal-and-drift.test.ts.
const commands = () => run.resources.filter((r) => r.type === "command:remote:Command" && !r.name.endsWith("-teardown"));

describe("relay stack: DNS at Cloudflare", () => {
  it("owns only its A, its MX 20 and its own TLSA (IPv4-only: no AAAA); SPF, DMARC and DKIM belong to the primary's stack", () => {
    expect(dnsRecords().map((r) => r.inputs)).toEqual([
      expect.objectContaining({
        type: "A",
        name: "mail2.brightchain.org",
        content: "203.0.113.20",
        proxied: false,
        zoneId: ZONE_ID,
      }),
      expect.objectContaining({
        type: "MX",
        name: "brightchain.org",
        content: "mail2.brightchain.org",
        priority: 20,
        zoneId: ZONE_ID,
      }),
      expect.objectContaining({
        type: "TLSA",
        name: "_25._tcp.mail2.brightchain.org",
        data: { usage: 3, selector: 1, matchingType: 1, certificate: mockDaneHash("mail2.brightchain.org") },
        zoneId: ZONE_ID,
      }),
    ]);
    expect(dnsRecords().filter((r) => r.inputs.type === "TXT")).toEqual([]);
  });

  it("stack outputs: records, no DKIM record, the PTR its address needs, host name and role", async () => {
    expect(await outputValue(run.program.records)).toEqual([
      { name: "mail2.brightchain.org", type: "A", content: "203.0.113.20", priority: undefined },
      { name: "brightchain.org", type: "MX", content: "mail2.brightchain.org", priority: 20 },
      { name: "_25._tcp.mail2.brightchain.org", type: "TLSA", content: undefined, priority: undefined },
    ]);
    expect(run.program.dkimRecord).toBeUndefined();
    expect(run.program.ptrExpectations).toEqual([
      { address: "203.0.113.20", reverseName: "20.113.0.203.in-addr.arpa", expectedHostname: "mail2.brightchain.org" },
    ]);
    expect(run.program.hostname).toBe("mail2.brightchain.org");
    expect(run.program.role).toBe("relay");
  });
});

describe("relay stack: host steps", () => {
  it("one remote.Command per plan step; no DKIM key, no Dovecot, Rspamd enabled", () => {
    const plan = hostPlan(exampleRelay, hostFiles(exampleRelay, exampleSecrets), hostDirectories(exampleRelay), [
      { name: "brightchain-inbound.cjs", content: "" },
      { name: "brightchain-lookup.cjs", content: "" },
    ]);
    const names = commands().map((c) => c.name);
    expect([...names].sort()).toEqual(plan.map((s) => `node-${s.id}`).sort());
    expect(names).not.toContain("node-dkim-key");
    expect(names).not.toContain("node-service-dovecot");
    expect(names).toContain("node-service-rspamd");
    const packages = commands().find((c) => c.name === "node-packages")!.inputs.create as string;
    expect(packages).toMatch(/apt-get install .*rspamd/);
    expect(packages).not.toContain("dovecot");
  });

  it("connects to the relay's own address from Pulumi.relay.yaml, the key kept secret", () => {
    for (const c of commands()) {
      expect(c.inputs.connection).toMatchObject({ host: "203.0.113.20", user: "root", port: 22 });
      expect(c.secretInputs).toContain("connection");
    }
  });
});

describe("relay stack: triggers follow content", () => {
  const hostInputs = (name: string, mainCfEdit: (text: string) => string) =>
    hostCommandInputs(
      run,
      name,
      {
        node: exampleRelay,
        artifacts: [],
        connection: { host: "203.0.113.20", user: "root", privateKey: pulumi.secret("k") },
      },
      mainCfEdit,
    );

  it("a longer queue lifetime in main.cf re-runs its install, postfix check, reload and verify — nothing else", async () => {
    const before = await hostInputs("before", (t) => t);
    const after = await hostInputs("after", (t) => t.replace(/^maximal_queue_lifetime = .*$/m, "maximal_queue_lifetime = 14d"));
    expect(after.get("file-etc-postfix-main-cf")!.stdin).toContain("maximal_queue_lifetime = 14d");
    const changed = [...after.keys()].filter((id) => JSON.stringify(after.get(id)) !== JSON.stringify(before.get(id)));
    expect(changed).toEqual(["file-etc-postfix-main-cf", "postfix-check", "postfix-reload", "verify"]);
  });
});
