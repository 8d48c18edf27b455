/**
 * `token-keeper doctor`'s kit: the result every check returns, the exit-code rule (0 all ok or skipped, 1 any warning, 2 any
 * failure), one IO attempt under a deadline (`Probe`), and text helpers. Checks never carry token material.
 */
import { errorText } from '../../core/errors.js';
import { grpcCodeName } from '../../core/gcp/grpc-errors.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

/**
 * One check's answer: `id` stable to script against (e.g. `secret-manager.iam`); `summary` one line of what was found (for a
 * skip: why it does not apply); `fix` what to do, a command to paste where one exists; `details` the machine-readable facts
 * behind the summary (never a token or the app secret).
 */
export type CheckResult = { id: string; status: CheckStatus; summary: string; fix?: string | undefined; details?: Record<string, unknown> | undefined };

/** `doctor --json`; `unit`: the systemd unit judged (token-keeper, or token-keeper@<chain>). */
export interface DoctorReport {
  exitCode: 0 | 1 | 2;
  mode: 'standalone' | 'cloud-connected' | 'unknown';
  unit: string;
  now: string;
  durationMs: number;
  counts: Record<CheckStatus, number>;
  checks: CheckResult[];
}

const RANK: Record<CheckStatus, number> = { skip: 0, ok: 1, warn: 2, fail: 3 };

export const exitCodeOf = (checks: readonly CheckResult[]): 0 | 1 | 2 => (checks.some((c) => c.status === 'fail') ? 2 : checks.some((c) => c.status === 'warn') ? 1 : 0);

/** One finding inside a check; a check with several folds them with `fold`. */
export type Finding = { status: Exclude<CheckStatus, 'skip'>; text: string; fix?: string | undefined };

/** The worst status; the summary lists the problems (warn/fail), else `okSummary`; their fixes in order. */
export function fold(id: string, okSummary: string, findings: Finding[], details?: Record<string, unknown>): CheckResult {
  const problems = findings.filter((f) => f.status !== 'ok');
  const status = findings.reduce<CheckStatus>((s, f) => (RANK[s] >= RANK[f.status] ? s : f.status), 'ok');
  const fixes = [...new Set(problems.map((f) => f.fix).filter((f): f is string => Boolean(f)))];
  return { id, status, summary: problems.length ? problems.map((p) => p.text).join('; ') : okSummary, fix: fixes.length ? fixes.join(' ; ') : undefined, details };
}

export const result = (id: string, status: CheckStatus, summary: string, fix?: string, details?: Record<string, unknown>): CheckResult => ({ id, status, summary, fix, details });
export const skip = (id: string, why: string): CheckResult => ({ id, status: 'skip', summary: why });

/** "12 s", "4m 05s", "1h 02m": durations in summaries. */
export function human(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  const txt = s < 120 ? `${s} s` : s < 7200 ? `${Math.floor(s / 60)}m ${two(s % 60)}s` : `${Math.floor(s / 3600)}h ${two(Math.floor((s % 3600) / 60))}m`;
  return ms < 0 ? `-${txt}` : txt;
}

/** Quote a path or value for a pasted shell command (only when it needs it). */
export const sh = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** One IO attempt: its value, or why it failed (`code`: a gRPC status name, an errno, or CREDENTIALS), and how long it took. */
export type Probe<T> = { ok: true; value: T; ms: number } | { ok: false; error: string; code?: string | undefined; ms: number };
export type Failed = Extract<Probe<never>, { ok: false }>;

/** A gRPC status name (numeric codes named by core/gcp/grpc-errors.ts), else the errno string. */
function codeOf(e: unknown): string | undefined {
  const c = e && typeof e === 'object' && 'code' in e ? (e as { code: unknown }).code : undefined;
  if (typeof c === 'number') return grpcCodeName(c) ?? `grpc ${c}`;
  // SecretStoreError (core/gcp/grpc-errors.ts) keeps the gRPC status name in its message only.
  return (e instanceof Error ? /failed: ([A-Z_]{5,})\b/.exec(e.message)?.[1] : undefined) ?? (typeof c === 'string' ? c : undefined);
}

/** Short message: gRPC details when present (they name resources, never payloads), else the error text. */
function messageOf(e: unknown): string {
  const details = e && typeof e === 'object' && 'details' in e ? (e as { details: unknown }).details : undefined;
  const text = typeof details === 'string' && details ? `${codeOf(e) ?? 'error'}: ${details}` : errorText(e);
  // grpc-js appends an empty "Resolution note:" and timing breakdowns; keep the cause only.
  return text.replace(/\s*Resolution note:\s*$/, '').replace(/,name resolution: .*$/, '').replace(/\s+/g, ' ').slice(0, 300);
}

/** Run one IO attempt under a deadline and turn any outcome into a Probe (never throws). */
export async function attempt<T>(fn: () => Promise<T>, timeoutMs: number): Promise<Probe<T>> {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const late = (): Failed => ({ ok: false, error: `DeadlineError: no answer within ${timeoutMs} ms`, code: 'DEADLINE_EXCEEDED', ms: Date.now() - start });
  const deadline = new Promise<Failed>((resolve) => (timer = setTimeout(() => resolve(late()), timeoutMs)));
  const done = Promise.resolve().then(fn).then(
    (value) => ({ ok: true as const, value, ms: Date.now() - start }),
    (e: unknown) => ({ ok: false as const, error: messageOf(e), code: codeOf(e), ms: Date.now() - start }),
  );
  return Promise.race([done, deadline]).finally(() => clearTimeout(timer));
}
