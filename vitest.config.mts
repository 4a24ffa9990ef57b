import { defineConfig } from "vitest/config";

// Three suites, cheapest first. `npm test` runs only `unit` (renderers, model, protocol, Pulumi mocks);
// `host` starts real daemons from Debian on loopback; `lab` boots systemd-nspawn hosts.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts", "test/pulumi/**/*.test.ts"],
          pool: "forks",
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "host",
          include: ["test/host/**/*.test.ts"],
          pool: "forks",
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: "lab",
          include: ["test/lab/**/*.test.ts"],
          pool: "forks",
          fileParallelism: false,
          testTimeout: 600_000,
          hookTimeout: 1_200_000,
        },
      },
    ],
  },
});
