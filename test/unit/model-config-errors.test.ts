// What an operator reads when a stack's configuration is wrong: the error's first line for one problem and the
// list for several, the hint for a misplaced address key and for a name like no key, a secret's value never
// shown, and readStackConfigFiles' refusals of a project or stack file that is not a mapping, each naming the file.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GatewayConfigError, parseGatewayConfig, parseGatewaySecrets, readStackConfigFiles } from "../../infra/model/config";

const dir = mkdtempSync(join(tmpdir(), "model-config-errors-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorOf(run: () => unknown): GatewayConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof GatewayConfigError) return error;
    throw error;
  }
  throw new Error("no error");
}

function files(project: string, stack?: string): void {
  writeFileSync(join(dir, "Pulumi.yaml"), project);
  if (stack !== undefined) writeFileSync(join(dir, "Pulumi.a.yaml"), stack);
}

describe("GatewayConfigError's message", () => {
  it("one problem: the line alone, unset or invalid; several: the count, then one line each", () => {
    expect(new GatewayConfigError("gateway:k", undefined, "a thing").message).toBe("gateway:k is not set; expected a thing");
    expect(new GatewayConfigError("gateway:k", "v", "a thing").message).toBe('gateway:k="v" is invalid; expected a thing');
    const several = new GatewayConfigError([
      { key: "gateway:a", value: "1", accepted: "x" },
      { key: "gateway:b", value: undefined, accepted: "y" },
    ]);
    expect(several.message).toBe(
      '2 configuration problems:\n  - gateway:a="1" is invalid; expected x\n  - gateway:b is not set; expected y',
    );
    expect([several.key, several.value, several.accepted, several.name]).toEqual(["gateway:a", "1", "x", "GatewayConfigError"]);
  });
});

describe("unknown and unparsable keys", () => {
  it("gateway:ipv4 says addresses belong in the fleet entry, its value not shown", () => {
    const error = errorOf(() => parseGatewayConfig({ "gateway:ipv4": "198.51.100.77" }));
    expect(error.key).toBe("gateway:ipv4");
    expect(error.value).toBe("(value not shown)");
    expect(error.accepted).toMatch(
      /^addresses are set once, in this node's gateway:fleet entry; accepted keys: gateway:domain, /,
    );
    expect(error.message).not.toContain("198.51.100.77");
  });

  it("a name far from every key lists the keys without guessing one", () => {
    const error = errorOf(() => parseGatewayConfig({ "gateway:zzzzzzzzzzzz": "x" }));
    expect(error.accepted).toMatch(/^one of the keys gateway:domain, gateway:primaryHostname, gateway:fleet, /);
    expect(error.accepted).not.toContain("closest");
  });

  it("a secret that is not JSON: (secret) instead of its text; other namespaces are not ours to check", () => {
    const error = errorOf(() =>
      parseGatewaySecrets({ "gateway:submissionUsers": "[hunter2", "cloudflare:apiToken": "x", "gateway:domain": "zz" }),
    );
    expect(error.message).toBe(
      'gateway:submissionUsers="(secret)" is invalid; expected a list of {username, password}, e.g. [{"username":"brightchain-node","password":"…"}]',
    );
  });

  it("a structured key that is not JSON names its text and what it accepts, beside the keys not set", () => {
    const error = errorOf(() => parseGatewayConfig({ "gateway:fleet": "  {oops  " }));
    expect(error.message).toContain(
      '\n  - gateway:fleet="{oops" is invalid; expected a list of {hostname, ipv4, ipv6?}, e.g. [{"hostname":"mail.brightchain.org","ipv4":"203.0.113.10"}]\n',
    );
    expect(error.message.split("\n")[1]).toBe(
      "  - gateway:domain is not set; expected a mail domain, a fully qualified lower-case host name such as brightchain.org",
    );
  });
});

describe("readStackConfigFiles' refusals and flattening", () => {
  it("a project file that is a list, or whose config is one: the file (and config) named", () => {
    files("- a\n- b\n");
    const list = errorOf(() => readStackConfigFiles(dir, "a"));
    expect(list.message).toBe(`${join(dir, "Pulumi.yaml")}="- a\\n- b\\n" is invalid; expected a YAML mapping`);
    files("name: p\nconfig: [1]\n");
    expect(errorOf(() => readStackConfigFiles(dir, "a")).message).toBe(
      `${join(dir, "Pulumi.yaml")}: config is not set; expected a mapping of config keys`,
    );
  });

  it("an empty stack file, or one whose config is a number, is refused naming the stack file", () => {
    files("name: p\n", "");
    expect(errorOf(() => readStackConfigFiles(dir, "a")).message).toBe(
      `${join(dir, "Pulumi.a.yaml")}="" is invalid; expected a YAML mapping`,
    );
    files("name: p\n", "config: 7\n");
    expect(errorOf(() => readStackConfigFiles(dir, "a")).message).toBe(
      `${join(dir, "Pulumi.a.yaml")}: config is not set; expected a mapping of config keys`,
    );
  });

  it("project defaults for its own namespace, nulls left out, lists as JSON; a secure mapping with more fields is a value", () => {
    files(
      "name: p\nconfig:\n  x: {default: 3}\n  y: {value: {a: 1}}\n  gateway:role: primary\n  gateway:n: null\n  z: {description: only}\n",
      "config:\n  gateway:list: [1, 2]\n  gateway:nul: null\n  gateway:s: {secure: abc, other: 1}\n  gateway:t:\n    secure: v1:xyz\n",
    );
    expect(readStackConfigFiles(dir, "a")).toEqual({
      values: {
        "p:x": "3",
        "p:y": '{"a":1}',
        "gateway:role": "primary",
        "gateway:list": "[1,2]",
        "gateway:s": '{"secure":"abc","other":1}',
      },
      secureKeys: ["gateway:t"],
    });
  });
});
