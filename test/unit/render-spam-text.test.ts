// The spam engine's files word for word: SpamAssassin's local.cf and the spamd / spamass-milter options on Debian
// and on RHEL, Rspamd's actions and workers; each file's owner, mode and the service it restarts. What the daemons
// read is the text; a changed option or a lost line must fail here.
import { describe, expect, it } from "vitest";
import { releaseOs } from "../../infra/model/releases";
import type { OsRelease } from "../../infra/model/releases";
import type { GatewayNode } from "../../infra/model/types";
import { spamFiles, spamServices } from "../../infra/render/spam";
import { examplePrimary } from "../fixtures/nodes";

const node = (release: OsRelease, engine: GatewayNode["spam"]["engine"]): GatewayNode => ({
  ...examplePrimary,
  os: releaseOs(release),
  spam: { ...examplePrimary.spam, engine },
});

describe("the spam engine's files, exactly", () => {
  it("SpamAssassin on Debian 13: local.cf, spamd's and spamass-milter's /etc/default files", () => {
    expect(spamFiles(node("debian-13", "spamassassin"))).toEqual([
      {
        path: "/etc/spamassassin/local.cf",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
          "required_score 5.0",
          "report_safe 0",
          "",
        ].join("\n"),
        notify: ["spamd"],
      },
      {
        path: "/etc/default/spamd",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway. Read by spamd.service.",
          'OPTIONS="--create-prefs --max-children 5 --helper-home-dir --listen=127.0.0.1:783"',
          'PIDFILE="/run/spamd.pid"',
          "",
        ].join("\n"),
        notify: ["spamd"],
      },
      {
        path: "/etc/default/spamass-milter",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway. Read by /etc/init.d/spamass-milter.",
          'OPTIONS="-u spamass-milter -i 127.0.0.1 -I -m -r 10"',
          'SOCKET="/var/spool/postfix/spamass/spamass.sock"',
          'SOCKETOWNER="postfix:postfix"',
          'SOCKETMODE="0660"',
          "",
        ].join("\n"),
        notify: ["spamass-milter"],
      },
    ]);
  });

  it("SpamAssassin on RHEL 9: local.cf and the /etc/sysconfig files of its own units", () => {
    expect(spamFiles(node("rhel-9", "spamassassin"))).toEqual([
      {
        path: "/etc/spamassassin/local.cf",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
          "required_score 5.0",
          "report_safe 0",
          "",
        ].join("\n"),
        notify: ["spamassassin"],
      },
      {
        path: "/etc/sysconfig/spamassassin",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway. Read by spamassassin.service.",
          'SPAMDOPTIONS="-d -c -m5 -H --listen=127.0.0.1:783"',
          "",
        ].join("\n"),
        notify: ["spamassassin"],
      },
      {
        path: "/etc/sysconfig/spamass-milter",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway. Read by spamass-milter.service.",
          'SOCKET="/run/spamass-milter/postfix/sock"',
          'SOCKET_OPTIONS="-g postfix"',
          'EXTRA_FLAGS="-i 127.0.0.1 -I -m -r 10"',
          "",
        ].join("\n"),
        notify: ["spamass-milter"],
      },
    ]);
  });

  it("Rspamd: the actions at the node's scores, the proxy as a milter, the workers on loopback, the headers added", () => {
    expect(spamFiles(node("debian-13", "rspamd"))).toEqual([
      {
        path: "/etc/rspamd/local.d/actions.conf",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway from the node model.",
          "reject = 10.0;",
          "add_header = 5.0;",
          "greylist = null;",
          "",
        ].join("\n"),
        notify: ["rspamd"],
      },
      {
        path: "/etc/rspamd/local.d/worker-proxy.inc",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway from the node model.",
          'bind_socket = "127.0.0.1:11332";',
          "milter = yes;",
          "timeout = 120s;",
          'upstream "local" {',
          "  default = yes;",
          "  self_scan = yes;",
          "}",
          "",
        ].join("\n"),
        notify: ["rspamd"],
      },
      {
        path: "/etc/rspamd/local.d/worker-normal.inc",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: ["# Rendered by brightchain-gateway from the node model.", 'bind_socket = "127.0.0.1:11333";', ""].join("\n"),
        notify: ["rspamd"],
      },
      {
        path: "/etc/rspamd/local.d/worker-controller.inc",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: ["# Rendered by brightchain-gateway from the node model.", 'bind_socket = "127.0.0.1:11334";', ""].join("\n"),
        notify: ["rspamd"],
      },
      {
        path: "/etc/rspamd/local.d/milter_headers.conf",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: [
          "# Rendered by brightchain-gateway from the node model.",
          'use = ["x-spamd-result", "x-spam-status", "x-spam-level", "x-rspamd-queue-id", "authentication-results"];',
          "skip_local = false;",
          "skip_authenticated = true;",
          "",
        ].join("\n"),
        notify: ["rspamd"],
      },
    ]);
  });

  it("no engine: no file and no service", () => {
    expect(spamFiles(node("debian-13", "none"))).toEqual([]);
    expect(spamServices(node("debian-13", "none"))).toEqual([]);
    expect(spamServices(node("debian-13", "spamassassin"))).toEqual(["spamd", "spamass-milter"]);
  });
});
