import { describe, expect, it } from "vitest";
import { examplePrimary, exampleRelay } from "../fixtures/nodes";
import type { GatewayNode } from "../../infra/model/types";
import { renderMaildropScript, spoolDirectories, spoolFiles } from "../../infra/render/spool";

const pipePrimary: GatewayNode = { ...examplePrimary, drop: { ...examplePrimary.drop, transport: "pipe" } };

describe("spoolDirectories", () => {
  it("creates the drop Maildir, errors/ and the inbound store 0750, owned by the brightchain user", () => {
    expect(spoolDirectories(examplePrimary)).toEqual(
      [
        "/var/spool/brightchain",
        "/var/spool/brightchain/incoming",
        "/var/spool/brightchain/incoming/tmp",
        "/var/spool/brightchain/incoming/new",
        "/var/spool/brightchain/incoming/cur",
        "/var/spool/brightchain/errors",
        "/var/spool/brightchain/store",
      ].map((path) => ({ path, mode: 0o750, owner: "brightchain", group: "brightchain" })),
    );
  });

  it("is empty on a relay, which never delivers locally", () => {
    expect(spoolDirectories(exampleRelay)).toEqual([]);
  });

  it("names the field when a path is relative", () => {
    expect(() => spoolDirectories({ ...examplePrimary, drop: { ...examplePrimary.drop, mailDropDir: "incoming" } })).toThrow(
      /drop\.mailDropDir="incoming" is invalid; accepted: an absolute path/,
    );
  });
});

describe("maildrop script", () => {
  const script = renderMaildropScript(pipePrimary);

  it("fails safe: strict bash and EX_TEMPFAIL on any error", () => {
    expect(script.startsWith("#!/bin/bash\n")).toBe(true);
    expect(script).toContain("set -euo pipefail");
    expect(script).toContain("trap finish EXIT");
    expect(script).toContain("exit 75");
  });

  it("writes to tmp/, fsyncs, then links into new/ of the node's drop Maildir", () => {
    expect(script).toContain("drop_dir='/var/spool/brightchain/incoming'");
    const order = ['cat > "$tmp_file"', 'sync -- "$tmp_file"', 'ln -- "$tmp_file" "$drop_dir/new/$name"'].map((line) =>
      script.indexOf(line),
    );
    expect(order.every((index) => index > 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });

  it("is a host file only for a primary using the pipe transport", () => {
    expect(spoolFiles(examplePrimary)).toEqual([]);
    expect(spoolFiles(exampleRelay)).toEqual([]);
    expect(spoolFiles(pipePrimary)).toEqual([
      { path: "/usr/local/bin/brightchain-maildrop", mode: 0o755, owner: "root", group: "root", content: script, notify: [] },
    ]);
  });
});
