import { defineConfig } from "vitest/config";

// The mutation run (stryker.config.mjs) uses the unit suite only: host and lab tests start daemons and boot
// machines, far too slow to repeat per mutant, and they need root. Same files and settings as the `unit`
// project in vitest.config.mts, without the projects list (Stryker's vitest runner runs one config).
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts", "test/pulumi/**/*.test.ts"],
    // Serializes a Pulumi dynamic provider (closure serialization through the inspector), which fails on
    // Stryker's instrumented code ("Trace events are unavailable"); it tests infra/pulumi, outside the mutated folders.
    exclude: ["test/unit/host-state.test.ts"],
    pool: "forks",
    testTimeout: 20_000,
  },
});
