// brightchain-send: sends one message through the gateway's submission service from the shell.
//   brightchain-send --from A --to B [--to C] [--subject S] [--file message.eml] [< body]
// With --file the message is sent as is (envelope from --from/--to); otherwise stdin is the plain-text body.
// Exit: 0 accepted; 1 permanently refused (5xx, login refused, no STARTTLS); 75 still failing after the
// retries (EX_TEMPFAIL); 64 bad usage; 78 bad GATEWAY_* variable. The server's text is always printed.
import { readFileSync } from "node:fs";
import { FlagError, parseCommandLine } from "../../shared/cli-flags";
import { ConfigError, loadSendConfig } from "../src/config";
import { SubmissionError, sendViaSubmission, type OutgoingMessage } from "../src/outbound/submission-client";

const USAGE =
  "usage: brightchain-send --from ADDRESS --to ADDRESS [--to ADDRESS…] [--subject TEXT] [--file MESSAGE.eml] [< body]";
const EX_USAGE = 64;
const EX_TEMPFAIL = 75;
const EX_CONFIG = 78;

function fail(code: number, message: string): never {
  process.stderr.write(`brightchain-send: ${message}\n`);
  process.exit(code);
}

function readStdin(): Buffer {
  if (process.stdin.isTTY) return Buffer.alloc(0);
  return readFileSync(0);
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseCommandLine(process.argv.slice(2), {
      from: { type: "string" },
      to: { type: "string", multiple: true },
      subject: { type: "string" },
      file: { type: "string" },
    }).values;
  } catch (error) {
    if (error instanceof FlagError) fail(EX_USAGE, `${error.message}\n${USAGE}`);
    throw error;
  }
  const to = (args.to ?? [])
    .flatMap((t) => t.split(","))
    .map((t) => t.trim())
    .filter((t) => t !== "");
  if (args.from === undefined || to.length === 0) fail(EX_USAGE, `--from and at least one --to are required\n${USAGE}`);

  let config;
  try {
    config = loadSendConfig();
  } catch (error) {
    if (error instanceof ConfigError) fail(EX_CONFIG, error.message);
    throw error;
  }

  const message: OutgoingMessage =
    args.file === undefined
      ? { from: args.from, to, subject: args.subject ?? "", text: readStdin().toString("utf8") }
      : { from: args.from, to, raw: readFileSync(args.file) };

  try {
    const result = await sendViaSubmission(
      message,
      {
        host: config.postfixHost,
        port: config.postfixPort,
        user: config.postfixUser,
        pass: config.postfixPass,
        caFile: config.postfixCaFile,
      },
      (attempt, waitMs, reason) =>
        process.stderr.write(`brightchain-send: attempt ${attempt} failed (${reason}); retrying in ${waitMs} ms\n`),
    );
    process.stdout.write(`accepted for ${result.accepted.join(", ")}: ${result.response}\n`);
  } catch (error) {
    if (error instanceof SubmissionError)
      fail(error.permanent ? 1 : EX_TEMPFAIL, `${error.permanent ? "refused" : "not sent"}: ${error.message}`);
    throw error;
  }
}

main().catch((error: unknown) => fail(1, (error as Error).stack ?? String(error)));
