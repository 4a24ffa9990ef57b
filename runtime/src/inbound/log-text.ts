// What the inbound daemon writes to the journal is one line per event, whatever a file name holds. Names in new/
// are bytes chosen by whoever wrote the file: a newline in one would start a forged journal line, an escape
// sequence would rewrite the operator's terminal.

/** Printable ASCII except the space, the backslash and the double quote: shown as they are. */
const PLAIN = /^[!#-[\]-~]+$/;

/**
 * A drop file's name (a latin1 string: one character per byte of the name on disk) as it appears in a log line:
 * as is when it is plain printable ASCII, which every Postfix and brightchain-maildrop name is; otherwise in
 * double quotes with every byte outside printable ASCII written \xNN (and \\ and \"), so one name is one
 * unambiguous token on one line.
 */
export function printableName(name: string): string {
  if (PLAIN.test(name)) return name;
  let text = '"';
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code === 0x5c) text += "\\\\";
    else if (code === 0x22) text += '\\"';
    else if (code >= 0x20 && code < 0x7f) text += name[i];
    else text += `\\x${(code & 0xff).toString(16).padStart(2, "0")}`;
  }
  return `${text}"`;
}

/**
 * A whole log message with its control characters (C0, DEL, C1, and the Unicode line and paragraph separators)
 * written \xNN / \uNNNN: error texts from Node carry the paths they failed on, and a path carries a name.
 */
export function oneLine(message: string): string {
  // eslint-disable-next-line no-control-regex
  return message.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `\\u${code.toString(16)}` : `\\x${code.toString(16).padStart(2, "0")}`;
  });
}
