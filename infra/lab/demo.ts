// `gateway lab demo` (npm run lab): the whole product seen working once. Lab up, both example stacks deployed
// by the Pulumi program's own commands, a message sent from the outside host through the primary's MX, and
// where it landed in the BrightChain store. The lab stays up to look around; `npm run lab:down` removes it.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { deployStackToLab, labStackConfig, LAB_RECIPIENT_LOCAL_PARTS, type DeployResult } from "../deploy";
import { LAB_STACKS } from "../deploy/labStack";
import { parseGatewayConfig, readStackConfigFiles } from "../model/config";
import type { GatewayNode } from "../model/types";
import { assertRoot, labExec, labStatus, labUp } from "./lab";
import { takeLabLock } from "./lock";
import { ensureLabPrerequisites } from "./prerequisites";
import { consoleProgress, type ProgressReporter } from "./process";

/** One of LAB_RECIPIENT_LOCAL_PARTS: the lab stacks' gateway:recipients. */
const DEMO_RECIPIENT_LOCAL_PART: (typeof LAB_RECIPIENT_LOCAL_PARTS)[number] = "demo";
const DEMO_SENDER = "alice@outside.test";
const STORE_DEADLINE_MS = 120_000;

function labNode(projectDir: string, stack: string): GatewayNode {
  const lab = labStackConfig(stack, projectDir);
  return parseGatewayConfig({ ...readStackConfigFiles(projectDir, stack).values, ...lab.overrides });
}

async function run(host: string, command: string, what: string): Promise<string> {
  const result = await labExec(host, command);
  if (result.exitCode !== 0) {
    throw new Error(
      `lab demo: ${what} failed on ${host} (exit ${result.exitCode}): ${command}\n${result.stdout}${result.stderr}`,
    );
  }
  return result.stdout;
}

/** Python is on every lab host (Ansible needs it); smtplib is the least the outside world can send with. */
function sendScript(to: string, mx: string): string {
  return [
    "import smtplib, email.utils",
    "from email.message import EmailMessage",
    "m = EmailMessage()",
    `m["From"] = "${DEMO_SENDER}"`,
    `m["To"] = "${to}"`,
    `m["Subject"] = "Hello from outside.test"`,
    `m["Message-ID"] = email.utils.make_msgid(domain="outside.test")`,
    `m["Date"] = email.utils.formatdate()`,
    `m.set_content("This message crossed the lab: outside -> ${mx}:25 -> Postfix -> drop Maildir -> InboundProcessor -> store.\\n")`,
    `with smtplib.SMTP("${mx}", 25, timeout=30) as s:`,
    "    s.starttls()",
    "    s.send_message(m)",
    "print(m['Message-ID'])",
  ].join("\n");
}

async function waitForStoreEntry(node: GatewayNode, recipient: string): Promise<string> {
  const list = `node ${join(node.runtime.installDir, "brightchain-store.cjs")} list --json --recipient ${recipient} --store ${node.runtime.storeDir}`;
  const deadline = Date.now() + STORE_DEADLINE_MS;
  for (;;) {
    const entries = (await run("mail", list, "reading the store")).trim();
    if (entries !== "") return entries.split("\n").at(-1)!;
    if (Date.now() > deadline) {
      const queue = await labExec(
        "mail",
        "postqueue -p; ls -l /var/spool/brightchain/incoming/new /var/spool/brightchain/errors",
      );
      throw new Error(
        `lab demo: no store entry for ${recipient} on mail after ${STORE_DEADLINE_MS / 1000} s\n${queue.stdout}${queue.stderr}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

export interface LabDemoOptions {
  /**
   * The caller already holds the lab lock for this process (a lab suite that runs the demo as its bring-up):
   * taking it again would wait for ourselves.
   */
  holdsLabLock?: boolean;
  /** Lab progress lines (lab up, prerequisites); default on stderr with elapsed seconds. */
  progress?: ProgressReporter;
}

export interface LabDemoResult {
  /** Each stack's deploy, in the order run (primary, relay). */
  deploys: Record<string, DeployResult>;
  messageId: string;
  store: { sha3: string; folder: string; subject?: string };
}

/** `gateway lab demo`: returns the exit code; the lines go to `say`. */
export async function labDemo(projectDir: string, say: (line: string) => void, options: LabDemoOptions = {}): Promise<number> {
  await runLabDemo(projectDir, say, options);
  return 0;
}

export async function runLabDemo(
  projectDir: string,
  say: (line: string) => void,
  options: LabDemoOptions = {},
): Promise<LabDemoResult> {
  const progress = options.progress ?? consoleProgress();
  // First: on a new machine the demo installs the lab's packages (or names the command) before building anything.
  await ensureLabPrerequisites(progress);
  assertRoot();
  const build = spawnSync("npm", ["run", "build", "-w", "runtime"], { cwd: projectDir, stdio: "inherit" });
  if (build.status !== 0 || !existsSync(join(projectDir, "runtime", "dist"))) {
    throw new Error(`lab demo: building the runtime (npm run build -w runtime) failed with exit ${build.status}`);
  }
  const release = options.holdsLabLock ? () => undefined : await takeLabLock(900_000);
  try {
    if (!labStatus().up) await labUp({ projectDir, progress });
    const deploys: Record<string, DeployResult> = {};
    for (const stack of LAB_STACKS) {
      const lab = labStackConfig(stack, projectDir);
      say(
        `[demo] deploying stack ${stack} to ${lab.host.name} (gateway:os ${lab.overrides["gateway:os"] ?? "unset"}) with the Pulumi program's own commands`,
      );
      const result = await deployStackToLab({ stack, projectDir, progress: (line) => say(`  ${line}`) });
      say(`[demo] ${stack}: ${result.executed.length} commands run in ${result.seconds.toFixed(1)} s`);
      deploys[stack] = result;
    }
    const primary = labNode(projectDir, "primary");
    // The lab stacks list the demo user in gateway:recipients: both nodes' registries already know it.
    const recipient = `${DEMO_RECIPIENT_LOCAL_PART}@${primary.domain}`;

    say(`[demo] outside sends ${DEMO_SENDER} -> ${recipient} via ${primary.host.hostname}:25`);
    const messageId = (
      await run("outside", `python3 - <<'EOF'\n${sendScript(recipient, primary.host.hostname)}\nEOF`, "sending the demo message")
    ).trim();
    const entry = JSON.parse(await waitForStoreEntry(primary, recipient)) as LabDemoResult["store"];
    const storeCli = `node ${join(primary.runtime.installDir, "brightchain-store.cjs")}`;
    const storeFlag = `--store ${primary.runtime.storeDir}`;
    say("");
    say(`The demo message ${messageId} landed in the BrightChain store on ${primary.host.hostname}:`);
    say(`  recipient ${recipient}, folder ${entry.folder}, subject "${entry.subject ?? ""}", sha3 ${entry.sha3.slice(0, 16)}…`);
    say("Look at it:");
    say(`  npx gateway lab exec mail ${storeCli} list ${storeFlag}`);
    say(`  npx gateway lab exec mail ${storeCli} show ${entry.sha3.slice(0, 16)} ${storeFlag}`);
    say("Remove the lab: npm run lab:down");
    return { deploys, messageId, store: entry };
  } finally {
    release();
  }
}
