import { readFileSync, writeFileSync } from "node:fs";
import { LAB_BRIDGE, LAB_GATEWAY_IP, LAB_NFT_TABLE, LAB_PREFIX_LENGTH, LAB_SUBNET, LAB_SUBNET_OCTETS } from "./constants";
import { runCommand, runStep } from "./process";

const IP_FORWARD = "/proc/sys/net/ipv4/ip_forward";

/**
 * The lab's own nft table. Guests talk freely among themselves and to the machine (DNS, ACME); towards the
 * outside world they reach only the apt mirror's addresses, so nothing a test does can touch another host.
 */
export function renderLabNftRuleset(mirrorAddresses: readonly string[]): string {
  const mirrorRule =
    mirrorAddresses.length === 0
      ? ""
      : `    iifname "${LAB_BRIDGE}" ip daddr { ${mirrorAddresses.join(", ")} } tcp dport { 80, 443 } accept\n`;
  return (
    `table ip ${LAB_NFT_TABLE} {\n` +
    "  chain forward {\n" +
    "    type filter hook forward priority filter; policy accept;\n" +
    `    iifname "${LAB_BRIDGE}" oifname "${LAB_BRIDGE}" accept\n` +
    `    oifname "${LAB_BRIDGE}" ct state established,related accept\n` +
    mirrorRule +
    `    iifname "${LAB_BRIDGE}" drop\n` +
    "  }\n" +
    "  chain postrouting {\n" +
    "    type nat hook postrouting priority srcnat; policy accept;\n" +
    `    ip saddr ${LAB_SUBNET} oifname != "${LAB_BRIDGE}" masquerade\n` +
    "  }\n" +
    "}\n"
  );
}

interface IpAddressInfo {
  ifname: string;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** Refuses to start over something this machine already uses: the bridge name or any address in the subnet. */
export async function assertNetworkIsFree(): Promise<void> {
  const link = await runCommand("ip", ["link", "show", LAB_BRIDGE]);
  if (link.exitCode === 0) {
    throw new Error(
      `lab: interface ${LAB_BRIDGE} already exists but the lab has no record of making it; ` +
        `if it is a leftover of an earlier lab, remove it with \`ip link del ${LAB_BRIDGE}\``,
    );
  }
  const addresses = JSON.parse((await runStep("lab", "list addresses", "ip", ["-j", "-4", "addr"])).stdout) as IpAddressInfo[];
  for (const entry of addresses) {
    for (const address of entry.addr_info ?? []) {
      if (address.local.startsWith(`${LAB_SUBNET_OCTETS.join(".")}.`)) {
        throw new Error(
          `lab: ${entry.ifname} already has ${address.local}/${address.prefixlen}, inside the lab subnet ${LAB_SUBNET}`,
        );
      }
    }
  }
  const table = await runCommand("nft", ["list", "table", "ip", LAB_NFT_TABLE]);
  if (table.exitCode === 0) {
    throw new Error(
      `lab: nft table ip ${LAB_NFT_TABLE} already exists but the lab has no record of making it; ` +
        `remove it with \`nft delete table ip ${LAB_NFT_TABLE}\``,
    );
  }
}

export async function createBridge(): Promise<void> {
  await runStep("lab", "create bridge", "ip", ["link", "add", LAB_BRIDGE, "type", "bridge"]);
  await runStep("lab", "address bridge", "ip", ["addr", "add", `${LAB_GATEWAY_IP}/${LAB_PREFIX_LENGTH}`, "dev", LAB_BRIDGE]);
  await runStep("lab", "bring bridge up", "ip", ["link", "set", LAB_BRIDGE, "up"]);
}

export async function deleteBridge(): Promise<void> {
  const link = await runCommand("ip", ["link", "show", LAB_BRIDGE]);
  if (link.exitCode === 0) await runStep("lab", "delete bridge", "ip", ["link", "del", LAB_BRIDGE]);
}

export async function createNftTable(mirrorAddresses: readonly string[]): Promise<void> {
  await runStep("lab", "create nft table", "nft", ["-f", "-"], { input: renderLabNftRuleset(mirrorAddresses) });
}

export async function deleteNftTable(): Promise<void> {
  const table = await runCommand("nft", ["list", "table", "ip", LAB_NFT_TABLE]);
  if (table.exitCode === 0) await runStep("lab", "delete nft table", "nft", ["delete", "table", "ip", LAB_NFT_TABLE]);
}

/** Returns the previous value so `lab down` can put it back. */
export function enableIpForwarding(): string {
  const before = readFileSync(IP_FORWARD, "utf8").trim();
  if (before !== "1") writeFileSync(IP_FORWARD, "1\n");
  return before;
}

export function restoreIpForwarding(before: string): void {
  if (readFileSync(IP_FORWARD, "utf8").trim() !== before) writeFileSync(IP_FORWARD, `${before}\n`);
}
