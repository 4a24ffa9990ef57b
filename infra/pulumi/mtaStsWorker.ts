// MtaStsWorker: the Cloudflare Worker that serves the domain's MTA-STS policy at https://mta-sts.<domain>, and
// the custom domain that routes that name to it (Cloudflare creates the name's DNS record and its certificate).
// The policy and the script come from render/mta-sts.ts; this file only wires them. docs/mta-sts.md says why a
// Worker and not the mail node.
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as cloudflare from "@pulumi/cloudflare";
import { mtaStsPolicyHost, mtaStsWorkerScript } from "../render/mta-sts";

export interface MtaStsWorkerArgs {
  /** The Cloudflare account the zone belongs to: Workers live in an account, not a zone. */
  accountId: pulumi.Input<string>;
  zoneId: pulumi.Input<string>;
  domain: string;
  /** The policy text (mtaStsPolicyText). */
  policy: string;
}

/** A fixed date: a new one would change the script's inputs, and so every `up`'s plan, for nothing. */
export const MTA_STS_WORKER_COMPATIBILITY_DATE = "2025-01-01";
const MAIN_MODULE = "mta-sts.mjs";

/**
 * The script's name, derived from the domain alone: a Worker is replaced when its name changes, and the policy
 * changing must update it in place. Worker names are at most 63 lower-case letters, digits and hyphens.
 */
export function mtaStsScriptName(domain: string): string {
  const slug = domain.toLowerCase().replace(/[^a-z0-9]+/g, "-");
  const name = `mta-sts-${slug}`;
  if (name.length <= 63) return name;
  return `mta-sts-${slug.slice(0, 46)}-${createHash("sha256").update(domain).digest("hex").slice(0, 8)}`;
}

export class MtaStsWorker extends pulumi.ComponentResource {
  readonly script: cloudflare.WorkersScript;
  readonly customDomain: cloudflare.WorkersCustomDomain;

  constructor(name: string, args: MtaStsWorkerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("brightchain:gateway:MtaStsWorker", name, {}, opts);
    this.script = new cloudflare.WorkersScript(
      `${name}-script`,
      {
        accountId: args.accountId,
        scriptName: mtaStsScriptName(args.domain),
        content: mtaStsWorkerScript(args.policy),
        // A module Worker (export default { fetch }): the form the unit test runs in Node as it is.
        mainModule: MAIN_MODULE,
        compatibilityDate: MTA_STS_WORKER_COMPATIBILITY_DATE,
      },
      { parent: this },
    );
    this.customDomain = new cloudflare.WorkersCustomDomain(
      `${name}-domain`,
      {
        accountId: args.accountId,
        zoneId: args.zoneId,
        hostname: mtaStsPolicyHost(args.domain),
        service: this.script.scriptName,
      },
      { parent: this },
    );
    this.registerOutputs({ scriptName: this.script.scriptName, hostname: this.customDomain.hostname });
  }
}
