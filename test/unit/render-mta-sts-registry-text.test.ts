// Two small renderers word for word: the MTA-STS policy, its id and TXT record (what a sending server fetches and
// compares), and the recipients file (its comment, one address a line, no reload).
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import {
  mtaStsPolicyHost,
  mtaStsPolicyId,
  mtaStsPolicyText,
  mtaStsRecordText,
  mtaStsWorkerScript,
} from "../../infra/render/mta-sts";
import { registryFiles } from "../../infra/render/registry";
import { examplePrimary } from "../fixtures/nodes";

describe("MTA-STS, exactly", () => {
  it("the policy: version, mode, every fleet host as an MX sorted, max_age; LF line ends", () => {
    const fleet = [
      { hostname: "mx-b.brightchain.org", ipv4: "192.0.2.2" },
      { hostname: "mx-a.brightchain.org", ipv4: "192.0.2.1" },
    ];
    expect(mtaStsPolicyText(fleet, { mode: "enforce", maxAgeSeconds: 86400 })).toBe(
      "version: STSv1\nmode: enforce\nmx: mx-a.brightchain.org\nmx: mx-b.brightchain.org\nmax_age: 86400\n",
    );
  });

  it("the id is the policy's SHA-256 cut to 32 hex digits, and the record carries it", () => {
    const policy = mtaStsPolicyText(examplePrimary.fleet, { mode: "testing", maxAgeSeconds: 604800 });
    const id = createHash("sha256").update(policy).digest("hex").slice(0, 32);
    expect(mtaStsPolicyId(policy)).toBe(id);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(mtaStsPolicyId(`${policy} `)).not.toBe(id);
    expect(mtaStsRecordText(policy)).toBe(`v=STSv1; id=${id}`);
    expect(mtaStsPolicyHost("brightchain.org")).toBe("mta-sts.brightchain.org");
  });
});

describe("the Worker's source", () => {
  it("embeds the policy and its path as JSON string literals", () => {
    const script = mtaStsWorkerScript('version: STSv1\nmode: "x"\n');
    expect(script).toContain('\nconst POLICY = "version: STSv1\\nmode: \\"x\\"\\n";\n');
    expect(script).toContain('\nconst POLICY_PATH = "/.well-known/mta-sts.txt";\n');
  });
});

describe("the recipients file, exactly", () => {
  it("a comment saying it is rendered, then one address a line; owned root:brightchain 0640; nothing to reload", () => {
    const node: GatewayNode = {
      ...examplePrimary,
      lookup: {
        ...examplePrimary.lookup,
        registry: { kind: "file", path: "/etc/brightchain/recipients", addresses: ["a@brightchain.org", "b@brightchain.org"] },
      },
    };
    expect(registryFiles(node)).toEqual([
      {
        path: "/etc/brightchain/recipients",
        mode: 0o640,
        owner: "root",
        group: "brightchain",
        content:
          "# Rendered by brightchain-gateway from gateway:recipients; local edits are overwritten.\na@brightchain.org\nb@brightchain.org\n",
        notify: [],
      },
    ]);
  });
});
