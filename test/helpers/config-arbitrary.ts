// Stack configurations drawn for property tests: values each key should take and values that once slipped through
// (9.5 with SpamAssassin, a newline in a URL, a padded password, an open relay), with host names mostly consistent
// with the role so that most drawn stacks reach the renderers.
import * as fc from "fast-check";
import { GatewayConfigError, parseGatewayStack, type FlatConfig, type GatewayStack } from "../../infra/model/config";
import { OS_RELEASES } from "../../infra/model/releases";

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP6kEPrnVDpntlskcoYMhNKYDm7NwXlPaA1dPHq31tgv";
const HOSTS = ["mail.brightchain.org", "mail2.brightchain.org", "mx3.brightchain.org"];

const fleetEntry = fc.record(
  {
    hostname: fc.constantFrom(...HOSTS, "MAIL.brightchain.org"),
    ipv4: fc.constantFrom("203.0.113.10", "203.0.113.20", "198.51.100.7", "203.0.113.300"),
    ipv6: fc.constantFrom("2001:db8::10", "2001:DB8:0:0::20", "::ffff:203.0.113.1", "fe80::1%eth0"),
  },
  { requiredKeys: ["hostname", "ipv4"] },
);
/** Mostly a well-formed fleet, so that most drawn configurations get past it to the rest of the rules. */
const fleet = fc.oneof(
  {
    weight: 19,
    arbitrary: fc
      .subarray(HOSTS, { minLength: 1 })
      .map((names) => names.map((hostname, i) => ({ hostname, ipv4: `203.0.113.${10 + i}` }))),
  },
  { weight: 1, arbitrary: fc.array(fleetEntry, { minLength: 0, maxLength: 4 }) },
);

/**
 * A key: unset, one of the values it should accept, or (rarely, so that most drawn stacks get past the other
 * thirty keys to the renderers) one it should refuse.
 */
const key = <T>(valid: T[], invalid: T[] = [], unset = true) =>
  fc.oneof(
    ...(unset ? [{ weight: 10, arbitrary: fc.constant(undefined) }] : []),
    { weight: 40, arbitrary: fc.constantFrom(...valid) },
    ...(invalid.length > 0 ? [{ weight: 1, arbitrary: fc.constantFrom(...invalid) }] : []),
  );

const submissionUser = fc.record({
  username: key(["node", "node2", "brightchain-node"], ["bad:name"], false),
  password: key(
    ["correct horse battery", "twelve-chars", "pass word with spaces inside"],
    [" padded password ", "short", "has:colon-in-it!"],
    false,
  ),
});

const settings = fc.record({
  domain: key(["brightchain.org"], ["Bright_chain.org"], false),
  role: key(["primary", "relay"], ["backup"], false),
  os: key<string>([...OS_RELEASES], ["debian"]),
  spamEngine: key(["spamassassin", "rspamd", "none"]),
  spamProbableScore: key(["5.0", "4.25", "1", "0.5"], ["0", "1e3", "5.125"]),
  spamDefiniteScore: key(["10.0", "9.5", "12", "5", "999.99", "1000"], ["-1", "1001"]),
  mxPriority: key(["10", "20", "30", "65535"], ["5"]),
  dropTransport: key(["virtual", "pipe"], ["lmtp"]),
  submission: key(["true", "false"], ["yes"]),
  dmarc: key<object>(
    [
      { policy: "reject", rua: ["mailto:d@brightchain.org", "mailto:e@example.net"], pct: 50 },
      { policy: "quarantine", rua: "mailto:d@brightchain.org" },
      { pct: 0 },
    ],
    [{ pct: 150 }, { rua: ["mailto:a,b@brightchain.org"] }],
  ),
  dkimSelector: key(["default", "mail2026", "a"], ["Bad_sel"]),
  dkimKeyBits: key(["2048", "4096"], ["1024"]),
  dkimKeyDir: key(["/etc/dkim", "/srv/dkim-keys/", "/etc/opendkim/keys"], ["/etc/dkim;id", "/etc/../root"]),
  maxMessageSize: key(["1024", "26214400", "2147483647"], ["25M"]),
  acmeEmail: key(["hostmaster@brightchain.org", "a+b@example.net"], ["postmaster"]),
  acmeServer: key(
    ["https://acme.example/dir", "https://localhost:14000/dir"],
    ["https://acme.example/\ndir", "http://acme.example/dir"],
  ),
  acmeChallenge: key(["dns-01", "http-01"]),
  relayQueueLifetime: key(["10d", "240h", "5w", "3600"], ["ten days"]),
  mynetworks: key(
    [["127.0.0.0/8"], ["127.0.0.0/8", "[::1]/128", "10.0.0.0/8"], ["192.0.2.0/24", "[2001:db8::]/32"]],
    [["0.0.0.0/0"], ["::1/128"], []],
  ),
  lookupPort: key(["2526", "1", "65535"], ["70000"]),
  lookupCacheTtl: key(["0", "300", "86400"], ["-1"]),
  registry: key(
    ["/etc/brightchain/recipients", "https://node.brightchain.org/api", "/srv/recipients/"],
    ["/srv/r x", "recipients.txt"],
  ),
  recipients: key(
    [["alice@brightchain.org", "Bob@BrightChain.org", "alice@brightchain.org"], ["x.y+tag@brightchain.org"]],
    [["eve@example.org"], ["#ops@brightchain.org"], []],
  ),
  nodeUrl: key(
    ["https://node.brightchain.org/", "http://10.0.0.5:8080", "https://[2001:db8::5]/api/"],
    ["https://node.brightchain.org/\tx"],
  ),
  spoolDir: key(["/var/spool/brightchain", "/srv/bc", "/srv/spool/"], ["/srv/b'c"]),
  storeDir: key(["/srv/store", "/var/spool/brightchain/store"]),
  runtimeInstallDir: key(["/opt/brightchain-gateway", "/usr/local/lib/bc"], ["/opt/bc gw"]),
  brightchainUid: key(["2526", "1", "65534"], ["0"]),
  brightchainGid: key(["2526", "65534"], ["65535"]),
  ssh: key<object>(
    [
      { host: "203.0.113.10", hostKey: HOST_KEY },
      { hostKey: HOST_KEY, user: "deploy", port: 2222 },
    ],
    [{ port: 0 }],
    false,
  ),
  submissionUsers: fc.oneof(
    { weight: 1, arbitrary: fc.constant([]) },
    { weight: 20, arbitrary: fc.array(submissionUser, { minLength: 1, maxLength: 2 }) },
  ),
  certbotCloudflareToken: key(["cf_token-123456"], ["bad token"], false),
});

/** Host names and fleet consistent with the role most of the time; now and then one that is not. */
export const stackConfig = fc
  .tuple(settings, fleet, fc.nat(HOSTS.length - 1), fc.integer({ min: 0, max: 19 }))
  .map(([rest, fleetValue, pick, chance]) => {
    const names = fleetValue.map((h) => h.hostname);
    const primaryHostname = chance === 0 ? HOSTS[pick]! : (names[0] ?? HOSTS[0]!);
    const others = names.filter((n) => n !== primaryHostname);
    const hostname =
      chance === 1
        ? HOSTS[pick]!
        : rest.role === "relay"
          ? (others[pick % Math.max(others.length, 1)] ?? HOSTS[1]!)
          : primaryHostname;
    return { ...rest, fleet: fleetValue, primaryHostname, hostname };
  });

export function flatten(config: Record<string, unknown>): FlatConfig {
  const flat: FlatConfig = {};
  for (const [name, value] of Object.entries(config)) {
    if (value !== undefined) flat[`gateway:${name}`] = typeof value === "string" ? value : JSON.stringify(value);
  }
  return flat;
}

/** The configuration as the parser sees it, or the GatewayConfigError it refused it with; anything else is thrown. */
export function parse(flat: FlatConfig, deploy: boolean): GatewayStack | GatewayConfigError {
  try {
    return parseGatewayStack(flat, { deploy });
  } catch (err) {
    if (err instanceof GatewayConfigError) return err;
    throw err;
  }
}
