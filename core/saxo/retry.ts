/**
 * Retry policy for Saxo's token endpoint: exponential backoff with full jitter, bounded by an
 * attempt count and a hard deadline. Everything time-related is injected (Clock, random) so the
 * maths and the loop are tested without real waiting.
 */
import type { Clock } from '../clock.js';

export interface BackoffOptions {
  /** First retry's upper bound (ms). */
  baseMs?: number;
  /** Upper bound of any single backoff (ms). */
  capMs?: number;
}

export const DEFAULT_BASE_MS = 500;
export const DEFAULT_CAP_MS = 30_000;
export const DEFAULT_MAX_ATTEMPTS = 4;

/**
 * Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^(n-1))), where `failedAttempts`
 * is the number of attempts already made (≥ 1).
 */
export function backoffDelay(failedAttempts: number, random: () => number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? DEFAULT_BASE_MS;
  const cap = opts.capMs ?? DEFAULT_CAP_MS;
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

export interface RetryLoopOptions extends BackoffOptions {
  clock: Clock;
  random: () => number;
  maxAttempts: number;
  deadline: number;
  httpTimeoutMs: number;
  /** Shortest attempt worth starting (default min(httpTimeoutMs, 1000)). */
  minAttemptMs?: number;
  signal?: AbortSignal | undefined;
  /** Whether `err` may be retried, and the server's requested wait in ms if any. */
  classify(err: unknown): { retryable: boolean; retryAfterMs?: number | undefined };
  /** Called before each sleep (logging). */
  onRetry?(err: unknown, attempt: number, delayMs: number): void;
  /** Thrown when not even the first attempt fits before the deadline. */
  deadlineError(): Error;
}

/**
 * Run `attempt` until it succeeds, a non-retryable error occurs, attempts run out, or the deadline
 * leaves no room. The last error is rethrown as-is.
 */
export async function retryWithBackoff<T>(
  attempt: (n: number, timeoutMs: number) => Promise<T>,
  o: RetryLoopOptions,
): Promise<T> {
  const minAttemptMs = o.minAttemptMs ?? Math.min(o.httpTimeoutMs, 1000);
  for (let n = 1; ; n++) {
    if (o.signal?.aborted) throw o.signal.reason ?? new Error('aborted');
    const now = o.clock.now();
    const timeoutMs = attemptTimeout(now, o.deadline, o.httpTimeoutMs);
    if (timeoutMs < minAttemptMs || timeoutMs <= 0) throw o.deadlineError();
    try {
      return await attempt(n, timeoutMs);
    } catch (err) {
      const c = o.classify(err);
      if (!c.retryable) throw err;
      const delay = nextRetryDelay({
        attempts: n,
        maxAttempts: o.maxAttempts,
        now: o.clock.now(),
        deadline: o.deadline,
        minAttemptMs,
        retryAfterMs: c.retryAfterMs,
        random: o.random,
        baseMs: o.baseMs,
        capMs: o.capMs,
      });
      if (delay === undefined) throw err;
      o.onRetry?.(err, n, delay);
      await o.clock.sleep(delay, o.signal);
    }
  }
}
