// The schema's promises beyond one bad key: every problem at once, rules between keys with a good and a bad
// value each, no secret in any message, and values that used to pass and then break a renderer or a config line.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  GatewayConfigError,
  parseGatewayConfig,
  parseGatewaySecrets,
  parseGatewayStack,
  readStackConfig,
  type FlatConfig,
} from "../../infra/model/config";
import { main } from "../../infra/cli/dispatch";
import { hostFiles } from "../../infra/render";
import { exampleSecrets } from "../fixtures/nodes";

const repo = path.resolve(__dirname, "../..");
const primaryFlat = (): FlatConfig => readStackConfig(repo, "primary");
const relayFlat = (): FlatConfig => readStackConfig(repo, "relay");

function problemsOf(run: () => unknown): GatewayConfigError {
  try {
    run();
  } catch (err) {
    if (err instanceof GatewayConfigError) return err;
    throw err;
  }
  throw new Error("expected a GatewayConfigError, but the configuration parsed");
}
const problems = (flat: FlatConfig) => problemsOf(() => parseGatewayConfig(flat));

describe("every problem at once", () => {
  it("a stack with five mistakes lists all five, each with its key, value and what is accepted", () => {
    const err = problems({
      ...primaryFlat(),
      "gateway:os": "debian",
      "gateway:spamDefiniteScore": "9.5",
      "gateway:spamEngin": "rspamd",
      "gateway:mynetworks": JSON.stringify(["127.0.0.0/8", "0.0.0.0/0"]),
      "gateway:nodeUrl": "https://node.brightchain.org/\napi",
    });
    expect(err.problems.map((p) => p.key)).toEqual([
      "gateway:spamEngin",
      "gateway:spamDefiniteScore",
      "gateway:mynetworks[1]",
      "gateway:nodeUrl",
      "gateway:os",
    ]);
    expect(err.message.split("\n")[0]).toBe("5 configuration problems:");
    expect(err.message).toContain('  - gateway:spamDefiniteScore="9.5" is invalid; expected a whole score such as 10');
    expect(err.message).toContain('  - gateway:nodeUrl="https://node.brightchain.org/\\napi" is invalid; expected a URL');
    expect(err.message).toContain('  - gateway:os="debian" is invalid; expected a release, not a family');
  });

  it("problems inside lists name the entry and field: gateway:fleet[2].ipv4", () => {
    const fleet = [
      { hostname: "mail.brightchain.org", ipv4: "203.0.113.10" },
      { hostname: "mail2.brightchain.org", ipv4: "203.0.113.20" },
      { hostname: "mail3.brightchain.org", ipv4: "203.0.113.300", ipv6: "2001:db8::g" },
    ];
    const err = problems({ ...primaryFlat(), "gateway:fleet": JSON.stringify(fleet), "gateway:lookupPort": "0" });
    expect(err.problems).toEqual([
      { key: "gateway:fleet[2].ipv4", value: "203.0.113.300", accepted: expect.stringMatching(/IPv4 address/) },
      { key: "gateway:fleet[2].ipv6", value: "2001:db8::g", accepted: expect.stringMatching(/IPv6 address/) },
      { key: "gateway:lookupPort", value: "0", accepted: "an integer from 1 to 65535" },
    ]);
  });

  it("no secret value appears in any message, however many problems there are", () => {
    const password = " padded secret password ";
    const privateKey = "not a key but a secret line";
    const err = problemsOf(() =>
      parseGatewayStack({
        ...primaryFlat(),
        "gateway:sshPrivateKey": privateKey,
        "gateway:submissionUsers": JSON.stringify([{ username: "node", password, extra: "hidden-extra" }]),
        "gateway:certbotCloudflareToken": "bad token!",
        "gateway:role": "backup",
      }),
    );
    expect(err.problems.map((p) => [p.key, p.value])).toEqual([
      ["gateway:role", "backup"],
      ["gateway:sshPrivateKey", "(secret)"],
      ["gateway:submissionUsers[0].password", "(secret)"],
      ["gateway:submissionUsers[0].extra", "(value not shown)"],
      ["gateway:certbotCloudflareToken", "(secret)"],
    ]);
    for (const secret of [password.trim(), privateKey, "hidden-extra", "bad token!"]) expect(err.message).not.toContain(secret);
  });
});

describe("rules between keys: a good and a bad value each", () => {
  it("SpamAssassin rejects at a whole score (spamass-milter -r is an integer); Rspamd takes decimals", () => {
    const with95 = { ...primaryFlat(), "gateway:spamDefiniteScore": "9.5" };
    expect(problems(with95).problems).toEqual([
      {
        key: "gateway:spamDefiniteScore",
        value: "9.5",
        accepted: "a whole score such as 10 with gateway:spamEngine spamassassin (spamass-milter -r takes an integer)",
      },
    ]);
    const rspamd = parseGatewayConfig({ ...with95, "gateway:spamEngine": "rspamd" });
    expect(rspamd.spam.definiteScore).toBe(9.5);
    // What used to happen: accepted here, then the renderer threw.
    expect(() => hostFiles(rspamd, exampleSecrets)).not.toThrow();
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:spamDefiniteScore": "12" }).spam.definiteScore).toBe(12);
  });

  it("definite score at or above the probable one", () => {
    expect(problems({ ...primaryFlat(), "gateway:spamDefiniteScore": "4" }).key).toBe("gateway:spamDefiniteScore");
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:spamDefiniteScore": "5" }).spam.definiteScore).toBe(5);
  });

  it("primary MX 10, relays above", () => {
    expect(problems({ ...primaryFlat(), "gateway:mxPriority": "20" }).key).toBe("gateway:mxPriority");
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:mxPriority": "10" }).mxPriority).toBe(10);
    expect(problems({ ...relayFlat(), "gateway:mxPriority": "5" }).key).toBe("gateway:mxPriority");
    expect(parseGatewayConfig({ ...relayFlat(), "gateway:mxPriority": "15" }).mxPriority).toBe(15);
  });

  it("host names in the fleet", () => {
    // The primary's own host name is not blamed too: the rule linking them waits for a valid primaryHostname.
    expect(problems({ ...primaryFlat(), "gateway:primaryHostname": "mx.brightchain.org" }).problems.map((p) => p.key)).toEqual([
      "gateway:primaryHostname",
    ]);
    expect(problems({ ...relayFlat(), "gateway:hostname": "mail9.brightchain.org" }).message).toMatch(
      /gateway:hostname="mail9\.brightchain\.org" is invalid; expected a host name listed in gateway:fleet \(mail\.brightchain\.org, mail2\.brightchain\.org\)/,
    );
  });

  it("recipients in the domain, each named", () => {
    const err = problems({
      ...primaryFlat(),
      "gateway:recipients": JSON.stringify(["a@brightchain.org", "b@example.org", "c@x.org"]),
    });
    expect(err.problems.map((p) => p.key)).toEqual(["gateway:recipients[1]", "gateway:recipients[2]"]);
    expect(
      parseGatewayConfig({ ...primaryFlat(), "gateway:recipients": JSON.stringify(["a@brightchain.org"]) }).lookup.registry,
    ).toMatchObject({ addresses: ["a@brightchain.org"] });
  });

  it("a deploy also needs the pinned host key and the secrets the node's files carry, all listed together", () => {
    const flat = { ...primaryFlat(), "gateway:ssh": JSON.stringify({ host: "203.0.113.10" }) };
    expect(parseGatewayStack(flat).ssh).toEqual({ host: "203.0.113.10", user: "root", port: 22 });
    expect(problemsOf(() => parseGatewayStack(flat, { deploy: true })).problems.map((p) => p.key)).toEqual([
      "gateway:ssh.hostKey",
      "gateway:submissionUsers",
      "gateway:certbotCloudflareToken",
    ]);
    const complete = {
      ...primaryFlat(),
      "gateway:submissionUsers": JSON.stringify(exampleSecrets.submissionUsers),
      "gateway:certbotCloudflareToken": exampleSecrets.certbotCloudflareToken!,
    };
    expect(parseGatewayStack(complete, { deploy: true }).secrets).toEqual(exampleSecrets);
  });
});

describe("values that passed and then broke a config line", () => {
  it.each([
    ["gateway:nodeUrl", "https://node.brightchain.org/\nGATEWAY_X=1"],
    ["gateway:registry", "https://node.brightchain.org/api\trecipients"],
    ["gateway:acmeServer", "https://acme.example/\rdir"],
    ["gateway:acmeEmail", "postmaster\u0000@brightchain.org"],
    ["gateway:dkimSelector", "def\u007fault"],
    ["gateway:relayQueueLifetime", "10\u001bd"],
  ])("%s with a control character is refused naming the key", (key, value) => {
    const err = problems({ ...primaryFlat(), [key]: value });
    expect(err.problems.map((p) => p.key)).toEqual([key]);
  });

  it.each([" leading-space-password", "trailing-space-password ", "has:colon-password", "has\nnewline-password", "short"])(
    "submission password %j is refused naming the key, never showing it",
    (password) => {
      const err = problemsOf(() =>
        parseGatewaySecrets({ "gateway:submissionUsers": JSON.stringify([{ username: "node", password }]) }),
      );
      expect(err.message).toMatch(
        /^gateway:submissionUsers\[0\]\.password="\(secret\)" is invalid; expected a password of at least 12 characters without ':', line breaks, control characters or leading\/trailing spaces$/,
      );
      expect(err.message).not.toContain(password.trim());
    },
  );
});

describe("stack files", () => {
  let dir = "";
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = "";
  });

  it("a YAML syntax error is a config error naming the file and line, not a stack trace", () => {
    dir = mkdtempSync(path.join(tmpdir(), "gateway-yaml-"));
    writeFileSync(path.join(dir, "Pulumi.yaml"), "name: demo\nruntime: nodejs\n");
    writeFileSync(path.join(dir, "Pulumi.a.yaml"), "config:\n  gateway:role: primary\n  gateway:hostname: [unclosed\n");
    const err = problemsOf(() => readStackConfig(dir, "a"));
    expect(err.key).toMatch(/Pulumi\.a\.yaml line \d+$/);
    expect(err.message).toMatch(/expected valid YAML \(/);
    writeFileSync(path.join(dir, "Pulumi.a.yaml"), "config:\n  gateway:role: primary\n  gateway:role: relay\n");
    expect(problemsOf(() => readStackConfig(dir, "a")).message).toMatch(/Pulumi\.a\.yaml line 3=.*unique/);
  });

  it("gateway render exits 2 on a YAML syntax error and on a newline in a URL, naming where, with no stack trace", async () => {
    dir = mkdtempSync(path.join(tmpdir(), "gateway-yaml-"));
    const render = async (stackFile: string) => {
      writeFileSync(path.join(dir, "Pulumi.a.yaml"), stackFile);
      let stderr = "";
      const io = { stdout: () => {}, stderr: (text: string) => void (stderr += text), env: {}, cwd: dir };
      const code = await main(["render", "--stack", "a", "--out", path.join(dir, "out")], io);
      return { code, stderr };
    };
    writeFileSync(path.join(dir, "Pulumi.yaml"), readFileSync(path.join(repo, "Pulumi.yaml"), "utf8"));
    const stack = readFileSync(path.join(repo, "Pulumi.primary.yaml"), "utf8");
    const yamlError = await render(`${stack}  gateway:nodeUrl: [unclosed\n`);
    expect(yamlError.code).toBe(2);
    expect(yamlError.stderr).toMatch(/^gateway render: .*Pulumi\.a\.yaml line \d+=.* is invalid; expected valid YAML/);
    const newline = await render(`${stack}  gateway:nodeUrl: "https://node.brightchain.org/\\nGATEWAY_X=1"\n`);
    expect(newline).toEqual({
      code: 2,
      stderr:
        'gateway render: gateway:nodeUrl="https://node.brightchain.org/\\nGATEWAY_X=1" is invalid; expected a URL starting with http:// or https://\n',
    });
  });
});
