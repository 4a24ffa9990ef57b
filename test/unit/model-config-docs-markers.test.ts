// docs/configuration.md's generated part is found by its two markers: a page that lost either, or has them in the
// wrong order, is refused with both markers named (rewriting it would drop the hand-written text); with both, only
// the text between them is replaced, markers kept, the rest byte for byte.
import { describe, expect, it } from "vitest";
import { DOC_BEGIN, DOC_END, withGeneratedTables } from "../../infra/model/config-docs";

const lost = `docs/configuration.md has lost its markers ${DOC_BEGIN} … ${DOC_END}`;

describe("withGeneratedTables", () => {
  it("refuses a page without the begin marker, without the end marker, or with them swapped", () => {
    expect(() => withGeneratedTables(`intro\n${DOC_END}\n`)).toThrow(lost);
    expect(() => withGeneratedTables(`intro\n${DOC_BEGIN}\n`)).toThrow(lost);
    expect(() => withGeneratedTables(`${DOC_END}\n${DOC_BEGIN}\n`)).toThrow(lost);
  });

  it("replaces only what lies between the markers, the begin marker at the very start included", () => {
    const page = withGeneratedTables(`${DOC_BEGIN}\nstale\n${DOC_END}\nafter`);
    expect(page.startsWith(`${DOC_BEGIN}\n`)).toBe(true);
    expect(page.endsWith(`\n${DOC_END}\nafter`)).toBe(true);
    expect(page).not.toContain("stale");
    expect(page).toContain("| `gateway:domain` |");
    expect(withGeneratedTables(`before\n${page}`)).toBe(`before\n${page}`);
  });
});
