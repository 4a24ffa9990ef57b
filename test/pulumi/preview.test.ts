// `pulumi preview` of a first deploy: no command has run, so every command's stdout is unknown. The plan must
// still be complete, and the DKIM record (whose content is the key the host generates) must preview as a
// create with its name and type known, never as a replace.
import { describe, expect, it } from "vitest";
import { runProgram } from "../helpers/pulumi-program";

describe("primary stack: preview with every command output unknown", () => {
  it("registers the DKIM record with its name and type known", async () => {
    const preview = await runProgram("primary", {}, { preview: { until: "dns-dkim-default" } });
    const dkim = preview.resources.find((r) => r.name === "dns-dkim-default")!;
    expect(dkim.inputs.name).toBe("default._domainkey.brightchain.org");
    expect(dkim.inputs.type).toBe("TXT");
    expect(preview.resources.filter((r) => r.type === "command:remote:Command").at(-1)?.name).toBe("node-verify");
  });
});
