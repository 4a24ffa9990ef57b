// gateway:mtaSts, gateway:tlsRpt and gateway:caa: what each accepts, what a bad value says, and which stack's
// model carries them (the primary's only).
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { GatewayConfigError, parseGatewayConfig, readStackConfig, type FlatConfig } from "../../infra/model/config";

const repo = path.resolve(__dirname, "../..");
const primaryFlat = (): FlatConfig => readStackConfig(repo, "primary");
const relayFlat = (): FlatConfig => readStackConfig(repo, "relay");
const PEBBLE = "https://10.231.0.1:14000/dir";

function problems(flat: FlatConfig): string {
  try {
    parseGatewayConfig(flat);
  } catch (err) {
    if (err instanceof GatewayConfigError) return err.message;
    throw err;
  }
  throw new Error("expected a GatewayConfigError, but the configuration parsed");
}

describe("gateway:mtaSts, gateway:tlsRpt, gateway:caa in the model", () => {
  it("the example primary: testing for a week, the TLS-RPT address, Let's Encrypt with the iodef address", () => {
    const node = parseGatewayConfig(primaryFlat());
    expect(node.mtaSts).toEqual({ mode: "testing", maxAgeSeconds: 604800 });
    expect(node.tlsRpt).toEqual({ rua: ["mailto:tls-reports@brightchain.org"] });
    expect(node.caa).toEqual({ issuer: "letsencrypt.org", iodef: "mailto:security@brightchain.org" });
  });

  it("defaults: MTA-STS testing for 604800 s, no TLS-RPT, CAA letsencrypt.org (also for its staging server)", () => {
    const flat = primaryFlat();
    for (const key of ["gateway:mtaSts", "gateway:tlsRpt", "gateway:caa"]) delete flat[key];
    const node = parseGatewayConfig(flat);
    expect(node.mtaSts).toEqual({ mode: "testing", maxAgeSeconds: 604800 });
    expect(node.tlsRpt).toBeUndefined();
    expect(node.caa).toEqual({ issuer: "letsencrypt.org" });
    const staging = parseGatewayConfig({
      ...flat,
      "gateway:acmeServer": "https://acme-staging-v02.api.letsencrypt.org/directory",
    });
    expect(staging.caa).toEqual({ issuer: "letsencrypt.org" });
  });

  it("another ACME server: no CAA unless gateway:caa.issuer names its CA (and then with accounturi and iodef)", () => {
    expect(parseGatewayConfig({ ...primaryFlat(), "gateway:acmeServer": PEBBLE }).caa).toBeUndefined();
    const named = parseGatewayConfig({
      ...primaryFlat(),
      "gateway:acmeServer": "https://acme.sectigo.com/v2/DV",
      "gateway:caa": JSON.stringify({
        issuer: "sectigo.com",
        accountUri: "https://acme.sectigo.com/v2/DV/account/abc",
        iodef: "https://ca-reports.brightchain.org/iodef",
      }),
    });
    expect(named.caa).toEqual({
      issuer: "sectigo.com",
      accountUri: "https://acme.sectigo.com/v2/DV/account/abc",
      iodef: "https://ca-reports.brightchain.org/iodef",
    });
  });

  it("a relay's model carries none of them: the primary's stack publishes the domain's records", () => {
    const relay = parseGatewayConfig(relayFlat());
    expect(relay.mtaSts).toBeUndefined();
    expect(relay.tlsRpt).toBeUndefined();
    expect(relay.caa).toBeUndefined();
  });

  it("enforce and a day's max_age; a single rua URI as a string", () => {
    const node = parseGatewayConfig({
      ...primaryFlat(),
      "gateway:mtaSts": '{"mode":"enforce","maxAge":"86400"}',
      "gateway:tlsRpt": '{"rua":"https://reports.example/tlsrpt"}',
    });
    expect(node.mtaSts).toEqual({ mode: "enforce", maxAgeSeconds: 86400 });
    expect(node.tlsRpt).toEqual({ rua: ["https://reports.example/tlsrpt"] });
  });
});

describe("a bad value names the key, the value and what is accepted", () => {
  it.each([
    ['{"mode":"strict"}', 'gateway:mtaSts.mode="strict" is invalid; expected testing, enforce, none'],
    ['{"maxAge":60}', 'gateway:mtaSts.maxAge="60" is invalid; expected seconds from 86400 (a day) to 31557600 (a year)'],
    ['{"maxAge":99999999}', "expected seconds from 86400 (a day) to 31557600 (a year)"],
    ['{"mode":"enforce","max_age":604800}', "gateway:mtaSts.max_age"],
    ["enforce", 'gateway:mtaSts="enforce" is invalid; expected {"mode":"testing|enforce|none","maxAge":604800}'],
  ])("gateway:mtaSts %s", (value, message) => {
    expect(problems({ ...primaryFlat(), "gateway:mtaSts": value })).toContain(message);
  });

  it.each([
    ['{"rua":["http://reports.example/tlsrpt"]}', 'gateway:tlsRpt.rua[0]="http://reports.example/tlsrpt" is invalid'],
    ['{"rua":["tls@brightchain.org"]}', "expected a mailto: or https:// URI"],
    ['{"rua":["mailto:a@brightchain.org,mailto:b@brightchain.org"]}', 'without , ; or "'],
    ['{"rua":["mailto:a@b.org","https://x.example/a;b"]}', 'gateway:tlsRpt.rua[1]="https://x.example/a;b" is invalid'],
  ])("gateway:tlsRpt %s", (value, message) => {
    expect(problems({ ...primaryFlat(), "gateway:tlsRpt": value })).toContain(message);
  });

  it.each([
    ['{"issuer":"Let\'s Encrypt"}', "gateway:caa.issuer=\"Let's Encrypt\" is invalid; expected the CA's issuer domain name"],
    ['{"iodef":"mailto:security@brightchain.org\\""}', 'gateway:caa.iodef="mailto:security@brightchain.org\\"" is invalid'],
    ['{"accountUri":"https://acme-v02.api.letsencrypt.org/acme/acct/1;x"}', "gateway:caa.accountUri="],
    [
      '{"accountUri":"https://acme-staging-v02.api.letsencrypt.org/acme/acct/1"}',
      'gateway:caa.accountUri="https://acme-staging-v02.api.letsencrypt.org/acme/acct/1" is invalid; expected an account URL on the ACME server gateway:acmeServer (https://acme-v02.api.letsencrypt.org/…)',
    ],
    ['{"issuer":"letsencrypt.org","wild":true}', "gateway:caa.wild"],
  ])("gateway:caa %s", (value, message) => {
    expect(problems({ ...primaryFlat(), "gateway:caa": value })).toContain(message);
  });

  it("an accountUri with an unknown CA is left unused (the lab's pebble), not refused", () => {
    const node = parseGatewayConfig({
      ...primaryFlat(),
      "gateway:acmeServer": PEBBLE,
      "gateway:caa": '{"accountUri":"https://acme-v02.api.letsencrypt.org/acme/acct/1"}',
    });
    expect(node.caa).toBeUndefined();
  });
});
