// Helpers for the inbound tests: write messages into a drop Maildir the way Postfix does (tmp/ then a
// rename into new/), and wait for a condition with a deadline instead of sleeping.
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function makeDropMaildir(dropDir: string): void {
  for (const sub of ["tmp", "new", "cur"]) mkdirSync(join(dropDir, sub), { recursive: true });
}

export interface DropMessageOptions {
  recipient?: string;
  subject?: string;
  extraHeaders?: string[];
  body?: string;
}

export function dropMessageText(options: DropMessageOptions = {}): string {
  const headers = [
    ...(options.recipient === undefined ? [] : [`Delivered-To: ${options.recipient}`]),
    "Return-Path: <sender@example.net>",
    ...(options.extraHeaders ?? []),
    "From: Sender <sender@example.net>",
    `To: ${options.recipient ?? "nobody@brightchain.org"}`,
    `Subject: ${options.subject ?? "test"}`,
    `Message-ID: <${options.subject ?? "test"}@example.net>`,
    "Date: Tue, 24 Nov 2026 10:00:00 +0000",
  ];
  return `${headers.join("\r\n")}\r\n\r\n${options.body ?? "hello"}\r\n`;
}

/** Writes like Postfix's virtual(8)/maildrop: the file appears in new/ complete, by rename. */
export function dropMessage(dropDir: string, name: string, content: string | Buffer): string {
  const temporary = join(dropDir, "tmp", name);
  writeFileSync(temporary, content);
  const target = join(dropDir, "new", name);
  renameSync(temporary, target);
  return target;
}

export async function waitUntil(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
  pollMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
