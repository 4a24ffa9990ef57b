// The engine's record of the last run, per stack: what Pulumi's state file holds for the diff (each resource's
// inputs, secrets as hashes) and the outputs unchanged resources hand on (the DKIM step's stdout).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import type { DnsRecord } from "../model/types";
import type { ResourceAction } from "./inputs";

export interface RecordedResource {
  type: string;
  name: string;
  inputsHash: string;
  inputs: unknown;
  /** Outputs beyond the inputs (stdout, stderr): reused when the resource is unchanged. */
  outputs: Record<string, unknown>;
}

export interface DeployState {
  stack: string;
  /** By resourceKey(type, name). */
  resources: Record<string, RecordedResource>;
}

/** One resource's part in a run, as the engine reports it. */
export interface ResourceReport {
  type: string;
  name: string;
  action: ResourceAction;
  inputsHash: string;
  /** Input names that differ from the last run (update only). */
  changedInputs: string[];
  /** Wall time of the executed command or copy; 0 when nothing ran. */
  seconds: number;
  /** When the command started and ended (epoch ms), to check the order dependencies impose; absent when nothing ran. */
  startedAt?: number;
  finishedAt?: number;
}

export interface DeployFailure {
  host: string;
  /** The resource (and plan step) that failed, e.g. primary-packages. */
  step: string;
  command: string;
  exitCode: number;
  output: string;
}

export interface RunnerResult {
  stack: string;
  resources: ResourceReport[];
  dnsRecords: DnsRecord[];
  failure?: DeployFailure;
  /** An error outside any step (configuration, the program itself). */
  error?: string;
}

export const resourceKey = (type: string, name: string): string => `${type}::${name}`;

export function deployStatePath(stateDir: string, stack: string): string {
  return path.join(stateDir, `${stack}.state.json`);
}

export function readDeployState(file: string, stack: string): DeployState {
  try {
    const state = JSON.parse(readFileSync(file, "utf8")) as DeployState;
    if (state.stack !== stack)
      throw new Error(`deploy state ${file} belongs to stack ${JSON.stringify(state.stack)}, not ${JSON.stringify(stack)}`);
    return state;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { stack, resources: {} };
    throw error;
  }
}

/** Written whole and renamed into place: a crash mid-run leaves the last complete record. 0600: outputs may be private. */
export function writeDeployState(file: string, state: DeployState): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, file);
}
