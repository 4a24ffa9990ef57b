// The lab deploy engine's pure parts: Pulumi's diff (what runs on a second run), the ssh command line, the
// zone the lab DNS serves, and the lab form of the example stacks. The executing half is test/lab/scenarios.test.ts.
import * as path from "node:path";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { parseGatewayConfig, readStackConfigFiles } from "../../infra/model/config";
import { dnsRecords } from "../../infra/render/dns";
import { cloudflareContent } from "../../infra/pulumi/gatewayDns";
import { DeployStepError, deployStack } from "../../infra/deploy";
import { canonicalInputs, changedInputNames, decideAction, unwrapSecrets } from "../../infra/deploy/inputs";
import { labStackOverrides } from "../../infra/deploy/labStack";
import { assetContent } from "../../infra/deploy/runner";
import { knownHostsLine, parseRemoteConnection, remoteCommandLine, sshArguments } from "../../infra/deploy/ssh";
import { readDeployState, writeDeployState } from "../../infra/deploy/state";
import {
  dnsRecordFromCloudflareInputs,
  mergeZoneRecords,
  renderLabZone,
  txtFromCloudflareContent,
} from "../../infra/deploy/zone";
import { generateDkimTxt } from "../helpers/pulumi-program";

const REPO = path.join(__dirname, "..", "..");
/** The example stacks' placeholder host key (any well-formed key: the SSH server in these tests never answers). */
const EXAMPLE_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP6kEPrnVDpntlskcoYMhNKYDm7NwXlPaA1dPHq31tgv";
const secret = (value: unknown) => ({ [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig, value });

describe("deploy engine: Pulumi's diff", () => {
  const inputs = {
    create: "apt-get install -y postfix",
    triggers: ["abc"],
    connection: secret({ host: "10.231.0.10", privateKey: "KEY" }),
  };

  it("creates on the first run, does nothing for identical inputs, updates when one changes", () => {
    const first = canonicalInputs(inputs);
    expect(decideAction(undefined, first)).toBe("create");
    expect(decideAction(first.hash, canonicalInputs({ ...inputs }))).toBe("same");
    const changed = canonicalInputs({ ...inputs, triggers: ["def"] });
    expect(decideAction(first.hash, changed)).toBe("update");
    expect(changedInputNames(first.inputs, changed.inputs)).toEqual(["triggers"]);
  });

  it("ignores key order but not a changed secret, and never records the secret itself", () => {
    const reordered = canonicalInputs({
      connection: secret({ privateKey: "KEY", host: "10.231.0.10" }),
      triggers: ["abc"],
      create: inputs.create,
    });
    expect(reordered.hash).toBe(canonicalInputs(inputs).hash);
    const rotated = canonicalInputs({ ...inputs, connection: secret({ host: "10.231.0.10", privateKey: "OTHER" }) });
    expect(rotated.hash).not.toBe(reordered.hash);
    expect(JSON.stringify(rotated.inputs)).not.toContain("OTHER");
    expect(JSON.stringify(rotated.inputs)).toMatch(/"connection":"\[secret sha256:[0-9a-f]{64}\]"/);
  });

  it("hands the provider plain values, secrets unwrapped at any depth", () => {
    expect(unwrapSecrets({ a: secret({ b: secret("x") }), c: [secret(1)] })).toEqual({ a: { b: "x" }, c: [1] });
  });

  it("keeps the last run in a 0600 state file and refuses another stack's", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "deploy-state-"));
    try {
      const file = path.join(dir, "primary.state.json");
      expect(readDeployState(file, "primary")).toEqual({ stack: "primary", resources: {} });
      writeDeployState(file, {
        stack: "primary",
        resources: { "t::n": { type: "t", name: "n", inputsHash: "h", inputs: {}, outputs: { stdout: "x" } } },
      });
      expect(readDeployState(file, "primary").resources["t::n"]?.outputs).toEqual({ stdout: "x" });
      expect(() => readDeployState(file, "relay")).toThrow(/belongs to stack "primary", not "relay"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("deploy engine: ssh", () => {
  it("pins the program's host key, never prompts, and uses only the given key", () => {
    const connection = parseRemoteConnection("primary-packages", {
      host: "10.231.0.10",
      port: 22,
      user: "root",
      privateKey: "K",
      hostKey: EXAMPLE_HOST_KEY,
    });
    expect(knownHostsLine(connection)).toBe(`10.231.0.10 ${EXAMPLE_HOST_KEY}\n`);
    expect(knownHostsLine({ ...connection, port: 2222 })).toBe(`[10.231.0.10]:2222 ${EXAMPLE_HOST_KEY}\n`);
    // pulumi-command without a hostKey would accept any key; the engine refuses such a program.
    expect(() => parseRemoteConnection("primary-packages", { host: "10.231.0.10" })).toThrow(
      /primary-packages: connection\.hostKey is undefined; accepted: the host's public key/,
    );
    const args = sshArguments(connection, { knownHostsFile: "/lab/known_hosts", identityFile: "/tmp/k/id" });
    expect(args).toEqual(
      expect.arrayContaining([
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "UserKnownHostsFile=/lab/known_hosts",
        "IdentitiesOnly=yes",
      ]),
    );
    expect(args.slice(-5)).toEqual(["-p", "22", "-l", "root", "10.231.0.10"]);
    expect(args.join(" ")).not.toContain("K ");
  });

  it("names the field, the value and what is accepted for a bad connection", () => {
    expect(() => parseRemoteConnection("relay-packages", { host: "" })).toThrow(
      'relay-packages: connection.host is ""; accepted: a host name or address',
    );
    expect(() => parseRemoteConnection("relay-packages", { host: "h", port: 0 })).toThrow(
      "connection.port is 0; accepted: an integer from 1 to 65535",
    );
    expect(() => parseRemoteConnection("relay-packages", { host: "h", user: "Root" })).toThrow('connection.user is "Root"');
  });

  it("passes the environment as quoted exports before the command", () => {
    expect(remoteCommandLine("echo $B $A", { B: "it's", A: "1" })).toBe("export A='1'\nexport B='it'\\''s'\necho $B $A");
    expect(() => remoteCommandLine("true", { "1X": "v" })).toThrow(/"1X" is not accepted/);
  });

  it("copies a StringAsset's text and refuses an archive, naming the input", () => {
    const asset = { [pulumi.runtime.specialSigKey]: pulumi.runtime.specialAssetSig, text: "hello" };
    expect(assetContent("copy", asset).toString()).toBe("hello");
    expect(() => assetContent("copy", { [pulumi.runtime.specialSigKey]: pulumi.runtime.specialArchiveSig, assets: {} })).toThrow(
      /copy: input "source" is not accepted/,
    );
  });
});

describe("deploy engine: the lab zone", () => {
  const { values } = readStackConfigFiles(REPO, "primary");
  const node = parseGatewayConfig({ ...values, ...labStackOverrides("primary", values).overrides });
  const dkimTxt = generateDkimTxt("default", "brightchain.org");

  it("reads each record back from exactly the inputs GatewayDns gives Cloudflare", () => {
    for (const record of dnsRecords(node, dkimTxt)) {
      const back = dnsRecordFromCloudflareInputs("r", {
        name: record.name,
        type: record.type,
        content: cloudflareContent(record),
        ttl: record.ttl,
        priority: record.priority,
        comment: record.purpose,
      });
      expect(back).toEqual(record);
    }
    expect(txtFromCloudflareContent('"a\\"b" "c"')).toBe('a"bc');
    expect(() => txtFromCloudflareContent('"a" junk')).toThrow(/is not accepted/);
    expect(() => dnsRecordFromCloudflareInputs("primary-dns-x", { type: "CNAME", name: "a", content: "b" })).toThrow(
      'primary-dns-x: type is "CNAME"; accepted: A, AAAA, MX, TXT, CAA',
    );
  });

  it("serves the union of the stacks' records under the lab server's SOA and NS", () => {
    const { values: relayValues } = readStackConfigFiles(REPO, "relay");
    const relay = parseGatewayConfig({ ...relayValues, ...labStackOverrides("relay", relayValues).overrides });
    const merged = mergeZoneRecords("brightchain.org", { relay: dnsRecords(relay), primary: dnsRecords(node, dkimTxt) });
    const zone = renderLabZone("brightchain.org", merged, 1764000000);
    expect(zone).toContain("@\tIN\tSOA\tns.lab.test. hostmaster.brightchain.org. ( 1764000000 3600 600 86400 300 )");
    expect(zone).toContain("@\tIN\tNS\tns.lab.test.");
    expect(zone).toMatch(/@\t3600\tIN\tMX\t10\tmail\.brightchain\.org\./);
    expect(zone).toMatch(/@\t3600\tIN\tMX\t20\tmail2\.brightchain\.org\./);
    expect(zone).toMatch(/mail\t3600\tIN\tA\t10\.231\.0\.10/);
    expect(zone).toMatch(/mail2\t3600\tIN\tA\t10\.231\.0\.20/);
    expect(zone).toContain("default._domainkey");
    expect(zone).toContain("ip4:10.231.0.10");
    expect(() => renderLabZone("brightchain.org", merged, 0)).toThrow("zone serial 0 is not accepted");
  });
});

describe("deploy engine: the example stacks in the lab", () => {
  it("moves the fleet to the lab addresses, IPv4 only (the bridge has no IPv6), SSH to the lab host, ACME to pebble over http-01", () => {
    const { values } = readStackConfigFiles(REPO, "relay");
    const lab = labStackOverrides("relay", values, {}, { mail2: EXAMPLE_HOST_KEY });
    expect(lab.host.name).toBe("mail2");
    const node = parseGatewayConfig({ ...values, ...lab.overrides });
    expect(node.tls.challenge).toBe("http-01");
    expect(node.tls.acmeServer).toBe("https://10.231.0.1:14000/dir");
    // The lab host's own key pinned, as a user's stack pins theirs.
    expect(JSON.parse(lab.overrides["gateway:ssh"]!)).toEqual({
      host: "10.231.0.20",
      user: "root",
      port: 22,
      hostKey: EXAMPLE_HOST_KEY,
    });
    expect(JSON.parse(lab.overrides["gateway:fleet"]!)).toEqual([
      { hostname: "mail.brightchain.org", ipv4: "10.231.0.10" },
      { hostname: "mail2.brightchain.org", ipv4: "10.231.0.20" },
    ]);
    expect(lab.secrets).toEqual({});
    expect(Object.keys(labStackOverrides("primary", readStackConfigFiles(REPO, "primary").values).secrets)).toEqual([
      "gateway:submissionUsers",
    ]);
  });

  it("names the host name that has no lab host", () => {
    expect(() => labStackOverrides("x", { "gateway:hostname": "mail9.brightchain.org", "gateway:fleet": "[]" })).toThrow(
      'gateway:hostname "mail9.brightchain.org" has no lab host; accepted: mail.brightchain.org, mail2.brightchain.org, mx.outside.test',
    );
  });
});

describe("deploy engine: a failing step", () => {
  /**
   * The relay's deploy against an SSH port that hangs up at once: the program's first remote command fails the way
   * a dead host makes it fail. `seed` writes into the state folder first; the zones the engine served are collected.
   */
  async function deployRelayToDeadHost(
    work: (run: {
      deploy: Promise<unknown>;
      port: number;
      stateDir: string;
      published: { name: string; text: string }[];
    }) => Promise<void>,
    seed?: (stateDir: string) => void,
  ): Promise<void> {
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const dir = mkdtempSync(path.join(tmpdir(), "deploy-fail-"));
    const stateDir = path.join(dir, "state");
    const published: { name: string; text: string }[] = [];
    try {
      writeFileSync(path.join(dir, "brightchain-lookup.cjs"), "#!/usr/bin/env node\n");
      seed?.(stateDir);
      const lab = labStackOverrides("relay", readStackConfigFiles(REPO, "relay").values);
      const deploy = deployStack({
        stack: "relay",
        projectDir: REPO,
        overrides: {
          ...lab.overrides,
          "gateway:ssh": JSON.stringify({ host: "127.0.0.1", port, user: "root", hostKey: EXAMPLE_HOST_KEY }),
        },
        secrets: lab.secrets,
        dnsTarget: { zoneIdPrefix: "zone-", publishZone: async (name, text) => void published.push({ name, text }) },
        stateDir,
        runtimeDist: dir,
        progress: () => undefined,
      });
      await work({ deploy, port, stateDir, published });
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it("stops at the first step, naming the stack, host, step, command and ssh's own output, serves the address record (not the MX, which waits for verify), and records no command as done", async () => {
    await deployRelayToDeadHost(async ({ deploy, port, stateDir, published }) => {
      await expect(deploy).rejects.toBeInstanceOf(DeployStepError);
      await expect(deploy).rejects.toThrow(
        new RegExp(
          `^deploy relay: host 127\\.0\\.0\\.1, step "node-os-release" failed: \`ssh -p ${port} root@127\\.0\\.0\\.1 -- set -eu\\n[^]*/etc/os-release[^]*\`\\nexit code 255\\nkex_exchange_identification`,
        ),
      );
      // Like Pulumi, what does not depend on the host (the relay's A record) is created, served at once; the MX
      // waits for the node's verification, so senders are never pointed at a node that is not ready. No command is done.
      expect(published.at(-1)?.name).toBe("brightchain.org");
      expect(published.at(-1)?.text).toMatch(/mail2\t3600\tIN\tA\t10\.231\.0\.20/);
      expect(published.at(-1)?.text).not.toMatch(/\tMX\t/);
      const recorded = Object.values(readDeployState(path.join(stateDir, "relay.state.json"), "relay").resources);
      expect(recorded.filter((r) => r.type === "command:remote:Command")).toEqual([]);
    });
  });

  it("keeps serving each resource's own record while a run publishes another: two TLSA records of one name stay two", async () => {
    // As a DANE rollover's first up leaves it: the served key's TLSA and the next key's, one name, two resources.
    const tlsa = (digit: string) => ({
      name: "_25._tcp.mail2.brightchain.org",
      type: "TLSA",
      content: `3 1 1 ${digit.repeat(64)}`,
      ttl: 3600,
      purpose: "DANE",
    });
    const seed = (stateDir: string) => {
      mkdirSync(path.join(stateDir, "dns"), { recursive: true });
      writeFileSync(
        path.join(stateDir, "dns", "relay.records.json"),
        JSON.stringify({ "dns-tlsa-mail2-brightchain-org": tlsa("a"), "dns-tlsa-mail2-brightchain-org-2027": tlsa("b") }),
      );
    };
    await deployRelayToDeadHost(async ({ deploy, published }) => {
      await expect(deploy).rejects.toBeInstanceOf(DeployStepError);
      // The relay's A record was published mid-run; both TLSA records were served beside it.
      const zone = published.at(-1)!.text;
      expect(zone).toMatch(/mail2\t3600\tIN\tA\t10\.231\.0\.20/);
      expect(zone.match(/\tTLSA\t/g)).toHaveLength(2);
    }, seed);
  });
});
