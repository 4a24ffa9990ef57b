import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  GATEWAY_CONFIG_KEYS,
  GatewayConfigError,
  parseGatewayConfig,
  parseGatewaySecrets,
  parseSshConnection,
  readStackConfig,
  readStackConfigFiles,
  type FlatConfig,
} from "../../infra/model/config";
import type { GatewayNode } from "../../infra/model/types";
import { examplePrimary, exampleRelay, nodeMatrix } from "../fixtures/nodes";

const repo = path.resolve(__dirname, "../..");
const primaryFlat = (): FlatConfig => readStackConfig(repo, "primary");
const EXAMPLE_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP6kEPrnVDpntlskcoYMhNKYDm7NwXlPaA1dPHq31tgv";
const relayFlat = (): FlatConfig => readStackConfig(repo, "relay");

function configError(flat: FlatConfig): GatewayConfigError {
  try {
    parseGatewayConfig(flat);
  } catch (err) {
    if (err instanceof GatewayConfigError) return err;
    throw err;
  }
  throw new Error("expected a GatewayConfigError, but the configuration parsed");
}

const threeNodeFleet = JSON.stringify([
  { hostname: "mail.brightchain.org", ipv4: "203.0.113.10", ipv6: "2001:db8::10" },
  { hostname: "mail2.brightchain.org", ipv4: "203.0.113.20" },
  { hostname: "mail3.brightchain.org", ipv4: "203.0.113.30", ipv6: "2001:db8::30" },
]);

describe("the documented example stacks", () => {
  it("Pulumi.yaml + Pulumi.primary.yaml parse to exactly examplePrimary", () => {
    expect(parseGatewayConfig(primaryFlat())).toStrictEqual(examplePrimary);
  });

  it("Pulumi.yaml + Pulumi.relay.yaml parse to exactly exampleRelay", () => {
    expect(parseGatewayConfig(relayFlat())).toStrictEqual(exampleRelay);
  });

  it("flattens as allConfig() does: namespaced keys, objects and arrays as JSON strings", () => {
    const flat = primaryFlat();
    expect(flat["gateway:domain"]).toBe("brightchain.org");
    expect(JSON.parse(flat["gateway:fleet"]!)).toHaveLength(2);
    expect(JSON.parse(flat["gateway:ssh"]!)).toEqual({ host: "203.0.113.10", user: "root", port: 22, hostKey: EXAMPLE_HOST_KEY });
  });
});

describe("node variants", () => {
  it("several relays: MX priority defaults from fleet order (20, 30), and can be set explicitly", () => {
    const flat = { ...relayFlat(), "gateway:fleet": threeNodeFleet };
    expect(parseGatewayConfig(flat).mxPriority).toBe(20);
    const third = parseGatewayConfig({ ...flat, "gateway:hostname": "mail3.brightchain.org" });
    expect(third.mxPriority).toBe(30);
    expect(third.host).toEqual({ hostname: "mail3.brightchain.org", ipv4: "203.0.113.30", ipv6: "2001:db8::30" });
    expect(third.fleet.map((h) => h.hostname)).toEqual([
      "mail.brightchain.org",
      "mail2.brightchain.org",
      "mail3.brightchain.org",
    ]);
    expect(parseGatewayConfig({ ...flat, "gateway:mxPriority": "50" }).mxPriority).toBe(50);
  });

  it("puts the primary first in the fleet even when listed later", () => {
    const fleet = JSON.stringify([
      { hostname: "mail2.brightchain.org", ipv4: "203.0.113.20" },
      { hostname: "mail.brightchain.org", ipv4: "203.0.113.10" },
    ]);
    const node = parseGatewayConfig({ ...relayFlat(), "gateway:fleet": fleet });
    expect(node.fleet[0]!.hostname).toBe("mail.brightchain.org");
    expect(node.mxPriority).toBe(20);
  });

  it("an IPv6 address is kept in RFC 5952's canonical form (what Cloudflare reads back), IPv4-mapped ones refused", () => {
    const withIpv6 = (ipv6: string): FlatConfig => ({
      ...primaryFlat(),
      "gateway:fleet": JSON.stringify([
        { hostname: "mail.brightchain.org", ipv4: "203.0.113.10", ipv6 },
        { hostname: "mail2.brightchain.org", ipv4: "203.0.113.20" },
      ]),
    });
    expect(parseGatewayConfig(withIpv6("2001:DB8:0:0:0:0:0:10")).host.ipv6).toBe("2001:db8::10");
    expect(parseGatewayConfig(withIpv6("2001:0db8:0000::0001")).host.ipv6).toBe("2001:db8::1");
    expect(configError(withIpv6("::ffff:203.0.113.10")).message).toMatch(
      /gateway:fleet\[0\]\.ipv6="::ffff:203\.0\.113\.10" is invalid/,
    );
  });

  it("IPv4-only and dual-stack nodes take their addresses from the fleet entry", () => {
    expect(parseGatewayConfig(primaryFlat()).host.ipv6).toBe("2001:db8::10");
    expect(parseGatewayConfig(relayFlat()).host).not.toHaveProperty("ipv6");
  });

  it("each release carries its family and distribution", () => {
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:os": "rhel-9" }).os).toEqual({
      release: "rhel-9",
      family: "rhel",
      distro: "rhel",
    });
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:os": "ubuntu-24.04" }).os).toEqual({
      release: "ubuntu-24.04",
      family: "debian",
      distro: "ubuntu",
    });
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:os": "debian-12" }).os.release).toBe("debian-12");
  });

  it("an unset gateway:os is Debian's current stable release", () => {
    const flat = primaryFlat();
    delete flat["gateway:os"];
    expect(parseGatewayConfig(flat).os.release).toBe("debian-13");
  });

  it.each([
    ["debian", "debian-12 or debian-13"],
    ["ubuntu", "ubuntu-24.04"],
    ["rhel", "rhel-9"],
  ])("a bare family name %s is refused, naming its releases", (family, releases) => {
    expect(configError({ ...primaryFlat(), "gateway:os": family }).message).toBe(
      `gateway:os="${family}" is invalid; expected a release, not a family: ${releases} (every release: debian-12, debian-13, ubuntu-24.04, rhel-9)`,
    );
  });

  it.each(["spamassassin", "rspamd", "none"] as const)("spam engine %s", (engine) => {
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:spamEngine": engine }).spam.engine).toBe(engine);
  });

  it("pipe drop transport, http registry, node API and a custom spool", () => {
    const node = parseGatewayConfig({
      ...primaryFlat(),
      "gateway:dropTransport": "pipe",
      "gateway:registry": "https://node.brightchain.org/api/recipients",
      "gateway:nodeUrl": "https://node.brightchain.org/",
      "gateway:spoolDir": "/srv/brightchain",
    });
    expect(node.drop).toMatchObject({
      transport: "pipe",
      mailDropDir: "/srv/brightchain/incoming",
      errorDir: "/srv/brightchain/errors",
    });
    expect(node.lookup.registry).toEqual({ kind: "http", url: "https://node.brightchain.org/api/recipients" });
    expect(node.runtime.nodeUrl).toBe("https://node.brightchain.org");
  });

  it("gateway:recipients: the file registry's addresses, lowercased, sorted, each once", () => {
    const node = parseGatewayConfig({
      ...primaryFlat(),
      "gateway:recipients": JSON.stringify(["Bob@BrightChain.org", "alice@brightchain.org", "bob@brightchain.org"]),
    });
    expect(node.lookup.registry).toEqual({
      kind: "file",
      path: "/etc/brightchain/recipients",
      addresses: ["alice@brightchain.org", "bob@brightchain.org"],
    });
  });

  it.each([
    [
      "an address of another domain",
      ["alice@brightchain.org", "eve@example.org"],
      /gateway:recipients\[1\]="eve@example\.org".*an address in brightchain\.org/,
    ],
    ["a quoted local part", ['"a b"@brightchain.org'], /gateway:recipients\[0\].*an address in brightchain\.org/],
    ["not a list", "alice@brightchain.org", /gateway:recipients.*a list of addresses in gateway:domain/],
    ["an empty list", [], /gateway:recipients="\[\]".*at least one/],
    [
      "a local part the registry would read as a comment",
      ["#ops@brightchain.org"],
      /gateway:recipients\[0\]="#ops@brightchain\.org"/,
    ],
  ])("gateway:recipients refuses %s, naming the entry", (_name, value, message) => {
    const flat = { ...primaryFlat(), "gateway:recipients": typeof value === "string" ? value : JSON.stringify(value) };
    expect(() => parseGatewayConfig(flat)).toThrow(message);
  });

  it("gateway:recipients needs the file registry: with the node API the node answers for its users", () => {
    const flat = {
      ...primaryFlat(),
      "gateway:registry": "https://node.brightchain.org/api/recipients",
      "gateway:recipients": JSON.stringify(["alice@brightchain.org"]),
    };
    expect(() => parseGatewayConfig(flat)).toThrow(/gateway:recipients.*node API's URL/);
  });

  it("defaults: DMARC monitoring only, acme e-mail postmaster@domain, submission on the primary", () => {
    const flat = primaryFlat();
    delete flat["gateway:dmarc"];
    delete flat["gateway:acmeEmail"];
    const node = parseGatewayConfig(flat);
    expect(node.dmarc).toEqual({ policy: "none", rua: [], pct: 100 });
    expect(node.tls.acmeEmail).toBe("postmaster@brightchain.org");
    expect(node.submission).toEqual({ enabled: true, saslBackend: "dovecot" });
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:submission": "false" }).submission?.enabled).toBe(false);
  });

  it("ignores other namespaces (providers' own keys)", () => {
    expect(parseGatewayConfig({ ...primaryFlat(), "cloudflare:apiToken": "x", "brightchain-gateway:note": "y" })).toStrictEqual(
      examplePrimary,
    );
  });
});

describe("a bad value names the key, the value and what is accepted", () => {
  const cases: [string, () => FlatConfig, string, RegExp][] = [
    ["domain", primaryFlat, "gateway:domain", /Brightchain_org.*host name/],
    ["hostname not in fleet", primaryFlat, "gateway:hostname", /mail9\.brightchain\.org.*listed in gateway:fleet/],
    ["role", primaryFlat, "gateway:role", /"backup".*primary, relay/],
    ["os", primaryFlat, "gateway:os", /"centos".*debian-12, debian-13, ubuntu-24.04, rhel-9/],
    ["spam engine", primaryFlat, "gateway:spamEngine", /"amavis".*spamassassin, rspamd, none/],
    ["drop transport", primaryFlat, "gateway:dropTransport", /"lmtp".*virtual, pipe/],
    ["primary priority", primaryFlat, "gateway:mxPriority", /"20".*10 for the primary/],
    ["relay priority", relayFlat, "gateway:mxPriority", /"10".*above 10/],
    ["scores", primaryFlat, "gateway:spamDefiniteScore", /"4".*at or above gateway:spamProbableScore \(5\)/],
    ["score syntax", primaryFlat, "gateway:spamProbableScore", /"five".*decimal score/],
    ["size", primaryFlat, "gateway:maxMessageSize", /"25M".*integer from 1024/],
    ["lookup port", primaryFlat, "gateway:lookupPort", /"70000".*integer from 1 to 65535/],
    ["acme email", primaryFlat, "gateway:acmeEmail", /"postmaster".*e-mail address/],
    ["acme server", primaryFlat, "gateway:acmeServer", /http:\/\/acme.*https:\/\//],
    ["challenge", primaryFlat, "gateway:acmeChallenge", /"tls-alpn-01".*dns-01, http-01/],
    ["selector", primaryFlat, "gateway:dkimSelector", /"my_selector".*DNS label/],
    ["key bits", primaryFlat, "gateway:dkimKeyBits", /"1024".*2048, 4096/],
    ["queue lifetime", relayFlat, "gateway:relayQueueLifetime", /"ten days".*Postfix time/],
    ["registry", primaryFlat, "gateway:registry", /"recipients\.txt".*absolute file path/],
    ["submission on relay", relayFlat, "gateway:submission", /"true".*primary only/],
    ["primary not in fleet", primaryFlat, "gateway:primaryHostname", /mx\.example\.org.*listed in gateway:fleet/],
  ];
  const badValue: Record<string, string> = {
    "gateway:domain": "Brightchain_org",
    "gateway:hostname": "mail9.brightchain.org",
    "gateway:role": "backup",
    "gateway:os": "centos",
    "gateway:spamEngine": "amavis",
    "gateway:dropTransport": "lmtp",
    "gateway:spamDefiniteScore": "4",
    "gateway:spamProbableScore": "five",
    "gateway:maxMessageSize": "25M",
    "gateway:lookupPort": "70000",
    "gateway:acmeEmail": "postmaster",
    "gateway:acmeServer": "http://acme.example/directory",
    "gateway:acmeChallenge": "tls-alpn-01",
    "gateway:dkimSelector": "my_selector",
    "gateway:dkimKeyBits": "1024",
    "gateway:relayQueueLifetime": "ten days",
    "gateway:registry": "recipients.txt",
    "gateway:submission": "true",
    "gateway:primaryHostname": "mx.example.org",
  };

  it.each(cases)("%s", (_name, base, configKey, message) => {
    const value = configKey === "gateway:mxPriority" ? (base === primaryFlat ? "20" : "10") : badValue[configKey]!;
    const err = configError({ ...base(), [configKey]: value });
    expect(err.key).toBe(configKey);
    expect(err.message).toContain(configKey);
    expect(err.message).toMatch(message);
  });

  it("a missing required key says it is not set", () => {
    const flat = primaryFlat();
    delete flat["gateway:role"];
    expect(configError(flat).message).toBe("gateway:role is not set; expected primary, relay");
  });

  it("an unknown gateway: key (a typo) names the closest key and lists the accepted ones", () => {
    const err = configError({ ...primaryFlat(), "gateway:spamEngin": "rspamd" });
    expect(err.key).toBe("gateway:spamEngin");
    expect(err.message).toMatch(
      /^gateway:spamEngin="\(value not shown\)" is invalid; expected gateway:spamEngine \(the closest key\); every key: .*gateway:spamEngine/,
    );
    expect(configError({ ...primaryFlat(), "gateway:colour": "blue" }).message).toMatch(/expected one of the keys gateway:/);
  });

  it("a misspelt secret key never shows its value: not a line of the private key, not the JSON-escaped form", () => {
    const privateKey =
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\nQyNTUxOQAAACD0secretline\n-----END OPENSSH PRIVATE KEY-----\n";
    const err = configError({ ...primaryFlat(), "gateway:sshPrivatekey": privateKey });
    expect(err.message).toMatch(/gateway:sshPrivateKey \(the closest key\)/);
    for (const line of privateKey.split("\n").filter((l) => l !== "")) expect(err.message).not.toContain(line);
    expect(err.message).not.toContain(JSON.stringify(privateKey).slice(1, 30));
    expect(err.value).toBe("(value not shown)");
  });

  it("gateway:ipv4 in a stack points at the fleet entry instead of duplicating addresses", () => {
    expect(configError({ ...primaryFlat(), "gateway:ipv4": "203.0.113.10" }).message).toMatch(/gateway:fleet entry/);
  });

  it("fleet entries: bad address, missing IPv4, duplicate host, unknown field, bad JSON", () => {
    const withFleet = (fleet: string): GatewayConfigError => configError({ ...primaryFlat(), "gateway:fleet": fleet });
    expect(withFleet('[{"hostname":"mail.brightchain.org","ipv4":"203.0.113.300"}]').key).toBe("gateway:fleet[0].ipv4");
    expect(withFleet('[{"hostname":"mail.brightchain.org","ipv4":"203.0.113.10","ipv6":"2001:db8::g"}]').key).toBe(
      "gateway:fleet[0].ipv6",
    );
    expect(withFleet('[{"hostname":"mail.brightchain.org"}]').message).toMatch(/gateway:fleet\[0\]\.ipv4 is not set/);
    expect(
      withFleet(
        '[{"hostname":"mail.brightchain.org","ipv4":"203.0.113.10"},{"hostname":"mail.brightchain.org","ipv4":"203.0.113.11"}]',
      ).key,
    ).toBe("gateway:fleet[1].hostname");
    expect(withFleet('[{"hostname":"mail.brightchain.org","ipv4":"203.0.113.10","ip":"x"}]').key).toBe("gateway:fleet[0].ip");
    expect(withFleet("[{hostname: mail}").key).toBe("gateway:fleet");
  });

  it("dmarc fields are named with their path", () => {
    const withDmarc = (dmarc: object): GatewayConfigError =>
      configError({ ...primaryFlat(), "gateway:dmarc": JSON.stringify(dmarc) });
    expect(withDmarc({ policy: "block" }).message).toMatch(/gateway:dmarc\.policy="block".*none, quarantine, reject/);
    expect(withDmarc({ pct: 150 }).message).toMatch(/gateway:dmarc\.pct="150".*0 to 100/);
    expect(withDmarc({ rua: ["dmarc@brightchain.org"] }).message).toMatch(/gateway:dmarc\.rua\[0\].*mailto:/);
  });

  it("a relay cannot claim the primary's host name, nor the primary another's", () => {
    expect(configError({ ...relayFlat(), "gateway:hostname": "mail.brightchain.org" }).message).toMatch(/other than the primary/);
    expect(configError({ ...primaryFlat(), "gateway:hostname": "mail2.brightchain.org" }).message).toMatch(
      /gateway:primaryHostname/,
    );
  });

  it("mynetworks needs bracketed IPv6", () => {
    const err = configError({ ...primaryFlat(), "gateway:mynetworks": '["127.0.0.0/8","::1/128"]' });
    expect(err.key).toBe("gateway:mynetworks[1]");
    expect(err.message).toMatch(/\[::1\]\/128/);
  });
});

describe("secrets and the SSH connection", () => {
  it("parses submission users and the certbot token, never echoing a password in errors", () => {
    const secrets = parseGatewaySecrets({
      "gateway:submissionUsers": '[{"username":"brightchain-node","password":"correct horse battery"}]',
      "gateway:certbotCloudflareToken": "cf_token-123456",
    });
    expect(secrets).toEqual({
      submissionUsers: [{ username: "brightchain-node", password: "correct horse battery" }],
      certbotCloudflareToken: "cf_token-123456",
    });
    expect(parseGatewaySecrets({})).toEqual({ submissionUsers: [] });
    let message = "";
    try {
      parseGatewaySecrets({ "gateway:submissionUsers": '[{"username":"node","password":"short:pw"}]' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/gateway:submissionUsers\[0\]\.password.*12 characters/);
    expect(message).not.toContain("short:pw");
    expect(() => parseGatewaySecrets({ "gateway:submissionUsers": "node:hunter2hunter2" })).toThrow(
      /gateway:submissionUsers="\(secret\)"/,
    );
    try {
      parseGatewaySecrets({ "gateway:submissionUsers": "node:hunter2hunter2" });
    } catch (err) {
      expect((err as Error).message).not.toContain("hunter2");
    }
  });

  it("SSH defaults to root@hostname:22 and validates its fields", () => {
    const flat = primaryFlat();
    delete flat["gateway:ssh"];
    expect(parseSshConnection(flat)).toEqual({ host: "mail.brightchain.org", user: "root", port: 22 });
    expect(parseSshConnection(primaryFlat())).toEqual({
      host: "203.0.113.10",
      user: "root",
      port: 22,
      hostKey: EXAMPLE_HOST_KEY,
    });
    expect(() => parseSshConnection({ ...primaryFlat(), "gateway:ssh": '{"port":0}' })).toThrow(/gateway:ssh\.port="0"/);
    expect(() => parseSshConnection({ ...primaryFlat(), "gateway:sshPrivateKey": "not a key" })).toThrow(
      /gateway:sshPrivateKey.*PRIVATE KEY/,
    );
  });

  it("the host key: authorized_keys or known_hosts form, reduced to `type base64`; a truncated or foreign one refused", () => {
    const withKey = (hostKey: string) => ({ ...primaryFlat(), "gateway:ssh": JSON.stringify({ host: "203.0.113.10", hostKey }) });
    expect(parseSshConnection(withKey(`${EXAMPLE_HOST_KEY} root@mail`)).hostKey).toBe(EXAMPLE_HOST_KEY);
    expect(parseSshConnection(withKey(`203.0.113.10 ${EXAMPLE_HOST_KEY}`)).hostKey).toBe(EXAMPLE_HOST_KEY);
    expect(() => parseSshConnection(withKey(EXAMPLE_HOST_KEY.slice(0, 40)))).toThrow(
      /gateway:ssh\.hostKey=.* is invalid; expected a complete ssh-ed25519 key: the host's SSH public key/,
    );
    // The blob names another type than the line: a key pasted into the wrong template.
    expect(() => parseSshConnection(withKey(EXAMPLE_HOST_KEY.replace("ssh-ed25519", "ssh-rsa")))).toThrow(/complete ssh-rsa key/);
    expect(() => parseSshConnection(withKey("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"))).toThrow(/ssh-keyscan/);
  });
});

describe("values that would reach a shell or break mail without a word", () => {
  it.each([
    "/etc/dkim;touch /tmp/pwned",
    "/etc/$(id)",
    "/etc/dkim/../../root/.ssh",
    "/etc/./dkim",
    "/etc/dk im",
    "/etc/dkim\nx",
    "etc/dkim",
    "/",
    "/etc//dkim",
    "/etc/dkim'",
  ])("gateway:dkimKeyDir %j is refused naming the key", (dir) => {
    expect(configError({ ...primaryFlat(), "gateway:dkimKeyDir": dir }).message).toBe(
      `gateway:dkimKeyDir=${JSON.stringify(dir)} is invalid; expected an absolute path of letters, digits and . _ - / without . or .. segments, such as /var/spool/brightchain`,
    );
  });

  it("a plain path with a trailing slash is kept, without it", () => {
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:dkimKeyDir": "/etc/dkim-keys_2/" }).dkim.keyDir).toBe(
      "/etc/dkim-keys_2",
    );
  });

  it.each([
    ['["0.0.0.0/0"]', "gateway:mynetworks[0]", "/0"],
    ['["127.0.0.0/8","10.0.0.0/7"]', "gateway:mynetworks[1]", "/7"],
    ['["[::]/0"]', "gateway:mynetworks[0]", "/0"],
  ])("mynetworks %s would make an open relay: refused", (value, label, prefix) => {
    expect(configError({ ...primaryFlat(), "gateway:mynetworks": value }).message).toMatch(
      new RegExp(
        `^${label.replace(/[[\]]/g, "\\$&")}=.* is invalid; expected a network no wider than /\\d+: .* so ${prefix} makes it an open relay$`,
      ),
    );
  });

  it.each(["-1", "0", "1e3", "100000000000000000000000", "0.0000001", "1001", "5.125"])(
    "spam score %s is refused (negative, zero, exponent form, too long or too precise)",
    (value) => {
      expect(configError({ ...primaryFlat(), "gateway:spamProbableScore": value }).message).toMatch(
        /^gateway:spamProbableScore=.* is invalid; expected a decimal score above 0 and at most 1000/,
      );
    },
  );

  it("scores of up to two decimals are kept exactly", () => {
    const node = parseGatewayConfig({ ...primaryFlat(), "gateway:spamProbableScore": "4.25", "gateway:spamDefiniteScore": "12" });
    expect(node.spam).toMatchObject({ probableScore: 4.25, definiteScore: 12 });
  });
});

describe("readStackConfig", () => {
  let dir = "";
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = "";
  });

  it("merges project value/default forms with the stack file, which wins; secure values are left out", () => {
    dir = mkdtempSync(path.join(tmpdir(), "gateway-config-"));
    writeFileSync(
      path.join(dir, "Pulumi.yaml"),
      [
        "name: demo",
        "runtime: nodejs",
        "config:",
        "  gateway:domain: example.org",
        "  gateway:lookupPort:",
        "    value: 2600",
        "  note:",
        "    type: string",
        "    default: hello",
        "  gateway:os: rhel-9",
      ].join("\n"),
    );
    writeFileSync(
      path.join(dir, "Pulumi.a.yaml"),
      [
        "config:",
        "  gateway:os: ubuntu-24.04",
        "  gateway:sshPrivateKey:",
        "    secure: v1:abcdef",
        "  gateway:mynetworks:",
        "    - 127.0.0.0/8",
      ].join("\n"),
    );
    const { values, secureKeys } = readStackConfigFiles(dir, "a");
    expect(values).toEqual({
      "gateway:domain": "example.org",
      "gateway:lookupPort": "2600",
      "demo:note": "hello",
      "gateway:os": "ubuntu-24.04",
      "gateway:mynetworks": '["127.0.0.0/8"]',
    });
    expect(secureKeys).toEqual(["gateway:sshPrivateKey"]);
  });

  it("follows Pulumi's project config rules: default only in the project's namespace, objects under value:", () => {
    dir = mkdtempSync(path.join(tmpdir(), "gateway-config-"));
    writeFileSync(path.join(dir, "Pulumi.a.yaml"), "config: {}\n");
    writeFileSync(
      path.join(dir, "Pulumi.yaml"),
      "name: demo\nruntime: nodejs\nconfig:\n  gateway:domain:\n    default: example.org\n",
    );
    expect(() => readStackConfig(dir, "a")).toThrow(/config\.gateway:domain\.default.*value: instead of default:/);
    writeFileSync(path.join(dir, "Pulumi.yaml"), "name: demo\nruntime: nodejs\nconfig:\n  gateway:dmarc:\n    policy: reject\n");
    expect(() => readStackConfig(dir, "a")).toThrow(/config\.gateway:dmarc\.policy="reject".*under value:/);
  });

  it("a missing stack file is an error naming the file", () => {
    expect(() => readStackConfig(repo, "nosuchstack")).toThrow(/Pulumi\.nosuchstack\.yaml.*readable file/);
  });
});

describe("docs/configuration.md", () => {
  it("documents every accepted key", () => {
    const docs = readFileSync(path.join(repo, "docs/configuration.md"), "utf8");
    for (const name of Object.keys(GATEWAY_CONFIG_KEYS)) expect(docs, name).toContain(`gateway:${name}`);
  });
});

/** Every settable field of a node written as configuration keys: what an operator would put in the two files. */
function configFor(node: GatewayNode): FlatConfig {
  const flat: FlatConfig = {
    "gateway:domain": node.domain,
    "gateway:primaryHostname": node.primaryHostname,
    "gateway:fleet": JSON.stringify(node.fleet),
    "gateway:dmarc": JSON.stringify(node.dmarc),
    "gateway:dkimSelector": node.dkim.selector,
    "gateway:dkimKeyBits": String(node.dkim.keyBits),
    "gateway:dkimKeyDir": node.dkim.keyDir,
    "gateway:spamProbableScore": String(node.spam.probableScore),
    "gateway:spamDefiniteScore": String(node.spam.definiteScore),
    "gateway:maxMessageSize": String(node.maxMessageSize),
    "gateway:acmeEmail": node.tls.acmeEmail,
    "gateway:acmeServer": node.tls.acmeServer,
    "gateway:acmeChallenge": node.tls.challenge,
    "gateway:mynetworks": JSON.stringify(node.mynetworks),
    "gateway:lookupPort": String(node.lookup.port),
    "gateway:lookupCacheTtl": String(node.lookup.cacheTtlSeconds),
    "gateway:registry": node.lookup.registry.kind === "file" ? node.lookup.registry.path : node.lookup.registry.url,
    "gateway:spoolDir": node.drop.spoolDir,
    "gateway:brightchainUid": String(node.drop.uid),
    "gateway:brightchainGid": String(node.drop.gid),
    "gateway:runtimeInstallDir": node.runtime.installDir,
    "gateway:storeDir": node.runtime.storeDir,
    "gateway:role": node.role,
    "gateway:hostname": node.host.hostname,
    "gateway:os": node.os.release,
    "gateway:spamEngine": node.spam.engine,
    "gateway:dropTransport": node.drop.transport,
    "gateway:mxPriority": String(node.mxPriority),
  };
  if (node.relay) flat["gateway:relayQueueLifetime"] = node.relay.queueLifetime;
  if (node.submission) flat["gateway:submission"] = String(node.submission.enabled);
  if (node.mtaSts) flat["gateway:mtaSts"] = JSON.stringify({ mode: node.mtaSts.mode, maxAge: node.mtaSts.maxAgeSeconds });
  if (node.tlsRpt) flat["gateway:tlsRpt"] = JSON.stringify(node.tlsRpt);
  if (node.caa) flat["gateway:caa"] = JSON.stringify(node.caa);
  if (node.runtime.nodeUrl) flat["gateway:nodeUrl"] = node.runtime.nodeUrl;
  if (node.lookup.registry.kind === "file" && node.lookup.registry.addresses) {
    flat["gateway:recipients"] = JSON.stringify(node.lookup.registry.addresses);
  }
  return flat;
}

describe("every node of the test matrix is expressible as configuration", () => {
  it.each(nodeMatrix)("$name", ({ node }) => {
    expect(parseGatewayConfig(configFor(node))).toStrictEqual(node);
  });
});
