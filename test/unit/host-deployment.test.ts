// hostDeployment is what GatewayHost builds a node from: the plan computed once, and the same steps, host state and
// teardown as hostPlan, hostState and hostTeardown give for the same arguments.
import { describe, expect, it } from "vitest";
import { hostDeployment, hostPlan, hostState, hostTeardown } from "../../infra/plan";
import { hostDirectories, hostFiles } from "../../infra/render";
import { examplePrimary, exampleRelay, exampleSecrets } from "../fixtures/nodes";

const artifacts = [{ name: "brightchain-lookup.cjs", content: "// lookup\n" }];

describe("hostDeployment", () => {
  for (const [role, node] of [
    ["primary", examplePrimary],
    ["relay", exampleRelay],
  ] as const) {
    it(`gives the ${role} the steps, host state and teardown of hostPlan, hostState and hostTeardown`, () => {
      const files = hostFiles(node, exampleSecrets);
      const directories = hostDirectories(node);
      const options = { sshPort: 2222 };
      const deployment = hostDeployment(node, files, directories, artifacts, options);
      expect(deployment.steps).toEqual(hostPlan(node, files, directories, artifacts, options));
      expect(deployment.state).toEqual(hostState(node, files, directories, artifacts, options));
      expect(deployment.teardown).toBe(hostTeardown(node, files, artifacts));
      // Every repair names a step of this deployment's own plan.
      const stepIds = new Set(deployment.steps.map((step) => step.id));
      expect(deployment.state.checks.flatMap((check) => check.repair).filter((id) => !stepIds.has(id))).toEqual([]);
    });
  }
});
