// What `pulumi destroy` and `pulumi preview --refresh` get from the program, as registered under the SDK's mocks:
// one teardown command holds the node's removal and is never replaced; no step has a delete a create-before-delete
// replacement could run against its own new file; the HostState resource reads the host back after the
// verification, with nothing secret in the clear.
import { beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { hostTeardown } from "../../infra/plan";
import { hostFiles } from "../../infra/render";
import { examplePrimary, exampleSecrets } from "../fixtures/nodes";
import { parseGatewayConfig } from "../../infra/model/config";
import { runProgram, stackConfig, type MockedProgram, type RegisteredResource } from "../helpers/pulumi-program";

let primary: MockedProgram;
beforeAll(async () => {
  primary = await runProgram("primary");
});

const commands = (run: MockedProgram): RegisteredResource[] => run.resources.filter((r) => r.type === "command:remote:Command");
const named = (run: MockedProgram, name: string): RegisteredResource => {
  const resource = run.resources.find((r) => r.name === name);
  expect(resource, name).toBeDefined();
  return resource!;
};

describe("removal", () => {
  it("gives the teardown alone a delete, with triggers that never change, so it is updated, never replaced", () => {
    const withDelete = commands(primary).filter((r) => typeof r.inputs.delete === "string");
    expect(withDelete.map((r) => r.name)).toEqual(["node-teardown"]);
    const teardown = named(primary, "node-teardown");
    expect(teardown.inputs.triggers).toEqual([]);
    expect(teardown.inputs.create).toBe(":");
    expect(teardown.inputs.update).toBe(":");
    expect((teardown.inputs.connection as { hostKey?: string }).hostKey).toMatch(/^ssh-ed25519 /);
    expect(teardown.secretInputs).toContain("connection");
  });

  it("stops and disables every unit of ours, shreds the secret files, removes the DKIM key, keeps the spool", () => {
    const remove = named(primary, "node-teardown").inputs.delete as string;
    for (const unit of ["postfix", "brightchain-lookup", "brightchain-inbound", "opendkim", "dovecot"])
      expect(remove).toContain(unit);
    expect(remove).toMatch(/systemctl disable --now "\$1"/);
    expect(remove).toMatch(/systemctl kill "\$1"/);
    expect(remove).toMatch(/shred -u "\$f"/);
    expect(remove).toContain("/etc/dkim/default.private");
    expect(remove).toContain("certbot delete --non-interactive --cert-name mail.brightchain.org");
    expect(remove).not.toMatch(/rm -[a-z]*r/);
  });

  it("stops every spam engine's units whichever the node runs (an earlier up may have started the other), and removes the files of its own", () => {
    const files = (node: GatewayNode) => hostFiles(node, exampleSecrets);
    const withRspamd: GatewayNode = { ...examplePrimary, spam: { ...examplePrimary.spam, engine: "rspamd" } };
    const spamassassin = hostTeardown(examplePrimary, files(examplePrimary));
    const rspamd = hostTeardown(withRspamd, files(withRspamd));
    for (const teardown of [spamassassin, rspamd]) {
      const units = /for unit in ([^;]+); do stop_unit/.exec(teardown)![1]!.split(" ");
      expect(units).toEqual(expect.arrayContaining(["postfix", "spamd", "spamass-milter", "rspamd"]));
    }
    expect(spamassassin).toContain("/etc/default/spamd");
    expect(rspamd).not.toContain("/etc/default/spamd");
    expect(rspamd).toContain("/etc/rspamd/local.d/");
  });
});

describe("gateway:dkimKeepKeyOnDestroy", () => {
  it("keeps the DKIM private key out of the teardown when set, and only then", () => {
    const { config } = stackConfig("primary");
    const kept = parseGatewayConfig({ ...config, "gateway:dkimKeepKeyOnDestroy": "true" });
    expect(kept.dkim.keepKeyOnDestroy).toBe(true);
    const remove = hostTeardown(kept, hostFiles(kept, exampleSecrets));
    expect(remove).not.toContain("/etc/dkim/default.private");
    expect(remove).toContain("kept the DKIM key");
    expect(named(primary, "node-teardown").inputs.delete).toContain("shred -u /etc/dkim/default.private");
  });
});

describe("drift: the HostState resource", () => {
  it("is registered after the verification, with the connection, the hashes and the repair steps secret", () => {
    const names = primary.resources.map((r) => r.name);
    const hostState = named(primary, "node-host-state");
    expect(hostState.type).toBe("pulumi-nodejs:dynamic/brightchain:HostState");
    expect(names.indexOf("node-host-state")).toBeGreaterThan(names.indexOf("node-verify"));
    expect(hostState.secretInputs).toEqual(expect.arrayContaining(["connection", "stdin", "steps"]));
    expect(hostState.secretInputs).not.toContain("checks");
    expect((hostState.inputs.connection as { hostKey?: string }).hostKey).toMatch(/^ssh-ed25519 /);
    // A serialized provider travels with it: what Pulumi's dynamic provider host runs.
    expect(typeof hostState.inputs.__provider).toBe("string");
  });

  it("wants exactly what the plan deployed, check by check", () => {
    const state = named(primary, "node-host-state").inputs.state as Record<string, string>;
    expect(state["file /etc/postfix/main.cf"]).toBe("content as deployed, 0644 root:root");
    expect(state["service brightchain-lookup"]).toBe("enabled, active");
    expect(state["dkim key /etc/dkim/default.private"]).toBe("present, 0600 opendkim:opendkim");
  });

  it("publishes the DKIM record from the host state, so a key a repair generates again is published", () => {
    const dkim = named(primary, "dns-dkim-default");
    expect(String(dkim.inputs.content)).toContain("p=");
  });
});
