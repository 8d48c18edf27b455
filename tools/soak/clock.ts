/**
 * Discrete-event virtual time: one heap holds both scheduled actions and pending sleeps, so the
 * real reconciler/refresher code (which awaits `clock.sleep`) interleaves with the world exactly
 * and reproducibly. Between items only one macrotask turn is taken: enough to drain every
 * promise chain, because nothing in the simulated code waits on real timers.
 */
import type { Clock } from '../../core/clock.js';

interface Item {
  at: number;
  seq: number;
  run: () => void;
  cancelled?: boolean;
}

export class SimClock implements Clock {
  private heap: Item[] = [];
  private seq = 0;
  constructor(public t: number) {}

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new Error('aborted'));
      const item = this.push(this.t + Math.max(0, ms), resolve);
      signal?.addEventListener(
        'abort',
        () => {
          item.cancelled = true;
          reject(new Error('aborted'));
        },
        { once: true },
      );
    });
  }

  /** Run `fn` at virtual time `at` (never in the past). */
  at(at: number, fn: () => void): void {
    this.push(Math.max(at, this.t), fn);
  }

  /** Process everything due up to `end`, then stand at `end`. */
  async runUntil(end: number): Promise<void> {
    for (;;) {
      const top = this.heap[0];
      if (!top || top.at > end) break;
      this.pop();
      if (top.cancelled) continue;
      this.t = Math.max(this.t, top.at);
      top.run();
      await turn();
    }
    this.t = Math.max(this.t, end);
    await turn();
  }

  private push(at: number, run: () => void): Item {
    const item: Item = { at, seq: this.seq++, run };
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
    return item;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && less(h[l]!, h[m]!)) m = l;
      if (r < h.length && less(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}

const less = (a: Item, b: Item) => a.at < b.at || (a.at === b.at && a.seq < b.seq);
const turn = () => new Promise<void>((r) => setImmediate(r));

/** A host clock `offsetMs` away from true time (the function's skew); sleeps use true time. */
export function skewed(clock: SimClock, offsetMs: number): Clock {
  return { now: () => clock.now() + offsetMs, sleep: (ms, s) => clock.sleep(ms, s) };
}
