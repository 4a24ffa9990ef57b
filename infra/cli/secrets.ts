// The node's secrets for the CLI verbs that render its files without Pulumi (render, playbook, drift): the stack
// file holds them as ciphertext only Pulumi can decrypt, so each comes from the environment, or stands in as a
// random marker that marks every file carrying it.
import { randomBytes } from "node:crypto";
import { GatewayConfigError, parseGatewaySecrets, type FlatConfig } from "../model/config";
import type { GatewaySecrets, HostFile } from "../model/types";
import type { CliIo } from "./verb";

/** The stack file holds secrets as ciphertext only Pulumi can decrypt, so the CLI takes them from here. */
export const SECRET_ENVIRONMENT = {
  submissionUsers: "GATEWAY_RENDER_SUBMISSION_USERS",
  certbotCloudflareToken: "GATEWAY_RENDER_CERTBOT_CLOUDFLARE_TOKEN",
} as const;

const SECRET_KEYS = {
  submissionUsers: "gateway:submissionUsers",
  certbotCloudflareToken: "gateway:certbotCloudflareToken",
} as const;

export interface ResolvedSecrets {
  secrets: GatewaySecrets;
  /** Stand-in values for secrets that were not given, with the variable that would supply each. */
  standIns: { marker: string; variable: string }[];
}

/**
 * Real secrets from the environment (a variable set but empty is not given), else from `config` (a stack's
 * plaintext value, the lab's own secrets); each missing one replaced by a random marker. Renderers then run as
 * usual, and a file whose text carries a marker is one the CLI cannot know: nothing resembling a real secret is
 * written, and its content is not compared. An invalid value from a variable is reported under the variable's
 * name.
 */
export function resolveSecrets(env: CliIo["env"], config: FlatConfig = {}): ResolvedSecrets {
  const flat: FlatConfig = {};
  const fromEnv = new Set<keyof typeof SECRET_KEYS>();
  for (const name of ["submissionUsers", "certbotCloudflareToken"] as const) {
    const variable = env[SECRET_ENVIRONMENT[name]];
    const configured = config[SECRET_KEYS[name]];
    if (variable) {
      flat[SECRET_KEYS[name]] = variable;
      fromEnv.add(name);
    } else if (configured !== undefined) flat[SECRET_KEYS[name]] = configured;
  }
  let parsed: GatewaySecrets;
  try {
    parsed = parseGatewaySecrets(flat);
  } catch (err) {
    if (!(err instanceof GatewayConfigError)) throw err;
    const name = err.key.startsWith(SECRET_KEYS.submissionUsers) ? "submissionUsers" : "certbotCloudflareToken";
    if (!fromEnv.has(name)) throw err;
    throw new GatewayConfigError(`${SECRET_ENVIRONMENT[name]} (${err.key})`, err.value, err.accepted);
  }
  const standIns: ResolvedSecrets["standIns"] = [];
  const marker = (variable: string): string => {
    const value = `withheld${randomBytes(12).toString("hex")}`;
    standIns.push({ marker: value, variable });
    return value;
  };
  const secrets: GatewaySecrets = {
    submissionUsers:
      flat[SECRET_KEYS.submissionUsers] !== undefined
        ? parsed.submissionUsers
        : [{ username: marker(SECRET_ENVIRONMENT.submissionUsers), password: marker(SECRET_ENVIRONMENT.submissionUsers) }],
    certbotCloudflareToken: parsed.certbotCloudflareToken ?? marker(SECRET_ENVIRONMENT.certbotCloudflareToken),
  };
  return { secrets, standIns };
}

/** The variables whose stand-ins `file` carries: empty for a file the CLI knows whole. */
export function missingSecrets(file: HostFile, standIns: ResolvedSecrets["standIns"]): string[] {
  return [...new Set(standIns.filter((s) => file.content.includes(s.marker)).map((s) => s.variable))];
}
