// Delivery rate of the two drop transports with real Postfix: `npx tsx bench/drop/run.ts [messages]`.
// For each transport a throwaway Postfix (rendered main.cf/master.cf as test/helpers/postfix-server.ts's
// renderedPostfixOptions runs them) takes N messages over SMTP while every message is put on hold, then
// the hold queue is released at once and the clock runs until N files are in incoming/new: the figure is
// delivery alone, not the SMTP conversation. Prints files/s per transport and pipe/virtual.
import { rmSync } from "node:fs";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { examplePrimary } from "../../test/fixtures/nodes";
import type { DropTransport } from "../../infra/model/types";
import { renderedPostfixOptions, startPostfix, waitFor, withTestDropSpool } from "../../test/helpers/postfix-server";
import { SmtpClient, countFiles, scratchDir, startSocketmap } from "../../test/helpers/postfix-tools";

const execFileAsync = promisify(execFile);
const CONNECTIONS = 4;

async function inject(port: number, count: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    const { client } = await SmtpClient.open(port);
    await client.command("EHLO bench.example.net");
    while (next < count) {
      const n = next++;
      for (const [command, expected] of [
        ["MAIL FROM:<bench@example.net>", "250"],
        [`RCPT TO:<user${n % 10}@brightchain.org>`, "250"],
      ] as const) {
        const reply = await client.command(command);
        if (!reply.startsWith(expected)) throw new Error(`message ${n}: ${command} got ${reply}`);
      }
      const reply = await client.data(`From: bench@example.net\nSubject: bench ${n}\n\n${"x".repeat(2000)}\n`);
      if (!reply.startsWith("250")) throw new Error(`message ${n}: DATA got ${reply}`);
    }
    await client.close();
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
}

async function measure(transport: DropTransport, count: number): Promise<number> {
  const root = scratchDir(`bench-drop-${transport}-`);
  const socketmap = await startSocketmap(new Set(Array.from({ length: 10 }, (_, i) => `user${i}@brightchain.org`)));
  try {
    const { node, maildropScript } = withTestDropSpool(
      { ...examplePrimary, lookup: { ...examplePrimary.lookup, port: socketmap.port } },
      root,
      transport,
    );
    const instance = await startPostfix(
      renderedPostfixOptions(node, {
        maildropScript,
        // Every accepted message waits on hold, so the release below starts delivery of all N at once.
        main: { smtpd_data_restrictions: "check_client_access static:HOLD" },
      }),
    );
    try {
      await inject(instance.smtpPort, count);
      await waitFor(`${count} messages on hold`, async () => (await instance.queuedIds()).length === count, 60_000);

      const newDir = join(node.drop.mailDropDir, "new");
      const started = process.hrtime.bigint();
      await execFileAsync("postsuper", ["-c", instance.configDir, "-H", "ALL"]);
      await instance.flushQueue();
      await waitFor(`${count} files in ${newDir}`, () => countFiles(newDir) === count, 300_000);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      return count / seconds;
    } finally {
      await instance.stop();
    }
  } finally {
    await socketmap.close();
    rmSync(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 300);
  if (!Number.isInteger(count) || count < 1)
    throw new Error(`messages=${process.argv[2]} is invalid; accepted: a positive integer`);
  const virtualRate = await measure("virtual", count);
  const pipeRate = await measure("pipe", count);
  console.log(`messages per transport: ${count}`);
  console.log(`virtual(8): ${virtualRate.toFixed(1)} files/s`);
  console.log(`pipe + brightchain-maildrop: ${pipeRate.toFixed(1)} files/s`);
  console.log(`pipe / virtual: ${(pipeRate / virtualRate).toFixed(2)}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
