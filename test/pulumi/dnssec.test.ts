// DNSSEC as the primary stack turns it on at Cloudflare (the real program under mocks): one ZoneDnssec on the
// stack's zone, never deleted by Pulumi, and the DS record the registrar needs as the `dnssec` stack output.
import { beforeAll, describe, expect, it } from "vitest";
import { GatewayDns } from "../../infra/pulumi";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";
import { MOCK_DNSSEC, ZONE_ID, outputValue, runProgram, type MockedProgram } from "../helpers/pulumi-program";

const ZONE_DNSSEC = "cloudflare:index/zoneDnssec:ZoneDnssec";

let run: MockedProgram;
beforeAll(async () => {
  run = await runProgram("primary");
});

describe("primary stack: DNSSEC", () => {
  it("turns DNSSEC on for the zone the records are in, once", () => {
    const dnssec = run.resources.filter((r) => r.type === ZONE_DNSSEC);
    expect(dnssec.map((r) => [r.name, r.inputs])).toEqual([["dns-dnssec", { zoneId: ZONE_ID, status: "active" }]]);
  });

  it("the stack output `dnssec` is the DS record for the registrar, as one line and as its fields", async () => {
    expect(await outputValue(run.program.dnssec)).toEqual({
      status: MOCK_DNSSEC.status,
      ds: MOCK_DNSSEC.ds,
      keyTag: MOCK_DNSSEC.keyTag,
      algorithm: MOCK_DNSSEC.algorithm,
      digestType: MOCK_DNSSEC.digestType,
      digest: MOCK_DNSSEC.digest,
      flags: MOCK_DNSSEC.flags,
      publicKey: MOCK_DNSSEC.publicKey,
    });
  });

  it("is retained on delete: a destroy or gateway:dnssec false never unsigns a zone whose DS the registrar holds", () => {
    const seen: { type: string; retainOnDelete?: boolean }[] = [];
    // A parent's transformations see every child's options in-process, mocks or not.
    new GatewayDns(
      "retain-check",
      { node: examplePrimary, zoneName: examplePrimary.domain },
      {
        transformations: [
          (args) => {
            seen.push({
              type: args.type,
              ...(args.opts.retainOnDelete !== undefined ? { retainOnDelete: args.opts.retainOnDelete } : {}),
            });
            return undefined;
          },
        ],
      },
    );
    expect(seen.filter((s) => s.type === ZONE_DNSSEC)).toEqual([{ type: ZONE_DNSSEC, retainOnDelete: true }]);
  });

  it("no ZoneDnssec from a relay's stack (the primary owns the zone-wide settings) or with gateway:dnssec false", () => {
    expect(new GatewayDns("relay-dnssec", { node: exampleRelay, zoneName: exampleRelay.domain }).dnssec).toBeUndefined();
    const off = new GatewayDns("off-dnssec", { node: { ...examplePrimary, dnssec: false }, zoneName: "brightchain.org" });
    expect(off.dnssec).toBeUndefined();
  });
});
