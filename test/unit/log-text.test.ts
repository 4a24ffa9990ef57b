// How names from new/ and error texts appear in the inbound daemon's journal: one line, one token per name,
// nothing a terminal would act on.
import { describe, expect, it } from "vitest";
import { oneLine, printableName } from "../../runtime/src/inbound/log-text";

describe("printableName", () => {
  it("shows a plain Postfix name as it is", () => {
    expect(printableName("1733550000.V801I4a2M12345.mail:2,S")).toBe("1733550000.V801I4a2M12345.mail:2,S");
  });

  it("quotes any other name, escaping the backslash, the quote, control bytes, DEL and bytes above ASCII", () => {
    expect(printableName('a b\\c"d\te\x7f\xff~')).toBe('"a b\\\\c\\"d\\x09e\\x7f\\xff~"');
    expect(printableName("line\nforged: entry")).toBe('"line\\x0aforged: entry"');
  });
});

describe("oneLine", () => {
  it("writes C0, DEL, C1 and the Unicode line separators as escapes, and leaves other text alone", () => {
    expect(oneLine("a\x07b\nc\r\x1bd\x7fe\x85f\u2028g\u2029h ÿ é €")).toBe(
      "a\\x07b\\x0ac\\x0d\\x1bd\\x7fe\\x85f\\u2028g\\u2029h ÿ é €",
    );
  });
});
