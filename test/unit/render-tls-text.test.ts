// The TLS renderer's text word for word: the certbot command a host step runs, the renewal-settings fix, the
// deploy hook and the credentials file. Each part is what an operator reads in a log or on the host, so a flag or
// a line that changes silently must fail here (the mutation run found several that did).
import { describe, expect, it } from "vitest";
import {
  certbotIssueCommand,
  renderCloudflareCredentials,
  renderDeployHook,
  renewalConfPath,
  reuseKeyCommand,
  tlsFiles,
} from "../../infra/render/tls";
import type { GatewayNode } from "../../infra/model/types";
import { examplePrimary } from "../fixtures/nodes";

const http01: GatewayNode = { ...examplePrimary, tls: { ...examplePrimary.tls, challenge: "http-01" } };

describe("certbot's issue command, exactly", () => {
  it("dns-01: Cloudflare's plugin with the credentials file and a 30 s propagation wait", () => {
    expect(certbotIssueCommand(examplePrimary)).toBe(
      "certbot certonly --non-interactive --agree-tos -m postmaster@brightchain.org" +
        " --server https://acme-v02.api.letsencrypt.org/directory --cert-name mail.brightchain.org" +
        " --keep-until-expiring --reuse-key -d mail.brightchain.org" +
        " --preferred-challenges dns --dns-cloudflare --dns-cloudflare-credentials /etc/letsencrypt/cloudflare.ini" +
        " --dns-cloudflare-propagation-seconds 30",
    );
  });

  it("http-01: the standalone server, and a lineage other than the host name when asked", () => {
    expect(certbotIssueCommand(http01, "mail.brightchain.org-0001")).toBe(
      "certbot certonly --non-interactive --agree-tos -m postmaster@brightchain.org" +
        " --server https://acme-v02.api.letsencrypt.org/directory --cert-name mail.brightchain.org-0001" +
        " --keep-until-expiring --reuse-key -d mail.brightchain.org --preferred-challenges http --standalone",
    );
  });

  it("quotes a value with a quote or a space so sh reads it back unchanged", () => {
    const node: GatewayNode = { ...examplePrimary, tls: { ...examplePrimary.tls, acmeEmail: "o'brien x@brightchain.org" } };
    expect(certbotIssueCommand(node)).toContain(`-m 'o'\\''brien x@brightchain.org' --server`);
    // Every character of the conservative set passes unquoted.
    const plain: GatewayNode = { ...examplePrimary, tls: { ...examplePrimary.tls, acmeEmail: "A_z+9%=:,./-@x.org" } };
    expect(certbotIssueCommand(plain)).toContain("-m A_z+9%=:,./-@x.org --server");
    // Anchored at both ends: a word that only starts or only ends with safe characters is quoted.
    for (const email of ["ok@x.org;rm", "$(id)ok@x.org"]) {
      const node2: GatewayNode = { ...examplePrimary, tls: { ...examplePrimary.tls, acmeEmail: email } };
      expect(certbotIssueCommand(node2)).toContain(`-m '${email}' --server`);
    }
  });
});

describe("the renewal settings' reuse_key", () => {
  it("is fixed in the lineage's renewal file only when the exact line is missing", () => {
    expect(renewalConfPath("mail.brightchain.org")).toBe("/etc/letsencrypt/renewal/mail.brightchain.org.conf");
    expect(reuseKeyCommand("mail.brightchain.org").split("\n")).toEqual([
      "if ! grep -qx 'reuse_key = True' /etc/letsencrypt/renewal/mail.brightchain.org.conf; then",
      "  sed -i '/^reuse_key *=/d' /etc/letsencrypt/renewal/mail.brightchain.org.conf",
      "  grep -q '^\\[renewalparams\\]' /etc/letsencrypt/renewal/mail.brightchain.org.conf || printf '\\n[renewalparams]\\n' >> /etc/letsencrypt/renewal/mail.brightchain.org.conf",
      "  sed -i '/^\\[renewalparams\\]/a reuse_key = True' /etc/letsencrypt/renewal/mail.brightchain.org.conf",
      "fi",
    ]);
  });
});

describe("the deploy hook and the credentials file", () => {
  it("the hook's every line: refuse on a failed check, report a failed reload, say what it reloaded", () => {
    expect(renderDeployHook(examplePrimary).split("\n")).toEqual([
      "#!/bin/sh",
      "# Rendered by brightchain-gateway: reload Postfix after certbot renews mail.brightchain.org.",
      "set -u",
      "if ! postfix check; then",
      `  echo "brightchain-postfix: 'postfix check' failed; not reloading, Postfix still serves the old certificate for \${RENEWED_LINEAGE:-mail.brightchain.org}" >&2`,
      "  exit 1",
      "fi",
      "if ! postfix reload; then",
      `  echo "brightchain-postfix: 'postfix reload' failed; the renewed certificate is not served yet" >&2`,
      "  exit 1",
      "fi",
      `echo "brightchain-postfix: Postfix reloaded for \${RENEWED_LINEAGE:-mail.brightchain.org}"`,
      "",
    ]);
  });

  it("the credentials file holds the token on its own line after a comment naming its scope", () => {
    expect(renderCloudflareCredentials("tok")).toBe(
      "# Rendered by brightchain-gateway. Cloudflare API token with Zone:DNS:Edit on the mail domain only.\n" +
        "dns_cloudflare_api_token = tok\n",
    );
  });

  it("dns-01: the hook root-owned, the credentials root-only and secret; http-01: the hook alone", () => {
    const files = tlsFiles(examplePrimary, { submissionUsers: [], certbotCloudflareToken: "tok" });
    expect(files).toEqual([
      {
        path: "/etc/letsencrypt/renewal-hooks/deploy/brightchain-postfix",
        mode: 0o755,
        owner: "root",
        group: "root",
        content: renderDeployHook(examplePrimary),
        notify: [],
      },
      {
        path: "/etc/letsencrypt/cloudflare.ini",
        mode: 0o600,
        owner: "root",
        group: "root",
        content: renderCloudflareCredentials("tok"),
        secret: true,
        notify: [],
      },
    ]);
    expect(tlsFiles(http01, { submissionUsers: [] }).map((f) => f.path)).toEqual([
      "/etc/letsencrypt/renewal-hooks/deploy/brightchain-postfix",
    ]);
  });

  it("a token that is not set, empty, blank or holds whitespace: the error says which, never the token", () => {
    const message = (token: string | undefined) => {
      try {
        tlsFiles(examplePrimary, { submissionUsers: [], certbotCloudflareToken: token });
      } catch (error) {
        return (error as Error).message;
      }
      return "no error";
    };
    const accepted =
      "but tls.challenge=dns-01 needs it; accepted: a Cloudflare API token without whitespace, or tls.challenge=http-01";
    expect(message(undefined)).toBe(`secrets.certbotCloudflareToken is not set, ${accepted}`);
    expect(message("")).toBe(`secrets.certbotCloudflareToken is empty, ${accepted}`);
    expect(message("   ")).toBe(`secrets.certbotCloudflareToken is empty, ${accepted}`);
    expect(message("secret\tvalue")).toBe(`secrets.certbotCloudflareToken contains whitespace, ${accepted}`);
    expect(message("secret\tvalue")).not.toContain("secret\tvalue");
  });
});
