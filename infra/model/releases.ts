// The operating-system releases a node can run, and what about each one the plan and the renderers must know.
// A release is a row here; software that differs between releases (Dovecot's config syntax, Postfix's
// compatibility level, where spamd lives) is chosen from its row, never from a family test in a renderer.
import type { OperatingSystem } from "./types";

export const OS_RELEASES = ["debian-12", "debian-13", "ubuntu-24.04", "rhel-9"] as const;
export type OsRelease = (typeof OS_RELEASES)[number];

/** Used when gateway:os is unset: Debian's current stable release. */
export const DEFAULT_OS_RELEASE: OsRelease = "debian-13";

export interface ReleaseFacts {
  os: OperatingSystem;
  /** How people name it, for messages: "Debian 13 (trixie)". */
  title: string;
  /** `ID` in /etc/os-release. */
  osReleaseId: string;
  /**
   * `VERSION_ID` in /etc/os-release, or its major part: RHEL's VERSION_ID carries the minor release (9.4),
   * which does not change any package this plan installs.
   */
  versionId: string;
  /** The apt suite (Debian/Ubuntu code name); absent for RHEL. */
  codename?: string;
  /** Postfix's major.minor as the release ships it (decides compatibility_level and defaults). */
  postfix: "3.5" | "3.7" | "3.8" | "3.10";
  /** Dovecot's config syntax: 2.4 replaced passdb/userdb args with named blocks and typed settings. */
  dovecot: "2.3" | "2.4";
}

export const RELEASES: Record<OsRelease, ReleaseFacts> = {
  "debian-12": {
    os: { release: "debian-12", family: "debian", distro: "debian" },
    title: "Debian 12 (bookworm)",
    osReleaseId: "debian",
    versionId: "12",
    codename: "bookworm",
    postfix: "3.7",
    dovecot: "2.3",
  },
  "debian-13": {
    os: { release: "debian-13", family: "debian", distro: "debian" },
    title: "Debian 13 (trixie)",
    osReleaseId: "debian",
    versionId: "13",
    codename: "trixie",
    postfix: "3.10",
    dovecot: "2.4",
  },
  "ubuntu-24.04": {
    os: { release: "ubuntu-24.04", family: "debian", distro: "ubuntu" },
    title: "Ubuntu 24.04 (noble)",
    osReleaseId: "ubuntu",
    versionId: "24.04",
    codename: "noble",
    postfix: "3.8",
    dovecot: "2.3",
  },
  "rhel-9": {
    os: { release: "rhel-9", family: "rhel", distro: "rhel" },
    title: "RHEL 9",
    osReleaseId: "rhel",
    versionId: "9",
    postfix: "3.5",
    dovecot: "2.3",
  },
};

export function releaseFacts(os: OperatingSystem): ReleaseFacts {
  return RELEASES[os.release];
}

export function releaseOs(release: OsRelease): OperatingSystem {
  return RELEASES[release].os;
}
