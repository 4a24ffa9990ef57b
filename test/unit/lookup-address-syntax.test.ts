// Which socketmap keys are plain addresses (runtime/src/lookup/address.ts), checked without a socket: the
// dot-atom local part, the RFC 5321 lengths, the domain syntax used when no served domains are given, and what
// the +extension fallback may look up. A key refused here is answered NOTFOUND, never looked up.
import { describe, expect, it } from "vitest";
import { normalizeAddress, parseRecipientKey } from "../../runtime/src/lookup/address";

const served = new Set(["brightchain.org"]);
/** A domain of `length` characters made of valid labels (63, 63, then the rest, then ".org"). */
function domainOfLength(length: number): string {
  const rest = length - 4 - 64 - 64;
  return `${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(rest)}.org`;
}

describe("parseRecipientKey: the local part", () => {
  it.each(["alice.smith@brightchain.org", "a.b.c@brightchain.org", "o'neil&co!#$%*/=?^_`{|}~-@brightchain.org"])(
    "accepts the dot-atom %s",
    (key) => {
      expect(parseRecipientKey(key, served)?.address).toBe(key);
      expect(parseRecipientKey(key)?.address).toBe(key);
    },
  );

  it.each([
    ["a leading dot", ".alice@brightchain.org"],
    ["a trailing dot", "alice.@brightchain.org"],
    ["consecutive dots", "alice..smith@brightchain.org"],
    ["a lone dot", ".@brightchain.org"],
    ["a parenthesis", "al(ice@brightchain.org"],
    ["a space inside", "al ice@brightchain.org"],
    ["a quote", '"alice"@brightchain.org'],
    ["a non-ASCII letter", "alicé@brightchain.org"],
    ["a character just above ASCII", "ali\u0080ce@brightchain.org"],
    ["a DEL", "ali\u007fce@brightchain.org"],
  ])("refuses %s", (_why, key) => {
    expect(parseRecipientKey(key, served)).toBeUndefined();
    expect(parseRecipientKey(key)).toBeUndefined();
  });

  it("refuses a key without @, with nothing before it, and with an empty key", () => {
    for (const key of ["alice", "alice.brightchain.org", "@brightchain.org", "", "   ", "."]) {
      expect(parseRecipientKey(key, served), key).toBeUndefined();
    }
  });

  it("accepts a local part of exactly 64 characters and refuses 65", () => {
    expect(parseRecipientKey(`${"a".repeat(64)}@brightchain.org`, served)?.at).toBe(64);
    expect(parseRecipientKey(`${"a".repeat(65)}@brightchain.org`, served)).toBeUndefined();
    expect(parseRecipientKey(`${"a".repeat(65)}@brightchain.org`)).toBeUndefined();
  });

  it("accepts an address of exactly 254 characters and refuses 255", () => {
    const exact = `${"a".repeat(64)}@${domainOfLength(189)}`;
    const over = `${"a".repeat(64)}@${domainOfLength(190)}`;
    expect(exact).toHaveLength(254);
    expect(over).toHaveLength(255);
    expect(parseRecipientKey(exact)?.address).toBe(exact);
    expect(parseRecipientKey(exact, new Set([domainOfLength(189)]))?.address).toBe(exact);
    expect(parseRecipientKey(over)).toBeUndefined();
    expect(parseRecipientKey(over, new Set([domainOfLength(190)]))).toBeUndefined();
  });
});

describe("parseRecipientKey: what Postfix may send around the address", () => {
  it("lowercases and trims the key, and drops the trailing dot of the DNS root", () => {
    expect(parseRecipientKey("  Alice@BrightChain.ORG \t", served)).toEqual({ address: "alice@brightchain.org", at: 5 });
    expect(parseRecipientKey("alice@brightchain.org.", served)).toEqual({ address: "alice@brightchain.org", at: 5 });
    expect(parseRecipientKey("alice@mail.example.org.")?.address).toBe("alice@mail.example.org");
  });

  it("splits a +extension off the local part only when there is a user part before it", () => {
    expect(parseRecipientKey("alice+news@brightchain.org", served)).toEqual({
      address: "alice+news@brightchain.org",
      at: 10,
      withoutExtension: "alice@brightchain.org",
    });
    expect(parseRecipientKey("alice+a+b@brightchain.org", served)?.withoutExtension).toBe("alice@brightchain.org");
    // "+tag@domain": nothing to fall back to, as Postfix leaves such a local part unsplit.
    expect(parseRecipientKey("+news@brightchain.org", served)).toEqual({ address: "+news@brightchain.org", at: 5 });
    expect(parseRecipientKey("alice@brightchain.org", served)?.withoutExtension).toBeUndefined();
  });
});

describe("parseRecipientKey: the domain, without served domains", () => {
  it.each(["alice@example.org", "alice@a.org", "alice@mail.a.example.org", "alice@x-1.example.museum", "alice@9.example.org"])(
    "accepts %s",
    (key) => {
      expect(parseRecipientKey(key)?.address).toBe(key);
    },
  );

  it.each([
    ["a label starting with -", "alice@-mail.example.org"],
    ["a label ending with -", "alice@mail-.example.org"],
    ["a single label", "alice@localhost"],
    ["a digit in the top-level label", "alice@example.org1"],
    ["a one-letter top-level label", "alice@example.o"],
    ["an empty label", "alice@mail..example.org"],
    ["a leading dot", "alice@.example.org"],
    ["an underscore", "alice@mail_relay.example.org"],
    ["a label of 64 characters", `alice@${"m".repeat(64)}.example.org`],
    ["a second @", "alice@bob@example.org"],
  ])("refuses %s", (_why, key) => {
    expect(parseRecipientKey(key)).toBeUndefined();
  });

  it("accepts a label of 63 characters", () => {
    const key = `alice@${"m".repeat(63)}.example.org`;
    expect(parseRecipientKey(key)?.address).toBe(key);
  });
});

describe("normalizeAddress", () => {
  it("names the local part and the domain of the lowercased address", () => {
    expect(normalizeAddress(" Alice.Smith+News@Mail.Example.ORG. ")).toEqual({
      address: "alice.smith+news@mail.example.org",
      local: "alice.smith+news",
      domain: "mail.example.org",
    });
    expect(normalizeAddress("bob@brightchain.org", served)).toEqual({
      address: "bob@brightchain.org",
      local: "bob",
      domain: "brightchain.org",
    });
  });

  it("is undefined for a key outside the served domains or malformed", () => {
    expect(normalizeAddress("bob@example.org", served)).toBeUndefined();
    expect(normalizeAddress("bob@sub.brightchain.org", served)).toBeUndefined();
    expect(normalizeAddress("bob..x@brightchain.org", served)).toBeUndefined();
  });
});
