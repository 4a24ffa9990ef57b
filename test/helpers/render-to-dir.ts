// Writes rendered HostFiles under a temporary root so real tools can read them at their host paths'
// relative positions (ROOT/etc/rspamd/local.d/…), without touching the machine's own /etc.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { HostFile } from "../../infra/model/types";

export function makeTempRoot(prefix: string): { root: string; remove: () => void } {
  const root = mkdtempSync(join(tmpdir(), `${prefix}-`));
  return { root, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/** Writes each file at ROOT + its absolute host path, with its mode; returns the written paths. */
export function writeHostFiles(root: string, files: HostFile[]): string[] {
  return files.map((file) => {
    const target = join(root, file.path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, file.content, { mode: file.mode });
    return target;
  });
}
