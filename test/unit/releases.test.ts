// What changes with gateway:os: the release check's verdict and message, and the renders that differ by release.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { OS_RELEASES, releaseOs, type OsRelease } from "../../infra/model/releases";
import { osReleaseCommand } from "../../infra/plan/steps";
import { renderDovecotConf } from "../../infra/render/dovecot";
import { renderMainCf } from "../../infra/render/postfix";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

const OS_RELEASE_FILES: Record<string, string> = {
  "debian-12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
  "debian-13": 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\nID=debian\n',
  "ubuntu-24.04": 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n',
  "rhel-9":
    'NAME="Red Hat Enterprise Linux"\nVERSION_ID="9.4"\nID="rhel"\nID_LIKE="fedora"\nPRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"\n',
  rocky:
    'NAME="Rocky Linux"\nVERSION_ID="9.4"\nID="rocky"\nID_LIKE="rhel centos fedora"\nPRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n',
  raspbian: 'PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=raspbian\nID_LIKE=debian\n',
};

const dir = mkdtempSync(join(tmpdir(), "os-release-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The step's own command, pointed at a file with the given host's os-release instead of /etc/os-release. */
function check(configured: OsRelease, host: string): { code: number; stdout: string; stderr: string } {
  const file = join(dir, host);
  writeFileSync(file, OS_RELEASE_FILES[host]!);
  const command = osReleaseCommand({ ...examplePrimary, os: releaseOs(configured) }).replaceAll("/etc/os-release", file);
  const result = spawnSync("sh", ["-c", command], { encoding: "utf8" });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe("the release check, the plan's first step", () => {
  it.each(OS_RELEASES)("passes on a %s host configured as such", (release) => {
    const result = check(release, release);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`as gateway:os says \\(${release}\\)`));
  });

  it("stops on a Debian 13 host configured as debian-12, naming both releases and what to do", () => {
    const result = check("debian-12", "debian-13");
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      "host runs Debian GNU/Linux 13 (trixie), gateway:os says debian-12 (Debian 12 (bookworm)): set gateway:os to the " +
        "host's release (debian-12, debian-13, ubuntu-24.04, rhel-9) or deploy to a debian-12 host\n",
    );
  });

  it.each([
    ["debian-13", "debian-12"],
    ["debian-13", "ubuntu-24.04"],
    ["debian-12", "raspbian"],
    ["ubuntu-24.04", "debian-13"],
    ["rhel-9", "debian-12"],
  ] as const)("configured %s refuses a %s host", (configured, host) => {
    expect(check(configured, host).code).toBe(1);
  });

  it("takes a RHEL rebuild (ID_LIKE rhel) of the same major release as rhel-9", () => {
    expect(check("rhel-9", "rocky").code).toBe(0);
  });
});

describe("renders that differ by release", () => {
  const onRelease = (release: OsRelease) => ({ ...examplePrimary, os: releaseOs(release) });

  it("Dovecot 2.4 (Debian 13): the version settings first, named passdb/userdb blocks, usernames as given", () => {
    const conf = renderDovecotConf(onRelease("debian-13"));
    const settings = conf.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
    expect(settings.slice(0, 2)).toEqual(["dovecot_config_version = 2.4.0", "dovecot_storage_version = 2.4.0"]);
    expect(conf).toContain("passdb passwd-file {\n  default_password_scheme = SHA512-CRYPT\n  auth_username_format = %{user}\n");
    expect(conf).toContain("userdb static {");
    expect(conf).not.toMatch(/^\s*(driver|args) =/m);
  });

  it.each(["debian-12", "ubuntu-24.04", "rhel-9"] as const)("Dovecot 2.3 syntax on %s", (release) => {
    const conf = renderDovecotConf(onRelease(release));
    expect(conf).not.toContain("dovecot_config_version");
    expect(conf).toContain("args = scheme=SHA512-CRYPT username_format=%u /etc/dovecot/brightchain-submission.passwd");
  });

  it.each(["debian-12", "debian-13", "ubuntu-24.04"] as const)(
    "%s: compatibility level 3.6, bare-LF normalization (SMTP smuggling) and no unauthorised pipelining on both roles",
    (release) => {
      for (const node of [examplePrimary, exampleRelay]) {
        const mainCf = renderMainCf({ ...node, os: releaseOs(release) });
        expect(mainCf).toMatch(/^compatibility_level = 3\.6$/m);
        expect(mainCf).toMatch(/^smtpd_forbid_bare_newline = normalize$/m);
        expect(mainCf).toMatch(/^smtpd_forbid_unauth_pipelining = yes$/m);
      }
    },
  );

  it("rhel-9: Postfix 3.5's level 2, and no setting its build may lack", () => {
    const mainCf = renderMainCf(onRelease("rhel-9"));
    expect(mainCf).toMatch(/^compatibility_level = 2$/m);
    expect(mainCf).not.toContain("smtpd_forbid_bare_newline");
    expect(mainCf).not.toContain("smtpd_forbid_unauth_pipelining");
  });
});
