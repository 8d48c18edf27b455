/**
 * One thing at a time, in arrival order: the reconciler's triggers run through this. Bursts of the
 * same coalescing key (cache-file events) collapse into one queued run. After `stop()` nothing new
 * starts, and `stop()` resolves once the run in progress has finished.
 */
export class Serial<T> {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly waiting = new Set<string>();
  private readonly stopping = new AbortController();

  constructor(private readonly idle: T) {}

  /** Aborted once stop() was called (runs in progress read it to start nothing new). */
  get signal(): AbortSignal {
    return this.stopping.signal;
  }

  run(fn: () => Promise<T>, coalesce?: string): Promise<T> {
    if (this.stopping.signal.aborted) return Promise.resolve(this.idle);
    if (coalesce !== undefined) {
      if (this.waiting.has(coalesce)) return Promise.resolve(this.idle);
      this.waiting.add(coalesce);
    }
    const next = this.queue.then(() => {
      if (coalesce !== undefined) this.waiting.delete(coalesce);
      return this.stopping.signal.aborted ? this.idle : fn();
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.queue;
  }
}
