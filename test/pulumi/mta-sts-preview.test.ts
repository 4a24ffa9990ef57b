// `pulumi preview` of a first deploy, every command's output unknown: the MTA-STS record and the Worker depend on
// the configuration alone, so the preview shows their real values (and a later preview a real diff, not a
// replacement of unknowns).
import { describe, expect, it } from "vitest";
import { runProgram } from "../helpers/pulumi-program";

describe("primary stack: preview of MTA-STS with every command output unknown", () => {
  it("registers the _mta-sts record and the Worker with their content known, the DKIM record with no data", async () => {
    const preview = await runProgram("primary", {}, { preview: { until: "dns-dkim-default" } });
    const record = preview.resources.find((r) => r.name === "dns-txt-mta-sts-brightchain-org")!;
    expect(record.inputs.content).toMatch(/^"v=STSv1; id=[0-9a-f]{32}"$/);
    const script = preview.resources.find((r) => r.name === "dns-mta-sts-script")!;
    expect(script.inputs.content).toContain("mx: mail2.brightchain.org");
    expect(script.inputs.scriptName).toBe("mta-sts-brightchain-org");
    // The DKIM record's content waits for the host; its (absent) CAA data must not wait with it.
    const dkim = preview.resources.find((r) => r.name === "dns-dkim-default")!;
    expect(dkim.inputs).not.toHaveProperty("data");
  });
});
