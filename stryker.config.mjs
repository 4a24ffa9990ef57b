// Mutation testing as a measure (docs/testing.md, "Mutation score"): `npm run mutation` mutates the runtime and
// the model/render/plan code and runs the unit suite against each mutant. Not part of `.ci/run`: a full run takes
// far longer than CI's budget. One folder alone: `npm run mutation -- --mutate 'runtime/src/lookup/**/*.ts'`.
// The TypeScript checker (drops mutants that do not compile) is opt-in: STRYKER_TS_CHECK=1 npm run mutation.
const typescriptCheck = process.env.STRYKER_TS_CHECK === "1";

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutation.config.mts", related: true },
  coverageAnalysis: "perTest",
  mutate: ["runtime/src/**/*.ts", "infra/model/**/*.ts", "infra/render/**/*.ts", "infra/plan/**/*.ts", "!**/*.d.ts"],
  ...(typescriptCheck
    ? { checkers: ["typescript"], tsconfigFile: "tsconfig.json", typescriptChecker: { prioritizePerformanceOverAccuracy: true } }
    : {}),
  // 2 cores shared with other work: never more than 2 test processes.
  concurrency: 2,
  timeoutMS: 3_000,
  incremental: true,
  incrementalFile: "reports/stryker-incremental.json",
  reporters: ["html", "json", "clear-text", "progress"],
  htmlReporter: { fileName: "reports/mutation/mutation.html" },
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  ignorePatterns: ["bench", ".lab", ".github", "test/host", "test/lab"],
  tempDirName: ".stryker-tmp",
  cleanTempDir: true,
};
