// The fleet the other way round: the primary on Debian 12, the relay on Debian 13 (test/lab/scenarios.test.ts
// and ansible.test.ts run the stacks' own releases, primary 13 and relay 12). The lab stacks' gateway:os follows
// the host's release, so deploy engine 1 renders each node for the host it lands on; every mail scenario then
// runs on that fleet. First, on the fresh hosts: a stack whose gateway:os is not the host's release stops at the
// plan's first step, naming both, before anything is installed.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deployStackToLab, DeployStepError, labStackConfig, type DeployResult } from "../../infra/deploy";
import { labSuite, type LabHostName, type LabHostReleases } from "../../infra/lab/constants";
import { labDown, labStatus, labUp } from "../../infra/lab/lab";
import { parseGatewayConfig, parseGatewaySecrets, readStackConfigFiles } from "../../infra/model/config";
import { RELEASES } from "../../infra/model/releases";
import { hostFiles } from "../../infra/render";
import { on, tryOn } from "../helpers/lab-mail";
import {
  claimLab,
  describeMailScenarios,
  dkimVerifiesOnOutside,
  labTimer,
  readyGatewaysForMail,
  sendOutboundToBob,
  setUpOutside,
} from "../helpers/lab-scenarios";
import { uniqueSubject } from "../helpers/lab-mail";
import { bundleRuntimeEntry } from "../helpers/runtime-bundle";

const repo = path.resolve(__dirname, "../..");
const temp = mkdtempSync(path.join(tmpdir(), "gateway-swapped-"));
const dist = path.join(temp, "dist");
const timer = labTimer();
const suiteStarted = Date.now();
const SWAPPED: Partial<LabHostReleases> = { mail: "debian-12", mail2: "debian-13" };
const STACKS = [
  { stack: "primary", host: "mail" },
  { stack: "relay", host: "mail2" },
] as const satisfies readonly { stack: string; host: LabHostName }[];

let releaseLab: (() => void) | undefined;
const deployed: Record<string, DeployResult> = {};
/** What a deploy of each stack with the other release's gateway:os did on its fresh host. */
const mismatched: Record<string, { error: unknown; postfixInstalled: boolean }> = {};

const otherRelease = (host: LabHostName) => (SWAPPED[host] === "debian-12" ? "debian-13" : "debian-12");

beforeAll(async () => {
  releaseLab = await claimLab();
  for (const entry of readdirSync(path.join(repo, "runtime", "bin")).filter((name) => name.endsWith(".ts"))) {
    await bundleRuntimeEntry(entry.replace(/\.ts$/, ""), dist);
  }
  await timer.timed("lab up", () => labUp({ releases: SWAPPED, projectDir: repo, progress: () => undefined }));
  const outside = timer.timed("outside setup", setUpOutside);
  // Settled before a failed deploy ends the hook: afterAll's lab down must not cut outside's install short.
  const outsideSettled = outside.then(
    () => undefined,
    () => undefined,
  );
  try {
    for (const { stack, host } of STACKS) {
      const error = await timer
        .timed(`mismatched gateway:os ${stack}`, () =>
          deployStackToLab({
            stack,
            projectDir: repo,
            runtimeDist: dist,
            overrides: { "gateway:os": otherRelease(host) },
            progress: () => undefined,
          }),
        )
        .then(
          () => undefined,
          (failure: unknown) => failure,
        );
      const postfixInstalled = (await tryOn(host, "dpkg-query -W -f='${Status}' postfix 2>/dev/null")).stdout.includes(
        "install ok installed",
      );
      mismatched[stack] = { error, postfixInstalled };
    }
    for (const { stack } of STACKS) {
      deployed[stack] = await timer.timed(`apply ${stack}`, () =>
        deployStackToLab({ stack, projectDir: repo, runtimeDist: dist, progress: () => undefined }),
      );
    }
  } finally {
    await outsideSettled;
  }
  await outside;
  await readyGatewaysForMail();
  timer.timings["setup total"] = (Date.now() - suiteStarted) / 1000;
}, 3_600_000);

afterAll(async () => {
  try {
    if (releaseLab) await timer.timed("lab down", () => labDown({ progress: () => undefined }));
  } finally {
    releaseLab?.();
    rmSync(temp, { recursive: true, force: true });
    timer.timings["whole suite"] = (Date.now() - suiteStarted) / 1000;
    console.log(`swapped fleet lab timings (s): ${JSON.stringify(timer.timings)}`);
  }
}, 600_000);

describe("the swapped fleet: primary on Debian 12, relay on Debian 13", () => {
  it("boots each host on the release asked for, and the lab stacks' gateway:os follows it", async () => {
    for (const { stack, host } of STACKS) {
      const release = SWAPPED[host]!;
      expect(labStatus().hosts.find((status) => status.name === host)?.release).toBe(release);
      expect((await on(host, ". /etc/os-release && echo $VERSION_CODENAME")).trim()).toBe(labSuite(release));
      expect(labStackConfig(stack, repo).overrides["gateway:os"]).toBe(release);
    }
  });

  it.each(STACKS)(
    "stops the $stack deploy at its first step when gateway:os is not the host's release, naming both",
    ({ stack, host }) => {
      const { error, postfixInstalled } = mismatched[stack]!;
      expect(error).toBeInstanceOf(DeployStepError);
      const failure = (error as DeployStepError).failure;
      expect(failure.step).toBe(`node-os-release`);
      const found = SWAPPED[host]!;
      const configured = otherRelease(host);
      // The host's own name for its release (PRETTY_NAME), then the configured one.
      expect(failure.output).toMatch(
        new RegExp(
          `host runs Debian GNU/Linux ${RELEASES[found].versionId} \\(${RELEASES[found].codename}\\), gateway:os says ${configured}`,
        ),
      );
      expect((error as Error).message).toContain(`step "node-os-release" failed`);
      // Nothing after the first step ran: not even the packages.
      expect(postfixInstalled).toBe(false);
    },
  );

  it("deploys both stacks on the swapped fleet, the check step first", () => {
    for (const { stack } of STACKS) {
      // The teardown (its delete is the destroy) is created beside the steps, outside their order.
      const commands = deployed[stack]!.resources.filter(
        (r) => r.type === "command:remote:Command" && r.name !== `node-teardown`,
      );
      expect(commands[0]!.name).toBe(`node-os-release`);
      expect(commands.at(-1)!.name).toBe(`node-verify`);
      expect(commands.every((r) => r.action === "create")).toBe(true);
    }
  });
});

describe("mail end to end on the swapped fleet", () => {
  describeMailScenarios(timer);
});

describe("DKIM rotation on the swapped fleet's primary (Debian 12's OpenDKIM): a config change, the old record kept through its overlap", () => {
  const rotation = (keepUntil: string) => ({
    "gateway:dkimSelector": "rot2026",
    "gateway:dkimPrevious": JSON.stringify({ selector: "default", keepUntil }),
  });
  const selectorOf = (message: string) => /^DKIM-Signature:[^]*?\bs=([^;\s]+)/m.exec(message)?.[1];
  const published = async (selector: string) =>
    (await on("outside", `dig +short TXT ${selector}._domainkey.brightchain.org`)).replace(/["\s]/g, "");

  it("signs with the new selector once its record is served, old mail verifying through the overlap, and drops the old record after it", async () => {
    const before = await sendOutboundToBob(uniqueSubject("before rotation"));
    expect(selectorOf(before.message)).toBe("default");
    expect(await dkimVerifiesOnOutside(before.file)).toBe(true);

    const rotated = await timer.timed("dkim rotation", () =>
      deployStackToLab({
        stack: "primary",
        projectDir: repo,
        runtimeDist: dist,
        overrides: rotation("2099-12-31"),
        progress: () => undefined,
      }),
    );
    expect(rotated.executed.length).toBeGreaterThan(0);
    expect(await published("rot2026")).toMatch(/^v=DKIM1;.*p=[A-Za-z0-9+/]{200,}/);
    expect(await published("default")).toMatch(/^v=DKIM1;.*p=[A-Za-z0-9+/]{200,}/);
    const after = await sendOutboundToBob(uniqueSubject("after rotation"));
    expect(selectorOf(after.message)).toBe("rot2026");
    expect(await dkimVerifiesOnOutside(after.file)).toBe(true);
    // Mail signed before the switch, still in someone's inbox or queue, verifies while the overlap lasts.
    expect(await dkimVerifiesOnOutside(before.file)).toBe(true);

    await timer.timed("dkim rotation end of overlap", () =>
      deployStackToLab({
        stack: "primary",
        projectDir: repo,
        runtimeDist: dist,
        overrides: rotation("2000-01-01"),
        progress: () => undefined,
      }),
    );
    expect(await published("default")).toBe("");
    expect(await dkimVerifiesOnOutside(after.file)).toBe(true);
    expect(await dkimVerifiesOnOutside(before.file)).toBe(false);
  });
});

describe("turning a component off, then destroy (pulumi destroy as the lab engine runs it), last on this fleet", () => {
  it("switching the primary from SpamAssassin to Rspamd leaves no spamd or spamass-milter running, and the node verified", async () => {
    const switched = await timer.timed("spam engine switch primary", () =>
      deployStackToLab({
        stack: "primary",
        projectDir: repo,
        runtimeDist: dist,
        overrides: { "gateway:spamEngine": "rspamd" },
        progress: () => undefined,
      }),
    );
    expect(switched.executed.map((r) => r.name)).toEqual(expect.arrayContaining(["node-retire-components", "node-verify"]));
    const states = await on(
      "mail",
      'for u in spamd spamass-milter rspamd; do echo "$u $(systemctl is-active $u) $(systemctl is-enabled $u)"; done; true',
    );
    expect(states.trim().split("\n")).toEqual([
      "spamd inactive disabled",
      "spamass-milter inactive disabled",
      "rspamd active enabled",
    ]);
    // Only SpamAssassin's files were ours to remove; Debian's own stay with the package.
    expect((await tryOn("mail", "test -e /etc/default/spamass-milter")).exitCode).not.toBe(0);
  });

  it.each(STACKS)(
    "leaves $host with none of our services running or enabled, no secret file, and the stack's records gone",
    async ({ stack, host }) => {
      const lab = labStackConfig(stack, repo);
      const flat = { ...readStackConfigFiles(repo, stack).values, ...lab.overrides, ...lab.secrets };
      const node = parseGatewayConfig(flat);
      const files = hostFiles(node, parseGatewaySecrets(flat));
      const destroyed = await timer.timed(`destroy ${stack}`, () =>
        deployStackToLab({ stack, projectDir: repo, runtimeDist: dist, destroy: true, progress: () => undefined }),
      );
      expect(destroyed.resources.find((r) => r.name === `node-teardown`)?.action).toBe("delete");
      const units = await on(
        host,
        "systemctl list-units --all --plain --no-legend 'postfix*' 'brightchain-*' 'opendkim*' 'spamd*' 'spamass-milter*' 'rspamd*' 'dovecot*' | awk '$4 == \"running\" || $3 == \"active\" { print $1 }'",
      );
      expect(units.trim(), host).toBe("");
      expect(await on(host, "systemctl is-enabled postfix brightchain-lookup 2>/dev/null || true")).not.toMatch(/^enabled/m);
      // Every file the plan installed, the secret ones (shredded) among them.
      expect(files.some((file) => file.secret) || node.role === "relay").toBe(true);
      const left = await on(host, `for f in ${files.map((f) => f.path).join(" ")}; do [ -e "$f" ] && echo "$f"; done; true`);
      expect(left.trim(), host).toBe("");
      if (node.role === "primary") expect((await tryOn(host, "test -e /etc/dkim/default.private")).exitCode).not.toBe(0);
    },
  );

  it("has taken every record of both stacks out of the zone", async () => {
    expect((await on("outside", "dig +short MX brightchain.org")).trim()).toBe("");
    expect((await on("outside", "dig +short A mail.brightchain.org")).trim()).toBe("");
  });
});
