// Every debian-13 node variant's host files as Debian 13's own tools read them, inside a trixie root (the lab's
// cached base plus a cached layer with the mail packages, test/helpers/release-root.ts): the plan's own steps
// install the files (system user, directories, each file with its mode and owner, the registry, the DKIM key),
// a self-signed certificate stands where certbot would put one, then postconf -n, postfix check, doveconf -n,
// rspamadm configtest, spamassassin --lint, opendkim -n and systemd-analyze verify must all exit 0 without a
// warning. The machine's own Debian 12 tools check the debian-12 renders in the other host tests.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LAB_SUBMISSION_USER } from "../../infra/deploy/labStack";
import type { DropTransport, GatewayNode, GatewaySecrets, HostFile } from "../../infra/model/types";
import { readRuntimeArtifacts } from "../../infra/plan/artifacts";
import {
  STEP_DIRECTORIES,
  STEP_DKIM_KEY,
  STEP_POSTFIX_CHECK,
  STEP_RECIPIENT_REGISTRY,
  STEP_SYSTEM_USER,
  fileStepId,
  hostPlan,
} from "../../infra/plan/index";
import { shellQuote } from "../../infra/plan/shell";
import { DOVECOT_CONF_PATH } from "../../infra/render/dovecot";
import { hostDirectories, hostFiles } from "../../infra/render/index";
import { dkimKeyPaths } from "../../infra/render/opendkim";
import { postfixDaemonUnit, UNIT_DIR } from "../../infra/render/systemd";
import { exampleSecrets } from "../fixtures/nodes";
import { openReleaseRoot, releaseNodeVariants, type ReleaseRoot } from "../helpers/release-root";

const RELEASE = "debian-13";
const progress = (line: string): void => console.log(`[${RELEASE} root] ${line}`);
const secrets: GatewaySecrets = { ...exampleSecrets, submissionUsers: [LAB_SUBMISSION_USER] };
const artifacts = readRuntimeArtifacts(join(__dirname, "..", "..", "runtime", "dist"), "runtime/dist");

/** Both drop transports on a primary (they render different master.cf/main.cf); a relay has no drop. */
const variants: { name: string; node: GatewayNode }[] = releaseNodeVariants(RELEASE).flatMap((node) => {
  const transports: DropTransport[] = node.role === "primary" ? ["virtual", "pipe"] : [node.drop.transport];
  return transports.map((transport) => ({
    name: `${node.role}-${node.spam.engine}${node.role === "primary" ? `-${transport}` : ""}`,
    node: { ...node, drop: { ...node.drop, transport } },
  }));
});

/** The lines Postfix and Dovecot tools use for a complaint: "postconf: warning: …", "doveconf: Fatal: …". */
function complaints(output: string): string[] {
  return output.split("\n").filter((line) => /\b(warning|error|fatal|panic)\s*:/i.test(line));
}

type Run = Awaited<ReturnType<ReleaseRoot["run"]>>;

/** Exit 0 and no complaint; the tool's whole output is the failure message. */
function expectClean(what: string, result: Run): void {
  const message = `${what} (exit ${result.exitCode}):\n${result.output}`;
  expect(complaints(result.output), message).toEqual([]);
  expect(result.exitCode, message).toBe(0);
}

/** Exit 0 and not a word of output (spamassassin --lint, opendkim -n, systemd-analyze verify say nothing when content). */
function expectSilent(what: string, result: Run): void {
  const message = `${what} (exit ${result.exitCode}):\n${result.output}`;
  expect(result.output, message).toBe("");
  expect(result.exitCode, message).toBe(0);
}

/**
 * Rspamd's stock fuzzy_check module resolves rspamd.com's fuzzy servers while loading; the root has no network,
 * so these lines come from the test's sandbox, not from our files (Debian 12's rspamadm prints them too).
 */
const RSPAMD_OFFLINE_LINES = [/^address resolution for fuzzy\d\.rspamd\.com failed: /, /^cannot read servers definition$/];

/** The plan's steps that put files and identities on a host; packages are the layer's, services never start. */
const DEPLOY_STEPS = new Set<string>([STEP_SYSTEM_USER, STEP_DIRECTORIES, STEP_RECIPIENT_REGISTRY, STEP_DKIM_KEY]);

async function deploy(root: ReleaseRoot, node: GatewayNode): Promise<HostFile[]> {
  const files = hostFiles(node, secrets);
  const plan = hostPlan(node, files, hostDirectories(node), artifacts);
  const fileSteps = new Set([
    ...files.map((file) => fileStepId(file.path)),
    ...artifacts.map((a) => fileStepId(join(node.runtime.installDir, a.name))),
  ]);
  for (const step of plan.filter((s) => DEPLOY_STEPS.has(s.id) || fileSteps.has(s.id))) {
    const result = await root.sh(step.command, step.stdin);
    if (result.exitCode !== 0) {
      throw new Error(`plan step ${step.id} failed in the ${RELEASE} root (exit ${result.exitCode}):\n${result.output}`);
    }
  }
  // Where certbot would have put the node's certificate: Postfix names these files in main.cf.
  const { certFile, keyFile } = node.tls;
  const cert = await root.sh(
    [
      "set -eu",
      `mkdir -p ${shellQuote(join(certFile, ".."))} ${shellQuote(join(keyFile, ".."))}`,
      `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=${node.host.hostname} -keyout ${shellQuote(keyFile)} -out ${shellQuote(certFile)} 2>&1`,
      `chmod 0600 ${shellQuote(keyFile)}`,
    ].join("\n"),
  );
  if (cert.exitCode !== 0) throw new Error(`self-signed certificate: ${cert.output}`);
  return files;
}

function renderedUnits(node: GatewayNode, files: HostFile[]): string[] {
  const services = files.map((file) => file.path).filter((path) => path.startsWith(`${UNIT_DIR}/`) && path.endsWith(".service"));
  // The drop-in is verified as part of the unit it extends (Debian's packaged postfix@.service).
  const dropIns = files.some((file) => file.path.startsWith(`${UNIT_DIR}/${postfixDaemonUnit(node)}.d/`));
  return [...services, ...(dropIns ? [postfixDaemonUnit(node)] : [])];
}

describe.each(variants)(`$name on ${RELEASE}`, ({ node }) => {
  let root: ReleaseRoot | undefined;
  let files: HostFile[] = [];
  const has = (path: string): boolean => files.some((file) => file.path === path);
  const rendered = hostFiles(node, secrets).map((file) => file.path);

  beforeAll(async () => {
    root = await openReleaseRoot(RELEASE, progress);
    files = await deploy(root, node);
  }, 1_800_000);
  afterAll(() => root?.remove());

  it("postconf -n prints the rendered settings and no warning", async () => {
    const result = await root!.run(["postconf", "-n"]);
    expectClean("postconf -n", result);
    expect(result.stdout).toContain(`myhostname = ${node.host.hostname}`);
  });

  it("postconf -M lists the rendered services without a warning", async () => {
    expectClean("postconf -M", await root!.run(["postconf", "-M"]));
  });

  it("postfix check (the plan's own step) passes", async () => {
    const step = hostPlan(node, hostFiles(node, secrets), hostDirectories(node), artifacts).find(
      (s) => s.id === STEP_POSTFIX_CHECK,
    )!;
    expectClean("postfix check", await root!.sh(step.command));
  });

  if (rendered.includes(DOVECOT_CONF_PATH)) {
    it("doveconf -n accepts the rendered dovecot.conf", async () => {
      expectClean("doveconf -n", await root!.run(["doveconf", "-n"]));
    });
  }

  if (node.spam.engine === "rspamd") {
    it("rspamadm configtest says syntax OK", async () => {
      const result = await root!.run(["rspamadm", "configtest"]);
      const message = `rspamadm configtest (exit ${result.exitCode}):\n${result.output}`;
      const said = result.output.split("\n").filter((line) => line !== "" && !RSPAMD_OFFLINE_LINES.some((re) => re.test(line)));
      expect(said, message).toEqual(["syntax OK"]);
      expect(result.exitCode, message).toBe(0);
    });
  }

  if (node.spam.engine === "spamassassin") {
    it("spamassassin --lint passes on the rendered local.cf", async () => {
      expect(has("/etc/spamassassin/local.cf")).toBe(true);
      expectSilent("spamassassin --lint", await root!.run(["spamassassin", "--lint"]));
    });
  }

  if (rendered.includes("/etc/opendkim.conf")) {
    it("opendkim -n accepts the rendered opendkim.conf", async () => {
      expectSilent("opendkim -n", await root!.run(["opendkim", "-n", "-x", "/etc/opendkim.conf"]));
    });
  }

  it("systemd-analyze verify reports nothing for the rendered units", async () => {
    const units = renderedUnits(node, files);
    expect(units).toContain(`${UNIT_DIR}/brightchain-lookup.service`);
    // --man=no: the root has no man-db, and whether Debian's postfix@.service documents itself is not ours.
    const argv = ["systemd-analyze", "verify", "--man=no", ...units];
    expectSilent(argv.join(" "), await root!.run(argv));
  });
});

// Each check above would fail on a broken file: a clean pass means the tool read ours and found nothing.
describe(`the ${RELEASE} checks are real`, () => {
  const node = variants[0]!.node;
  let root: ReleaseRoot | undefined;

  beforeAll(async () => {
    root = await openReleaseRoot(RELEASE, progress);
    await deploy(root, node);
  }, 1_800_000);
  afterAll(() => root?.remove());

  it("postconf warns about a misspelt main.cf parameter", async () => {
    const result = await root!.sh(
      "set -eu\nmkdir /tmp/bad\ncp /etc/postfix/main.cf /etc/postfix/master.cf /tmp/bad/\n" +
        "echo 'smtpd_tls_security_levle = may' >> /tmp/bad/main.cf\npostconf -c /tmp/bad -n >/dev/null",
    );
    expect(complaints(result.output)).toEqual([expect.stringContaining("unused parameter: smtpd_tls_security_levle")]);
  });

  it("doveconf -n refuses a setting Dovecot 2.4 does not know", async () => {
    const result = await root!.sh(
      `cp ${DOVECOT_CONF_PATH} /tmp/dovecot.conf && echo 'auth_mechanism = plain' >> /tmp/dovecot.conf && doveconf -n -c /tmp/dovecot.conf`,
    );
    expect(result.exitCode).not.toBe(0);
    expect(complaints(result.output)).toEqual([expect.stringContaining("auth_mechanism")]);
  });

  it("opendkim -n refuses a key others can read", async () => {
    const { privateKey } = dkimKeyPaths(node);
    const result = await root!.sh(`chmod 0644 ${shellQuote(privateKey)} && opendkim -n -x /etc/opendkim.conf`);
    expect(result.exitCode).not.toBe(0);
    expect(result.output).toContain("can be read or written by other users");
  });

  it("spamassassin --lint refuses a bad directive", async () => {
    const result = await root!.sh("echo 'required_score five' >> /etc/spamassassin/local.cf && spamassassin --lint");
    expect(result.exitCode).not.toBe(0);
  });

  it("rspamadm configtest refuses broken syntax in local.d", async () => {
    const result = await root!.sh("echo 'reject = ;;{' > /etc/rspamd/local.d/actions.conf && rspamadm configtest");
    expect(result.exitCode).not.toBe(0);
    expect(result.output).not.toContain("syntax OK");
  });

  it("systemd-analyze verify reports an unknown key", async () => {
    const unit = `${UNIT_DIR}/brightchain-lookup.service`;
    const result = await root!.sh(`sed -i 's/^ProtectHome=/ProtectHom=/' ${unit} && systemd-analyze verify --man=no ${unit}`);
    expect(result.output).toContain("Unknown key 'ProtectHom'");
  });
});
