import { describe, expect, it } from "vitest";
import { parseStraceOutput, succeeded } from "../helpers/syscall-trace";

// Lines as strace 6.1 writes them with -f -y -o FILE (pids, fd paths, an interrupted call in two halves).
const TRACE = [
  `100 link("/d/new/m1", "/s/objects/ab/cd" <unfinished ...>`,
  `101 fsync(21</s/objects/ab>) = 0`,
  `100 <... link resumed>)             = -1 EXDEV (Invalid cross-device link)`,
  `102 renameat(AT_FDCWD</work>, "tmp/x", 7</s/objects/ab>, "cd") = 0`,
  `102 write(18</s/index.jsonl>, "{\\"sha3\\":\\"abcd\\"}\\n", 16) = 16`,
  `100 --- SIGTERM {si_signo=SIGTERM, si_code=SI_USER, si_pid=1} ---`,
  `100 +++ exited with 0 +++`,
].join("\n");

describe("parseStraceOutput", () => {
  const calls = parseStraceOutput(TRACE);

  it("joins an interrupted call's two halves into one record spanning both lines, in order of entry", () => {
    expect(calls.map((call) => [call.pid, call.name, call.entered, call.returned])).toEqual([
      [100, "link", 0, 2],
      [101, "fsync", 1, 1],
      [102, "renameat", 3, 3],
      [102, "write", 4, 4],
    ]);
    expect(calls[0]!.result).toBe("-1 EXDEV (Invalid cross-device link)");
    expect(succeeded(calls[0]!)).toBe(false);
    expect(succeeded(calls[1]!)).toBe(true);
  });

  it("names descriptors by -y's path and makes *at paths absolute against their directory descriptor", () => {
    expect(calls[0]!.paths).toEqual(["/d/new/m1", "/s/objects/ab/cd"]);
    expect(calls[1]!.fdPath).toBe("/s/objects/ab");
    expect(calls[2]!.paths).toEqual(["/work/tmp/x", "/s/objects/ab/cd"]);
    expect(calls[3]!.fdPath).toBe("/s/index.jsonl");
    expect(calls[3]!.args).toContain('\\"sha3\\":\\"abcd\\"');
  });
});
