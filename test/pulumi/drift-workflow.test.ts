// The drift workflow must cover every stack the repository defines and ask pulumi/actions for a refreshing,
// change-refusing preview; a stack added without a drift job would silently go unchecked.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../helpers/pulumi-program";

interface Step {
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
}
interface Workflow {
  on: Record<string, unknown>;
  jobs: Record<string, { strategy: { matrix: { stack: string[] } }; steps: Step[] }>;
}

const workflow = parse(readFileSync(join(REPO_ROOT, ".github/workflows/drift.yml"), "utf8")) as Workflow;
const job = workflow.jobs.preview!;
const pulumiStep = job.steps.find((s) => s.uses?.startsWith("pulumi/actions@"))!;

// The inputs pulumi/actions declares in its action.yml (checked against the action's repository).
const PULUMI_ACTION_INPUTS = new Set([
  "command",
  "stack-name",
  "work-dir",
  "comment-on-pr",
  "github-token",
  "cloud-url",
  "secrets-provider",
  "parallel",
  "message",
  "config-map",
  "expect-no-changes",
  "diff",
  "replace",
  "target",
  "target-dependents",
  "policyPacks",
  "policyPackConfigs",
  "refresh",
  "upsert",
  "edit-pr-comment",
  "color",
]);

describe(".github/workflows/drift.yml", () => {
  it("runs on a schedule and by hand, never on pull requests (their code would run with the deploy key)", () => {
    expect(Object.keys(workflow.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    expect(JSON.stringify(workflow)).not.toContain("pull_request");
    expect((workflow.on.schedule as { cron: string }[])[0]!.cron).toMatch(/^\S+ \S+ \S+ \S+ \S+$/);
  });

  it("checks every stack that has a Pulumi.<stack>.yaml", () => {
    const stacks = readdirSync(REPO_ROOT)
      .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
      .filter((s): s is string => s !== undefined)
      .sort();
    expect([...job.strategy.matrix.stack].sort()).toEqual(stacks);
  });

  it("previews with refresh and fails on any proposed change, using only inputs pulumi/actions knows", () => {
    expect(pulumiStep.with).toMatchObject({ command: "preview", refresh: true, "expect-no-changes": true });
    for (const key of Object.keys(pulumiStep.with!)) expect(PULUMI_ACTION_INPUTS.has(key), key).toBe(true);
    expect(pulumiStep.env).toMatchObject({
      PULUMI_ACCESS_TOKEN: "${{ secrets.PULUMI_ACCESS_TOKEN }}",
      CLOUDFLARE_API_TOKEN: "${{ secrets.CLOUDFLARE_API_TOKEN }}",
    });
  });

  it("builds the runtime before previewing, since the program hashes the built artifacts", () => {
    const build = job.steps.findIndex((s) => s.run?.includes("npm run build --workspace runtime"));
    expect(build).toBeGreaterThan(-1);
    expect(build).toBeLessThan(job.steps.indexOf(pulumiStep));
  });
});
