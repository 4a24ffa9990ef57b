// End-to-end mail scenarios (test/helpers/lab-scenarios.ts) on nodes deployed by engine 1: the Pulumi program's
// own commands over SSH, the primary stack to `mail` and the relay stack to `mail2`, its DNS records served by
// the lab DNS. test/lab/ansible.test.ts runs the same scenarios on nodes the playbook deployed.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { deployStackToLab } from "../../infra/deploy";
import { labDown, labUp } from "../../infra/lab/lab";
import { claimLab, describeMailScenarios, labTimer, readyGatewaysForMail, setUpOutside } from "../helpers/lab-scenarios";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const repo = path.resolve(__dirname, "../..");
const temp = mkdtempSync(path.join(tmpdir(), "gateway-scenarios-"));
const timer = labTimer();
const suiteStarted = Date.now();

let releaseLab: (() => void) | undefined;

beforeAll(async () => {
  releaseLab = await claimLab();
  const dist = path.join(temp, "dist");
  for (const entry of readdirSync(path.join(repo, "runtime", "bin")).filter((name) => name.endsWith(".ts"))) {
    await bundleRuntimeEntry(entry.replace(/\.ts$/, ""), dist);
  }
  await timer.timed("lab up", () => labUp({ progress: () => undefined }));
  const outside = timer.timed("outside setup", setUpOutside);
  // Settled before a failed deploy ends the hook: afterAll's lab down must not cut outside's install short.
  const outsideSettled = outside.then(
    () => undefined,
    () => undefined,
  );
  try {
    for (const stack of ["primary", "relay"])
      await timer.timed(`deploy ${stack}`, () =>
        deployStackToLab({ stack, projectDir: repo, runtimeDist: dist, progress: () => undefined }),
      );
  } finally {
    await outsideSettled;
  }
  await outside;
  await readyGatewaysForMail();
  timer.timings["setup total"] = (Date.now() - suiteStarted) / 1000;
}, 3_600_000);

afterAll(async () => {
  try {
    if (releaseLab) await timer.timed("lab down", () => labDown({ progress: () => undefined }));
  } finally {
    releaseLab?.();
    rmSync(temp, { recursive: true, force: true });
    timer.timings["whole suite"] = (Date.now() - suiteStarted) / 1000;
    console.log(`scenario lab timings (s): ${JSON.stringify(timer.timings)}`);
  }
}, 600_000);

describeMailScenarios(timer);
