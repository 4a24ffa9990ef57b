// `pulumi preview` on a stack with several mistakes fails once, listing them all: the schema's problems and the
// deploy's own needs (the pinned host key) together, so the operator fixes everything in one pass.
import { expect, it } from "vitest";
import { runProgram } from "../helpers/pulumi-program";

it("lists every problem at once, the deploy's own needs (the pinned host key) among them", async () => {
  await expect(
    runProgram("primary", {
      "gateway:spamEngine": "amavis",
      "gateway:lookupPort": "70000",
      "gateway:ssh": JSON.stringify({ host: "203.0.113.10" }),
    }),
  ).rejects.toThrow(
    /^3 configuration problems:\n {2}- gateway:lookupPort="70000" is invalid; .*\n {2}- gateway:spamEngine="amavis" is invalid; .*\n {2}- gateway:ssh\.hostKey is not set; expected the host's SSH public key/,
  );
});
