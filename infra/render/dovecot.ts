// Dovecot as nothing but the SASL backend of the primary's submission port.
// A complete /etc/dovecot/dovecot.conf rather than a conf.d drop-in: Debian's and RHEL's stock conf.d enable
// PAM (system accounts could then authenticate to port 587) and IMAP/POP listeners; one file owned by us
// behaves the same on both families and leaves nothing of the package defaults in play.
import { createHash, createHmac } from "node:crypto";
import { releaseFacts } from "../model/releases";
import type { GatewayNode, GatewaySecrets, HostFile } from "../model/types";
import { DOVECOT_AUTH_SOCKET } from "./postfix";

export const DOVECOT_CONF_PATH = "/etc/dovecot/dovecot.conf";
export const SUBMISSION_PASSWD_PATH = "/etc/dovecot/brightchain-submission.passwd";
/** Postfix's queue directory + its smtpd_sasl_path; both distributions use /var/spool/postfix. */
export const POSTFIX_AUTH_LISTENER = `/var/spool/postfix/${DOVECOT_AUTH_SOCKET}`;

const CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SHA512_CRYPT_ROUNDS = 5000;

function sha512(...parts: Buffer[]): Buffer {
  const hash = createHash("sha512");
  for (const part of parts) hash.update(part);
  return hash.digest();
}

/** `len` bytes taken cyclically from `digest`, as SHA-crypt builds its P and S sequences. */
function repeatTo(digest: Buffer, len: number): Buffer {
  const out = Buffer.alloc(len);
  for (let i = 0; i < len; i++) out[i] = digest[i % digest.length]!;
  return out;
}

function cryptBase64(bytes: Buffer, order: number[][]): string {
  let out = "";
  for (const group of order) {
    let value = 0;
    for (const index of group) value = (value << 8) | bytes[index]!;
    const chars = group.length === 3 ? 4 : group.length === 1 ? 2 : 3;
    for (let i = 0; i < chars; i++) {
      out += CRYPT_ALPHABET[value & 0x3f];
      value >>>= 6;
    }
  }
  return out;
}

// Byte order of the final SHA-512 digest in the crypt encoding (Drepper's SHA-crypt specification).
const SHA512_ORDER: number[][] = (() => {
  const groups: number[][] = [];
  let a = 0;
  let b = 21;
  let c = 42;
  for (let i = 0; i < 21; i++) {
    groups.push([a, b, c]);
    [a, b, c] = [b + 1, c + 1, a + 1];
  }
  groups.push([63]);
  return groups;
})();

/** glibc's $6$ (SHA512-CRYPT) with the default 5000 rounds; Dovecot verifies it through crypt(3). */
export function sha512Crypt(password: string, salt: string): string {
  if (!/^[./0-9A-Za-z]{1,16}$/.test(salt)) {
    throw new Error(`salt=${JSON.stringify(salt)} is invalid; accepted: 1 to 16 characters of [./0-9A-Za-z]`);
  }
  const key = Buffer.from(password, "utf8");
  const saltBytes = Buffer.from(salt, "ascii");
  const alternate = sha512(key, saltBytes, key);
  const initial = createHash("sha512").update(key).update(saltBytes).update(repeatTo(alternate, key.length));
  for (let n = key.length; n > 0; n >>= 1) initial.update(n & 1 ? alternate : key);
  let digest = initial.digest();

  const keyHash = createHash("sha512");
  for (let i = 0; i < key.length; i++) keyHash.update(key);
  const pSequence = repeatTo(keyHash.digest(), key.length);
  const saltHash = createHash("sha512");
  for (let i = 0; i < 16 + digest[0]!; i++) saltHash.update(saltBytes);
  const sSequence = repeatTo(saltHash.digest(), saltBytes.length);

  for (let round = 0; round < SHA512_CRYPT_ROUNDS; round++) {
    const step = createHash("sha512");
    step.update(round & 1 ? pSequence : digest);
    if (round % 3 !== 0) step.update(sSequence);
    if (round % 7 !== 0) step.update(pSequence);
    step.update(round & 1 ? digest : pSequence);
    digest = step.digest();
  }
  return `$6$${salt}$${cryptBase64(digest, SHA512_ORDER)}`;
}

/**
 * A salt derived from the username and password, so re-rendering the same secrets yields the same file (no
 * spurious diff, no needless reload) while two users with one password still get different hashes.
 */
function deterministicSalt(username: string, password: string): string {
  const mac = createHmac("sha256", `brightchain-submission-salt:${username}`).update(password).digest();
  let salt = "";
  for (let i = 0; i < 16; i++) salt += CRYPT_ALPHABET[mac[i]! & 0x3f];
  return salt;
}

function checkedUsers(secrets: GatewaySecrets): GatewaySecrets["submissionUsers"] {
  const users = secrets.submissionUsers;
  if (users.length === 0) {
    throw new Error("secrets.submissionUsers is empty; accepted: at least one { username, password } for port 587");
  }
  const seen = new Set<string>();
  for (const [index, user] of users.entries()) {
    if (!/^[A-Za-z0-9._@+-]{1,64}$/.test(user.username)) {
      throw new Error(
        `secrets.submissionUsers[${index}].username=${JSON.stringify(user.username)} is invalid; accepted: 1-64 characters of letters, digits and . _ @ + -`,
      );
    }
    if (seen.has(user.username)) {
      throw new Error(
        `secrets.submissionUsers[${index}].username=${JSON.stringify(user.username)} is a duplicate; accepted: unique usernames`,
      );
    }
    seen.add(user.username);
    if (user.password.length < 12 || /[\r\n]/.test(user.password)) {
      throw new Error(
        `secrets.submissionUsers[${index}].password (for ${user.username}) is invalid; accepted: at least 12 characters, no line breaks`,
      );
    }
  }
  return users;
}

export function renderSubmissionPasswd(secrets: GatewaySecrets): string {
  return checkedUsers(secrets)
    .map(
      (user) => `${user.username}:{SHA512-CRYPT}${sha512Crypt(user.password, deterministicSalt(user.username, user.password))}\n`,
    )
    .join("");
}

/** Postfix's end of SASL: the same in 2.3 and 2.4. */
const authListener = `service auth {
  unix_listener ${POSTFIX_AUTH_LISTENER} {
    mode = 0660
    user = postfix
    group = postfix
  }
}
`;

export function renderDovecotConf(node: GatewayNode): string {
  return releaseFacts(node.os).dovecot === "2.4" ? renderDovecot24Conf(node) : renderDovecot23Conf(node);
}

function renderDovecot23Conf(node: GatewayNode): string {
  return `# Dovecot for ${node.host.hostname}: SASL authentication for Postfix submission only. Rendered by brightchain-gateway.
# No IMAP/POP/LMTP: the gateway stores nothing users read here.
protocols =
# TLS is Postfix's job on port 587; Dovecot only sees the local auth socket.
ssl = no
auth_mechanisms = plain login
# Only the accounts rendered from the stack's secrets, never system (PAM/passwd) accounts.
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u ${SUBMISSION_PASSWD_PATH}
}
# Dovecot insists on a userdb; SASL never uses it, so a static one with an unprivileged identity suffices.
userdb {
  driver = static
  args = uid=dovenull gid=dovenull home=/nonexistent
}
${authListener}`;
}

/**
 * Dovecot 2.4 (Debian 13) refuses 2.3 files outright ("The first setting must be dovecot_config_version") and
 * replaced passdb/userdb `args` with named blocks and typed settings. The behaviour is the same as the 2.3 file.
 */
function renderDovecot24Conf(node: GatewayNode): string {
  return `# Dovecot for ${node.host.hostname}: SASL authentication for Postfix submission only. Rendered by brightchain-gateway.
# Dovecot 2.4 syntax: these two must come first, and pin the meaning of every default below to 2.4.0.
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
# No IMAP/POP/LMTP: the gateway stores nothing users read here.
protocols =
# TLS is Postfix's job on port 587; Dovecot only sees the local auth socket.
ssl = no
auth_mechanisms = plain login
# Only the accounts rendered from the stack's secrets, never system (PAM/passwd) accounts. Usernames as given:
# 2.4's default format lowercases them, which would let "Node" and "node" share one account.
passdb passwd-file {
  default_password_scheme = SHA512-CRYPT
  auth_username_format = %{user}
  passwd_file_path = ${SUBMISSION_PASSWD_PATH}
}
# Dovecot insists on a userdb; SASL never uses it, so a static one with an unprivileged identity suffices.
userdb static {
  fields {
    uid = dovenull
    gid = dovenull
    home = /nonexistent
  }
}
${authListener}`;
}

/** Empty for relays: they take no submissions. */
export function dovecotFiles(node: GatewayNode, secrets: GatewaySecrets): HostFile[] {
  if (node.role !== "primary" || node.submission === undefined || !node.submission.enabled) return [];
  return [
    { path: DOVECOT_CONF_PATH, mode: 0o644, owner: "root", group: "root", content: renderDovecotConf(node), notify: ["dovecot"] },
    {
      path: SUBMISSION_PASSWD_PATH,
      mode: 0o640,
      owner: "root",
      group: "dovecot",
      content: renderSubmissionPasswd(secrets),
      secret: true,
      notify: ["dovecot"],
    },
  ];
}
