// The secrets `gateway render`, `gateway playbook` and `gateway drift` render a node's files with: from the
// environment, else from the configuration given (drift: a stack's plaintext value, the lab's own secrets), else
// a random marker that names the variable which would supply it.
import { describe, expect, it } from "vitest";
import type { HostFile } from "../../infra/model/types";
import { missingSecrets, resolveSecrets, SECRET_ENVIRONMENT } from "../../infra/cli/secrets";

const users = JSON.stringify([{ username: "brightchain-node", password: "a-long-enough-password-1" }]);
const otherUsers = JSON.stringify([{ username: "from-config", password: "another-long-password-2" }]);
const file = (content: string): HostFile => ({ path: "/etc/x", mode: 0o600, owner: "root", group: "root", content, notify: [] });

describe("resolveSecrets", () => {
  it("stands in a distinct marker for each secret not given, naming the variable that supplies it", () => {
    const { secrets, standIns } = resolveSecrets({});
    expect(standIns.map((s) => s.variable)).toEqual([
      SECRET_ENVIRONMENT.submissionUsers,
      SECRET_ENVIRONMENT.submissionUsers,
      SECRET_ENVIRONMENT.certbotCloudflareToken,
    ]);
    expect(new Set(standIns.map((s) => s.marker)).size).toBe(3);
    for (const s of standIns) expect(s.marker).toMatch(/^withheld[0-9a-f]{24}$/);
    expect(secrets.submissionUsers).toEqual([{ username: standIns[0]!.marker, password: standIns[1]!.marker }]);
    expect(secrets.certbotCloudflareToken).toBe(standIns[2]!.marker);
  });

  it("takes the environment's values, and treats a variable set but empty as not given", () => {
    const { secrets, standIns } = resolveSecrets({
      [SECRET_ENVIRONMENT.submissionUsers]: users,
      [SECRET_ENVIRONMENT.certbotCloudflareToken]: "",
    });
    expect(secrets.submissionUsers).toEqual(JSON.parse(users));
    expect(standIns.map((s) => s.variable)).toEqual([SECRET_ENVIRONMENT.certbotCloudflareToken]);
  });

  it("takes a secret from the configuration given when the environment has none, the environment's first", () => {
    const config = { "gateway:submissionUsers": otherUsers, "gateway:certbotCloudflareToken": "cf-token-from-config" };
    const fromConfig = resolveSecrets({}, config);
    expect(fromConfig.secrets).toEqual({
      submissionUsers: JSON.parse(otherUsers),
      certbotCloudflareToken: "cf-token-from-config",
    });
    expect(fromConfig.standIns).toEqual([]);
    const fromEnv = resolveSecrets({ [SECRET_ENVIRONMENT.submissionUsers]: users }, config);
    expect(fromEnv.secrets.submissionUsers).toEqual(JSON.parse(users));
  });

  it("names the variable of an invalid value from the environment, and the key of one from the configuration", () => {
    const short = '[{"username":"node","password":"tooshort"}]';
    expect(() => resolveSecrets({ [SECRET_ENVIRONMENT.submissionUsers]: short })).toThrow(
      new RegExp(`^${SECRET_ENVIRONMENT.submissionUsers} \\(gateway:submissionUsers`),
    );
    expect(() => resolveSecrets({}, { "gateway:submissionUsers": short })).toThrow(/^gateway:submissionUsers/);
  });
});

describe("missingSecrets", () => {
  it("names each variable whose marker a file carries, once", () => {
    const { standIns } = resolveSecrets({});
    const [user, password, token] = standIns.map((s) => s.marker);
    expect(missingSecrets(file(`${user}:${password}\n`), standIns)).toEqual([SECRET_ENVIRONMENT.submissionUsers]);
    expect(missingSecrets(file(`dns_cloudflare_api_token = ${token}\n`), standIns)).toEqual([
      SECRET_ENVIRONMENT.certbotCloudflareToken,
    ]);
    expect(missingSecrets(file("nothing secret\n"), standIns)).toEqual([]);
  });
});
