// Property: no renderer throws on a configuration the schema accepted, and the parser throws nothing but a
// GatewayConfigError on one it refused. The configurations are drawn by test/helpers/config-arbitrary.ts.
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GatewayConfigError, type GatewayStack } from "../../infra/model/config";
import { dnsRecords, ptrExpectations, renderZoneFile } from "../../infra/render/dns";
import { hostDirectories, hostFiles } from "../../infra/render/index";
import { flatten, parse, stackConfig } from "../helpers/config-arbitrary";

/** What `gateway render` and `pulumi up` do with a node: every file, directory and DNS record. */
function renderAll({ node, secrets }: GatewayStack): void {
  hostFiles(node, secrets);
  hostDirectories(node);
  renderZoneFile(node.domain, dnsRecords(node), { notes: [] });
  ptrExpectations(node);
}

describe("every configuration the schema accepts renders", () => {
  it("as `pulumi up` renders it (deploy rules: the secrets the files carry are there)", () => {
    fc.assert(
      fc.property(stackConfig, (config) => {
        const parsed = parse(flatten(config), true);
        if (!(parsed instanceof GatewayConfigError)) renderAll(parsed);
      }),
      { numRuns: 400 },
    );
  });

  it("as `gateway render` renders it (secrets not given are stand-ins, as its withheld files are)", () => {
    const standIns = {
      submissionUsers: [{ username: "withheld", password: "withheld-password" }],
      certbotCloudflareToken: "withheld",
    };
    fc.assert(
      fc.property(stackConfig, (config) => {
        const parsed = parse(flatten(config), false);
        if (parsed instanceof GatewayConfigError) return;
        const secrets = {
          submissionUsers: parsed.secrets.submissionUsers.length > 0 ? parsed.secrets.submissionUsers : standIns.submissionUsers,
          certbotCloudflareToken: parsed.secrets.certbotCloudflareToken ?? standIns.certbotCloudflareToken,
        };
        renderAll({ ...parsed, secrets });
      }),
      { numRuns: 400 },
    );
  });

  it("the generator reaches both sides: a fair share of drawn configurations is accepted, the rest refused", () => {
    const drawn = fc.sample(stackConfig, { numRuns: 400, seed: 2026 }).map((config) => parse(flatten(config), true));
    const accepted = drawn.filter((result) => !(result instanceof GatewayConfigError)).length;
    expect(accepted).toBeGreaterThan(20);
    expect(drawn.length - accepted).toBeGreaterThan(20);
  });
});
