/**
 * `token-keeper doctor`: the result types every check returns and the exit-code rule
 * (0 all ok or skipped, 1 any warning, 2 any failure). Checks never carry token material.
 */

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  /** Stable name to script against, e.g. `secret-manager.iam`. */
  id: string;
  status: CheckStatus;
  /** One line: what was found (for a skip: why it does not apply). */
  summary: string;
  /** What to do about it: a command to paste where one exists. */
  fix?: string | undefined;
  /** Machine-readable facts behind the summary (never a token or the app secret). */
  details?: Record<string, unknown> | undefined;
}

export interface DoctorReport {
  exitCode: 0 | 1 | 2;
  mode: 'standalone' | 'cloud-connected' | 'unknown';
  /** The systemd unit judged: token-keeper, or token-keeper@<chain>. */
  unit: string;
  now: string;
  durationMs: number;
  counts: Record<CheckStatus, number>;
  checks: CheckResult[];
}

const RANK: Record<CheckStatus, number> = { skip: 0, ok: 1, warn: 2, fail: 3 };

/** The worse of two statuses (skip < ok < warn < fail). */
function worse(a: CheckStatus, b: CheckStatus): CheckStatus {
  return RANK[a] >= RANK[b] ? a : b;
}

export function exitCodeOf(checks: readonly CheckResult[]): 0 | 1 | 2 {
  if (checks.some((c) => c.status === 'fail')) return 2;
  if (checks.some((c) => c.status === 'warn')) return 1;
  return 0;
}

/** One finding inside a check; a check with several folds them with `fold`. */
export interface Finding {
  status: Exclude<CheckStatus, 'skip'>;
  text: string;
  fix?: string | undefined;
}

/**
 * Fold findings into one result: the worst status; the summary lists the problems (warn/fail) or,
 * when there are none, `okSummary`; fixes of the problems joined in order.
 */
export function fold(id: string, okSummary: string, findings: Finding[], details?: Record<string, unknown>): CheckResult {
  const problems = findings.filter((f) => f.status !== 'ok');
  const status = findings.reduce<CheckStatus>((s, f) => worse(s, f.status), 'ok');
  const fixes = [...new Set(problems.map((f) => f.fix).filter((f): f is string => Boolean(f)))];
  return {
    id,
    status,
    summary: problems.length ? problems.map((p) => p.text).join('; ') : okSummary,
    fix: fixes.length ? fixes.join(' ; ') : undefined,
    details,
  };
}

export const skip = (id: string, why: string, details?: Record<string, unknown>): CheckResult => ({ id, status: 'skip', summary: why, details });

/** "12 s", "4m 05s", "1h 02m": durations in summaries. */
export function human(ms: number): string {
  const neg = ms < 0;
  const s = Math.round(Math.abs(ms) / 1000);
  let txt: string;
  if (s < 120) txt = `${s} s`;
  else if (s < 7200) txt = `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  else txt = `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return neg ? `-${txt}` : txt;
}

/** Quote a path or value for a pasted shell command (only when it needs it). */
export function sh(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
