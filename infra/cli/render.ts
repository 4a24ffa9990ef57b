// `gateway render`: every host file of a stack's node at its host path under an output folder, with a manifest
// and the stack's DNS records as a zone file — what `pulumi up` would put on the host, for review and diffing.
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { parseGatewayConfig, readStackConfigFiles } from "../model/config";
import type { GatewayNode, HostDirectory, HostFile } from "../model/types";
import { dnsRecords, ptrExpectations, renderZoneFile } from "../render/dns";
import { hostDirectories, hostFiles } from "../render/index";
import { missingSecrets, resolveSecrets, SECRET_ENVIRONMENT } from "./secrets";
import { parseFlags, UsageError, type CliIo, type CliVerb } from "./verb";

const HELP = `Usage: gateway render --stack NAME --out DIR [--dir PROJECTDIR]

Writes every host file of the stack's node at its host path under DIR (DIR/etc/postfix/main.cf, …) with its
mode, plus:
  DIR/manifest.json  path, mode ("0640"), owner, group and sha256 of each file; the directories with their
                     modes; files withheld for lack of a secret; the PTR records each address must have
  DIR/dns.zone       the DNS records this stack owns, as a BIND zone file
Owners are recorded in the manifest, not applied: the users exist only on the real host.

Flags:
  --stack NAME       reads Pulumi.yaml (domain-wide settings) and Pulumi.NAME.yaml (this node)
  --out DIR          output folder; must not exist yet or be empty, so no stale file survives a re-render
  --dir PROJECTDIR   folder holding the Pulumi files (default: the current folder)

Secrets: the stack file holds them encrypted, so they are read from the environment instead:
  ${SECRET_ENVIRONMENT.submissionUsers}   JSON [{"username":"…","password":"…"}] (SASL accounts for 587)
  ${SECRET_ENVIRONMENT.certbotCloudflareToken}   Cloudflare token certbot's dns-01 hook uses
A file that needs an unset secret is not written; the manifest lists it under "withheld".

Exit codes: 0 written; 2 bad flag or configuration (the message names the key, the value and what is
accepted); 1 anything else.
`;

interface ManifestFile {
  path: string;
  mode: string;
  owner: string;
  group: string;
  sha256: string;
  notify: string[];
  secret?: true;
}

interface ManifestWithheld {
  path: string;
  mode: string;
  owner: string;
  group: string;
  reason: string;
}

export interface RenderManifest {
  stack: string;
  role: GatewayNode["role"];
  hostname: string;
  files: ManifestFile[];
  directories: { path: string; mode: string; owner: string; group: string }[];
  withheld: ManifestWithheld[];
  dnsZone: string;
  ptr: { address: string; reverseName: string; expectedHostname: string }[];
}

const octal = (mode: number): string => `0${mode.toString(8).padStart(3, "0")}`;
const sha256 = (text: string): string => createHash("sha256").update(text, "utf8").digest("hex");

function zoneNotes(node: GatewayNode): string[] {
  const notes =
    node.role === "primary"
      ? [
          `Not here: the DKIM record ${node.dkim.selector}._domainkey.${node.domain}. Its key is generated on ${node.host.hostname}`,
          "(the private half never leaves it); `pulumi up` reads the public half back and publishes the TXT record.",
        ]
      : [`SPF, DMARC and DKIM for ${node.domain} belong to the primary stack; this relay owns only its address and MX.`];
  if (node.dane !== undefined)
    notes.push(
      `Not here: TLSA _25._tcp.${node.host.hostname} 3 1 1 <SHA-256 of the key of certbot lineage ${node.tls.certName}>; the key is made on the host, and \`pulumi up\` reads its hash back (docs/dnssec-dane.md).`,
    );
  for (const ptr of ptrExpectations(node)) {
    notes.push(`PTR (set at the address's provider, not here): ${ptr.reverseName}. -> ${ptr.expectedHostname}.`);
  }
  return notes;
}

function ensureEmptyOutput(out: string): void {
  if (existsSync(out) && readdirSync(out).length > 0) {
    throw new UsageError(
      `--out ${out} is not empty; give a new folder or empty it, so no stale file from an earlier render survives`,
    );
  }
  mkdirSync(out, { recursive: true });
}

function hostPathUnder(out: string, hostPath: string): string {
  const target = path.join(out, hostPath);
  if (!target.startsWith(out + path.sep)) throw new Error(`host path ${hostPath} escapes the output folder`);
  return target;
}

export interface RenderResult {
  manifest: RenderManifest;
  written: HostFile[];
  withheld: HostFile[];
  directories: HostDirectory[];
}

/** Renders the stack into `out`; throws GatewayConfigError (bad configuration) or UsageError. */
export function renderStack(projectDir: string, stack: string, out: string, env: CliIo["env"]): RenderResult {
  if (!/^[A-Za-z0-9._-]+$/.test(stack))
    throw new UsageError(`--stack ${JSON.stringify(stack)} is invalid; expected a stack name such as primary or relay`);
  const { values } = readStackConfigFiles(projectDir, stack);
  const node = parseGatewayConfig(values);
  const { secrets, standIns } = resolveSecrets(env);

  const files = hostFiles(node, secrets);
  const directories = hostDirectories(node);
  const written: HostFile[] = [];
  const withheld: { file: HostFile; variables: string[] }[] = [];
  for (const file of files) {
    const missing = missingSecrets(file, standIns);
    if (missing.length > 0) withheld.push({ file, variables: missing });
    else written.push(file);
  }

  const outDir = path.resolve(out);
  ensureEmptyOutput(outDir);
  for (const dir of directories) mkdirSync(hostPathUnder(outDir, dir.path), { recursive: true });
  for (const file of written) {
    const target = hostPathUnder(outDir, file.path);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, file.content, { mode: 0o600 });
    // writeFileSync's mode is filtered by the umask and ignored for existing files; chmod sets it exactly.
    chmodSync(target, file.mode);
  }
  // Directory modes last: a restrictive one (0500) must not stop the files inside from being written.
  for (const dir of directories) chmodSync(hostPathUnder(outDir, dir.path), dir.mode);

  const dnsZone = renderZoneFile(node.domain, dnsRecords(node), { notes: zoneNotes(node) });
  writeFileSync(path.join(outDir, "dns.zone"), dnsZone);

  const manifest: RenderManifest = {
    stack,
    role: node.role,
    hostname: node.host.hostname,
    files: written.map((f) => ({
      path: f.path,
      mode: octal(f.mode),
      owner: f.owner,
      group: f.group,
      sha256: sha256(f.content),
      notify: f.notify,
      ...(f.secret ? { secret: true as const } : {}),
    })),
    directories: directories.map((d) => ({ path: d.path, mode: octal(d.mode), owner: d.owner, group: d.group })),
    withheld: withheld.map(({ file, variables }) => ({
      path: file.path,
      mode: octal(file.mode),
      owner: file.owner,
      group: file.group,
      reason: `needs a secret: set ${variables.join(" and ")}`,
    })),
    dnsZone: "dns.zone",
    ptr: ptrExpectations(node),
  };
  writeFileSync(path.join(outDir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return { manifest, written, withheld: withheld.map((w) => w.file), directories };
}

export const renderVerb: CliVerb = {
  summary: "write a stack's host files, manifest.json and dns.zone into a folder (no host is touched)",
  help: HELP,
  run: async (args, io) => {
    const { stack, out, dir } = parseFlags(args, { stack: { type: "string" }, out: { type: "string" }, dir: { type: "string" } });
    if (stack === undefined) throw new UsageError("--stack NAME is required (the NAME of Pulumi.NAME.yaml)");
    if (out === undefined) throw new UsageError("--out DIR is required");
    const projectDir = path.resolve(io.cwd, dir ?? ".");
    const result = renderStack(projectDir, stack, path.resolve(io.cwd, out), io.env);
    io.stdout(
      `${result.manifest.hostname} (${result.manifest.role}): ${result.written.length} files, ${result.directories.length} directories, ` +
        `manifest.json and dns.zone written to ${out}\n`,
    );
    for (const w of result.manifest.withheld) io.stdout(`withheld ${w.path}: ${w.reason}\n`);
    return 0;
  },
};
