// Doctor's results for a person (a table read at a glance, the fix under each problem) and for a machine (JSON).
import type { CheckResult, CheckStatus } from "./types";

export interface DoctorReport {
  stack: string;
  /** The node's host name. */
  host: string;
  checks: CheckResult[];
}

const MARK: Record<CheckStatus, string> = { ok: "✓", fail: "✗", warn: "!" };

/** A detail longer than this (a DKIM key) is cut in the table; --json and the fix lines keep it whole. */
const DETAIL_WIDTH = 160;
const cut = (text: string): string => (text.length > DETAIL_WIDTH ? `${text.slice(0, DETAIL_WIDTH - 1)}…` : text);

/** 0 when nothing failed (warnings are for a person to read), 1 when a check failed. */
export function reportExitCode(report: DoctorReport): 0 | 1 {
  return report.checks.some((c) => c.status === "fail") ? 1 : 0;
}

export function summaryLine(checks: CheckResult[]): string {
  const count = (status: CheckStatus) => checks.filter((c) => c.status === status).length;
  return `${checks.length} checks: ${count("ok")} ✓, ${count("fail")} ✗, ${count("warn")} !`;
}

export function formatReport(report: DoctorReport): string {
  const subjectWidth = Math.min(48, Math.max(...report.checks.map((c) => c.subject.length), 0));
  const groupWidth = Math.max(...report.checks.map((c) => c.group.length), 0);
  const lines = [`doctor ${report.stack} (${report.host})`];
  for (const check of report.checks) {
    lines.push(
      `  ${MARK[check.status]}  ${check.group.padEnd(groupWidth)}  ${check.subject.padEnd(subjectWidth)}  ${cut(check.detail)}`,
    );
    if (check.status !== "ok" && check.fix !== undefined) lines.push(`       fix: ${check.fix}`);
    if (check.status !== "ok" && check.why !== undefined) lines.push(`       why: ${check.why}`);
  }
  lines.push(summaryLine(report.checks));
  return `${lines.join("\n")}\n`;
}

export function reportJson(report: DoctorReport): string {
  const count = (status: CheckStatus) => report.checks.filter((c) => c.status === status).length;
  return `${JSON.stringify(
    {
      stack: report.stack,
      host: report.host,
      ok: reportExitCode(report) === 0,
      summary: { ok: count("ok"), fail: count("fail"), warn: count("warn") },
      checks: report.checks,
    },
    null,
    2,
  )}\n`;
}
