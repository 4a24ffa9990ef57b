// prometheus-postfix-exporter's rendered files word for word (its ARGS, the drop-in creating mail.log) and the
// metrics ports each kind of node serves, with the reason the firewall's comment shows.
import { describe, expect, it } from "vitest";
import { releaseOs } from "../../infra/model/releases";
import type { GatewayNode } from "../../infra/model/types";
import {
  mailLogCommand,
  metricsEndpoints,
  metricsFiles,
  renderPostfixExporterDefaults,
  renderPostfixExporterDropIn,
} from "../../infra/render/metrics";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

const lookup = { port: 9526, why: "brightchain-lookup metrics" };
const inbound = { port: 9527, why: "brightchain-inbound metrics" };
const exporter = { port: 9154, why: "prometheus-postfix-exporter (Postfix queues)" };

describe("the exporter's files, exactly", () => {
  it("ARGS: the listen address (IPv4 as host:port, IPv6 in brackets), showq's socket, the mail log", () => {
    const args = (listenHost: string) =>
      renderPostfixExporterDefaults({ ...examplePrimary, metrics: { ...examplePrimary.metrics, listenHost } }).split("\n");
    expect(args("127.0.0.1")).toEqual([
      "# Rendered by brightchain-gateway from the node model (gateway:metrics): prometheus-postfix-exporter's options.",
      'ARGS="--web.listen-address=127.0.0.1:9154 --postfix.showq_path=/var/spool/postfix/public/showq --postfix.logfile_path=/var/log/mail.log"',
      "",
    ]);
    expect(args("::1")[1]).toBe(
      'ARGS="--web.listen-address=[::1]:9154 --postfix.showq_path=/var/spool/postfix/public/showq --postfix.logfile_path=/var/log/mail.log"',
    );
  });

  it("the drop-in creates mail.log as root before the exporter starts, never touching an existing one", () => {
    expect(mailLogCommand("/tmp/x.log")).toBe(
      "/bin/sh -c 'test -e /tmp/x.log || install -m 0640 -o root -g adm /dev/null /tmp/x.log'",
    );
    expect(renderPostfixExporterDropIn().split("\n")).toEqual([
      "# Rendered by brightchain-gateway from the node model; local edits are overwritten.",
      "[Service]",
      "ExecStartPre=+/bin/sh -c 'test -e /var/log/mail.log || install -m 0640 -o root -g adm /dev/null /var/log/mail.log'",
      "",
    ]);
  });

  it("Debian: the drop-in and the defaults, each restarting the exporter; elsewhere no file", () => {
    expect(metricsFiles(examplePrimary)).toEqual([
      {
        path: "/etc/systemd/system/prometheus-postfix-exporter.service.d/brightchain.conf",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: renderPostfixExporterDropIn(),
        notify: ["prometheus-postfix-exporter"],
      },
      {
        path: "/etc/default/prometheus-postfix-exporter",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: renderPostfixExporterDefaults(examplePrimary),
        notify: ["prometheus-postfix-exporter"],
      },
    ]);
    expect(metricsFiles({ ...examplePrimary, os: releaseOs("ubuntu-24.04") })).toEqual([]);
    expect(metricsFiles({ ...examplePrimary, os: releaseOs("rhel-9") })).toEqual([]);
  });
});

describe("metrics endpoints by node", () => {
  it.each<[string, GatewayNode, { port: number; why: string }[]]>([
    ["a Debian primary", examplePrimary, [lookup, inbound, exporter]],
    ["a Debian relay (no inbound processor)", exampleRelay, [lookup, exporter]],
    ["an Ubuntu primary (no exporter)", { ...examplePrimary, os: releaseOs("ubuntu-24.04") }, [lookup, inbound]],
    ["a RHEL relay", { ...exampleRelay, os: releaseOs("rhel-9") }, [lookup]],
  ])("%s", (_name, node, expected) => {
    expect(metricsEndpoints(node)).toEqual(expected);
  });
});
