// Bundles one runtime/bin entry the way runtime/build.mjs does, into a directory of the test's own, so a
// test runs the same self-contained artifact the gateway host runs without depending on the other entries.
import { build } from "esbuild";
import { join } from "node:path";

export async function bundleRuntimeEntry(entry: string, outDir: string): Promise<string> {
  const outfile = join(outDir, `${entry}.cjs`);
  await build({
    entryPoints: [join(__dirname, "..", "..", "runtime", "bin", `${entry}.ts`)],
    outfile,
    bundle: true,
    platform: "node",
    target: "node18",
    format: "cjs",
    legalComments: "none",
    banner: { js: "#!/usr/bin/env node" },
    logLevel: "warning",
  });
  return outfile;
}
