// The config schema at its edges, as an operator meets them: each value just inside and just outside a bound,
// the exact problem list a bad value gives (the key, the value, what is accepted, and no second problem made up
// by a rule between keys that read the bad value), and the model a good value becomes. Written from the
// mutation run of infra/model/schema.ts (docs/testing.md, "infra/model/schema.ts and infra/plan").
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import {
  GatewayConfigError,
  HOST_KEY_HOWTO,
  parseGatewayConfig,
  parseGatewayStack,
  readStackConfig,
  type FlatConfig,
} from "../../infra/model/config";
import { exampleSecrets } from "../fixtures/nodes";

const repo = resolve(__dirname, "..", "..");
const primary = (over: FlatConfig = {}): FlatConfig => ({ ...readStackConfig(repo, "primary"), ...over });
const relay = (over: FlatConfig = {}): FlatConfig => ({ ...readStackConfig(repo, "relay"), ...over });
const json = (value: unknown) => JSON.stringify(value);

function errorOf(run: () => unknown): GatewayConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof GatewayConfigError) return error;
    throw error;
  }
  throw new Error("expected a GatewayConfigError, but the configuration parsed");
}
/** Each problem as [key, value, accepted]. */
const problems = (flat: FlatConfig, deploy = false) =>
  errorOf(() => parseGatewayStack(flat, { deploy })).problems.map((p) => [p.key, p.value, p.accepted]);
const accepts = (flat: FlatConfig) => parseGatewayConfig(flat);

const OPEN_RELAY = (prefix: number, narrowest: number) =>
  `a network no wider than /${narrowest}: every address in mynetworks may relay mail anywhere through this node, so /${prefix} makes it an open relay`;
const NETWORK = "an IPv4 network such as 127.0.0.0/8 or a bracketed IPv6 network such as [::1]/128";

describe("gateway:mynetworks", () => {
  it("IPv4 up to /8 and /32, IPv6 up to /16 and /128; wider is an open relay, saying which prefix", () => {
    const networks = ["10.0.0.0/8", "10.0.0.1/32", "10.0.0.0/16", "[2001:db8::]/16", "[::1]/128"];
    expect(accepts(primary({ "gateway:mynetworks": json(networks) })).mynetworks).toEqual(networks);
    expect(problems(primary({ "gateway:mynetworks": json(["10.0.0.0/7", "[2001:db8::]/15"]) }))).toEqual([
      ["gateway:mynetworks[0]", "10.0.0.0/7", OPEN_RELAY(7, 8)],
      ["gateway:mynetworks[1]", "[2001:db8::]/15", OPEN_RELAY(15, 16)],
    ]);
  });

  it("anything else around a network, a prefix past the address's bits, or no network at all is refused", () => {
    const bad = ["x10.0.0.0/8", "10.0.0.0/8x", "10.0.0.0/33", "10.0.0.0/100", "x[::1]/128", "[::1]/128x", "[::1]/129"];
    expect(problems(primary({ "gateway:mynetworks": json(bad) }))).toEqual(
      bad.map((network, i) => [`gateway:mynetworks[${i}]`, network, NETWORK]),
    );
    expect(problems(primary({ "gateway:mynetworks": "[]" }))).toEqual([
      ["gateway:mynetworks", "[]", 'a list of networks in Postfix syntax, e.g. ["127.0.0.0/8","[::1]/128"]'],
    ]);
  });
});

describe("numbers, booleans and scores", () => {
  it("an integer is digits only, whole", () => {
    for (const value of ["x22", "22x"])
      expect(problems(primary({ "gateway:lookupPort": value }))).toEqual([
        ["gateway:lookupPort", value, "an integer from 1 to 65535"],
      ]);
  });

  it("a score of 1000 is the largest; 1000.5 is refused", () => {
    expect(accepts(primary({ "gateway:spamProbableScore": "1000", "gateway:spamDefiniteScore": "1000" })).spam).toMatchObject({
      probableScore: 1000,
      definiteScore: 1000,
    });
    expect(problems(primary({ "gateway:spamDefiniteScore": "1000.5" }))).toEqual([
      ["gateway:spamDefiniteScore", "1000.5", "a decimal score above 0 and at most 1000, such as 5.0 (at most two decimals)"],
    ]);
  });

  it("a boolean is true or false, nothing else", () => {
    expect(problems(primary({ "gateway:dnssec": "yes" }))).toEqual([["gateway:dnssec", "yes", "true or false"]]);
  });

  it("gateway:os not a release and not a family lists every release", () => {
    expect(problems(primary({ "gateway:os": "debian-11" }))).toEqual([
      ["gateway:os", "debian-11", "debian-12, debian-13, ubuntu-24.04, rhel-9"],
    ]);
  });
});

describe("paths and URLs", () => {
  it("trailing slashes are dropped however many; a dot inside a name is fine; a leading // is refused", () => {
    const node = accepts(
      primary({
        "gateway:spoolDir": "/var/spool/bright.chain///",
        "gateway:registry": "/srv/registry//",
        "gateway:nodeUrl": "https://node.brightchain.org/api//",
      }),
    );
    expect(node.drop.spoolDir).toBe("/var/spool/bright.chain");
    expect(node.lookup.registry).toEqual({ kind: "file", path: "/srv/registry" });
    expect(node.runtime.nodeUrl).toBe("https://node.brightchain.org/api");
    expect(problems(primary({ "gateway:spoolDir": "//srv" }))[0]?.slice(0, 2)).toEqual(["gateway:spoolDir", "//srv"]);
  });

  it("an http registry is the node API's URL, with no addresses", () => {
    const node = accepts(primary({ "gateway:registry": "https://node.brightchain.org/api" }));
    expect(node.lookup.registry).toStrictEqual({ kind: "http", url: "https://node.brightchain.org/api" });
  });

  it("a URL inside a structured key with a space before or after is refused (a scalar key's value is trimmed first)", () => {
    for (const accountUri of [
      " https://acme-v02.api.letsencrypt.org/acme/acct/1",
      "https://acme-v02.api.letsencrypt.org/acme/acct/1 ",
    ])
      expect(problems(primary({ "gateway:caa": json({ accountUri }) }))).toEqual([
        [
          "gateway:caa.accountUri",
          accountUri,
          "the https:// URL of your ACME account, such as https://acme-v02.api.letsencrypt.org/acme/acct/123456789",
        ],
      ]);
  });
});

describe("gateway:fleet", () => {
  const host = (hostname: string, ipv4: string, ipv6?: string) => ({ hostname, ipv4, ...(ipv6 ? { ipv6 } : {}) });
  const fleet = (...hosts: unknown[]) => primary({ "gateway:fleet": json(hosts) });

  it("an address used twice is named at its second use; so is a host name", () => {
    expect(
      problems(
        fleet(
          host("mail.brightchain.org", "203.0.113.10", "2001:db8::10"),
          host("mail2.brightchain.org", "203.0.113.10", "2001:db8::10"),
          host("mail2.brightchain.org", "203.0.113.30"),
        ),
      ),
    ).toEqual([
      ["gateway:fleet[1].ipv4", "203.0.113.10", "an address no other fleet node uses"],
      ["gateway:fleet[1].ipv6", "2001:db8::10", "an address no other fleet node uses"],
      ["gateway:fleet[2].hostname", "mail2.brightchain.org", "a host name listed once in the fleet"],
    ]);
  });

  it("a missing field says what that field accepts; an entry that is not an object, or no entry, says the shape", () => {
    expect(problems(fleet(host("mail.brightchain.org", "203.0.113.10"), { hostname: "mail2.brightchain.org" }, null))).toEqual([
      ["gateway:fleet[1].ipv4", undefined, "an IPv4 address such as 203.0.113.10 (every node needs one)"],
      ["gateway:fleet[2]", "null", "an object {hostname, ipv4, ipv6?}"],
    ]);
    // Two entries without a host name are two missing names, not a duplicate.
    expect(
      problems(fleet(host("mail.brightchain.org", "203.0.113.10"), { ipv4: "203.0.113.20" }, { ipv4: "203.0.113.30" })).map(
        (p) => p[0],
      ),
    ).toEqual(["gateway:fleet[1].hostname", "gateway:fleet[2].hostname"]);
    expect(problems(primary({ "gateway:fleet": "[]" }))[0]).toEqual([
      "gateway:fleet",
      "[]",
      'a list of {hostname, ipv4, ipv6?}, e.g. [{"hostname":"mail.brightchain.org","ipv4":"203.0.113.10"}]',
    ]);
  });

  it("an IPv6 address with ffff inside is not an IPv4-mapped one", () => {
    const node = accepts(
      fleet(host("mail.brightchain.org", "203.0.113.10", "2001:db8::ffff:0:1"), host("mail2.brightchain.org", "203.0.113.20")),
    );
    expect(node.host.ipv6).toBe("2001:db8::ffff:0:1");
  });
});

describe("gateway:metrics", () => {
  const metrics = (value: unknown) => primary({ "gateway:metrics": json(value) });
  const SCRAPER =
    "an IPv4 or IPv6 network in CIDR form with no host bits set, such as 203.0.113.0/24, 203.0.113.7/32 or 2001:db8::/64";

  it("a scraper network with host bits set, a prefix past the address, text around it or no address is refused", () => {
    const bad = ["2001:db8:1::0/32", "0.0.0.0/33", "x203.0.113.0/24", "1.2.3/24", "::ffff:1.2.3.4/128"];
    expect(problems(metrics({ scrapers: bad }))).toEqual(bad.map((n, i) => [`gateway:metrics.scrapers[${i}]`, n, SCRAPER]));
  });

  it("a full-form IPv6 network is taken in RFC 5952's text; a /0 needs allowAnyScraper", () => {
    expect(accepts(metrics({ scrapers: ["2001:db8:0:0:0:0:0:0/32", "2001:0db8:0001::/48"] })).metrics).toMatchObject({
      scrapers: ["2001:db8::/32", "2001:db8:1::/48"],
      listenHost: "::",
    });
    expect(problems(metrics({ scrapers: ["0.0.0.0/0"] }))).toEqual([
      [
        "gateway:metrics.scrapers[0]",
        "0.0.0.0/0",
        "a network narrower than /0 (0.0.0.0/0 lets anyone on the Internet read the node's metrics; set gateway:metrics.allowAnyScraper true to mean it)",
      ],
    ]);
  });

  it("two endpoints on one port: the later one is named with the earlier; a bad metrics value is one problem", () => {
    expect(problems(metrics({ lookupPort: 9600, postfixPort: 9600 }))).toEqual([
      ["gateway:metrics.postfixPort", "9600", "a port other than gateway:metrics.lookupPort (9600)"],
    ]);
    expect(problems(metrics({ inboundPort: "x" })).map((p) => p[0])).toEqual(["gateway:metrics.inboundPort"]);
    expect(problems(primary({ "gateway:metrics": "null" })).map((p) => p[0])).toEqual(["gateway:metrics"]);
  });
});

describe("gateway:ssh and its keys", () => {
  const KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIP6kEPrnVDpntlskcoYMhNKYDm7NwXlPaA1dPHq31tgv";
  const hostKey = (value: string) => primary({ "gateway:ssh": json({ host: "203.0.113.10", hostKey: value }) });

  it("a host key with tabs, extra spaces or a leading space in known_hosts form is reduced to `type base64`", () => {
    for (const value of [`ssh-ed25519\t\t${KEY}  root@mail`, `  203.0.113.10 ssh-ed25519 ${KEY}`])
      expect(parseGatewayStack(hostKey(value)).ssh.hostKey).toBe(`ssh-ed25519 ${KEY}`);
  });

  it("a type without a key, or a key that is not base64, gets the how-to; a short key says it is incomplete", () => {
    for (const value of ["ssh-ed25519", `ssh-ed25519 ${KEY}-`, `ssh-ed25519 -${KEY}`])
      expect(problems(hostKey(value))).toEqual([["gateway:ssh.hostKey", value, HOST_KEY_HOWTO]]);
    expect(problems(hostKey("ssh-ed25519 AAAA"))).toEqual([
      ["gateway:ssh.hostKey", "ssh-ed25519 AAAA", `a complete ssh-ed25519 key: ${HOST_KEY_HOWTO}`],
    ]);
  });

  it("ssh.host is a host name or an address", () => {
    expect(problems(primary({ "gateway:ssh": json({ host: "not a host!" }) }))).toEqual([
      ["gateway:ssh.host", "not a host!", "a host name or an IPv4/IPv6 address"],
    ]);
  });

  it("a private key: PEM or OpenSSH, blank lines around it allowed, nothing before it", () => {
    const withKey = (sshPrivateKey: string) => parseGatewayStack(primary({ "gateway:sshPrivateKey": sshPrivateKey })).ssh;
    const pem = "\n  -----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n";
    expect(withKey(pem).privateKey).toBe(pem);
    expect(withKey("-----BEGIN OPENSSH PRIVATE KEY-----\nb3B\n").privateKey).toBe("-----BEGIN OPENSSH PRIVATE KEY-----\nb3B\n");
    expect(problems(primary({ "gateway:sshPrivateKey": "x-----BEGIN PRIVATE KEY-----" })).map((p) => p[0])).toEqual([
      "gateway:sshPrivateKey",
    ]);
    expect(Object.keys(parseGatewayStack(primary()).ssh)).toEqual(["host", "user", "port", "hostKey"]);
  });

  it("a password of exactly 12 characters is enough; a login name used twice is named at its second use", () => {
    const users = (list: unknown) => primary({ "gateway:submissionUsers": json(list) });
    expect(parseGatewayStack(users([{ username: "node", password: "123456789012" }])).secrets.submissionUsers).toEqual([
      { username: "node", password: "123456789012" },
    ]);
    const twice = [
      { username: "node", password: "123456789012" },
      { username: "node", password: "abcdefghijkl" },
    ];
    expect(errorOf(() => parseGatewayStack(users(twice))).message).toBe(
      'gateway:submissionUsers[1].username="node" is invalid; expected a unique login name of letters, digits and . _ @ + -',
    );
    expect(problems(users([null, { username: "node", password: "123456789012" }])).map((p) => p[0])).toEqual([
      "gateway:submissionUsers[0]",
    ]);
  });
});

describe("rules between keys speak only about valid values", () => {
  it("one problem for each bad value, none made up by a rule that read it", () => {
    const only = (flat: FlatConfig) => problems(flat).map((p) => p[0]);
    expect(only(primary({ "gateway:primaryHostname": "BAD" }))).toEqual(["gateway:primaryHostname"]);
    expect(only(primary({ "gateway:hostname": "BAD" }))).toEqual(["gateway:hostname"]);
    expect(only(primary({ "gateway:mxPriority": "x" }))).toEqual(["gateway:mxPriority"]);
    expect(only(primary({ "gateway:spamDefiniteScore": "9.x" }))).toEqual(["gateway:spamDefiniteScore"]);
    expect(
      only(primary({ "gateway:acmeServer": "not a url", "gateway:caa": json({ accountUri: "https://acme.example/acct/1" }) })),
    ).toEqual(["gateway:acmeServer"]);
    expect(only(primary({ "gateway:dkimPrevious": json({ selector: "default", keepUntil: "someday" }) }))).toEqual([
      "gateway:dkimPrevious.keepUntil",
    ]);
    expect(only(primary({ "gateway:dane": json({ nextLineage: "mail.brightchain.org", previousLineage: "BAD!" }) }))).toEqual([
      "gateway:dane.previousLineage",
    ]);
    expect(only(primary({ "gateway:recipients": "[]", "gateway:registry": "https://node.brightchain.org/api" }))).toEqual([
      "gateway:recipients",
    ]);
    expect(only(primary({ "gateway:domain": "BAD", "gateway:recipients": json(["a@BAD"]) }))).toEqual(["gateway:domain"]);
  });

  it("the lineage served before the switch must not be the one served now", () => {
    expect(problems(primary({ "gateway:dane": json({ previousLineage: "mail.brightchain.org" }) }))).toEqual([
      [
        "gateway:dane.previousLineage",
        "mail.brightchain.org",
        "a lineage other than the one served (mail.brightchain.org): the lineage served before the switch",
      ],
    ]);
  });
});

describe("gateway:recipients at the limits the lookup service matches", () => {
  // 63 + 1 + 63 + 1 + 57 + 4 = 189 characters: with a 64-character local part, an address of exactly 254.
  const domain = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(57)}.org`;
  const stack = (recipients: string[], mailDomain = domain) =>
    primary({ "gateway:domain": mailDomain, "gateway:recipients": json(recipients) });

  it("a 64-character local part and a 254-character address are taken, trimmed and lower-cased", () => {
    const longest = `${"x".repeat(64)}@${domain}`;
    expect(longest).toHaveLength(254);
    expect(accepts(stack([longest, ` Alice@${domain.toUpperCase()} `])).lookup.registry).toEqual({
      kind: "file",
      path: "/etc/brightchain/recipients",
      addresses: [`alice@${domain}`, longest].sort(),
    });
  });

  it("a 65-character local part, a 256-character address, an empty local part are refused, each named", () => {
    const longDomain = `e.${domain}`;
    expect(problems(stack([`${"x".repeat(65)}@brightchain.org`, "@brightchain.org"], "brightchain.org"))).toEqual([
      ["gateway:recipients[0]", `${"x".repeat(65)}@brightchain.org`, "an address in brightchain.org"],
      ["gateway:recipients[1]", "@brightchain.org", "an address in brightchain.org"],
    ]);
    expect(problems(stack([`${"x".repeat(64)}@${longDomain}`], longDomain))).toEqual([
      ["gateway:recipients[0]", `${"x".repeat(64)}@${longDomain}`, `an address in ${longDomain}`],
    ]);
  });
});

describe("the model a stack becomes", () => {
  it("gateway:dkimKeepKeyOnDestroy true keeps the key; false or unset leaves no flag", () => {
    expect(accepts(primary({ "gateway:dkimKeepKeyOnDestroy": "true" })).dkim.keepKeyOnDestroy).toBe(true);
    for (const value of ["false", undefined]) {
      const flat = primary();
      if (value !== undefined) flat["gateway:dkimKeepKeyOnDestroy"] = value;
      expect("keepKeyOnDestroy" in accepts(flat).dkim).toBe(false);
    }
  });

  it("a DANE rollover's next lineage and a DMARC rua given as one string reach the model", () => {
    const node = accepts(
      primary({
        "gateway:dane": json({ nextLineage: "mail.brightchain.org-2027" }),
        "gateway:dmarc": json({ rua: "mailto:d@brightchain.org" }),
      }),
    );
    expect(node.dane).toStrictEqual({ nextLineage: "mail.brightchain.org-2027" });
    expect(node.dmarc.rua).toEqual(["mailto:d@brightchain.org"]);
  });

  it("a DMARC rua that is not a mailto: URI of an address is refused", () => {
    for (const rua of ["dmarc@brightchain.org", "mailto:not-an-address"])
      expect(problems(primary({ "gateway:dmarc": json({ rua: [rua] }) }))).toEqual([
        ["gateway:dmarc.rua[0]", rua, "a mailto: URI such as mailto:dmarc-reports@brightchain.org"],
      ]);
  });

  it("CAA without iodef has no iodef; secrets not given are not keys of the model", () => {
    const node = accepts(primary({ "gateway:caa": json({}) }));
    expect(node.caa).toStrictEqual({ issuer: "letsencrypt.org" });
    expect(Object.keys(parseGatewayStack(primary()).secrets)).toEqual(["submissionUsers"]);
  });
});

describe("what a deploy needs", () => {
  const complete = (over: FlatConfig = {}) =>
    primary({
      "gateway:submissionUsers": json(exampleSecrets.submissionUsers),
      "gateway:certbotCloudflareToken": exampleSecrets.certbotCloudflareToken!,
      ...over,
    });
  const deployProblems = (flat: FlatConfig) => errorOf(() => parseGatewayStack(flat, { deploy: true })).message;

  it("a complete primary deploys; without users or the token, each is named with why it is needed", () => {
    expect(parseGatewayStack(complete(), { deploy: true }).secrets).toEqual(exampleSecrets);
    expect(deployProblems(complete({ "gateway:submissionUsers": "[]" }))).toBe(
      "gateway:submissionUsers is not set; expected at least one {username, password} while gateway:submission is on (the primary's default)",
    );
    const withoutToken = complete();
    delete withoutToken["gateway:certbotCloudflareToken"];
    expect(deployProblems(withoutToken)).toBe(
      "gateway:certbotCloudflareToken is not set; expected a Cloudflare API token while gateway:acmeChallenge is dns-01 (or set it to http-01)",
    );
    const withoutHostKey = complete({ "gateway:ssh": json({ host: "203.0.113.10" }) });
    expect(deployProblems(withoutHostKey)).toBe(`gateway:ssh.hostKey is not set; expected ${HOST_KEY_HOWTO}`);
  });

  it("no users needed with submission off or on a relay; no token with http-01", () => {
    expect(() =>
      parseGatewayStack(complete({ "gateway:submissionUsers": "[]", "gateway:submission": "false" }), { deploy: true }),
    ).not.toThrow();
    const relayFlat = relay({ "gateway:certbotCloudflareToken": exampleSecrets.certbotCloudflareToken! });
    expect(() => parseGatewayStack(relayFlat, { deploy: true })).not.toThrow();
    const http = complete({ "gateway:acmeChallenge": "http-01" });
    delete http["gateway:certbotCloudflareToken"];
    expect(() => parseGatewayStack(http, { deploy: true })).not.toThrow();
  });

  it("a bad submission or users value is that one problem, not also a missing user", () => {
    expect(problems(complete({ "gateway:submissionUsers": '""' }), true).map((p) => p[0])).toEqual(["gateway:submissionUsers"]);
    expect(problems(complete({ "gateway:submissionUsers": "[]", "gateway:submission": "maybe" }), true).map((p) => p[0])).toEqual(
      ["gateway:submission"],
    );
  });
});

describe("more of what an operator reads", () => {
  it("the role's host name rules say which host name is wanted", () => {
    expect(problems(primary({ "gateway:hostname": "mail2.brightchain.org" }))).toEqual([
      [
        "gateway:hostname",
        "mail2.brightchain.org",
        "the primary's host name gateway:primaryHostname (mail.brightchain.org) when gateway:role is primary",
      ],
    ]);
    expect(problems(relay({ "gateway:hostname": "mail.brightchain.org" }))).toEqual([
      [
        "gateway:hostname",
        "mail.brightchain.org",
        "a fleet host other than the primary (mail.brightchain.org) when gateway:role is relay",
      ],
    ]);
  });

  it("an http:// node API is a registry too", () => {
    expect(accepts(primary({ "gateway:registry": "http://10.0.0.5:8080/api" })).lookup.registry).toStrictEqual({
      kind: "http",
      url: "http://10.0.0.5:8080/api",
    });
  });

  it("a port inside a structured key is digits only: a space before or after it is refused", () => {
    for (const port of [" 9600", "9600 "])
      expect(problems(primary({ "gateway:metrics": json({ lookupPort: port }) }))).toEqual([
        ["gateway:metrics.lookupPort", port, "an integer from 1 to 65535"],
      ]);
  });

  it("a host key after two host fields is not a known_hosts line; without a host key the connection has none", () => {
    const KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIP6kEPrnVDpntlskcoYMhNKYDm7NwXlPaA1dPHq31tgv";
    const value = `mail 203.0.113.10 ssh-ed25519 ${KEY}`;
    expect(problems(primary({ "gateway:ssh": json({ hostKey: value }) }))).toEqual([
      ["gateway:ssh.hostKey", value, HOST_KEY_HOWTO],
    ]);
    expect(Object.keys(parseGatewayStack(primary({ "gateway:ssh": json({ host: "203.0.113.10" }) })).ssh)).toEqual([
      "host",
      "user",
      "port",
    ]);
  });
});
