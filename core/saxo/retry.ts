/**
 * Retry policy for Saxo's token endpoint: exponential backoff with full jitter, bounded by an
 * attempt count and a hard deadline. Pure maths; the loop that applies it is the refresh protocol
 * (core/refresh.ts), which releases the bots' lock and looks again between attempts.
 */

export interface BackoffOptions {
  /** First retry's upper bound (ms). */
  baseMs?: number;
  /** Upper bound of any single backoff (ms). */
  capMs?: number;
}

export const DEFAULT_BACKOFF_BASE_MS = 500;
export const DEFAULT_BACKOFF_CAP_MS = 30_000;
export const DEFAULT_MAX_ATTEMPTS = 4;

/**
 * Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^(n-1))), where `failedAttempts`
 * is the number of attempts already made (≥ 1).
 */
export function backoffDelay(failedAttempts: number, random: () => number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? DEFAULT_BACKOFF_BASE_MS;
  const cap = opts.capMs ?? DEFAULT_BACKOFF_CAP_MS;
  const exp = Math.min(cap, base * 2 ** Math.max(0, failedAttempts - 1));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(r * exp);
}

export interface RetryDecisionInput extends BackoffOptions {
  /** Attempts made so far (≥ 1). */
  attempts: number;
  maxAttempts: number;
  now: number;
  deadline: number;
  /** Shortest useful attempt: a retry is pointless if less than this remains after the sleep. */
  minAttemptMs: number;
  /** Server-requested wait (Retry-After), ms. */
  retryAfterMs?: number | undefined;
  random: () => number;
}

/** How long to sleep before the next attempt, or undefined when no further attempt may be made. */
export function nextRetryDelay(i: RetryDecisionInput): number | undefined {
  if (i.attempts >= i.maxAttempts) return undefined;
  const delay = Math.max(backoffDelay(i.attempts, i.random, i), i.retryAfterMs ?? 0);
  // Neither the sleep nor the attempt after it may end past the deadline.
  if (i.now + delay + i.minAttemptMs > i.deadline) return undefined;
  return delay;
}

/** Per-attempt timeout: the configured timeout, clipped so the attempt ends by the deadline. */
export function attemptTimeout(now: number, deadline: number, httpTimeoutMs: number): number {
  return Math.max(0, Math.min(httpTimeoutMs, deadline - now));
}
