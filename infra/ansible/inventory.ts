// The inventory for one node: its hostname (the name the play targets) and how Ansible reaches it over SSH.

export interface InventoryConnection {
  /** Address or name SSH connects to (the stack's gateway:ssh host unless overridden). */
  host: string;
  port: number;
  user: string;
  /** Private key file on the machine running ansible-playbook. */
  privateKeyFile?: string;
  /** known_hosts file to verify the host against (the lab writes one); strict checking either way. */
  knownHostsFile?: string;
}

/** INI values are split on whitespace: a path with a space must be quoted, a quote can't be. */
function iniValue(field: string, value: string): string {
  if (/["'\n]/.test(value))
    throw new Error(
      `${field} ${JSON.stringify(value)} cannot be written to an INI inventory; use a value without quotes or newlines`,
    );
  return /\s/.test(value) ? `"${value}"` : value;
}

export function renderInventory(hostname: string, connection: InventoryConnection): string {
  const vars = [
    `ansible_host=${iniValue("--host", connection.host)}`,
    `ansible_port=${connection.port}`,
    `ansible_user=${iniValue("--user", connection.user)}`,
    // Debian and RHEL both ship /usr/bin/python3; naming it skips interpreter discovery and its warning.
    "ansible_python_interpreter=/usr/bin/python3",
  ];
  // Root needs no sudo (a minimal host may not even have it); any other login escalates.
  if (connection.user !== "root") vars.push("ansible_become=true");
  if (connection.privateKeyFile !== undefined)
    vars.push(`ansible_ssh_private_key_file=${iniValue("--key", connection.privateKeyFile)}`);
  if (connection.knownHostsFile !== undefined) {
    if (/[\s"']/.test(connection.knownHostsFile)) {
      throw new Error(
        `--known-hosts ${JSON.stringify(connection.knownHostsFile)} contains a space or quote; give a path without them`,
      );
    }
    vars.push(`ansible_ssh_common_args="-o UserKnownHostsFile=${connection.knownHostsFile} -o StrictHostKeyChecking=yes"`);
  }
  return [`[gateway]`, `${hostname} ${vars.join(" ")}`, ""].join("\n");
}
