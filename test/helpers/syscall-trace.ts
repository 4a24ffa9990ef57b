// Reads `strace -f -y -o FILE` output into one record per system call, in the order strace saw them, so a test
// can ask "did this fsync return before that write was issued". A call another thread interrupted is printed
// twice ("<unfinished ...>", then "<... name resumed>"): it becomes one record, from its first line to its
// last. Order between threads is causal here: a thread stopped at a syscall's exit cannot go on (and wake the
// thread that issues the next call) until strace has printed that exit.
import { posix } from "node:path";

export interface Syscall {
  pid: number;
  name: string;
  /** The argument text as strace printed it (both halves of an interrupted call). */
  args: string;
  /** What follows "= ": "0", "-1 EXDEV (Invalid cross-device link)", "20</path>". */
  result: string;
  /** Line of the call's entry and of its return: a before b when a.returned < b.entered. */
  entered: number;
  returned: number;
  /** The first argument's descriptor as -y names it (fsync, fdatasync, write): the file's path then. */
  fdPath?: string;
  /** Every path argument, made absolute against its directory descriptor (AT_FDCWD</cwd>, 5</dir>). */
  paths: string[];
}

const ENTRY = /^(\w+)\((.*)$/;
const RESUMED = /^<\.\.\. (\w+) resumed>(.*)$/;
const UNFINISHED = / <unfinished \.\.\.>$/;
const RETURN = /\)\s+= (.*)$/;
const PATH_ARGUMENT = /(?:\w+<([^>]*)>,\s*)?"((?:[^"\\]|\\.)*)"/g;

export function parseStraceOutput(text: string): Syscall[] {
  const calls: Syscall[] = [];
  const open = new Map<number, Syscall>();
  text.split("\n").forEach((raw, line) => {
    const match = /^(?:\[pid\s+)?(\d+)\]?\s+(.*)$/.exec(raw);
    if (match === null) return;
    const pid = Number(match[1]);
    const rest = match[2]!;
    const resumed = RESUMED.exec(rest);
    if (resumed !== null) {
      const call = open.get(pid);
      if (call === undefined || call.name !== resumed[1]) return;
      open.delete(pid);
      finish(call, resumed[2]!, line);
      calls.push(call);
      return;
    }
    const entry = ENTRY.exec(rest);
    if (entry === null) return; // "--- SIGTERM ---", "+++ exited with 0 +++"
    const call: Syscall = { pid, name: entry[1]!, args: "", result: "", entered: line, returned: line, paths: [] };
    if (UNFINISHED.test(rest)) {
      call.args = entry[2]!.replace(UNFINISHED, "");
      open.set(pid, call);
    } else {
      finish(call, entry[2]!, line);
      calls.push(call);
    }
  });
  // Completed calls in the order they returned would reorder entries; keep strace's order of entry.
  return calls.sort((a, b) => a.entered - b.entered);
}

function finish(call: Syscall, tail: string, line: number): void {
  const returned = RETURN.exec(tail);
  call.args += returned === null ? tail : tail.slice(0, returned.index);
  call.result = returned?.[1]?.trim() ?? "?";
  call.returned = line;
  call.fdPath = /^\d+<([^>]*)>/.exec(call.args)?.[1];
  call.paths = [...call.args.matchAll(PATH_ARGUMENT)].map(([, dir, quoted]) => {
    const path = quoted!.replace(/\\(.)/g, "$1");
    return path.startsWith("/") || dir === undefined ? path : posix.join(dir, path);
  });
}

export function succeeded(call: Syscall): boolean {
  return !call.result.startsWith("-1") && call.result !== "?";
}
