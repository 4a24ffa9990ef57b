// The rendered firewall scripts run for real. ufw: inside a network namespace of our own, with a private
// mount namespace whose /etc/ufw and /etc/default/ufw are temp copies, so neither the machine's firewall nor
// its ufw state is touched; listeners inside the namespace are probed from outside over a veth pair.
// firewalld cannot run here (no D-Bus): its script takes its firewall-offline-cmd path on a temp /etc/firewalld.
import { releaseOs } from "../../infra/model/releases";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { expectedUfwRules } from "../../infra/plan/hostState";
import { renderFirewallScript } from "../../infra/render/firewall";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";
import { makeTempRoot } from "../helpers/render-to-dir";
import { probePort, waitForPort } from "../helpers/renderer-net";

const suffix = randomBytes(3).toString("hex");
const netns = `bcfw-test-${suffix}`;
const hostVeth = `bcfwh${suffix}`;
const nsVeth = `bcfwn${suffix}`;
// A /30 of our own in 10.233.0.0/16, chosen per run so parallel runs do not collide.
const third = 1 + (parseInt(suffix.slice(0, 2), 16) % 250);
const fourth = 4 * (parseInt(suffix.slice(2, 4), 16) % 63);
const hostAddress = `10.233.${third}.${fourth + 1}`;
const nsAddress = `10.233.${third}.${fourth + 2}`;
const probedPorts = [22, 25, 80, 587, 783, 2526, 8891, 11332, 11334, 9526, 9527, 9154];
const metricsPorts = [9526, 9527, 9154];

const { root: work, remove: removeWork } = makeTempRoot("bc-fw");
let listeners: ChildProcess | undefined;

function sh(command: string): string {
  const run = spawnSync("sh", ["-c", command], { encoding: "utf8" });
  if (run.status !== 0) throw new Error(`${command} failed (${run.status}): ${run.stdout}${run.stderr}`);
  return run.stdout;
}

/** Runs a shell command inside our namespace with the temp ufw state mounted over the real one. */
function inNamespace(command: string): string {
  const mounts = `mount --bind ${work}/etc-ufw /etc/ufw && mount --bind ${work}/default-ufw /etc/default/ufw`;
  writeFileSync(join(work, "cmd.sh"), `${mounts} && ${command}\n`);
  return sh(`ip netns exec ${netns} unshare -m --propagation private sh ${work}/cmd.sh`);
}

function applyUfw(node: GatewayNode): string {
  writeFileSync(join(work, "brightchain-firewall"), renderFirewallScript(node));
  inNamespace(`sh ${work}/brightchain-firewall`);
  return inNamespace("iptables-save | grep -v '^#'; ip6tables-save | grep -v '^#'");
}

async function reachable(): Promise<Record<number, string>> {
  const result: Record<number, string> = {};
  for (const port of probedPorts) result[port] = await probePort(port, nsAddress, 3_000);
  return result;
}

beforeAll(async () => {
  cpSync("/etc/ufw", join(work, "etc-ufw"), { recursive: true });
  cpSync("/etc/default/ufw", join(work, "default-ufw"));
  sh(`ip netns add ${netns}`);
  sh(`ip link add ${hostVeth} type veth peer name ${nsVeth} && ip link set ${nsVeth} netns ${netns}`);
  sh(`ip addr add ${hostAddress}/30 dev ${hostVeth} && ip link set ${hostVeth} up`);
  sh(
    `ip -n ${netns} addr add ${nsAddress}/30 dev ${nsVeth} && ip -n ${netns} link set ${nsVeth} up && ip -n ${netns} link set lo up`,
  );
  // One process inside the namespace listening on every probed port, on all addresses.
  listeners = spawn(
    "ip",
    [
      "netns",
      "exec",
      netns,
      "node",
      "-e",
      `for (const p of ${JSON.stringify(probedPorts)}) require("net").createServer((s) => s.end()).listen(p, "0.0.0.0")`,
    ],
    { stdio: "ignore" },
  );
  for (const port of probedPorts) await waitForPort(port, nsAddress);
}, 60_000);

afterAll(async () => {
  if (listeners && listeners.exitCode === null) {
    const exited = new Promise((resolve) => listeners!.once("exit", resolve));
    listeners.kill("SIGTERM");
    await exited;
  }
  spawnSync("ip", ["netns", "del", netns]);
  spawnSync("ip", ["link", "del", hostVeth]);
  removeWork();
});

describe("ufw script in a network namespace", () => {
  it("primary (dns-01): SSH, 25 and 587 connect; 80 and the loopback daemons' ports are refused at once", async () => {
    const machineUfw = readFileSync("/etc/ufw/user.rules", "utf8");
    applyUfw(examplePrimary);
    expect(await reachable()).toEqual({
      22: "open",
      25: "open",
      587: "open",
      80: "refused",
      783: "refused",
      2526: "refused",
      8891: "refused",
      11332: "refused",
      11334: "refused",
      9526: "refused",
      9527: "refused",
      9154: "refused",
    });
    // Inside the namespace the loopback daemons stay reachable on 127.0.0.1.
    inNamespace("nc -z -w 2 127.0.0.1 2526 && nc -z -w 2 127.0.0.1 11332");
    expect(readFileSync("/etc/ufw/user.rules", "utf8")).toBe(machineUfw);
  });

  it("running the script again changes no rule", () => {
    const before = inNamespace("iptables-save | grep -v '^#'; ip6tables-save | grep -v '^#'");
    expect(applyUfw(examplePrimary)).toBe(before);
  });

  it("removes a rule added by hand: the firewall is managed, and drift repair is running the script again", async () => {
    // Not the `allow 80/tcp` the script deletes by name when 80 is not needed: only the sweep removes this one.
    inNamespace("ufw allow from 10.0.0.0/8 to any port 80 proto tcp >/dev/null");
    expect((await reachable())[80]).toBe("open");
    applyUfw(examplePrimary);
    const repaired = await reachable();
    expect([repaired[80], repaired[22], repaired[25], repaired[587]]).toEqual(["refused", "open", "open", "open"]);
    expect(inNamespace("ufw show added")).not.toMatch(/ 80 /);
  });

  it("gateway:metrics.scrapers opens the metrics ports to that network only, again on a second run, and closes them when removed", async () => {
    const metricsOf = (result: Record<number, string>) => metricsPorts.map((port) => result[port]);
    // Added after the port's reject rule exists: the prepended allow must still come first.
    applyUfw(examplePrimary);
    const scraped: GatewayNode = { ...examplePrimary, metrics: { ...examplePrimary.metrics, scrapers: [`${hostAddress}/32`] } };
    applyUfw(scraped);
    expect(metricsOf(await reachable())).toEqual(["open", "open", "open"]);
    const rules = inNamespace("iptables-save | grep -v '^#'; ip6tables-save | grep -v '^#'");
    expect(applyUfw(scraped)).toBe(rules);
    // What the drift check expects is what ufw holds: the read-back of its host-state script, run here.
    const added = inNamespace(`ufw show added | sed -n "s/^ufw //p" | sed "s/ comment '.*'$//" | LC_ALL=C sort`);
    expect(added.trim().split("\n")).toEqual(expectedUfwRules(scraped, 22));
    // Another network only: this host is refused again, and the rule for the old network is gone.
    applyUfw({ ...examplePrimary, metrics: { ...examplePrimary.metrics, scrapers: ["198.51.100.0/24"] } });
    expect(metricsOf(await reachable())).toEqual(["refused", "refused", "refused"]);
    expect(inNamespace("ufw show added")).not.toContain(hostAddress);
    applyUfw(examplePrimary);
    expect(inNamespace("ufw show added")).not.toContain("allow from");
    expect((await reachable())[25]).toBe("open");
  });

  it("http-01 opens 80; turning the node into a relay closes 587 and 80 again", async () => {
    applyUfw({ ...examplePrimary, tls: { ...examplePrimary.tls, challenge: "http-01" } });
    expect((await reachable())[80]).toBe("open");
    applyUfw(exampleRelay);
    const relay = await reachable();
    expect([relay[22], relay[25], relay[587], relay[80]]).toEqual(["open", "open", "refused", "refused"]);
  });
});

describe("firewalld script (offline)", () => {
  it("firewall-offline-cmd accepts it twice and the public zone holds exactly our ports and rules", () => {
    const { root, remove } = makeTempRoot("bc-firewalld");
    try {
      cpSync("/etc/firewalld", join(root, "firewalld"), { recursive: true });
      const rhel: GatewayNode = { ...examplePrimary, os: releaseOs("rhel-9") };
      writeFileSync(join(root, "brightchain-firewall"), renderFirewallScript(rhel));
      const zone = sh(
        `unshare -m --propagation private sh -c 'mount --bind ${root}/firewalld /etc/firewalld && ` +
          `sh ${root}/brightchain-firewall && sh ${root}/brightchain-firewall && ` +
          `firewall-offline-cmd --check-config >/dev/null && firewall-offline-cmd --zone=public --list-all'`,
      );
      expect(zone).toMatch(/ports: 22\/tcp 25\/tcp 587\/tcp\n/);
      expect(zone).toContain('rule port port="2526" protocol="tcp" reject');
      expect(zone).toContain('rule port port="11332-11334" protocol="tcp" reject');
      expect(zone).toContain('rule port port="9526" protocol="tcp" reject');
      expect(zone).toMatch(/target: default/);
    } finally {
      remove();
    }
  });

  it("scraper rules: added before the reject, kept on a second run, the ones no longer configured removed", () => {
    const { root, remove } = makeTempRoot("bc-firewalld");
    try {
      cpSync("/etc/firewalld", join(root, "firewalld"), { recursive: true });
      const rhel: GatewayNode = { ...examplePrimary, os: releaseOs("rhel-9") };
      const withScrapers = (scrapers: string[]): GatewayNode => ({ ...rhel, metrics: { ...rhel.metrics, scrapers } });
      const apply = (node: GatewayNode): string => {
        writeFileSync(join(root, "brightchain-firewall"), renderFirewallScript(node));
        return sh(
          `unshare -m --propagation private sh -c 'mount --bind ${root}/firewalld /etc/firewalld && ` +
            `sh ${root}/brightchain-firewall && firewall-offline-cmd --check-config >/dev/null && ` +
            `firewall-offline-cmd --zone=public --list-rich-rules'`,
        );
      };
      const scraper = (network: string, port: number, family = "ipv4") =>
        `rule priority="-10" family="${family}" source address="${network}" port port="${port}" protocol="tcp" accept`;
      const first = apply(withScrapers(["203.0.113.0/24", "2001:db8::/64"]));
      for (const port of [9526, 9527]) {
        expect(first).toContain(scraper("203.0.113.0/24", port));
        expect(first).toContain(scraper("2001:db8::/64", port, "ipv6"));
      }
      expect(apply(withScrapers(["203.0.113.0/24", "2001:db8::/64"]))).toBe(first);
      const narrowed = apply(withScrapers(["198.51.100.0/24"]));
      expect(narrowed.match(/priority="-10"/g)).toHaveLength(2);
      expect(narrowed).toContain(scraper("198.51.100.0/24", 9526));
      expect(apply(rhel)).not.toContain('priority="-10"');
    } finally {
      remove();
    }
  });
});
