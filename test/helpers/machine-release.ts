// The release of the machine the host suite runs on: its tools (Postfix, Dovecot, …) validate renders of that
// release only. Other releases are validated with their own tools (test/host/validate-debian13*).
import { readFileSync } from "node:fs";
import { OS_RELEASES, releaseOs, type OsRelease } from "../../infra/model/releases";
import type { GatewayNode } from "../../infra/model/types";

export function machineRelease(osRelease = readFileSync("/etc/os-release", "utf8")): OsRelease {
  const field = (name: string): string => new RegExp(`^${name}="?([^"\\n]*)"?$`, "m").exec(osRelease)?.[1] ?? "";
  // Ubuntu's releases are year.month; RHEL's minor releases share one row.
  const id = field("ID");
  const release = `${id}-${id === "ubuntu" ? field("VERSION_ID") : field("VERSION_ID").split(".")[0]}`;
  const known = OS_RELEASES.find((candidate) => candidate === release);
  if (known === undefined) throw new Error(`this machine runs ${release}; the host suite knows ${OS_RELEASES.join(", ")}`);
  return known;
}

/** The node as this machine's release would run it, so its renders meet the tools installed here. */
export function onThisMachine(node: GatewayNode): GatewayNode {
  return { ...node, os: releaseOs(machineRelease()) };
}
