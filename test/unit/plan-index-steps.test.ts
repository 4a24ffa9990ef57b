// hostPlan's steps as an operator and an adapter read them: every step's id in plan order, what it runs after,
// what an update runs, whether it is secret, and the description a failing step's header shows, for the example
// primary and relay compared whole; which steps a changed input re-runs; the secret marking a secret file's hash
// carries to the services it notifies and to the verification; the DKIM rotation's and the DANE switch's steps;
// what the retire step and the teardown stop and remove; the runtime programs' units.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { GatewayNode, HostDirectory, HostFile } from "../../infra/model/types";
import {
  STEP_CERTIFICATE,
  STEP_DANE_SWITCH,
  STEP_DKIM_KEY,
  STEP_DKIM_PREVIOUS,
  STEP_DKIM_SERVED,
  STEP_FIREWALL,
  STEP_OS_RELEASE,
  STEP_PACKAGES,
  STEP_POSTFIX_CHECK,
  STEP_POSTFIX_RELOAD,
  STEP_RETIRE,
  STEP_SYSTEM_USER,
  STEP_VERIFY,
  fileStepId,
  hostDeployment,
  hostPlan,
  hostTeardown,
  serviceStepId,
  type HostStep,
  type RuntimeArtifact,
} from "../../infra/plan";
import { hostDirectories, hostFiles } from "../../infra/render";
import { firewallFiles } from "../../infra/render/firewall";
import { examplePrimary, exampleRelay, exampleSecrets, nodeMatrix } from "../fixtures/nodes";

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");
const artifacts: RuntimeArtifact[] = [
  { name: "brightchain-lookup.cjs", content: "x" },
  { name: "brightchain-inbound.js", content: "y" },
];
const planOf = (node: GatewayNode, options = {}): HostStep[] =>
  hostPlan(node, hostFiles(node, exampleSecrets), hostDirectories(node), artifacts, options);
const step = (steps: HostStep[], id: string): HostStep => {
  const found = steps.find((s) => s.id === id);
  if (!found) throw new Error(`no step ${id} in ${steps.map((s) => s.id).join(", ")}`);
  return found;
};

/** [id, after, update (COMMAND: the step's own command again), secret, secretTriggers, service, description] */
type Row = [string, string[], string, boolean, boolean, string | null, string];
const COMMAND = "(the step's own command)";
const row = (s: HostStep): Row => [
  s.id,
  s.after,
  s.update === s.command ? COMMAND : s.update,
  s.secret,
  s.secretTriggers,
  s.service ?? null,
  s.description,
];
const PRIMARY_FILES = [
  "file-etc-brightchain-brightchain-send-env",
  "file-etc-brightchain-gateway-env",
  "file-etc-default-prometheus-postfix-exporter",
  "file-etc-default-spamass-milter",
  "file-etc-default-spamd",
  "file-etc-dovecot-brightchain-submission-passwd",
  "file-etc-dovecot-dovecot-conf",
  "file-etc-letsencrypt-cloudflare-ini",
  "file-etc-letsencrypt-renewal-hooks-deploy-brightchain-postfix",
  "file-etc-opendkim-conf",
  "file-etc-postfix-main-cf",
  "file-etc-postfix-master-cf",
  "file-etc-spamassassin-local-cf",
  "file-etc-systemd-system-brightchain-inbound-service",
  "file-etc-systemd-system-brightchain-lookup-service",
  "file-etc-systemd-system-postfix-service-d-brightchain-conf",
  "file-etc-systemd-system-prometheus-postfix-exporter-service-d-brightchain-conf",
  "file-usr-local-sbin-brightchain-firewall",
  "file-opt-brightchain-gateway-brightchain-lookup-cjs",
  "file-opt-brightchain-gateway-brightchain-inbound-js",
];
const PRIMARY_TABLE: Row[] = [
  ["os-release", [], ":", false, false, null, "check that the host runs debian-13"],
  ["packages", ["os-release"], ":", false, false, null, "install the distribution packages"],
  ["system-user", ["packages"], ":", false, false, null, "create the brightchain system user (uid 2526, gid 2526)"],
  [
    "directories",
    ["system-user"],
    ":",
    false,
    false,
    null,
    "create the spool tree and key directories with their owners and modes",
  ],
  [
    "file-etc-brightchain-brightchain-send-env",
    ["directories"],
    "cat >/dev/null",
    true,
    true,
    null,
    "install /etc/brightchain/brightchain-send.env (640 root:brightchain)",
  ],
  [
    "file-etc-brightchain-gateway-env",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/brightchain/gateway.env (640 root:brightchain)",
  ],
  [
    "file-etc-default-prometheus-postfix-exporter",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/default/prometheus-postfix-exporter (644 root:root)",
  ],
  [
    "file-etc-default-spamass-milter",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/default/spamass-milter (644 root:root)",
  ],
  ["file-etc-default-spamd", ["directories"], "cat >/dev/null", false, false, null, "install /etc/default/spamd (644 root:root)"],
  [
    "file-etc-dovecot-brightchain-submission-passwd",
    ["directories"],
    "cat >/dev/null",
    true,
    true,
    null,
    "install /etc/dovecot/brightchain-submission.passwd (640 root:dovecot)",
  ],
  [
    "file-etc-dovecot-dovecot-conf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/dovecot/dovecot.conf (644 root:root)",
  ],
  [
    "file-etc-letsencrypt-cloudflare-ini",
    ["directories"],
    "cat >/dev/null",
    true,
    true,
    null,
    "install /etc/letsencrypt/cloudflare.ini (600 root:root)",
  ],
  [
    "file-etc-letsencrypt-renewal-hooks-deploy-brightchain-postfix",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/letsencrypt/renewal-hooks/deploy/brightchain-postfix (755 root:root)",
  ],
  ["file-etc-opendkim-conf", ["directories"], "cat >/dev/null", false, false, null, "install /etc/opendkim.conf (644 root:root)"],
  [
    "file-etc-postfix-main-cf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/postfix/main.cf (644 root:root)",
  ],
  [
    "file-etc-postfix-master-cf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/postfix/master.cf (644 root:root)",
  ],
  [
    "file-etc-spamassassin-local-cf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/spamassassin/local.cf (644 root:root)",
  ],
  [
    "file-etc-systemd-system-brightchain-inbound-service",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/systemd/system/brightchain-inbound.service (644 root:root)",
  ],
  [
    "file-etc-systemd-system-brightchain-lookup-service",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/systemd/system/brightchain-lookup.service (644 root:root)",
  ],
  [
    "file-etc-systemd-system-postfix-service-d-brightchain-conf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/systemd/system/postfix@-.service.d/brightchain.conf (644 root:root)",
  ],
  [
    "file-etc-systemd-system-prometheus-postfix-exporter-service-d-brightchain-conf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/systemd/system/prometheus-postfix-exporter.service.d/brightchain.conf (644 root:root)",
  ],
  [
    "file-usr-local-sbin-brightchain-firewall",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /usr/local/sbin/brightchain-firewall (755 root:root)",
  ],
  [
    "file-opt-brightchain-gateway-brightchain-lookup-cjs",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /opt/brightchain-gateway/brightchain-lookup.cjs (755 root:root)",
  ],
  [
    "file-opt-brightchain-gateway-brightchain-inbound-js",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /opt/brightchain-gateway/brightchain-inbound.js (755 root:root)",
  ],
  [
    "recipient-registry",
    ["system-user"],
    ":",
    false,
    false,
    null,
    "create an empty recipient registry /etc/brightchain/recipients if there is none",
  ],
  [
    "dkim-key",
    ["directories"],
    "cat /etc/dkim/default.txt",
    false,
    false,
    null,
    "generate the DKIM key default on the host if absent and print its public record",
  ],
  ["firewall", ["packages", "file-usr-local-sbin-brightchain-firewall"], ":", false, false, null, "apply the host firewall"],
  [
    "certificate",
    [...PRIMARY_FILES, "firewall"],
    ":",
    false,
    false,
    null,
    "obtain the TLS certificate for mail.brightchain.org (dns-01)",
  ],
  [
    "dane-keys",
    ["certificate"],
    COMMAND,
    false,
    false,
    null,
    "print the SHA-256 of each DANE key (mail.brightchain.org) for the TLSA records",
  ],
  [
    "service-brightchain-inbound",
    [
      "file-etc-brightchain-gateway-env",
      "file-etc-systemd-system-brightchain-inbound-service",
      "file-opt-brightchain-gateway-brightchain-inbound-js",
      "recipient-registry",
      "dkim-key",
      "certificate",
    ],
    ":",
    false,
    false,
    "brightchain-inbound",
    "enable brightchain-inbound and restart it on its configuration",
  ],
  [
    "service-brightchain-lookup",
    [
      "file-etc-brightchain-gateway-env",
      "file-etc-systemd-system-brightchain-lookup-service",
      "file-opt-brightchain-gateway-brightchain-lookup-cjs",
      "recipient-registry",
      "dkim-key",
      "certificate",
    ],
    ":",
    false,
    false,
    "brightchain-lookup",
    "enable brightchain-lookup and restart it on its configuration",
  ],
  [
    "service-certbot-timer",
    ["recipient-registry", "dkim-key", "certificate"],
    ":",
    false,
    false,
    "certbot.timer",
    "enable certbot.timer and restart it on its configuration",
  ],
  [
    "service-dovecot",
    [
      "file-etc-dovecot-brightchain-submission-passwd",
      "file-etc-dovecot-dovecot-conf",
      "recipient-registry",
      "dkim-key",
      "certificate",
    ],
    ":",
    false,
    true,
    "dovecot",
    "enable dovecot and restart it on its configuration",
  ],
  [
    "service-opendkim",
    ["file-etc-opendkim-conf", "recipient-registry", "dkim-key", "certificate"],
    ":",
    false,
    false,
    "opendkim",
    "enable opendkim and restart it on its configuration",
  ],
  [
    "service-prometheus-postfix-exporter",
    [
      "file-etc-default-prometheus-postfix-exporter",
      "file-etc-systemd-system-prometheus-postfix-exporter-service-d-brightchain-conf",
      "recipient-registry",
      "dkim-key",
      "certificate",
    ],
    ":",
    false,
    false,
    "prometheus-postfix-exporter",
    "enable prometheus-postfix-exporter and restart it on its configuration",
  ],
  [
    "service-spamass-milter",
    ["file-etc-default-spamass-milter", "recipient-registry", "dkim-key", "certificate"],
    ":",
    false,
    false,
    "spamass-milter",
    "enable spamass-milter and restart it on its configuration",
  ],
  [
    "service-spamd",
    ["file-etc-default-spamd", "file-etc-spamassassin-local-cf", "recipient-registry", "dkim-key", "certificate"],
    ":",
    false,
    false,
    "spamd",
    "enable spamd and restart it on its configuration",
  ],
  [
    "postfix-check",
    [
      ...PRIMARY_FILES,
      "recipient-registry",
      "dkim-key",
      "certificate",
      "service-brightchain-inbound",
      "service-brightchain-lookup",
      "service-certbot-timer",
      "service-dovecot",
      "service-opendkim",
      "service-prometheus-postfix-exporter",
      "service-spamass-milter",
      "service-spamd",
    ],
    ":",
    false,
    false,
    null,
    "postfix check: refuse to reload a configuration Postfix itself rejects",
  ],
  ["postfix-reload", ["postfix-check"], ":", false, false, null, "enable Postfix and reload it (start it if stopped)"],
  [
    "retire-components",
    ["postfix-reload"],
    ":",
    false,
    false,
    null,
    "stop and disable the components this node no longer runs, and remove their files",
  ],
  [
    "verify",
    [
      "postfix-reload",
      "retire-components",
      "service-brightchain-inbound",
      "service-brightchain-lookup",
      "service-certbot-timer",
      "service-dovecot",
      "service-opendkim",
      "service-prometheus-postfix-exporter",
      "service-spamass-milter",
      "service-spamd",
    ],
    COMMAND,
    false,
    true,
    null,
    "wait for Postfix to listen and the recipient lookup service to answer",
  ],
];
const RELAY_FILES = [
  "file-etc-brightchain-gateway-env",
  "file-etc-default-prometheus-postfix-exporter",
  "file-etc-letsencrypt-cloudflare-ini",
  "file-etc-letsencrypt-renewal-hooks-deploy-brightchain-postfix",
  "file-etc-postfix-main-cf",
  "file-etc-postfix-master-cf",
  "file-etc-rspamd-local-d-actions-conf",
  "file-etc-rspamd-local-d-milter-headers-conf",
  "file-etc-rspamd-local-d-worker-controller-inc",
  "file-etc-rspamd-local-d-worker-normal-inc",
  "file-etc-rspamd-local-d-worker-proxy-inc",
  "file-etc-systemd-system-brightchain-lookup-service",
  "file-etc-systemd-system-postfix-service-d-brightchain-conf",
  "file-etc-systemd-system-prometheus-postfix-exporter-service-d-brightchain-conf",
  "file-usr-local-sbin-brightchain-firewall",
  "file-opt-brightchain-gateway-brightchain-lookup-cjs",
  "file-opt-brightchain-gateway-brightchain-inbound-js",
];
const RELAY_TABLE: Row[] = [
  ["os-release", [], ":", false, false, null, "check that the host runs debian-12"],
  ["packages", ["os-release"], ":", false, false, null, "install the distribution packages"],
  ["system-user", ["packages"], ":", false, false, null, "create the brightchain system user (uid 2526, gid 2526)"],
  [
    "directories",
    ["system-user"],
    ":",
    false,
    false,
    null,
    "create the spool tree and key directories with their owners and modes",
  ],
  [
    "file-etc-brightchain-gateway-env",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/brightchain/gateway.env (640 root:brightchain)",
  ],
  [
    "file-etc-default-prometheus-postfix-exporter",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/default/prometheus-postfix-exporter (644 root:root)",
  ],
  [
    "file-etc-letsencrypt-cloudflare-ini",
    ["directories"],
    "cat >/dev/null",
    true,
    true,
    null,
    "install /etc/letsencrypt/cloudflare.ini (600 root:root)",
  ],
  [
    "file-etc-letsencrypt-renewal-hooks-deploy-brightchain-postfix",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/letsencrypt/renewal-hooks/deploy/brightchain-postfix (755 root:root)",
  ],
  [
    "file-etc-postfix-main-cf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/postfix/main.cf (644 root:root)",
  ],
  [
    "file-etc-postfix-master-cf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/postfix/master.cf (644 root:root)",
  ],
  [
    "file-etc-rspamd-local-d-actions-conf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/rspamd/local.d/actions.conf (644 root:root)",
  ],
  [
    "file-etc-rspamd-local-d-milter-headers-conf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/rspamd/local.d/milter_headers.conf (644 root:root)",
  ],
  [
    "file-etc-rspamd-local-d-worker-controller-inc",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/rspamd/local.d/worker-controller.inc (644 root:root)",
  ],
  [
    "file-etc-rspamd-local-d-worker-normal-inc",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/rspamd/local.d/worker-normal.inc (644 root:root)",
  ],
  [
    "file-etc-rspamd-local-d-worker-proxy-inc",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/rspamd/local.d/worker-proxy.inc (644 root:root)",
  ],
  [
    "file-etc-systemd-system-brightchain-lookup-service",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/systemd/system/brightchain-lookup.service (644 root:root)",
  ],
  [
    "file-etc-systemd-system-postfix-service-d-brightchain-conf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/systemd/system/postfix@-.service.d/brightchain.conf (644 root:root)",
  ],
  [
    "file-etc-systemd-system-prometheus-postfix-exporter-service-d-brightchain-conf",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /etc/systemd/system/prometheus-postfix-exporter.service.d/brightchain.conf (644 root:root)",
  ],
  [
    "file-usr-local-sbin-brightchain-firewall",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /usr/local/sbin/brightchain-firewall (755 root:root)",
  ],
  [
    "file-opt-brightchain-gateway-brightchain-lookup-cjs",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /opt/brightchain-gateway/brightchain-lookup.cjs (755 root:root)",
  ],
  [
    "file-opt-brightchain-gateway-brightchain-inbound-js",
    ["directories"],
    "cat >/dev/null",
    false,
    false,
    null,
    "install /opt/brightchain-gateway/brightchain-inbound.js (755 root:root)",
  ],
  [
    "recipient-registry",
    ["system-user"],
    ":",
    false,
    false,
    null,
    "create an empty recipient registry /etc/brightchain/recipients if there is none",
  ],
  ["firewall", ["packages", "file-usr-local-sbin-brightchain-firewall"], ":", false, false, null, "apply the host firewall"],
  [
    "certificate",
    [...RELAY_FILES, "firewall"],
    ":",
    false,
    false,
    null,
    "obtain the TLS certificate for mail2.brightchain.org (dns-01)",
  ],
  [
    "dane-keys",
    ["certificate"],
    COMMAND,
    false,
    false,
    null,
    "print the SHA-256 of each DANE key (mail2.brightchain.org) for the TLSA records",
  ],
  [
    "service-brightchain-lookup",
    [
      "file-etc-brightchain-gateway-env",
      "file-etc-systemd-system-brightchain-lookup-service",
      "file-opt-brightchain-gateway-brightchain-lookup-cjs",
      "recipient-registry",
      "certificate",
    ],
    ":",
    false,
    false,
    "brightchain-lookup",
    "enable brightchain-lookup and restart it on its configuration",
  ],
  [
    "service-certbot-timer",
    ["recipient-registry", "certificate"],
    ":",
    false,
    false,
    "certbot.timer",
    "enable certbot.timer and restart it on its configuration",
  ],
  [
    "service-prometheus-postfix-exporter",
    [
      "file-etc-default-prometheus-postfix-exporter",
      "file-etc-systemd-system-prometheus-postfix-exporter-service-d-brightchain-conf",
      "recipient-registry",
      "certificate",
    ],
    ":",
    false,
    false,
    "prometheus-postfix-exporter",
    "enable prometheus-postfix-exporter and restart it on its configuration",
  ],
  [
    "service-rspamd",
    [
      "file-etc-rspamd-local-d-actions-conf",
      "file-etc-rspamd-local-d-milter-headers-conf",
      "file-etc-rspamd-local-d-worker-controller-inc",
      "file-etc-rspamd-local-d-worker-normal-inc",
      "file-etc-rspamd-local-d-worker-proxy-inc",
      "recipient-registry",
      "certificate",
    ],
    ":",
    false,
    false,
    "rspamd",
    "enable rspamd and restart it on its configuration",
  ],
  [
    "postfix-check",
    [
      ...RELAY_FILES,
      "recipient-registry",
      "certificate",
      "service-brightchain-lookup",
      "service-certbot-timer",
      "service-prometheus-postfix-exporter",
      "service-rspamd",
    ],
    ":",
    false,
    false,
    null,
    "postfix check: refuse to reload a configuration Postfix itself rejects",
  ],
  ["postfix-reload", ["postfix-check"], ":", false, false, null, "enable Postfix and reload it (start it if stopped)"],
  [
    "retire-components",
    ["postfix-reload"],
    ":",
    false,
    false,
    null,
    "stop and disable the components this node no longer runs, and remove their files",
  ],
  [
    "verify",
    [
      "postfix-reload",
      "retire-components",
      "service-brightchain-lookup",
      "service-certbot-timer",
      "service-prometheus-postfix-exporter",
      "service-rspamd",
    ],
    COMMAND,
    false,
    false,
    null,
    "wait for Postfix to listen and the recipient lookup service to answer",
  ],
];

describe("every step of the example nodes, in plan order", () => {
  it("primary: id, after, update, secret marking, unit and description", () => {
    expect(planOf(examplePrimary).map(row)).toEqual(PRIMARY_TABLE);
  });

  it("relay: id, after, update, secret marking, unit and description", () => {
    expect(planOf(exampleRelay).map(row)).toEqual(RELAY_TABLE);
  });

  it("hostDeployment's steps are hostPlan's", () => {
    const node = examplePrimary;
    const deployment = hostDeployment(node, hostFiles(node, exampleSecrets), hostDirectories(node), artifacts);
    expect(deployment.steps).toEqual(planOf(node));
    expect(deployment.teardown).toBe(hostTeardown(node, hostFiles(node, exampleSecrets), artifacts));
  });

  it.each(nodeMatrix)("$name: a step with stdin updates by reading it away, and no other step does", ({ node }) => {
    for (const s of planOf(node)) {
      if (s.stdin !== undefined) expect(s.update, s.id).toBe("cat >/dev/null");
      else expect(s.update, s.id).not.toBe("cat >/dev/null");
    }
  });
});

// Hand-made files: what changes between two plans is then only what a test changes.
function files(node: GatewayNode, over: { envContent?: string; passwd?: string; firewall?: boolean } = {}): HostFile[] {
  const file = (path: string, content: string, notify: string[], extra: Partial<HostFile> = {}): HostFile => ({
    path,
    mode: 0o644,
    owner: "root",
    group: "root",
    content,
    notify,
    ...extra,
  });
  return [
    file("/etc/postfix/main.cf", "myhostname = mail\n", ["postfix"]),
    file("/etc/brightchain/gateway.env", over.envContent ?? "GATEWAY_A=1\n", ["brightchain-lookup"]),
    file("/etc/dovecot/brightchain-submission.passwd", over.passwd ?? "node:{PLAIN}one\n", ["dovecot"], {
      secret: true,
      mode: 0o640,
    }),
    file("/etc/systemd/system/brightchain-lookup.service", "[Service]\n", ["brightchain-lookup"]),
    ...(over.firewall === false ? [] : firewallFiles(node)),
  ];
}
const directories: HostDirectory[] = [
  { path: "/var/spool/brightchain", mode: 0o750, owner: "brightchain", group: "brightchain" },
];
const lookupArtifact = (content = "console.log(1)\n"): RuntimeArtifact[] => [{ name: "brightchain-lookup.cjs", content }];

function changedSteps(before: HostStep[], after: HostStep[]): string[] {
  const old = new Map(before.map((s) => [s.id, JSON.stringify(s.triggers)]));
  return after.filter((s) => old.get(s.id) !== JSON.stringify(s.triggers)).map((s) => s.id);
}
const base = (node = examplePrimary) => hostPlan(node, files(node), directories, lookupArtifact());

describe("a changed input re-runs exactly the steps that depend on it", () => {
  it("the system user's uid: the user step only", () => {
    const node: GatewayNode = { ...examplePrimary, drop: { ...examplePrimary.drop, uid: 3000 } };
    const after = hostPlan(node, files(node), directories, lookupArtifact());
    expect(changedSteps(base(), after)).toEqual([STEP_SYSTEM_USER]);
    expect(step(after, STEP_SYSTEM_USER).description).toBe("create the brightchain system user (uid 3000, gid 2526)");
  });

  it("the release: the release check and the packages, and the description names it", () => {
    const node = nodeMatrix.find((m) => m.name === "primary-debian-13-spamassassin-virtual")!.node;
    const debian12: GatewayNode = { ...node, os: exampleRelay.os };
    const after = hostPlan(debian12, files(debian12), directories, lookupArtifact());
    expect(changedSteps(base(node), after)).toEqual([STEP_OS_RELEASE]);
    expect(step(after, STEP_OS_RELEASE).description).toBe("check that the host runs debian-12");
  });

  it("the runtime program: its install, the unit that runs it, and the verification", () => {
    const after = hostPlan(examplePrimary, files(examplePrimary), directories, lookupArtifact("console.log(2)\n"));
    expect(changedSteps(base(), after)).toEqual([
      fileStepId("/opt/brightchain-gateway/brightchain-lookup.cjs"),
      serviceStepId("brightchain-lookup"),
      STEP_VERIFY,
    ]);
  });

  it("a secret file: its install, the service it notifies and the verification, all three with secret triggers", () => {
    const after = hostPlan(examplePrimary, files(examplePrimary, { passwd: "node:{PLAIN}two\n" }), directories, lookupArtifact());
    const changed = changedSteps(base(), after);
    expect(changed).toEqual([fileStepId("/etc/dovecot/brightchain-submission.passwd"), serviceStepId("dovecot"), STEP_VERIFY]);
    expect(changed.map((id) => [id, step(after, id).secret, step(after, id).secretTriggers])).toEqual([
      [fileStepId("/etc/dovecot/brightchain-submission.passwd"), true, true],
      [serviceStepId("dovecot"), false, true],
      [STEP_VERIFY, false, true],
    ]);
  });

  it("the SSH port: the firewall only", () => {
    const after = hostPlan(examplePrimary, files(examplePrimary), directories, lookupArtifact(), { sshPort: 2222 });
    expect(changedSteps(base(), after)).toEqual([STEP_FIREWALL]);
  });

  it("the DKIM selector: the key step, and its description and update name the new key", () => {
    const node: GatewayNode = { ...examplePrimary, dkim: { ...examplePrimary.dkim, selector: "mail2027" } };
    const after = hostPlan(node, files(node), directories, lookupArtifact());
    expect(changedSteps(base(), after)).toEqual([STEP_DKIM_KEY]);
    expect(step(after, STEP_DKIM_KEY).description).toBe(
      "generate the DKIM key mail2027 on the host if absent and print its public record",
    );
    expect(step(after, STEP_DKIM_KEY).update).toBe("cat /etc/dkim/mail2027.txt");
  });
});

describe("triggers", () => {
  const steps = base();

  it("every step's triggers hold its own command's hash once: last, or first where the step listed it itself (the firewall, the DANE keys)", () => {
    for (const s of steps) {
      expect(
        s.triggers.filter((t) => t === sha256(s.command)),
        s.id,
      ).toHaveLength(1);
      if (![STEP_FIREWALL, "dane-keys"].includes(s.id)) expect(s.triggers.at(-1), s.id).toBe(sha256(s.command));
    }
  });

  it("a file step: the hash of its path, mode, owner, group and content", () => {
    const mainCf = files(examplePrimary)[0]!;
    expect(step(steps, fileStepId(mainCf.path)).triggers[0]).toBe(
      sha256(JSON.stringify([mainCf.path, mainCf.mode, mainCf.owner, mainCf.group, mainCf.content])),
    );
  });

  it("a service no file notifies runs once: its name's hash; one a file notifies: those files' hashes", () => {
    const timer = step(steps, serviceStepId("certbot.timer"));
    expect(timer.triggers).toEqual([sha256("certbot.timer"), sha256(timer.command)]);
    const lookup = step(steps, serviceStepId("brightchain-lookup"));
    expect(lookup.triggers.slice(0, 3)).toEqual(
      [
        "/etc/brightchain/gateway.env",
        "/etc/systemd/system/brightchain-lookup.service",
        "/opt/brightchain-gateway/brightchain-lookup.cjs",
      ].map((path) => step(steps, fileStepId(path)).triggers[0]),
    );
  });

  it("Postfix's check and reload share main.cf's hash; the verification carries it and every service step's triggers", () => {
    const mainCf = step(steps, fileStepId("/etc/postfix/main.cf")).triggers[0]!;
    expect(step(steps, STEP_POSTFIX_CHECK).triggers).toEqual([mainCf, sha256(step(steps, STEP_POSTFIX_CHECK).command)]);
    expect(step(steps, STEP_POSTFIX_RELOAD).triggers).toEqual([mainCf, sha256(step(steps, STEP_POSTFIX_RELOAD).command)]);
    const services = steps.filter((s) => s.id.startsWith("service-"));
    expect(step(steps, STEP_VERIFY).triggers).toEqual([
      mainCf,
      ...services.flatMap((s) => s.triggers),
      sha256(step(steps, STEP_VERIFY).command),
    ]);
  });

  it("the firewall: its command's and the script file's hash", () => {
    const firewall = step(steps, STEP_FIREWALL);
    const script = step(steps, fileStepId("/usr/local/sbin/brightchain-firewall"));
    expect(firewall.triggers).toEqual([sha256(firewall.command), script.triggers[0]]);
  });

  it("no Postfix file: check and reload still run once, on Postfix's name", () => {
    const noMainCf = files(examplePrimary).filter((f) => f.path !== "/etc/postfix/main.cf");
    const plan = hostPlan(examplePrimary, noMainCf, directories);
    expect(step(plan, STEP_POSTFIX_RELOAD).triggers[0]).toBe(sha256("postfix"));
  });
});

describe("secret marking", () => {
  it.each(nodeMatrix)(
    "$name: a step is marked secret-triggered exactly when it shares a trigger with a secret step",
    ({ node }) => {
      const steps = planOf(node);
      const secretHashes = new Set(steps.filter((s) => s.secret).flatMap((s) => s.triggers));
      for (const s of steps) {
        if (s.secret) expect(s.secretTriggers, s.id).toBe(true);
        else expect(s.secretTriggers, s.id).toBe(s.triggers.some((t) => secretHashes.has(t)));
        expect(s.secret, s.id).toBe(
          s.id.startsWith("file-") && hostFiles(node, exampleSecrets).some((f) => f.secret && fileStepId(f.path) === s.id),
        );
      }
    },
  );

  it("a secret file's hash never leaves a step not marked: the primary's secret-triggered steps", () => {
    expect(
      planOf(examplePrimary)
        .filter((s) => s.secretTriggers)
        .map((s) => s.id),
    ).toEqual([
      "file-etc-brightchain-brightchain-send-env",
      "file-etc-dovecot-brightchain-submission-passwd",
      "file-etc-letsencrypt-cloudflare-ini",
      "service-dovecot",
      STEP_VERIFY,
    ]);
  });
});

describe("the DKIM rotation's steps", () => {
  const rotating: GatewayNode = {
    ...examplePrimary,
    dkim: { ...examplePrimary.dkim, selector: "mail2026", previous: { selector: "default", keepUntil: "2026-03-31" } },
  };
  const steps = planOf(rotating);

  it("the new key before any file, then the served check, then the previous record; opendkim.conf waits for the check", () => {
    expect(steps.slice(4, 8).map((s) => [s.id, s.after, s.update === s.command ? COMMAND : s.update, s.description])).toEqual([
      [
        STEP_DKIM_KEY,
        ["directories"],
        "cat /etc/dkim/mail2026.txt",
        "generate the DKIM key mail2026 on the host if absent and print its public record",
      ],
      [
        STEP_DKIM_SERVED,
        [STEP_DKIM_KEY, STEP_PACKAGES],
        ":",
        "wait until every authoritative server of brightchain.org serves the DKIM record of mail2026, before OpenDKIM signs with it",
      ],
      [
        STEP_DKIM_PREVIOUS,
        ["directories"],
        COMMAND,
        "print the record of the previous DKIM selector default, kept published until 2026-03-31",
      ],
      [
        "file-etc-brightchain-brightchain-send-env",
        ["directories"],
        "cat >/dev/null",
        "install /etc/brightchain/brightchain-send.env (640 root:brightchain)",
      ],
    ]);
    expect(step(steps, fileStepId("/etc/opendkim.conf")).after).toEqual(["directories", STEP_DKIM_SERVED]);
    expect(steps.filter((s) => s.id === STEP_DKIM_KEY)).toHaveLength(1);
  });

  it("the served check re-runs when the key step's command changes", () => {
    const served = step(steps, STEP_DKIM_SERVED);
    expect(served.triggers).toEqual([sha256(served.command), sha256(step(steps, STEP_DKIM_KEY).command)]);
  });

  it("a relay with a previous selector has no rotation steps", () => {
    const relay: GatewayNode = { ...exampleRelay, dkim: rotating.dkim };
    const ids = planOf(relay).map((s) => s.id);
    expect(ids.filter((id) => id.startsWith("dkim"))).toEqual([]);
  });
});

describe("the DANE switch's steps", () => {
  const certName = "mail.brightchain.org-2027";
  const switching: GatewayNode = {
    ...examplePrimary,
    tls: {
      ...examplePrimary.tls,
      certName,
      certFile: `/etc/letsencrypt/live/${certName}/fullchain.pem`,
      keyFile: `/etc/letsencrypt/live/${certName}/privkey.pem`,
    },
    dane: { previousLineage: "mail.brightchain.org" },
  };
  const steps = planOf(switching);

  it("the check after the packages, before main.cf; its description names both lineages; the key step names both", () => {
    expect(steps.slice(4, 5).map((s) => [s.id, s.after, s.description])).toEqual([
      [
        STEP_DANE_SWITCH,
        [STEP_PACKAGES],
        "check that every authoritative server of brightchain.org serves the TLSA records of mail.brightchain.org-2027 and mail.brightchain.org before Postfix serves mail.brightchain.org-2027",
      ],
    ]);
    expect(step(steps, fileStepId("/etc/postfix/main.cf")).after).toEqual(["directories", STEP_DANE_SWITCH]);
    expect(step(steps, fileStepId("/etc/opendkim.conf")).after).toEqual(["directories"]);
    const keys = step(steps, "dane-keys");
    expect(keys.description).toBe(
      "print the SHA-256 of each DANE key (mail.brightchain.org-2027, mail.brightchain.org) for the TLSA records",
    );
    expect(keys.triggers).toEqual([sha256(keys.command), sha256(step(steps, STEP_CERTIFICATE).command)]);
  });
});

describe("runtime programs", () => {
  it("a .js as well as a .cjs restarts the unit of its name; a unit file outside /etc/systemd/system does not count", () => {
    const node = examplePrimary;
    const own = [
      ...files(node),
      {
        path: "/etc/systemd/system/brightchain-inbound.service",
        mode: 0o644,
        owner: "root",
        group: "root",
        content: "[Service]\n",
        notify: ["brightchain-inbound"],
      },
      { path: "/etc/brightchain/brightchain-send.service", mode: 0o644, owner: "root", group: "root", content: "", notify: [] },
    ];
    const steps = hostPlan(node, own, directories, [
      { name: "brightchain-lookup.js", content: "a" },
      { name: "brightchain-inbound.cjs", content: "b" },
      { name: "brightchain-send.cjs", content: "c" },
      { name: "brightchain-lookup.mjs", content: "d" },
    ]);
    const programs = steps.filter((s) => s.id.startsWith("file-opt-"));
    expect(programs.map((s) => s.description)).toEqual([
      "install /opt/brightchain-gateway/brightchain-lookup.js (755 root:root)",
      "install /opt/brightchain-gateway/brightchain-inbound.cjs (755 root:root)",
      "install /opt/brightchain-gateway/brightchain-send.cjs (755 root:root)",
      "install /opt/brightchain-gateway/brightchain-lookup.mjs (755 root:root)",
    ]);
    expect(step(steps, serviceStepId("brightchain-lookup")).after).toContain(
      "file-opt-brightchain-gateway-brightchain-lookup-js",
    );
    expect(step(steps, serviceStepId("brightchain-lookup")).after).not.toContain(
      "file-opt-brightchain-gateway-brightchain-lookup-mjs",
    );
    expect(step(steps, serviceStepId("brightchain-inbound")).after).toContain(
      "file-opt-brightchain-gateway-brightchain-inbound-cjs",
    );
    expect(steps.map((s) => s.id)).not.toContain(serviceStepId("brightchain-send"));
  });
});

describe("the host files must hold the firewall script", () => {
  it("names the missing file and the step", () => {
    expect(() => hostPlan(examplePrimary, files(examplePrimary, { firewall: false }), directories)).toThrow(
      new Error("the host files lack /usr/local/sbin/brightchain-firewall; the firewall step has nothing to run"),
    );
  });
});

const STOP_UNIT_LINES = 7;
describe("what the retire step stops and removes", () => {
  const retire = (node: GatewayNode) => step(planOf(node), STEP_RETIRE).command.split("\n");

  it("primary (SpamAssassin): Rspamd's unit and files, sorted", () => {
    expect(retire(examplePrimary).slice(STOP_UNIT_LINES + 1)).toEqual([
      'for unit in rspamd; do stop_unit "$unit"; done',
      'for f in /etc/rspamd/local.d/actions.conf /etc/rspamd/local.d/milter_headers.conf /etc/rspamd/local.d/worker-controller.inc /etc/rspamd/local.d/worker-normal.inc /etc/rspamd/local.d/worker-proxy.inc; do if [ -e "$f" ]; then shred -u "$f"; fi; done',
    ]);
  });

  it("relay (Rspamd): OpenDKIM, SpamAssassin's two units and Dovecot; SpamAssassin's files", () => {
    expect(retire(exampleRelay).slice(STOP_UNIT_LINES + 1)).toEqual([
      'for unit in opendkim spamd spamass-milter dovecot; do stop_unit "$unit"; done',
      'for f in /etc/default/spamass-milter /etc/default/spamd /etc/spamassassin/local.cf; do if [ -e "$f" ]; then shred -u "$f"; fi; done',
    ]);
  });

  it("primary with submission off and http-01: Dovecot's files and the Cloudflare token go too", () => {
    const node: GatewayNode = {
      ...examplePrimary,
      submission: { enabled: false, saslBackend: "dovecot" },
      tls: { ...examplePrimary.tls, challenge: "http-01" },
    };
    const lines = retire(node);
    expect(lines.at(-2)).toBe('for unit in rspamd dovecot; do stop_unit "$unit"; done');
    const removed = /^for f in (.*?); do/.exec(lines.at(-1)!)![1]!.split(" ");
    expect(removed).toEqual([...removed].sort());
    expect(removed).toEqual(
      expect.arrayContaining([
        "/etc/dovecot/brightchain-submission.passwd",
        "/etc/dovecot/dovecot.conf",
        "/etc/letsencrypt/cloudflare.ini",
        "/etc/rspamd/local.d/actions.conf",
      ]),
    );
  });
});

describe("what the teardown stops", () => {
  const unitsLine = (node: GatewayNode) =>
    hostTeardown(node, hostFiles(node, exampleSecrets), artifacts)
      .split("\n")
      .filter((line) => line.startsWith("failed=") || line.startsWith("echo "));

  it("primary: Postfix, its own units, then every switchable component's, the timer left; the file count", () => {
    expect(unitsLine(examplePrimary)).toEqual([
      'failed=""; for unit in postfix brightchain-inbound brightchain-lookup dovecot opendkim prometheus-postfix-exporter spamass-milter spamd rspamd; do stop_unit "$unit" || failed="$failed $unit"; done',
      'echo "stopped and disabled postfix brightchain-inbound brightchain-lookup dovecot opendkim prometheus-postfix-exporter spamass-milter spamd rspamd; removed 20 files; kept the spool, the store, the firewall rules and the packages"',
    ]);
  });

  it("relay: what it never ran is stopped too (an earlier configuration may have started it)", () => {
    expect(unitsLine(exampleRelay)).toEqual([
      'failed=""; for unit in postfix brightchain-lookup prometheus-postfix-exporter rspamd opendkim spamd spamass-milter dovecot; do stop_unit "$unit" || failed="$failed $unit"; done',
      'echo "stopped and disabled postfix brightchain-lookup prometheus-postfix-exporter rspamd opendkim spamd spamass-milter dovecot; removed 17 files; kept the spool, the store, the firewall rules and the packages"',
    ]);
  });

  it("keepKeyOnDestroy keeps the DKIM key and says so", () => {
    const node: GatewayNode = { ...examplePrimary, dkim: { ...examplePrimary.dkim, keepKeyOnDestroy: true } };
    const lines = hostTeardown(node, hostFiles(node, exampleSecrets), artifacts).split("\n");
    expect(lines.some((line) => line.includes("/etc/dkim/"))).toBe(false);
    expect(lines.at(-1)).toContain("; removed 20 files; kept the DKIM key; kept the spool");
  });
});
