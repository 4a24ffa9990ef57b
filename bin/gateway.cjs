#!/usr/bin/env node
// The CLI is TypeScript; tsx loads it directly so there is no build step to forget before `npx gateway`.
require("tsx/cjs");
require("../infra/cli/main.ts");
