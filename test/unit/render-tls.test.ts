import { releaseOs } from "../../infra/model/releases";
import { describe, expect, it } from "vitest";
import { acmeInboundPorts, certbotIssueCommand, certbotRenewTimer, renderDeployHook, tlsFiles } from "../../infra/render/tls";
import { examplePrimary, exampleSecrets, nodeMatrix } from "../fixtures/nodes";
import type { GatewayNode } from "../../infra/model/types";

describe("TLS / certbot renderer", () => {
  it.each(nodeMatrix)("$name: issue command is non-interactive, idempotent and pinned to the hostname", ({ node }) => {
    const command = certbotIssueCommand(node);
    const host = node.host.hostname;
    for (const part of [
      "certbot certonly",
      "--non-interactive",
      "--agree-tos",
      "-m postmaster@brightchain.org",
      "--server https://acme-v02.api.letsencrypt.org/directory",
      `--cert-name ${host}`,
      "--keep-until-expiring",
      `-d ${host}`,
    ]) {
      expect(command).toContain(part);
    }
    if (node.tls.challenge === "dns-01") {
      expect(command).toContain("--dns-cloudflare --dns-cloudflare-credentials /etc/letsencrypt/cloudflare.ini");
      expect(command).not.toContain("--standalone");
      expect(acmeInboundPorts(node)).toEqual([]);
    } else {
      expect(command).toContain("--preferred-challenges http --standalone");
      expect(acmeInboundPorts(node)).toEqual([80]);
    }
  });

  it.each(nodeMatrix)("$name: files: a 0755 deploy hook, and a 0600 secret credentials file for dns-01 only", ({ node }) => {
    const files = tlsFiles(node, exampleSecrets);
    expect(files.find((f) => f.path === "/etc/letsencrypt/renewal-hooks/deploy/brightchain-postfix")).toMatchObject({
      mode: 0o755,
    });
    const credentials = files.find((f) => f.path === "/etc/letsencrypt/cloudflare.ini");
    if (node.tls.challenge === "dns-01") {
      expect(credentials).toMatchObject({ mode: 0o600, owner: "root", secret: true });
      expect(credentials!.content).toContain("dns_cloudflare_api_token = cf-test-token-not-real\n");
    } else {
      expect(credentials).toBeUndefined();
    }
  });

  it("dns-01 without a token fails naming the secret, without echoing a token", () => {
    expect(() => tlsFiles(examplePrimary, { submissionUsers: [] })).toThrow(
      /secrets\.certbotCloudflareToken is not set.*tls\.challenge=http-01/,
    );
    expect(() => tlsFiles(examplePrimary, { submissionUsers: [], certbotCloudflareToken: "ab cd" })).toThrow(
      /contains whitespace/,
    );
  });

  it("the deploy hook checks before it reloads and fails loudly", () => {
    const hook = renderDeployHook(examplePrimary);
    expect(hook.startsWith("#!/bin/sh\n")).toBe(true);
    expect(hook.indexOf("postfix check")).toBeLessThan(hook.indexOf("postfix reload"));
    expect(hook).toMatch(/if ! postfix check; then\n.*\n {2}exit 1/);
  });

  it("quotes values the shell would split", () => {
    const node: GatewayNode = { ...examplePrimary, tls: { ...examplePrimary.tls, acmeEmail: "ops team@x.org" } };
    expect(certbotIssueCommand(node)).toContain("-m 'ops team@x.org'");
  });

  it("names the renewal timer each distribution ships", () => {
    expect(certbotRenewTimer(examplePrimary)).toBe("certbot.timer");
    expect(certbotRenewTimer({ ...examplePrimary, os: releaseOs("rhel-9") })).toBe("certbot-renew.timer");
  });
});
