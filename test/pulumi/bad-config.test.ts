// A bad stack configuration stops the program before any resource exists, naming the key, the value and what
// is accepted — the message `pulumi preview` shows.
import { expect, it } from "vitest";
import { runProgram } from "../helpers/pulumi-program";

it("refuses an unknown spam engine with the key, the value and the accepted ones", async () => {
  await expect(runProgram("primary", { "gateway:spamEngine": "amavis" })).rejects.toThrow(
    'gateway:spamEngine="amavis" is invalid; expected spamassassin, rspamd, none',
  );
});
