/** Time as a port, so long-running behaviour is tested with fake clocks. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or rejects with an AbortError when `signal` fires. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /**
   * How far the machine's wall clock is from what now() answers (local − now(), ms), for a clock
   * that corrects a known skew (agent/clock-watch.ts); absent or 0 for the system clock.
   */
  localSkewMs?(): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(t);
        reject(signal?.reason ?? new Error('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};
