import { describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { hostPlan, STEP_RECIPIENT_REGISTRY } from "../../infra/plan";
import { hostDirectories, hostFiles } from "../../infra/render";
import { registryFiles } from "../../infra/render/registry";
import { parseRegistryFile } from "../../runtime/src/lookup/registry";
import { examplePrimary, exampleRelay, exampleSecrets } from "../fixtures/nodes";

const addresses = ["alice@brightchain.org", "bob@brightchain.org"];
const withRecipients = (node: GatewayNode): GatewayNode => ({
  ...node,
  lookup: { ...node.lookup, registry: { kind: "file", path: "/etc/brightchain/recipients", addresses } },
});

describe("the registry file from gateway:recipients", () => {
  it("is the same file on the primary and on a relay, readable by the lookup service only", () => {
    const [primary] = registryFiles(withRecipients(examplePrimary));
    const [relay] = registryFiles(withRecipients(exampleRelay));
    expect(primary).toMatchObject({ path: "/etc/brightchain/recipients", mode: 0o640, owner: "root", group: "brightchain" });
    expect(relay).toEqual(primary);
    expect(hostFiles(withRecipients(exampleRelay), exampleSecrets).map((f) => f.path)).toContain("/etc/brightchain/recipients");
  });

  it("is read back by the runtime's registry parser as exactly the configured addresses", () => {
    const [file] = registryFiles(withRecipients(examplePrimary));
    expect([...parseRegistryFile(file!.path, file!.content)].sort()).toEqual(addresses);
  });

  it("is not written without gateway:recipients, nor with the node API as registry", () => {
    expect(registryFiles(examplePrimary)).toEqual([]);
    const http: GatewayNode = {
      ...examplePrimary,
      lookup: { ...examplePrimary.lookup, registry: { kind: "http", url: "https://node.brightchain.org/api" } },
    };
    expect(registryFiles(http)).toEqual([]);
  });
});

describe("the plan with gateway:recipients", () => {
  it("installs the registry as a host file and drops the create-if-missing step", () => {
    const relay = withRecipients(exampleRelay);
    const steps = hostPlan(relay, hostFiles(relay, exampleSecrets), hostDirectories(relay));
    expect(steps.map((step) => step.id)).not.toContain(STEP_RECIPIENT_REGISTRY);
    const install = steps.find((step) => step.description.startsWith("install /etc/brightchain/recipients"));
    expect(install?.stdin).toContain("alice@brightchain.org\nbob@brightchain.org\n");
    const plain = hostPlan(exampleRelay, hostFiles(exampleRelay, exampleSecrets), hostDirectories(exampleRelay));
    expect(plain.map((step) => step.id)).toContain(STEP_RECIPIENT_REGISTRY);
  });
});
