// The components each kind of node runs and what the package step installs, the service steps enable and a switch
// removes: Postfix first, OpenDKIM on the primary only, the spam engine chosen, Dovecot beside 587, certbot's
// packages by challenge and its timer by family, the exporter on Debian only. Also each release's facts.
import { describe, expect, it } from "vitest";
import { componentProfile, nodeProfiles, runsComponent, type ComponentProfile } from "../../infra/model/profiles";
import { OS_RELEASES, RELEASES, releaseFacts, releaseOs } from "../../infra/model/releases";
import type { GatewayNode } from "../../infra/model/types";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

const profile = (
  component: ComponentProfile["component"],
  packages: string[],
  services: string[],
  removal?: ComponentProfile["removal"],
) => ({
  component,
  packages,
  services,
  removal: removal ?? { services, packages },
});

describe("a node's component profiles", () => {
  it("the Debian 13 primary: every component, in order, with Debian's names", () => {
    expect(nodeProfiles(examplePrimary)).toEqual([
      profile("postfix", ["postfix", "bind9-dnsutils"], []),
      profile("opendkim", ["opendkim", "opendkim-tools"], ["opendkim"]),
      profile("spamassassin", ["spamassassin", "spamd", "spamass-milter"], ["spamd", "spamass-milter"]),
      profile("dovecot", ["dovecot-core"], ["dovecot"]),
      profile("certbot", ["certbot", "python3-certbot-dns-cloudflare"], ["certbot.timer"]),
      profile("firewall", ["ufw"], [], { services: [], packages: [] }),
      profile("runtime", ["nodejs", "ca-certificates"], []),
      profile("postfix-exporter", ["prometheus-postfix-exporter"], ["prometheus-postfix-exporter"]),
    ]);
  });

  it("a RHEL relay on http-01 with Rspamd: no OpenDKIM, Dovecot or exporter; certbot alone, EPEL's timer", () => {
    const relay: GatewayNode = { ...exampleRelay, os: releaseOs("rhel-9"), tls: { ...exampleRelay.tls, challenge: "http-01" } };
    expect(nodeProfiles(relay)).toEqual([
      profile("postfix", ["postfix", "bind-utils"], []),
      profile("rspamd", ["rspamd"], ["rspamd"]),
      profile("certbot", ["certbot"], ["certbot-renew.timer"]),
      profile("firewall", ["firewalld"], [], { services: [], packages: [] }),
      profile("runtime", ["nodejs", "ca-certificates"], []),
    ]);
    expect(runsComponent(relay, "opendkim")).toBe(false);
    expect(runsComponent(relay, "rspamd")).toBe(true);
  });

  it("an Ubuntu primary without a spam engine or submission: neither, nor the exporter", () => {
    const node: GatewayNode = {
      ...examplePrimary,
      os: releaseOs("ubuntu-24.04"),
      spam: { ...examplePrimary.spam, engine: "none" },
      submission: { enabled: false, saslBackend: "dovecot" },
    };
    expect(nodeProfiles(node).map((p) => p.component)).toEqual(["postfix", "opendkim", "certbot", "firewall", "runtime"]);
    expect(runsComponent(node, "dovecot")).toBe(false);
    expect(runsComponent(node, "postfix-exporter")).toBe(false);
    expect(runsComponent({ ...node, submission: undefined }, "dovecot")).toBe(false);
  });

  it("RHEL's names for the spam engines and Dovecot", () => {
    const rhel: GatewayNode = { ...examplePrimary, os: releaseOs("rhel-9") };
    expect(componentProfile(rhel, "spamassassin")).toEqual(
      profile("spamassassin", ["spamassassin", "spamass-milter-postfix"], ["spamassassin", "spamass-milter"]),
    );
    expect(componentProfile(rhel, "dovecot")).toEqual(profile("dovecot", ["dovecot"], ["dovecot"]));
    expect(componentProfile(rhel, "certbot").services).toEqual(["certbot-renew.timer"]);
  });
});

describe("release facts", () => {
  it("each release's row: os-release ID, VERSION_ID, apt suite, Postfix and Dovecot", () => {
    expect(
      OS_RELEASES.map((release) => {
        const { title, osReleaseId, versionId, codename, postfix, dovecot } = releaseFacts(releaseOs(release));
        return [release, title, osReleaseId, versionId, codename, postfix, dovecot];
      }),
    ).toEqual([
      ["debian-12", "Debian 12 (bookworm)", "debian", "12", "bookworm", "3.7", "2.3"],
      ["debian-13", "Debian 13 (trixie)", "debian", "13", "trixie", "3.10", "2.4"],
      ["ubuntu-24.04", "Ubuntu 24.04 (noble)", "ubuntu", "24.04", "noble", "3.8", "2.3"],
      ["rhel-9", "RHEL 9", "rhel", "9", undefined, "3.5", "2.3"],
    ]);
    expect(releaseOs("ubuntu-24.04")).toEqual({ release: "ubuntu-24.04", family: "debian", distro: "ubuntu" });
    expect(RELEASES["rhel-9"].os).toEqual({ release: "rhel-9", family: "rhel", distro: "rhel" });
  });
});
