import { describe, expect, it } from 'vitest';
import { attemptTimeout, backoffDelay, nextRetryDelay } from '../../core/saxo/retry.js';

const justUnder1 = () => 0.999999;

describe('backoffDelay (full jitter)', () => {
  it('upper bound doubles from 500 ms and caps at 30 s', () => {
    const bounds = [1, 2, 3, 4, 5, 6, 7, 8, 20].map((n) => backoffDelay(n, justUnder1));
    expect(bounds).toEqual([499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
  });
  it('is uniform over [0, bound): random 0 → 0, random 0.5 → half', () => {
    expect(backoffDelay(3, () => 0)).toBe(0);
    expect(backoffDelay(3, () => 0.5)).toBe(1000);
  });
  it('clamps a misbehaving random source and honours custom base/cap', () => {
    expect(backoffDelay(1, () => 7)).toBe(500);
    expect(backoffDelay(1, () => -1)).toBe(0);
    expect(backoffDelay(4, justUnder1, { baseMs: 100, capMs: 250 })).toBe(249);
  });
});

describe('nextRetryDelay', () => {
  const base = { maxAttempts: 4, now: 0, deadline: 100_000, minAttemptMs: 1000, random: () => 0.5 };
  it('stops after maxAttempts', () => {
    expect(nextRetryDelay({ ...base, attempts: 3 })).toBe(1000);
    expect(nextRetryDelay({ ...base, attempts: 4 })).toBeUndefined();
  });
  it('takes the larger of backoff and Retry-After', () => {
    expect(nextRetryDelay({ ...base, attempts: 1, retryAfterMs: 5000 })).toBe(5000);
    expect(nextRetryDelay({ ...base, attempts: 1, retryAfterMs: 10 })).toBe(250);
  });
  it('refuses a sleep + attempt that would end after the deadline', () => {
    // 250 ms sleep + 1000 ms minimum attempt = 1250 ms needed.
    expect(nextRetryDelay({ ...base, attempts: 1, deadline: 1250 })).toBe(250);
    expect(nextRetryDelay({ ...base, attempts: 1, deadline: 1249 })).toBeUndefined();
    expect(nextRetryDelay({ ...base, attempts: 1, retryAfterMs: 60_000, deadline: 30_000 })).toBeUndefined();
  });
});

describe('attemptTimeout', () => {
  it('clips the per-attempt timeout to the deadline', () => {
    expect(attemptTimeout(0, 100_000, 10_000)).toBe(10_000);
    expect(attemptTimeout(95_000, 100_000, 10_000)).toBe(5000);
    expect(attemptTimeout(101_000, 100_000, 10_000)).toBe(0);
  });
});
