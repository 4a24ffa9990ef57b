// A stack without gateway:ssh.hostKey never reaches a host: pulumi-command would accept any key the address
// answers with, and give that machine root, the SASL password and the Cloudflare token.
import { expect, it } from "vitest";
import { runProgram } from "../helpers/pulumi-program";

it("refuses to deploy without a pinned host key, saying how to get one", async () => {
  const run = runProgram("primary", { "gateway:ssh": JSON.stringify({ host: "203.0.113.10", user: "root", port: 22 }) });
  await expect(run).rejects.toThrow(/^gateway:ssh\.hostKey is not set; expected the host's SSH public key as `type base64`/);
  await expect(run).rejects.toThrow(/ssh-keyscan -t ed25519 <address>/);
});
