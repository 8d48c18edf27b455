/**
 * The one fake clock (unit tests, the soak, the stand-ins): discrete-event virtual time. One heap
 * holds pending sleeps and scheduled actions, so code that awaits `clock.sleep` interleaves with a
 * simulated world exactly and reproducibly.
 * - `advance(ms)` (unit tests): runs what falls due, letting promise chains settle after each.
 * - `runUntil(t)` (the soak): the same, with one macrotask turn per item — enough, because nothing
 *   simulated waits on real timers, and it keeps a simulated week at ~1.5 s.
 */
import type { Clock } from '../core/clock.js';

interface Item {
  at: number;
  seq: number;
  run: () => void;
  cancelled?: boolean;
}

export const DEFAULT_EPOCH = Date.UTC(2026, 0, 5, 9, 0, 0);

export class VirtualClock implements Clock {
  private heap: Item[] = [];
  private seq = 0;
  constructor(public t = DEFAULT_EPOCH) {}

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new Error('aborted'));
      const onAbort = () => {
        item.cancelled = true;
        reject(new Error('aborted'));
      };
      const item = this.push(this.t + Math.max(0, ms), () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Run `fn` at virtual time `at` (never in the past). */
  at(at: number, fn: () => void): void {
    this.push(Math.max(at, this.t), fn);
  }

  /** Move time forward by `ms`, running what falls due in order and settling promises after each. */
  async advance(ms: number): Promise<void> {
    await this.drain(this.t + ms, flush);
  }

  /** Process everything due up to `end`, then stand at `end` (one macrotask turn per item). */
  async runUntil(end: number): Promise<void> {
    await this.drain(end, turn);
  }

  /** Sleeps and actions not yet due. */
  pending(): number {
    return this.heap.filter((i) => !i.cancelled).length;
  }

  private async drain(end: number, settle: () => Promise<void>): Promise<void> {
    for (;;) {
      const top = this.heap[0];
      if (!top || top.at > end) break;
      this.pop();
      if (top.cancelled) continue;
      this.t = Math.max(this.t, top.at);
      top.run();
      await settle();
    }
    this.t = Math.max(this.t, end);
    await settle();
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

/** Let every promise chain that only waits on other promises (no real timers) run to its end. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await turn();
}

/** A host clock `offsetMs` away from true time (the function's skew); sleeps use true time. */
export function skewed(clock: VirtualClock, offsetMs: number): Clock {
  return { now: () => clock.now() + offsetMs, sleep: (ms, s) => clock.sleep(ms, s) };
}
