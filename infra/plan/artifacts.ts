// The built runtime (runtime/dist/*.cjs) as the plan installs it. Both the Pulumi program and `gateway playbook`
// read it here, so the two engines can never install different artifacts.
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import type { RuntimeArtifact } from "./types";

/** Thrown when the folder holds no build; `source` names where the folder came from (a flag, a variable). */
export class MissingRuntimeBuildError extends Error {
  constructor(source: string, dist: string) {
    super(
      `${source} ${JSON.stringify(dist)} holds no built runtime (*.cjs); run \`npm run build --workspace runtime\` or point it at a build`,
    );
    this.name = "MissingRuntimeBuildError";
  }
}

export function readRuntimeArtifacts(dist: string, source: string): RuntimeArtifact[] {
  let names: string[] = [];
  try {
    names = readdirSync(dist)
      .filter((n) => n.endsWith(".cjs"))
      .sort();
  } catch {
    // A missing folder is reported below, with the fix.
  }
  if (names.length === 0) throw new MissingRuntimeBuildError(source, dist);
  return names.map((name) => ({ name, content: readFileSync(path.join(dist, name), "utf8") }));
}
