// The spool renderer's path checks: each configured directory must be absolute, without a newline (main.cf and
// the script are line-based) or a single quote (the script quotes drop_dir with them); the error names the field
// and the value. Trailing slashes are dropped so Maildir's tmp/new/cur are never written with a double slash.
import { describe, expect, it } from "vitest";
import type { GatewayNode } from "../../infra/model/types";
import { renderMaildropScript, spoolDirectories, spoolFiles } from "../../infra/render/spool";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";

const withDrop = (drop: Partial<GatewayNode["drop"]>): GatewayNode => ({
  ...examplePrimary,
  drop: { ...examplePrimary.drop, ...drop },
});
const accepted = "is invalid; accepted: an absolute path without quotes or newlines";

describe("spool paths", () => {
  it.each([
    ["drop.spoolDir", withDrop({ spoolDir: "var/spool" }), `drop.spoolDir="var/spool" ${accepted}`],
    [
      "drop.mailDropDir (newline)",
      withDrop({ mailDropDir: "/var/in\ncoming" }),
      `drop.mailDropDir="/var/in\\ncoming" ${accepted}`,
    ],
    ["drop.mailDropDir (quote)", withDrop({ mailDropDir: "/var/in'coming" }), `drop.mailDropDir="/var/in'coming" ${accepted}`],
    ["drop.errorDir", withDrop({ errorDir: "errors/" }), `drop.errorDir="errors/" ${accepted}`],
    [
      "runtime.storeDir",
      { ...examplePrimary, runtime: { ...examplePrimary.runtime, storeDir: "./store" } },
      `runtime.storeDir="./store" ${accepted}`,
    ],
  ])("%s: refused with the field and its value", (_name, node, message) => {
    expect(() => spoolDirectories(node)).toThrow(message);
  });

  it("the maildrop script refuses a drop directory it could not quote", () => {
    expect(() => renderMaildropScript(withDrop({ mailDropDir: "/var/in'coming" }))).toThrow(
      `drop.mailDropDir="/var/in'coming" ${accepted}`,
    );
  });

  it("trailing slashes are dropped, every one", () => {
    const node: GatewayNode = {
      ...withDrop({ spoolDir: "/spool//", mailDropDir: "/spool/in/", errorDir: "/spool/err///" }),
      runtime: { ...examplePrimary.runtime, storeDir: "/spool/store/" },
    };
    expect(spoolDirectories(node).map((d) => d.path)).toEqual([
      "/spool",
      "/spool/in",
      "/spool/in/tmp",
      "/spool/in/new",
      "/spool/in/cur",
      "/spool/err",
      "/spool/store",
    ]);
    expect(renderMaildropScript(node)).toContain("\ndrop_dir='/spool/in'\n");
  });
});

describe("the maildrop script's place", () => {
  it("a relay gets no script even with transport=pipe: it never delivers locally", () => {
    expect(spoolFiles({ ...exampleRelay, drop: { ...exampleRelay.drop, transport: "pipe" } })).toEqual([]);
  });
});
