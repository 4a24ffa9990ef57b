// What a host adapter (Pulumi remote.Command, Ansible, the lab's executor) needs to bring a bare server to the
// node model: an ordered list of idempotent shell steps. Steps carry everything they need (command, stdin),
// so an adapter only translates them and never adds mail knowledge of its own.

export interface HostStep {
  /** Stable identifier, also the suffix of the Pulumi child resource name: "packages", "file-etc-postfix-main-cf". */
  id: string;
  description: string;
  /** Run as root with /bin/sh over SSH. Safe to re-run: every step converges instead of appending. */
  command: string;
  /** Fed to the command's standard input: a file's content, never put on the command line (no secret in ps/logs). */
  stdin?: string;
  /** True when stdin or stdout carries a secret: adapters keep both out of logs and mark them secret. */
  secret: boolean;
  /**
   * True when a trigger is derived from a secret (the content hash of a secret file, passed on to the services
   * it notifies and to the final verification): adapters store the triggers as secrets, or anyone who can read
   * the stack's state could test guessed passwords against the hash offline. Always true when `secret` is.
   */
  secretTriggers: boolean;
  /**
   * What runs when the step's triggers are unchanged but its other inputs changed — in practice how the host is
   * reached (SSH key rotated, port, address, sudo): never the step again (no apt, no certbot, no restart), only
   * `:` (`cat >/dev/null` where there is stdin) or, for a step whose stdout later steps read, a read-only
   * command printing it again.
   */
  update: string;
  /**
   * For a service step, the systemd unit it enables and restarts: typed data for adapters that have a module of
   * their own for it (Ansible's systemd), so none has to read the unit back out of the command.
   */
  service?: string;
  /** Ids of the steps that must have run before this one. */
  after: string[];
  /**
   * Content hashes (sha256 hex) of everything this step's effect depends on, its own command included. Adapters
   * re-run the step exactly when this list changes, so an unchanged node converges to "no changes".
   */
  triggers: string[];
}

/** A built runtime program (runtime/dist/<name>.cjs) to install under node.runtime.installDir. */
export interface RuntimeArtifact {
  /** File name, e.g. brightchain-lookup.cjs; the systemd unit of the same base name runs it. */
  name: string;
  content: string;
}
