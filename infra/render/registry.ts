// The file registry's address list, when the configuration holds it (gateway:recipients). The same file lands on
// every node: a relay validates recipients from its own copy while the primary is down, so a list kept by hand
// on each host would bounce a new user exactly when the relay is the one answering.
import type { GatewayNode, HostFile } from "../model/types";

export function registryFiles(node: GatewayNode): HostFile[] {
  const registry = node.lookup.registry;
  if (registry.kind !== "file" || registry.addresses === undefined) return [];
  return [
    {
      path: registry.path,
      mode: 0o640,
      owner: "root",
      group: node.drop.group,
      content: [
        "# Rendered by brightchain-gateway from gateway:recipients; local edits are overwritten.",
        ...registry.addresses,
        "",
      ].join("\n"),
      // brightchain-lookup re-reads the file when it changes: no reload to send.
      notify: [],
    },
  ];
}
