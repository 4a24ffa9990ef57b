import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LAB_STATE_DIR, type LabRelease } from "./constants";

/** A daemon the lab started, identified by pid plus a command-line fragment so a recycled pid is never killed. */
export interface LabProcessRecord {
  pid: number;
  commandLineMarker: string;
}

export interface LabHostRecord {
  /**
   * The release the host boots (its overlay's lower layer is that release's base image): a re-created host comes
   * back on it, and the lab stacks' gateway:os follows it. Absent in state written before hosts had releases:
   * those booted debian-12.
   */
  release?: LabRelease;
  overlayMounted: boolean;
  /** The shell loop that restarts systemd-nspawn when the guest reboots (exit code 133). */
  supervisor?: LabProcessRecord;
  /** The container's own cgroups, created by the supervisor; removed on down. */
  cgroupDirs?: string[];
}

/**
 * What `lab up` has made so far, written after every step: `lab down` after a crash removes exactly this.
 */
export interface LabState {
  startedAt: string;
  bridgeCreated: boolean;
  nftTableCreated: boolean;
  /** The value of net.ipv4.ip_forward before the lab set it to 1; restored on down. */
  ipForwardBefore?: string;
  dns?: LabProcessRecord;
  acme?: LabProcessRecord;
  /** The Workers host (workers.ts), started by the first deploy that declares a Worker. */
  workers?: LabProcessRecord;
  hosts: Record<string, LabHostRecord>;
  /** `machine` cgroup parents that did not exist before the lab; removed on down once empty. */
  cgroupParentsCreated?: string[];
  zones: Record<string, string>;
  /** Addresses the guests may reach through NAT (the machine's apt mirror) and the names behind them. */
  mirrorAddresses: Record<string, string>;
  ready: boolean;
}

export const labStateFile = (stateDir: string = LAB_STATE_DIR): string => join(stateDir, "state.json");

export function readLabState(stateDir: string = LAB_STATE_DIR): LabState | undefined {
  try {
    return JSON.parse(readFileSync(labStateFile(stateDir), "utf8")) as LabState;
  } catch {
    return undefined;
  }
}

export function writeLabState(state: LabState, stateDir: string = LAB_STATE_DIR): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const temporary = `${labStateFile(stateDir)}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, labStateFile(stateDir));
}

/** The release a recorded host boots (state written before hosts had releases: debian-12, the only one then). */
export function recordedHostRelease(state: LabState | undefined, host: string): LabRelease | undefined {
  const record = state?.hosts[host];
  if (record === undefined) return undefined;
  return record.release ?? "debian-12";
}
