import { describe, expect, it } from 'vitest';
import type { Clock } from '../../core/clock.js';
import { attemptTimeout, backoffDelay, nextRetryDelay, retryWithBackoff } from '../../core/saxo/retry.js';

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

function fakeClock(): Clock & { sleeps: number[]; advance(ms: number): void } {
  let now = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    advance: (ms) => void (now += ms),
    now: () => now,
    sleep: async (ms, signal) => {
      if (signal?.aborted) throw signal.reason;
      sleeps.push(ms);
      now += ms;
    },
  };
}

class Boom extends Error {
  constructor(readonly retryable: boolean, readonly retryAfterMs?: number) {
    super('boom');
  }
}

const loop = (clock: Clock, extra: object = {}) => ({
  clock,
  random: () => 0.5,
  maxAttempts: 4,
  deadline: 1_000_000,
  httpTimeoutMs: 10_000,
  classify: (e: unknown) => (e instanceof Boom ? { retryable: e.retryable, retryAfterMs: e.retryAfterMs } : { retryable: false }),
  deadlineError: () => new Error('deadline'),
  ...extra,
});

describe('retryWithBackoff', () => {
  it('retries retryable failures with growing sleeps and returns the first success', async () => {
    const clock = fakeClock();
    const seen: [number, number][] = [];
    const res = await retryWithBackoff(async (n, t) => {
      seen.push([n, t]);
      if (n < 4) throw new Boom(true);
      return 'ok';
    }, loop(clock));
    expect(res).toBe('ok');
    expect(clock.sleeps).toEqual([250, 500, 1000]);
    expect(seen.map(([n]) => n)).toEqual([1, 2, 3, 4]);
    expect(seen.every(([, t]) => t === 10_000)).toBe(true);
  });

  it('rethrows a non-retryable error at once', async () => {
    const clock = fakeClock();
    let calls = 0;
    const fatal = new Boom(false);
    await expect(
      retryWithBackoff(async () => {
        calls++;
        throw fatal;
      }, loop(clock)),
    ).rejects.toBe(fatal);
    expect(calls).toBe(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('gives up after maxAttempts with the last error', async () => {
    const clock = fakeClock();
    let calls = 0;
    await expect(
      retryWithBackoff(async () => {
        throw new Boom(true, ++calls);
      }, loop(clock, { maxAttempts: 3 })),
    ).rejects.toMatchObject({ retryAfterMs: 3 });
    expect(calls).toBe(3);
  });

  it('clips the last attempt to the deadline and never runs past it', async () => {
    const clock = fakeClock();
    const timeouts: number[] = [];
    await expect(
      retryWithBackoff(async (_n, t) => {
        timeouts.push(t);
        clock.advance(t); // every attempt times out
        throw new Boom(true);
      }, loop(clock, { deadline: 12_000, maxAttempts: 10 })),
    ).rejects.toBeInstanceOf(Boom);
    // t=0: 10 s attempt; sleep 250 → t=10 250: attempt clipped to the 1 750 ms left → t=12 000;
    // no further sleep fits.
    expect(timeouts).toEqual([10_000, 1750]);
    expect(clock.sleeps).toEqual([250]);
    expect(clock.now()).toBe(12_000);
  });

  it('throws the deadline error without attempting when no time is left', async () => {
    const clock = fakeClock();
    let calls = 0;
    await expect(retryWithBackoff(async () => ++calls, loop(clock, { deadline: 500 }))).rejects.toThrow('deadline');
    expect(calls).toBe(0);
  });

  it('stops when the signal is aborted', async () => {
    const clock = fakeClock();
    const ctl = new AbortController();
    let calls = 0;
    await expect(
      retryWithBackoff(async () => {
        calls++;
        ctl.abort(new Error('stop'));
        throw new Boom(true);
      }, loop(clock, { signal: ctl.signal })),
    ).rejects.toThrow('stop');
    expect(calls).toBe(1);
  });
});
