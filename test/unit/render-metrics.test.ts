// gateway:metrics from the stack file to the host: what the schema accepts and refuses, which endpoints a node
// serves, prometheus-postfix-exporter's options, gateway.env, and the firewall's rules for scraper networks.
import { describe, expect, it } from "vitest";
import { GatewayConfigError, parseGatewayConfig, readStackConfig, type FlatConfig } from "../../infra/model/config";
import { nodeProfiles } from "../../infra/model/profiles";
import { releaseOs } from "../../infra/model/releases";
import type { GatewayNode } from "../../infra/model/types";
import { hostFiles } from "../../infra/render";
import { expectedUfwRules } from "../../infra/plan/hostState";
import { loopbackOnlyPorts, renderFirewallScript, scraperRules } from "../../infra/render/firewall";
import { renderGatewayEnv } from "../../infra/render/gateway-env";
import {
  POSTFIX_EXPORTER_DEFAULTS,
  POSTFIX_EXPORTER_DROP_IN,
  metricsEndpoints,
  renderPostfixExporterDefaults,
} from "../../infra/render/metrics";
import { examplePrimary, exampleRelay, exampleSecrets, nodeMatrix } from "../fixtures/nodes";
import * as path from "node:path";

const repo = path.resolve(__dirname, "../..");
const primaryFlat = (): FlatConfig => readStackConfig(repo, "primary");
const withMetrics = (metrics: unknown): FlatConfig => ({ ...primaryFlat(), "gateway:metrics": JSON.stringify(metrics) });

function problems(flat: FlatConfig) {
  try {
    parseGatewayConfig(flat);
  } catch (error) {
    if (error instanceof GatewayConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a GatewayConfigError, but the configuration parsed");
}

const withScrapers = (node: GatewayNode, scrapers: string[], listenHost = "0.0.0.0"): GatewayNode => ({
  ...node,
  metrics: { ...node.metrics, scrapers, listenHost },
});

describe("gateway:metrics in the schema", () => {
  it("defaults to loopback on 9526, 9527 and 9154 with no scraper", () => {
    expect(parseGatewayConfig(primaryFlat()).metrics).toEqual({
      listenHost: "127.0.0.1",
      lookupPort: 9526,
      inboundPort: 9527,
      postfixPort: 9154,
      scrapers: [],
    });
  });

  it("listens on every address once a scraper network is named, IPv6 when one is IPv6", () => {
    expect(parseGatewayConfig(withMetrics({ scrapers: ["203.0.113.0/24"] })).metrics.listenHost).toBe("0.0.0.0");
    const dual = parseGatewayConfig(withMetrics({ scrapers: ["203.0.113.0/24", "2001:DB8::/64"] })).metrics;
    expect(dual).toMatchObject({ listenHost: "::", scrapers: ["203.0.113.0/24", "2001:db8::/64"] });
  });

  it("refuses a /0 unless allowAnyScraper says it is meant, naming the entry", () => {
    expect(problems(withMetrics({ scrapers: ["10.0.0.0/8", "0.0.0.0/0"] }))).toEqual([
      {
        key: "gateway:metrics.scrapers[1]",
        value: "0.0.0.0/0",
        accepted: expect.stringMatching(/^a network narrower than \/0 .*allowAnyScraper true/),
      },
    ]);
    expect(problems(withMetrics({ scrapers: ["::/0"] }))[0]!.key).toBe("gateway:metrics.scrapers[0]");
    const opted = parseGatewayConfig(withMetrics({ scrapers: ["0.0.0.0/0"], allowAnyScraper: true })).metrics;
    expect(opted.scrapers).toEqual(["0.0.0.0/0"]);
  });

  it("keeps IPv6 networks in canonical text, as ufw and firewalld print them", () => {
    expect(parseGatewayConfig(withMetrics({ scrapers: ["2001:DB8:0:0::/64", "203.0.113.7/32"] })).metrics.scrapers).toEqual([
      "2001:db8::/64",
      "203.0.113.7/32",
    ]);
  });

  it.each([
    "203.0.113.7",
    "203.0.113.0/33",
    "203.0.113.7/24",
    "2001:db8::1/64",
    "2001:db8::/129",
    "[2001:db8::]/64",
    "::ffff:203.0.113.0/120",
    "any",
    "10.0.0.0/8;reboot",
  ])("refuses the scraper network %j with what is accepted", (network) => {
    expect(problems(withMetrics({ scrapers: [network] }))).toEqual([
      {
        key: "gateway:metrics.scrapers[0]",
        value: network,
        accepted: expect.stringMatching(/^an IPv4 or IPv6 network in CIDR form/),
      },
    ]);
  });

  it("refuses two endpoints on one port, and one on the socketmap's", () => {
    expect(problems(withMetrics({ inboundPort: 9526 }))).toEqual([
      { key: "gateway:metrics.inboundPort", value: "9526", accepted: "a port other than gateway:metrics.lookupPort (9526)" },
    ]);
    expect(problems(withMetrics({ postfixPort: 2526 }))).toEqual([
      {
        key: "gateway:metrics.postfixPort",
        value: "2526",
        accepted: "a port other than gateway:lookupPort (2526), which the socketmap listens on",
      },
    ]);
  });
});

describe("metrics endpoints and prometheus-postfix-exporter", () => {
  it.each(nodeMatrix)("$name: the lookup's everywhere, the processor's on the primary, Postfix's on Debian", ({ node }) => {
    const ports = metricsEndpoints(node).map((endpoint) => endpoint.port);
    expect(ports).toEqual([9526, ...(node.role === "primary" ? [9527] : []), ...(node.os.distro === "debian" ? [9154] : [])]);
    const exporter = nodeProfiles(node).find((profile) => profile.component === "postfix-exporter");
    const files = hostFiles(node, exampleSecrets);
    const defaults = files.find((file) => file.path === POSTFIX_EXPORTER_DEFAULTS);
    const dropIn = files.find((file) => file.path === POSTFIX_EXPORTER_DROP_IN);
    if (node.os.distro === "debian") {
      expect(exporter).toMatchObject({ packages: ["prometheus-postfix-exporter"], services: ["prometheus-postfix-exporter"] });
      expect(defaults).toMatchObject({ mode: 0o644, owner: "root", notify: ["prometheus-postfix-exporter"] });
      expect(dropIn).toMatchObject({ mode: 0o644, owner: "root", notify: ["prometheus-postfix-exporter"] });
      expect(dropIn!.content).toContain(
        "\nExecStartPre=+/bin/sh -c 'test -e /var/log/mail.log || install -m 0640 -o root -g adm /dev/null /var/log/mail.log'\n",
      );
    } else {
      expect([exporter, defaults, dropIn]).toEqual([undefined, undefined, undefined]);
    }
  });

  it("binds the exporter where the daemons bind: loopback by default, never its own :9154 on every address", () => {
    expect(renderPostfixExporterDefaults(examplePrimary)).toBe(
      "# Rendered by brightchain-gateway from the node model (gateway:metrics): prometheus-postfix-exporter's options.\n" +
        'ARGS="--web.listen-address=127.0.0.1:9154 --postfix.showq_path=/var/spool/postfix/public/showq --postfix.logfile_path=/var/log/mail.log"\n',
    );
    expect(renderPostfixExporterDefaults(withScrapers(examplePrimary, ["2001:db8::/64"], "::"))).toContain(
      "--web.listen-address=[::]:9154 ",
    );
  });

  it("writes the daemons' metrics address and ports into gateway.env", () => {
    const env = renderGatewayEnv(examplePrimary);
    expect(env).toContain("\nGATEWAY_METRICS_HOST=127.0.0.1\n");
    expect(env).toContain("\nGATEWAY_LOOKUP_METRICS_PORT=9526\n");
    expect(env).toContain("\nGATEWAY_INBOUND_METRICS_PORT=9527\n");
    const relay = renderGatewayEnv(withScrapers(exampleRelay, ["203.0.113.0/24"]));
    expect(relay).toContain("\nGATEWAY_METRICS_HOST=0.0.0.0\n");
    expect(relay).not.toContain("GATEWAY_INBOUND_METRICS_PORT");
  });
});

describe("the firewall and scraper networks", () => {
  it("rejects every metrics port from outside and names no scraper without gateway:metrics.scrapers", () => {
    const script = renderFirewallScript(examplePrimary);
    for (const port of [9526, 9527, 9154]) expect(script).toContain(`ufw reject ${port}/tcp`);
    expect(script).not.toContain("ufw prepend");
    // The sweep still runs: it removes the scraper rules of an earlier configuration.
    expect(script).toMatch(/while read -r rule wanted; do case "\$wanted" in \*\) ufw --force delete "\$rule"/);
  });

  it("gateway doctor probes the metrics ports as closed from outside only while no scraper may reach them", () => {
    const probed = (node: GatewayNode) => loopbackOnlyPorts(node).map((p) => p.port);
    expect(probed(examplePrimary)).toEqual(expect.arrayContaining([9526, 9527, 9154]));
    expect(probed(withScrapers(examplePrimary, ["203.0.113.0/24"]))).not.toEqual(expect.arrayContaining([9526]));
    // The drift check expects the scraper rules ufw holds, beside a reject for every metrics port.
    const rules = expectedUfwRules(withScrapers(exampleRelay, ["203.0.113.0/24"]), 22);
    expect(rules).toContain("allow from 203.0.113.0/24 to any port 9154 proto tcp");
    // ufw shows a single host without its prefix; an IPv6 /32 is a network and keeps it.
    const hosts = expectedUfwRules(withScrapers(exampleRelay, ["203.0.113.7/32", "2001:db8::/32", "2001:db8::7/128"]), 22);
    expect(hosts).toContain("allow from 203.0.113.7 to any port 9526 proto tcp");
    expect(hosts).toContain("allow from 2001:db8::/32 to any port 9526 proto tcp");
    expect(hosts).toContain("allow from 2001:db8::7 to any port 9526 proto tcp");
    expect(rules).toContain("reject 9526/tcp");
  });

  it("ufw: allows each scraper network to each port, prepended, before the ports' reject rules", () => {
    const node = withScrapers(examplePrimary, ["203.0.113.0/24", "2001:db8::/64"], "::");
    expect(scraperRules(node)).toHaveLength(6);
    const script = renderFirewallScript(node);
    const allow =
      "ufw prepend allow from 2001:db8::/64 to any port 9154 proto tcp comment 'brightchain: metrics scraper 2001:db8::/64 port 9154'";
    expect(script).toContain(`${allow}\n`);
    expect(script.indexOf(allow)).toBeLessThan(script.indexOf("ufw reject 9154/tcp"));
    expect(script).toContain(`in '203.0.113.0/24 port 9526'|'203.0.113.0/24 port 9527'|`);
  });

  it("firewalld: accepts each scraper network at priority -10, ahead of the reject rule, on RHEL (no exporter)", () => {
    const node = withScrapers({ ...examplePrimary, os: releaseOs("rhel-9") }, ["203.0.113.0/24"]);
    const script = renderFirewallScript(node);
    expect(script).toContain(
      `fw --add-rich-rule='rule priority="-10" family="ipv4" source address="203.0.113.0/24" port port="9527" protocol="tcp" accept'`,
    );
    expect(script).not.toContain("9154");
    expect(script).toContain(`fw_list --list-rich-rules | grep '^rule priority="-10" '`);
  });
});
