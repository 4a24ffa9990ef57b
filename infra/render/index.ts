// Every host file and directory a node needs, gathered from the renderer modules. The Pulumi program, the
// Ansible adapter and `gateway render` all take the node's files from here, so they cannot disagree.
import type { GatewayNode, GatewaySecrets, HostDirectory, HostFile } from "../model/types";
import { dovecotFiles } from "./dovecot";
import { firewallFiles } from "./firewall";
import { gatewayEnvFiles } from "./gateway-env";
import { metricsFiles } from "./metrics";
import { opendkimFiles } from "./opendkim";
import { postfixFiles } from "./postfix";
import { registryFiles } from "./registry";
import { spamFiles } from "./spam";
import { spoolDirectories, spoolFiles } from "./spool";
import { runtimeUnitFiles } from "./systemd";
import { tlsFiles } from "./tls";

export class DuplicateHostPathError extends Error {
  constructor(readonly path: string) {
    super(`two renderers produce ${path}; each host path must have exactly one owner`);
    this.name = "DuplicateHostPathError";
  }
}

export function assertUniquePaths(paths: string[]): void {
  const seen = new Set<string>();
  for (const p of paths) {
    if (seen.has(p)) throw new DuplicateHostPathError(p);
    seen.add(p);
  }
}

const byPath = <T extends { path: string }>(a: T, b: T): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/** Sorted by path so every consumer (manifest, triggers, diffs) sees a stable order. */
export function hostFiles(node: GatewayNode, secrets: GatewaySecrets): HostFile[] {
  const files = [
    ...postfixFiles(node),
    ...spoolFiles(node),
    ...dovecotFiles(node, secrets),
    ...opendkimFiles(node),
    ...spamFiles(node),
    ...tlsFiles(node, secrets),
    ...firewallFiles(node),
    ...runtimeUnitFiles(node),
    ...gatewayEnvFiles(node, secrets),
    ...registryFiles(node),
    ...metricsFiles(node),
  ];
  assertUniquePaths(files.map((f) => f.path));
  return files.sort(byPath);
}

export function hostDirectories(node: GatewayNode): HostDirectory[] {
  const directories = [...spoolDirectories(node)];
  assertUniquePaths(directories.map((d) => d.path));
  return directories.sort(byPath);
}
