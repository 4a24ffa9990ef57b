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
    // A map beside the bundle, not inline: an inline one is part of the script source node keeps in memory
    // (15 MB more RSS for brightchain-inbound). Hosts get the .cjs only; the map stays with the release.
    sourcemap: "external",
    legalComments: "none",
    banner: { js: "#!/usr/bin/env node" },
    logLevel: "warning",
  });
}
console.log(`built ${entries.length} entries into ${join(root, "dist")}`);
