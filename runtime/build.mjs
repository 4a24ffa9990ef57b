// Builds one self-contained CommonJS file per daemon/CLI in bin/, so the gateway host needs Node and
// nothing from npm. Every entry in bin/*.ts becomes dist/<name>.cjs.
import { build } from "esbuild";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const entries = readdirSync(join(root, "bin")).filter((f) => f.endsWith(".ts"));

for (const entry of entries) {
  await build({
    entryPoints: [join(root, "bin", entry)],
    outfile: join(root, "dist", entry.replace(/\.ts$/, ".cjs")),
    bundle: true,
    platform: "node",
    target: "node18",
    format: "cjs",
    sourcemap: "inline",
    legalComments: "none",
    banner: { js: "#!/usr/bin/env node" },
    logLevel: "warning",
  });
}
console.log(`built ${entries.length} entries into ${join(root, "dist")}`);
