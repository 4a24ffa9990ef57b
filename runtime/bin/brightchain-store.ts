// brightchain-store: what a person uses to look into the embedded store (--store DIR, else GATEWAY_STORE_DIR as
// gateway.env sets it, else the contract's default).
//   brightchain-store list [--recipient ADDRESS] [--folder inbox|spam] [--json]
//   brightchain-store show SHA3-OR-UNIQUE-PREFIX        (the raw message, as received, on stdout; exit 1 when
//                                                       its bytes no longer match their SHA3-512)
import { createHash } from "node:crypto";
import { closeSync, constants, createReadStream, fstatSync, openSync } from "node:fs";
import { FlagError, parseCommandLine } from "../../shared/cli-flags";
import { ConfigError, loadStoreConfig } from "../src/config";
import { objectPath, readStoreIndex, type StoreIndexEntry } from "../src/store/content-addressed-store";

const USAGE = `usage: brightchain-store list [--recipient ADDRESS] [--folder inbox|spam] [--json] [--store DIR]
       brightchain-store show SHA3 [--store DIR]   (a unique prefix of at least 8 hex digits is enough)`;
const EX_USAGE = 64;
const EX_CONFIG = 78;

function fail(code: number, message: string): never {
  process.stderr.write(`brightchain-store: ${message}\n`);
  process.exit(code);
}

function row(entry: StoreIndexEntry): string {
  const clean = (text: string | undefined): string => (text ?? "-").replace(/[\t\r\n]+/g, " ");
  return [
    entry.receivedAt,
    entry.folder,
    entry.recipient,
    clean(entry.from),
    clean(entry.subject),
    String(entry.size),
    entry.sha3.slice(0, 16),
  ].join("\t");
}

async function main(): Promise<void> {
  let parsed;
  try {
    // Two positionals: the sub-command and its operand (show's SHA3).
    parsed = parseCommandLine(
      process.argv.slice(2),
      { recipient: { type: "string" }, folder: { type: "string" }, json: { type: "boolean" }, store: { type: "string" } },
      2,
    );
  } catch (error) {
    if (error instanceof FlagError) fail(EX_USAGE, `${error.message}\n${USAGE}`);
    throw error;
  }
  const { values, positionals } = parsed;
  let storeDir: string;
  try {
    storeDir = values.store ?? loadStoreConfig().storeDir;
  } catch (error) {
    if (error instanceof ConfigError) fail(EX_CONFIG, error.message);
    throw error;
  }
  if (!storeDir.startsWith("/")) fail(EX_USAGE, `--store ${JSON.stringify(storeDir)} is invalid; expected an absolute path`);
  const [verb, argument] = positionals;
  const entries = await readStoreIndex(storeDir);

  if (verb === "list" && argument === undefined) {
    if (values.folder !== undefined && values.folder !== "inbox" && values.folder !== "spam") {
      fail(EX_USAGE, `--folder ${JSON.stringify(values.folder)} is not a folder; expected inbox or spam`);
    }
    const recipient = values.recipient?.toLowerCase();
    const selected = entries.filter(
      (e) =>
        (recipient === undefined || e.recipient === recipient) && (values.folder === undefined || e.folder === values.folder),
    );
    if (values.json === true) {
      for (const entry of selected) process.stdout.write(`${JSON.stringify(entry)}\n`);
    } else {
      process.stdout.write("received\tfolder\trecipient\tfrom\tsubject\tsize\tsha3\n");
      for (const entry of selected) process.stdout.write(`${row(entry)}\n`);
    }
    return;
  }

  if (verb === "show" && argument !== undefined) {
    const prefix = argument.toLowerCase();
    if (!/^[0-9a-f]{8,128}$/.test(prefix))
      fail(EX_USAGE, `${JSON.stringify(argument)} is not a SHA3-512 or a prefix of at least 8 hex digits`);
    const matches = [...new Set(entries.map((e) => e.sha3).filter((sha3) => sha3.startsWith(prefix)))];
    if (matches.length === 0) fail(1, `no message ${prefix} in ${storeDir}`);
    if (matches.length > 1) fail(1, `prefix ${prefix} matches ${matches.length} messages; give more digits`);
    const sha3 = matches[0]!;
    // An object is a regular file the daemon linked or copied: never follow a link, never wait on a FIFO,
    // whatever was put in its place.
    const path = objectPath(storeDir, sha3);
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      fail(
        1,
        code === "ELOOP"
          ? `object ${sha3.slice(0, 16)}… is a symbolic link, not a stored message: not shown`
          : (error as Error).message,
      );
    }
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      fail(1, `object ${sha3.slice(0, 16)}… is not a regular file, not a stored message: not shown`);
    }
    // The object is the Maildir file in cur/ (one inode): anything that edited that file in place changed the
    // stored message too. The bytes are shown as they are, and the mismatch is said, not hidden.
    const hash = createHash("sha3-512");
    await new Promise<void>((resolve, reject) => {
      const stream = createReadStream(path, { fd });
      stream.on("data", (chunk) => hash.update(chunk));
      stream.on("error", reject);
      stream.on("end", resolve);
      stream.pipe(process.stdout);
    });
    if (hash.digest("hex") !== sha3) {
      fail(
        1,
        `object ${sha3.slice(0, 16)}… no longer matches its SHA3-512: it changed on disk after it was stored (was its Maildir file in cur/ edited in place?)`,
      );
    }
    return;
  }

  fail(EX_USAGE, USAGE);
}

main().catch((error: unknown) => fail(1, (error as Error).message));
