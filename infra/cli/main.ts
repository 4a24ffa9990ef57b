// Entry point bin/gateway.cjs loads: runs the CLI with the process's arguments. The logic is in dispatch.ts so
// tests can call it without a process.
import { main } from "./dispatch";

main(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  cwd: process.cwd(),
}).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`gateway: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
