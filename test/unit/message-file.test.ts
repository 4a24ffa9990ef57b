// The drop file reader on its own, in this process (docs/testing.md, "Mutation score": Stryker sees only code
// that runs here): what it reads of a message, which entries it refuses and with what reason, the header
// fields it hands on and the summary the store indexes. Real files in a temporary directory; open(2) and
// fstat(2) answers that no file can give a root test process (EACCES, a file that changes size after it was
// checked) are simulated for named paths only, everything else goes to node:fs.
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import {
  constants,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  Stats,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import {
  entryKind,
  headerFields,
  MAX_HEADER_BYTES,
  openDropFile,
  scanMessageFile,
  summarizeHeaders,
  UnprocessableMessageError,
} from "../../runtime/src/inbound/message-file";

const faults = vi.hoisted(() => ({
  /** open(2) fails with this code for this path. */
  openErrors: new Map<string, string>(),
  /** fstat(2) of the file at this path reports this size (the file changed after it was checked). */
  fstatSizes: new Map<string, number>(),
}));

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>();
  return {
    ...actual,
    openSync: (path: import("node:fs").PathLike, flags: import("node:fs").OpenMode, mode?: import("node:fs").Mode) => {
      const code = faults.openErrors.get(String(path));
      if (code !== undefined) throw Object.assign(new Error(`${code}: simulated, open '${String(path)}'`), { code });
      return actual.openSync(path, flags, mode);
    },
    fstatSync: (fd: number) => {
      const stats = actual.fstatSync(fd);
      const size = faults.fstatSizes.get(actual.readlinkSync(`/proc/self/fd/${fd}`));
      if (size !== undefined) stats.size = size;
      return stats;
    },
  };
});

const dir = realpathSync(mkdtempSync(join(tmpdir(), "bc-message-file-")));
let files = 0;
afterEach(() => {
  faults.openErrors.clear();
  faults.fstatSizes.clear();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function dropFile(content: string | Buffer): string {
  files += 1;
  const path = join(dir, `${files}.drop`);
  writeFileSync(path, content);
  return path;
}

const sha3 = (bytes: string | Buffer) => createHash("sha3-512").update(bytes).digest("hex");

/** Descriptors of this process open on `path`: a drop file left open leaks one per message until EMFILE. */
function descriptorsOpenOn(path: string): number {
  let count = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) count += 1;
    } catch {
      // The descriptor readdir itself used, closed by now.
    }
  }
  return count;
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UnprocessableMessageError);
  return (error as Error).message;
}

const MiB = 1024 * 1024;
const header = "Delivered-To: alice@brightchain.org\r\nSubject: hi\r\n\r\n";

describe("scanMessageFile: the header section it keeps", () => {
  it("keeps a CRLF message's headers up to and including the blank line, and hashes every byte", async () => {
    const message = `${header}body line\r\n\r\nsecond paragraph\r\n`;
    expect(await scanMessageFile(dropFile(message), MiB)).toEqual({
      sha3: sha3(message),
      size: Buffer.byteLength(message),
      headerSection: Buffer.from(header),
    });
  });

  it("ends an LF-only header section at its first blank line", async () => {
    const scanned = await scanMessageFile(dropFile("Delivered-To: alice@brightchain.org\nSubject: hi\n\nbody\n\nmore\n"), MiB);
    expect(scanned.headerSection.toString()).toBe("Delivered-To: alice@brightchain.org\nSubject: hi\n\n");
  });

  it("ends a mixed header section at whichever blank line comes first, CRLF or LF", async () => {
    const lfFirst = "Delivered-To: alice@brightchain.org\r\nSubject: hi\n\nbody\r\n\r\nmore\r\n";
    expect((await scanMessageFile(dropFile(lfFirst), MiB)).headerSection.toString()).toBe(
      "Delivered-To: alice@brightchain.org\r\nSubject: hi\n\n",
    );
    const crlfFirst = `${header}body\n\nmore\n`;
    expect((await scanMessageFile(dropFile(crlfFirst), MiB)).headerSection.toString()).toBe(header);
  });

  it("takes a message with headers and no body at all (RFC 5322 makes the body optional) as all header", async () => {
    const message = "Delivered-To: alice@brightchain.org\r\nSubject: no body";
    expect((await scanMessageFile(dropFile(message), MiB)).headerSection.toString()).toBe(`${message}\r\n\r\n`);
  });

  it(`accepts a header section of exactly ${MAX_HEADER_BYTES} bytes with no blank line, refuses one byte more`, async () => {
    const filler = (length: number) => `X-Filler: ${"a".repeat(length - "X-Filler: ".length)}`;
    const atLimit = filler(MAX_HEADER_BYTES);
    expect((await scanMessageFile(dropFile(atLimit), MiB)).headerSection.length).toBe(MAX_HEADER_BYTES + 4);
    expect(await refusal(scanMessageFile(dropFile(filler(MAX_HEADER_BYTES + 1)), MiB))).toBe(
      `no end of the header section within the first ${MAX_HEADER_BYTES} bytes`,
    );
  });
});

describe("scanMessageFile: a message over 1 MiB, streamed", () => {
  it("keeps a 100 KiB header section whole, though it spans two read chunks, and hashes every byte", async () => {
    const longHeader = `Delivered-To: alice@brightchain.org\r\n${`X-Long: ${"b".repeat(990)}\r\n`.repeat(100)}\r\n`;
    const message = Buffer.concat([Buffer.from(longHeader), Buffer.alloc(2 * MiB, "c")]);
    expect(await scanMessageFile(dropFile(message), 4 * MiB)).toEqual({
      sha3: sha3(message),
      size: message.length,
      headerSection: Buffer.from(longHeader),
    });
  });

  it(`refuses one with no blank line in its first ${MAX_HEADER_BYTES} bytes`, async () => {
    const message = Buffer.concat([Buffer.from("Delivered-To: alice@brightchain.org\r\nX-Junk: "), Buffer.alloc(2 * MiB, "d")]);
    expect(await refusal(scanMessageFile(dropFile(message), 4 * MiB))).toBe(
      `no end of the header section within the first ${MAX_HEADER_BYTES} bytes`,
    );
  });
});

describe("scanMessageFile: the size limit", () => {
  for (const [what, size] of [
    ["read whole", 4096],
    ["streamed", 2 * MiB],
  ] as const) {
    it(`accepts a file of exactly the limit and refuses one byte more, unread (${what})`, async () => {
      const message = Buffer.concat([Buffer.from(header), Buffer.alloc(size - header.length, "e")]);
      expect((await scanMessageFile(dropFile(message), size)).size).toBe(size);
      expect(await refusal(scanMessageFile(dropFile(message), size - 1))).toBe(
        `${size} bytes, over the ${size - 1}-byte limit for a drop file (GATEWAY_MAX_MESSAGE_SIZE plus 1048576 bytes ` +
          "for the headers delivery adds); not read",
      );
    });
  }

  it("refuses a file that grows past the limit while it is streamed", async () => {
    const path = dropFile(Buffer.concat([Buffer.from(header), Buffer.alloc(3 * MiB, "f")]));
    faults.fstatSizes.set(path, 2 * MiB);
    expect(await refusal(scanMessageFile(path, 2 * MiB + 1))).toBe(
      `grew past the ${2 * MiB + 1}-byte limit for a drop file while it was read`,
    );
  });

  it("reads no more of a small file than the size it checked against the limit, though the file grew since", async () => {
    const first = `${header}first part\r\n`;
    const path = dropFile(`${first}appended after the check\r\n`);
    faults.fstatSizes.set(path, Buffer.byteLength(first));
    expect(await scanMessageFile(path, MiB)).toMatchObject({ sha3: sha3(first), size: Buffer.byteLength(first) });
  });

  it("hashes what is there of a file cut short after it was checked", async () => {
    const message = `${header}short\r\n`;
    const path = dropFile(message);
    faults.fstatSizes.set(path, 10_000);
    expect(await scanMessageFile(path, MiB)).toMatchObject({ sha3: sha3(message), size: Buffer.byteLength(message) });
  });

  it("refuses an empty file", async () => {
    expect(await refusal(scanMessageFile(dropFile(""), MiB))).toBe("the file is empty");
  });

  it("leaves no descriptor open on a file it read whole, streamed or refused", async () => {
    const small = dropFile(`${header}small\r\n`);
    const large = dropFile(Buffer.concat([Buffer.from(header), Buffer.alloc(2 * MiB, "g")]));
    await scanMessageFile(small, MiB);
    await scanMessageFile(large, 4 * MiB);
    await refusal(scanMessageFile(large, MiB));
    expect([descriptorsOpenOn(small), descriptorsOpenOn(large)]).toEqual([0, 0]);
  });
});

describe("entries in new/ that are not message files", () => {
  it("refuses a directory and a socket by what they are", async () => {
    const directory = join(dir, "a-directory");
    mkdirSync(directory);
    expect(await refusal(scanMessageFile(directory, MiB))).toBe("a directory, not a message file");

    const socketPath = join(dir, "a-socket");
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      expect(await refusal(scanMessageFile(socketPath, MiB))).toBe("not a regular file (open: ENXIO)");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("never follows a symbolic link, and names where it points", async () => {
    const link = join(dir, "a-link");
    symlinkSync("/etc/passwd", link);
    expect(await refusal(scanMessageFile(link, MiB))).toBe('a symbolic link to "/etc/passwd": links in new/ are never followed');
    // A target that is not UTF-8 is named by its bytes, one character each (latin1), not as U+FFFD.
    const oddLink = join(dir, "a-link-to-latin1");
    symlinkSync(Buffer.from("/tmp/caf\xe9", "latin1"), oddLink);
    expect(await refusal(scanMessageFile(oddLink, MiB))).toBe(
      'a symbolic link to "/tmp/caf\u00e9": links in new/ are never followed',
    );
    // Replaced by something else between the open and the readlink: the open's answer is still the reason.
    const gone = join(dir, "a-link-gone-since");
    faults.openErrors.set(gone, "ELOOP");
    expect(() => openDropFile(gone)).toThrow(new UnprocessableMessageError("a symbolic link: links in new/ are never followed"));
  });

  it("names every kind of entry in the reason file", () => {
    const fifo = join(dir, "a-fifo");
    execFileSync("mkfifo", [fifo]);
    const ofMode = (type: number) => Object.assign(Object.create(Stats.prototype) as Stats, { mode: type | 0o600 });
    expect({
      directory: entryKind(statSync(dir)),
      fifo: entryKind(lstatSync(fifo)),
      socket: entryKind(ofMode(constants.S_IFSOCK)),
      characterDevice: entryKind(statSync("/dev/null")),
      blockDevice: entryKind(ofMode(constants.S_IFBLK)),
      symbolicLink: entryKind(lstatSync(join(dir, "a-link"))),
      unknown: entryKind(ofMode(0)),
    }).toEqual({
      directory: "a directory",
      fifo: "a FIFO",
      socket: "a socket",
      characterDevice: "a character device",
      blockDevice: "a block device",
      symbolicLink: "a symbolic link",
      unknown: "not a regular file",
    });
  });

  it("refuses a file it may not read, and one open(2) says is not a regular file, naming the code", () => {
    const reasons: Record<string, string> = {};
    for (const code of ["EACCES", "EPERM", "ENXIO", "ENODEV", "EOPNOTSUPP"]) {
      const path = join(dir, `open-${code}`);
      faults.openErrors.set(path, code);
      try {
        openDropFile(path);
      } catch (error) {
        expect(error).toBeInstanceOf(UnprocessableMessageError);
        reasons[code] = (error as Error).message;
      }
    }
    expect(reasons).toEqual({
      EACCES: "cannot be read (EACCES): files in new/ must be readable by the daemon's user",
      EPERM: "cannot be read (EPERM): files in new/ must be readable by the daemon's user",
      ENXIO: "not a regular file (open: ENXIO)",
      ENODEV: "not a regular file (open: ENODEV)",
      EOPNOTSUPP: "not a regular file (open: EOPNOTSUPP)",
    });
  });

  it("throws what may pass (a file gone, too many open files) as it is, to be retried or skipped", async () => {
    const busy = join(dir, "open-EMFILE");
    faults.openErrors.set(busy, "EMFILE");
    expect(() => openDropFile(busy)).toThrow(expect.objectContaining({ code: "EMFILE" }));
    const error = await scanMessageFile(join(dir, "never-written"), MiB).catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(UnprocessableMessageError);
    expect(error).toMatchObject({ code: "ENOENT" });
  });

  it("is an error by its own name in logs", () => {
    expect(new UnprocessableMessageError("x").name).toBe("UnprocessableMessageError");
  });
});

const fieldsOf = (section: string) => [...headerFields(Buffer.from(section))];

describe("headerFields", () => {
  it("reads CRLF and LF-only lines alike, the last field included", () => {
    const expected = [
      { name: "delivered-to", value: "alice@brightchain.org" },
      { name: "subject", value: "hi" },
    ];
    expect(fieldsOf("Delivered-To: alice@brightchain.org\r\nSubject: hi\r\n\r\n")).toEqual(expected);
    expect(fieldsOf("Delivered-To: alice@brightchain.org\nSubject: hi\n\n")).toEqual(expected);
    expect(fieldsOf("Delivered-To: alice@brightchain.org\r\nSubject: hi")).toEqual(expected);
  });

  it("unfolds continuation lines starting with a space or a tab into one value", () => {
    expect(fieldsOf("Subject: a long\r\n  subject\r\n\t\t folded twice\r\nTo: bob@example.net\r\n\r\n")).toEqual([
      { name: "subject", value: "a long subject folded twice" },
      { name: "to", value: "bob@example.net" },
    ]);
  });

  it("takes a name with spaces before its colon, and skips lines that are not fields", () => {
    expect(
      fieldsOf(
        " leading continuation\r\nSubject : spaced\r\nno colon here\r\n: no name\r\nX Bad: space in name\r\nTo: x\r\nstray line\r\n\r\n",
      ),
    ).toEqual([
      { name: "subject", value: "spaced" },
      { name: "to", value: "x" },
    ]);
  });

  it("stops at the blank line: the body is not read as headers", () => {
    expect(fieldsOf("Subject: hi\r\n\r\nX-Spam-Score: 100\r\n")).toEqual([{ name: "subject", value: "hi" }]);
  });

  it("yields nothing for an empty header section", () => {
    expect(fieldsOf("")).toEqual([]);
    expect(fieldsOf("\r\n\r\n")).toEqual([]);
  });
});

const summaryOf = (lines: string[]) => summarizeHeaders(Buffer.from(`${lines.join("\r\n")}\r\n\r\n`));

describe("summarizeHeaders: what the store indexes", () => {
  it("reads recipient, Message-ID, From, Subject and Date, the first of each", () => {
    expect(
      summaryOf([
        "Delivered-To: <Alice@BrightChain.org>",
        "Delivered-To: bob@brightchain.org",
        "From: Sender <sender@example.net>",
        "From: other@example.net",
        "Subject: =?utf-8?q?caf=C3=A9?= menu",
        "Subject: second",
        "Message-ID: <m1@example.net>",
        "Message-ID: <m2@example.net>",
        "Date: Tue, 24 Nov 2026 10:00:00 +0100",
        "Date: Wed, 25 Nov 2026 10:00:00 +0000",
      ]),
    ).toEqual({
      recipient: "alice@brightchain.org",
      messageId: "<m1@example.net>",
      from: '"Sender" <sender@example.net>',
      subject: "café menu",
      date: "2026-11-24T09:00:00.000Z",
    });
  });

  it("leaves out what the message does not have, or has unreadable", () => {
    expect(summaryOf(["Delivered-To: alice@brightchain.org"])).toEqual({ recipient: "alice@brightchain.org" });
    expect(summaryOf(["Delivered-To: alice@brightchain.org", "Message-ID:  ", "Date: not a date"])).toEqual({
      recipient: "alice@brightchain.org",
    });
  });

  it("writes a Message-ID without its angle brackets with them, and decodes an encoded one", () => {
    const idOf = (value: string) => summaryOf(["Delivered-To: alice@brightchain.org", `Message-ID: ${value}`]).messageId;
    expect([idOf("m@x"), idOf("<m@x"), idOf("m@x>"), idOf("<m@x>"), idOf("=?utf-8?q?_<m@x>_?=")]).toEqual([
      "<m@x>",
      "<m@x>",
      "<m@x>",
      "<m@x>",
      "<m@x>",
    ]);
  });

  it("cuts an indexed field at 998 characters, RFC 5322's line limit", () => {
    const summary = summaryOf(["Delivered-To: alice@brightchain.org", `Subject: ${"s".repeat(2000)}`]);
    expect(summary.subject).toBe("s".repeat(998));
  });

  it("refuses a header section without header lines, without Delivered-To, or with one that is not an address", () => {
    const reason = (lines: string[]) => {
      try {
        summaryOf(lines);
        return "accepted";
      } catch (error) {
        expect(error).toBeInstanceOf(UnprocessableMessageError);
        return (error as Error).message;
      }
    };
    expect(reason(["not a header", "neither"])).toBe("no RFC 5322 header lines in the header section");
    expect(reason(["Subject: hi"])).toBe("no Delivered-To header: the envelope recipient is unknown");
    expect(reason(["Delivered-To: not an address"])).toBe('Delivered-To "not an address" is not a mail address');
    expect(reason(["Delivered-To: al<ice@brightchain.org"])).toBe('Delivered-To "al<ice@brightchain.org" is not a mail address');
    expect(reason(["Delivered-To: alice>@brightchain.org"])).toBe('Delivered-To "alice>@brightchain.org" is not a mail address');
  });
});
