// @pulumi/pulumi 3.270 requires Node 22 or later: the program's tests run on what `pulumi up` will run it on.
// The machine may have Node 20; the `node` devDependency puts Node 22 first on every npm script's PATH.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const major = (version: string): number => Number(/(\d+)/.exec(version)![1]);
const root = path.join(__dirname, "..", "..");
const manifest = (file: string) => JSON.parse(readFileSync(file, "utf8")) as { engines?: { node?: string } };

describe("the Node the Pulumi program runs on", () => {
  it("is at least what @pulumi/pulumi requires, here and in engines", () => {
    const required = major(manifest(path.join(root, "node_modules/@pulumi/pulumi/package.json")).engines!.node!);
    expect(required).toBeGreaterThanOrEqual(22);
    expect(major(process.versions.node)).toBeGreaterThanOrEqual(required);
    expect(major(manifest(path.join(root, "package.json")).engines!.node!)).toBeGreaterThanOrEqual(required);
  });
});
