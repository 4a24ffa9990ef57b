import { describe, expect, it } from "vitest";
import { FIREWALL_SCRIPT } from "../../infra/render/firewall";
import { assertUniquePaths, DuplicateHostPathError, hostDirectories, hostFiles } from "../../infra/render/index";
import { exampleSecrets, nodeMatrix } from "../fixtures/nodes";

describe.each(nodeMatrix)("host files of $name", ({ node }) => {
  const files = hostFiles(node, exampleSecrets);
  const directories = hostDirectories(node);

  it("gives every host path exactly one owner, files and directories alike", () => {
    const paths = [...files.map((f) => f.path), ...directories.map((d) => d.path)];
    expect(new Set(paths).size).toBe(paths.length);
  });

  it("are absolute, sorted, with sane modes, owners and reload targets", () => {
    expect(files.map((f) => f.path)).toEqual([...files.map((f) => f.path)].sort());
    for (const f of [...files, ...directories]) {
      expect(f.path).toMatch(/^\/[^\s]*[^/]$/);
      expect(f.path.split("/")).not.toContain("..");
      expect(f.mode).toBeGreaterThan(0);
      expect(f.mode).toBeLessThanOrEqual(0o7777);
      expect(f.owner).not.toBe("");
      expect(f.group).not.toBe("");
    }
    for (const f of files) expect(Array.isArray(f.notify)).toBe(true);
  });

  it("include every module's files: Postfix, firewall, runtime units, gateway.env", () => {
    expect(files.map((f) => f.path)).toEqual(
      expect.arrayContaining([
        "/etc/postfix/main.cf",
        "/etc/postfix/master.cf",
        FIREWALL_SCRIPT,
        node.runtime.envFile,
        "/etc/systemd/system/brightchain-lookup.service",
      ]),
    );
  });

  it("mark every file carrying a secret as secret, and keep those from other users", () => {
    const secretValues = [exampleSecrets.submissionUsers[0]!.username, exampleSecrets.certbotCloudflareToken!];
    for (const f of files) {
      if (secretValues.some((s) => f.content.includes(s))) {
        expect(f.secret, `${f.path} carries a secret`).toBe(true);
      }
      if (f.secret) expect(f.mode & 0o007, `${f.path} is world-accessible`).toBe(0);
    }
  });

  it("are the same for the same node (pure)", () => {
    expect(hostFiles(node, exampleSecrets)).toEqual(files);
  });
});

describe("roles", () => {
  const primary = nodeMatrix.find((m) => m.name.startsWith("primary"))!.node;
  const relay = nodeMatrix.find((m) => m.name.startsWith("relay"))!.node;

  it("only the primary has the drop spool and the submission SASL backend", () => {
    expect(hostDirectories(primary).map((d) => d.path)).toContain(primary.drop.mailDropDir);
    expect(hostDirectories(relay).map((d) => d.path)).not.toContain(relay.drop.mailDropDir);
    expect(hostFiles(primary, exampleSecrets).some((f) => f.path.startsWith("/etc/dovecot/"))).toBe(true);
    expect(hostFiles(relay, exampleSecrets).some((f) => f.path.startsWith("/etc/dovecot/"))).toBe(false);
  });
});

describe("path ownership check", () => {
  it("names the path two renderers both produce", () => {
    expect(() => assertUniquePaths(["/etc/a", "/etc/postfix/main.cf", "/etc/postfix/main.cf"])).toThrow(DuplicateHostPathError);
    expect(() => assertUniquePaths(["/etc/a", "/etc/postfix/main.cf", "/etc/postfix/main.cf"])).toThrow(
      /\/etc\/postfix\/main\.cf/,
    );
  });
});
