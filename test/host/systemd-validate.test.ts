// The rendered units as systemd 252 reads them: `systemd-analyze verify` (which also loads the Postfix drop-in
// onto Debian's packaged postfix@.service) and the offline `systemd-analyze security` exposure score.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { gatewayEnvFiles, sendEnvFile } from "../../infra/render/gateway-env";
import { runtimeUnitFiles, postfixDaemonUnit } from "../../infra/render/systemd";
import { examplePrimary, exampleSecrets, nodeMatrix } from "../fixtures/nodes";
import { makeTempRoot, writeHostFiles } from "../helpers/render-to-dir";

const temps: (() => void)[] = [];
afterAll(() => temps.forEach((remove) => remove()));

function renderedUnitDir(node: (typeof nodeMatrix)[number]["node"]): string {
  const { root, remove } = makeTempRoot("bc-units");
  temps.push(remove);
  writeHostFiles(root, runtimeUnitFiles(node));
  return join(root, "etc/systemd/system");
}

function analyze(unitDir: string, args: string[]): { status: number | null; output: string } {
  const run = spawnSync("systemd-analyze", args, {
    cwd: unitDir,
    encoding: "utf8",
    // Our directory first, then the packaged units (postfix@.service, opendkim.service …); trailing ':' adds the defaults.
    env: { ...process.env, SYSTEMD_UNIT_PATH: `${unitDir}:/lib/systemd/system:`, SYSTEMD_LOG_COLOR: "0" },
  });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("runtime units under systemd-analyze", () => {
  it.each(nodeMatrix)("$name: verify reports nothing for the node's runtime units", ({ node }) => {
    const dir = renderedUnitDir(node);
    const units = runtimeUnitFiles(node)
      .map((file) => file.path)
      .filter((path) => /^\/etc\/systemd\/system\/brightchain-[a-z]+\.service$/.test(path))
      .map((path) => `./${basename(path)}`);
    expect(units).toContain("./brightchain-lookup.service");
    const verify = analyze(dir, ["verify", ...units]);
    expect(verify.output).toBe("");
    expect(verify.status).toBe(0);
  });

  it("the daemons load only files without the SASL password, and systemd accepts the path they may not open", () => {
    const { root, remove } = makeTempRoot("bc-units-env");
    temps.push(remove);
    writeHostFiles(root, [...runtimeUnitFiles(examplePrimary), ...gatewayEnvFiles(examplePrimary, exampleSecrets)]);
    const password = exampleSecrets.submissionUsers[0]!.password;
    expect(readFileSync(join(root, sendEnvFile(examplePrimary)), "utf8")).toContain(password);
    for (const name of ["brightchain-lookup", "brightchain-inbound"]) {
      const unit = readFileSync(join(root, `etc/systemd/system/${name}.service`), "utf8");
      const loaded = [...unit.matchAll(/^EnvironmentFile=-?(.+)$/gm)].map((match) => match[1]!);
      expect(loaded, name).toEqual([examplePrimary.runtime.envFile]);
      for (const file of loaded) expect(readFileSync(join(root, file), "utf8"), `${name}: ${file}`).not.toContain(password);
      expect(unit).toContain(`InaccessiblePaths=-${sendEnvFile(examplePrimary)}\n`);
    }
    const verify = analyze(join(root, "etc/systemd/system"), [
      "verify",
      "./brightchain-lookup.service",
      "./brightchain-inbound.service",
    ]);
    expect(verify.output).toBe("");
    expect(verify.status).toBe(0);
  });

  it("verify accepts an IP allow list with a node API address and scraper networks of both families", () => {
    const dir = renderedUnitDir({
      ...examplePrimary,
      lookup: { ...examplePrimary.lookup, registry: { kind: "http", url: "http://[2001:db8::7]:8080/registry" } },
      runtime: { ...examplePrimary.runtime, nodeUrl: "http://203.0.113.7:8080" },
      metrics: { ...examplePrimary.metrics, listenHost: "::", scrapers: ["198.51.100.0/24", "2001:db8:5::/64"] },
    });
    const verify = analyze(dir, ["verify", "./brightchain-lookup.service", "./brightchain-inbound.service"]);
    expect(verify.output).toBe("");
    expect(verify.status).toBe(0);
  });

  it("the Postfix drop-in loads cleanly onto Debian's postfix@-.service", () => {
    const dir = renderedUnitDir(examplePrimary);
    const verify = analyze(dir, ["verify", postfixDaemonUnit(examplePrimary)]);
    expect(verify.output).toBe("");
    expect(verify.status).toBe(0);
  });

  it("verify is a real check: an unknown key is reported", () => {
    const { root, remove } = makeTempRoot("bc-units-bad");
    temps.push(remove);
    const [lookup] = runtimeUnitFiles(examplePrimary);
    writeHostFiles(root, [{ ...lookup!, content: lookup!.content.replace("ProtectHome=yes", "ProtectHom=yes") }]);
    const verify = analyze(join(root, "etc/systemd/system"), ["verify", "./brightchain-lookup.service"]);
    expect(verify.output).toContain("Unknown key 'ProtectHom'");
  });

  // docs/hardening.md: 1.3 before PrivateUsers, the @privileged/@resources filter and the narrower address
  // families; 0.9 since. What is left needs PrivateNetwork (Postfix reaches the socketmap over loopback TCP) or
  // MemoryDenyWriteExecute (V8's JIT), or a node API known by name only (no IP allow list, AF_UNIX to resolve it).
  it.each([
    ["brightchain-lookup", "local", 0.9],
    ["brightchain-inbound", "local", 0.9],
    ["brightchain-lookup", "named node API", 1.1],
    ["brightchain-inbound", "named node API", 1.1],
  ] as const)("%s (%s): offline exposure score is at most %s", (name, variant, bound) => {
    const node =
      variant === "local"
        ? examplePrimary
        : {
            ...examplePrimary,
            lookup: {
              ...examplePrimary.lookup,
              registry: { kind: "http" as const, url: "https://node.brightchain.org/registry" },
            },
            runtime: { ...examplePrimary.runtime, nodeUrl: "https://node.brightchain.org" },
          };
    const dir = renderedUnitDir(node);
    const security = analyze(dir, ["security", "--offline=true", `./${name}.service`]);
    const score = /Overall exposure level for \S+: ([\d.]+)/.exec(security.output);
    expect(score, security.output).not.toBeNull();
    expect(Number(score![1]), security.output).toBeLessThanOrEqual(bound);
  });
});
