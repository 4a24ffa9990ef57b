// The README's main job: `npm run lab` boots the lab, deploys both example stacks with the Pulumi program's own
// commands, sends a message from outside and shows where it landed; `npm run lab:down` removes the lab. Run as
// a user would, through the CLI, and the command the demo prints to look at the store is run too.
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { labStatus } from "../../infra/lab/lab";

const repo = path.resolve(__dirname, "../..");

function gateway(args: string[]): { status: number | null; output: string; stdout: string } {
  const result = spawnSync("node", ["bin/gateway.cjs", ...args], { cwd: repo, encoding: "utf8", timeout: 1_500_000 });
  return { status: result.status, stdout: result.stdout, output: `${result.stdout}${result.stderr}` };
}

describe("npm run lab (the demo)", () => {
  it("ends with the demo message in the store, and lab:down leaves no lab", () => {
    try {
      const demo = gateway(["lab", "demo"]);
      expect(demo.status, demo.output).toBe(0);
      expect(demo.stdout).toMatch(
        /landed in the BrightChain store on mail\.brightchain\.org:\n {2}recipient demo@brightchain\.org, folder inbox, subject "Hello from outside\.test"/,
      );
      const look = /npx gateway lab exec mail (.+ list .+)/.exec(demo.stdout);
      expect(look, demo.stdout).not.toBeNull();
      const list = gateway(["lab", "exec", "mail", ...look![1]!.split(" ")]);
      expect(list.status, list.output).toBe(0);
      expect(list.stdout).toMatch(/\tinbox\tdemo@brightchain\.org\talice@outside\.test\tHello from outside\.test\t/);
    } finally {
      const down = gateway(["lab", "down"]);
      expect(down.status, down.output).toBe(0);
    }
    expect(labStatus().up).toBe(false);
  });
});
