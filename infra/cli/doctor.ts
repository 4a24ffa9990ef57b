// `gateway doctor --stack NAME`: one command that says what is wrong with a deployed node (infra/doctor).
import { readFileSync } from "node:fs";
import * as path from "node:path";
import {
  formatReport,
  parseResolverAddress,
  parseTrustAnchor,
  reportExitCode,
  reportJson,
  ResolverUnreachableError,
  runDoctor,
} from "../doctor";
import { parseFlags, UsageError, type CliIo, type CliVerb } from "./verb";

const HELP = `Usage: gateway doctor --stack NAME [--dir PROJECTDIR] [--json] [--resolver IP[:PORT]]
                      [--address HOST=IP ...] [--ca FILE] [--trust-anchor DS ...] [--on-host [--identity FILE]]

Checks the stack's node as the rest of the internet sees it, and prints one line per check (✓ ok, ✗ wrong,
! worth a look) with the fix under each ✗ and !:
  dns    every record the stack publishes, with its value: MX set exactly the fleet, A/AAAA, one SPF equal to
         the expected one, DMARC, DKIM (with --on-host: p= equal to the host's key), and any record kind the
         renderer adds
  dnssec on the primary (gateway:dnssec): the zone's DNSKEY set signed by its own key, the parent's DS matching
         that key (the fix names the DS to give the registrar), MX signed, and the resolver's AD bit
  ptr    reverse DNS of every address names the host, and the host's A/AAAA has the address
  policy the MTA-STS policy the _mta-sts record announces, served at https://mta-sts.<domain>/
  tls    STARTTLS on 25 (and 587 on a primary): chain trusted, host name in the certificate, days to expiry,
         a published TLSA matching the served certificate; TLS 1.1 refused and TLS 1.2 completed
  relay  a stranger's RCPT TO a foreign domain refused (the probe quits before DATA)
  ports  the loopback-only daemons (lookup socketmap, spamd, OpenDKIM, Rspamd) refuse connections from here
  host   with --on-host, over SSH with the pinned host key (gateway:ssh.hostKey): the lookup service answers
         postmap -q, Postfix's queue and the drop Maildir are not backing up

  --stack NAME         reads Pulumi.yaml and Pulumi.NAME.yaml
  --dir PROJECTDIR     folder holding the Pulumi files (default: the current folder)
  --json               the checks as JSON instead of the table
  --resolver IP[:PORT] the name server to ask (repeatable; default: the system's)
  --address HOST=IP    connect to IP for fleet host HOST instead of its configured addresses (repeatable)
  --ca FILE            PEM certificates trusted besides the public roots (a test CA such as the lab's)
  --trust-anchor DS    a DS record standing in for the parent's, 'brightchain.org. IN DS 2371 13 2 C2B5…'
                       (repeatable; a zone without a parent to ask, such as the lab's)
  --on-host            also run the host checks over SSH
  --identity FILE      SSH private key for --on-host (default: the SSH agent)

Exit codes: 0 every check ✓ or !; 1 a check ✗; 2 cannot run (bad flag or configuration, no name server answers).
`;

/** `HOST=IP` pairs, several per host allowed (its IPv4 and IPv6). */
export function parseAddressFlags(values: readonly string[]): Record<string, string[]> {
  const addresses: Record<string, string[]> = {};
  for (const value of values) {
    const match = /^([A-Za-z0-9.-]+)=(\S+)$/.exec(value);
    if (match === null)
      throw new UsageError(`--address ${JSON.stringify(value)} is not HOST=IP; e.g. --address mail.brightchain.org=192.0.2.10`);
    (addresses[match[1]!.toLowerCase()] ??= []).push(match[2]!);
  }
  return addresses;
}

async function run(args: string[], io: CliIo): Promise<number> {
  const flags = parseFlags(args, {
    stack: { type: "string" },
    dir: { type: "string" },
    json: { type: "boolean" },
    resolver: { type: "string", multiple: true },
    address: { type: "string", multiple: true },
    ca: { type: "string" },
    "trust-anchor": { type: "string", multiple: true },
    "on-host": { type: "boolean" },
    identity: { type: "string" },
  });
  const stack = flags.stack;
  if (stack === undefined) throw new UsageError("--stack is required, e.g. --stack primary");
  if (flags.identity !== undefined && !flags["on-host"])
    throw new UsageError("--identity is for --on-host; give both or neither");
  let resolvers: string[];
  try {
    resolvers = (flags.resolver ?? []).map(parseResolverAddress);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const trustAnchors = flags["trust-anchor"] ?? [];
  for (const anchor of trustAnchors) {
    try {
      parseTrustAnchor(anchor);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  const readFlagFile = (flag: string, file: string): string => {
    try {
      return readFileSync(path.resolve(io.cwd, file), "utf8");
    } catch (error) {
      throw new UsageError(
        `--${flag} ${JSON.stringify(file)} cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      );
    }
  };
  const extraCa = flags.ca === undefined ? undefined : [readFlagFile("ca", flags.ca)];
  const privateKey = flags.identity === undefined ? undefined : readFlagFile("identity", flags.identity);
  let report;
  try {
    report = await runDoctor({
      stack,
      projectDir: path.resolve(io.cwd, flags.dir ?? "."),
      resolvers,
      addresses: parseAddressFlags(flags.address ?? []),
      ...(flags["on-host"] ? { ssh: true as const } : {}),
      ...(privateKey ? { privateKey } : {}),
      ...(extraCa ? { extraCa } : {}),
      trustAnchors,
    });
  } catch (error) {
    if (error instanceof ResolverUnreachableError) {
      io.stderr(`gateway doctor: cannot run: ${error.message}; give a name server that answers with --resolver IP[:PORT]\n`);
      return 2;
    }
    throw error;
  }
  io.stdout(flags.json ? reportJson(report) : formatReport(report));
  return reportExitCode(report);
}

export const doctorVerb: CliVerb = {
  summary:
    "check a deployed node from outside (DNS values, the DNSSEC chain, PTR, STARTTLS, TLS floor, open relay, closed ports) and, --on-host, over SSH",
  help: HELP,
  run,
};
