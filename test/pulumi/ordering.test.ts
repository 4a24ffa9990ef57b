// The order a real `pulumi up` creates things in, as the SDK registers them under mocks: a resource is
// registered only once everything it depends on has been. So what is registered first is created first.
import { beforeAll, describe, expect, it } from "vitest";
import { runProgram, type MockedProgram } from "../helpers/pulumi-program";

let run: MockedProgram;
beforeAll(async () => {
  run = await runProgram("primary");
});

const position = (name: string): number => {
  const index = run.resources.findIndex((r) => r.name === name);
  expect(index, `${name} is registered`).toBeGreaterThanOrEqual(0);
  return index;
};

describe("primary stack: DNS ordered against the host", () => {
  it("publishes the MX, SPF, DMARC and DKIM records only after the node's verification", () => {
    const verify = position("node-verify");
    for (const name of ["dns-mx-brightchain-org", "dns-txt-brightchain-org", "dns-txt-dmarc-brightchain-org", "dns-dkim-default"])
      expect(position(name), name).toBeGreaterThan(verify);
  });

  it("publishes the address records before the certificate step that needs them", () => {
    const certificate = position("node-certificate");
    expect(position("dns-a-mail-brightchain-org")).toBeLessThan(certificate);
    expect(position("dns-aaaa-mail-brightchain-org")).toBeLessThan(certificate);
  });
});
