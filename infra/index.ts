// The Pulumi program: one stack per gateway node. Configuration → node model → host files and steps →
// the node's address records → GatewayHost (SSH) → verified → MX, SPF, DMARC, DKIM (Cloudflare). All mail
// knowledge is in the pure modules it calls; this file only reads inputs and wires components.
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parseGatewayStack } from "./model/config";
import { readRuntimeArtifacts } from "./plan/artifacts";
import { GatewayDns, GatewayHost } from "./pulumi";
import { hostDirectories, hostFiles } from "./render";
import { ptrExpectations as expectedPtrRecords } from "./render/dns";
import { STEP_DKIM_KEY, STEP_DKIM_SERVED } from "./plan";
import { dkimRotationAt } from "./plan/dkim-rotation";

/**
 * The runtime programs built by `npm run build --workspace runtime`. GATEWAY_RUNTIME_DIST points elsewhere
 * (tests, a CI artifact); a missing build stops the program here rather than deploying a node without them.
 */
const flat = pulumi.runtime.allConfig();
// One parse, so `pulumi preview` lists every problem at once, the pinned host key and the secrets the node's
// files carry included. Rendering needs the plain secrets; every file that carries one is flagged secret and
// GatewayHost keeps it so.
const parsed = parseGatewayStack(flat, { deploy: true });
// One decision per run: a rotation's previous DKIM record is kept through gateway:dkimPrevious.keepUntil, and the
// first up after that day plans and publishes without it.
const node = dkimRotationAt(parsed.node, new Date());
const { secrets, ssh } = parsed;
const privateKey = new pulumi.Config("gateway").getSecret("sshPrivateKey");

// Resource names without the stack's name: the stack is already in every URN, and a name that changed with it
// would make a renamed stack create a second node and then delete the first (its teardown included). Stacks
// deployed before carry the stack's name in their resources: `previousNames` aliases them, so they upgrade in place.
const stack = pulumi.getStack();

// Address records first (an http-01 certificate needs them), mail records once the node verified.
const dns = new GatewayDns(
  "dns",
  { node, zoneName: node.domain, previousName: `${stack}-dns` },
  { aliases: [{ name: `${stack}-dns` }] },
);

// Mid-rotation the new DKIM record is published from the key step's stdout while the host is being set up, and
// the step that waits for the zone to serve it depends on that record: created once the host's commands exist.
let earlyDkim: (resources: pulumi.Resource[]) => void = () => undefined;
const earlyDkimPublished = new Promise<pulumi.Resource[]>((resolve) => (earlyDkim = resolve));

const host = new GatewayHost(
  "node",
  {
    previousName: stack,
    node,
    files: hostFiles(node, secrets),
    directories: hostDirectories(node),
    artifacts: readRuntimeArtifacts(
      process.env.GATEWAY_RUNTIME_DIST ?? path.join(__dirname, "..", "runtime", "dist"),
      "GATEWAY_RUNTIME_DIST",
    ),
    connection: { host: ssh.host, user: ssh.user, port: ssh.port, hostKey: ssh.hostKey, ...(privateKey ? { privateKey } : {}) },
    sshPort: ssh.port,
    sudo: ssh.user !== "root",
    certificateAfter: dns.addressRecords,
    stepAfter: { [STEP_DKIM_SERVED]: earlyDkimPublished },
  },
  { aliases: [{ name: stack }] },
);

const dkimKeyStep = host.commands[STEP_DKIM_KEY];
const early = dkimKeyStep ? dns.publishDkimEarly(dkimKeyStep.stdout) : undefined;
earlyDkim(early ? [early] : []);

dns.publishMailRecords({
  after: [host.verifyCommand],
  ...(host.dkimRecordText ? { dkimRecordText: host.dkimRecordText } : {}),
  ...(host.daneKeysText ? { daneKeysText: host.daneKeysText } : {}),
  ...(host.dkimPreviousText ? { dkimPreviousText: host.dkimPreviousText } : {}),
});

export const hostname = node.host.hostname;
export const role = node.role;
/** What Cloudflare holds for this stack, read from the records themselves. */
export const records = pulumi.all(
  Object.values(dns.records).map((r) =>
    pulumi
      .all([r.name, r.type, r.content, r.priority])
      .apply(([name, type, content, priority]) => ({ name, type, content, priority })),
  ),
);
/** The DKIM TXT text published (primary only). */
export const dkimRecord = dns.dkimRecord?.apply((r) => ({ name: r.name, type: r.type, content: r.content }));
/**
 * DNSSEC (primary stack): the DS record the registrar must publish, as one line and as the fields a registrar's
 * form asks for. The zone is signed at once; it is trusted only once the registrar publishes this DS.
 */
export const dnssec = dns.dnssec
  ? pulumi
      .all([
        dns.dnssec.status,
        dns.dnssec.ds,
        dns.dnssec.keyTag,
        dns.dnssec.algorithm,
        dns.dnssec.digestType,
        dns.dnssec.digest,
        dns.dnssec.flags,
        dns.dnssec.publicKey,
      ])
      .apply(([status, ds, keyTag, algorithm, digestType, digest, flags, publicKey]) => ({
        status,
        ds,
        keyTag,
        algorithm,
        digestType,
        digest,
        flags,
        publicKey,
      }))
  : undefined;
/** Cloudflare cannot set PTR records: ask the address's owner for exactly these. */
export const ptrExpectations = expectedPtrRecords(node);
/** The final verification's report: Postfix listening, recipient lookup answering. */
export const verified = host.verified;
