/**
 * Cloud Scheduler's part: POST the function every period (one call at a time, as a job with
 * max-concurrency 1 would). `paused` simulates an outage of the cloud path.
 */
import type { Observer } from './observer.js';

export class Scheduler {
  paused = false;
  calls = 0;
  private readonly ctl = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly periodMs: number,
    private readonly obs: Observer,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.ctl.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.ctl.signal;
    while (!signal.aborted) {
      if (!this.paused) await this.call(signal);
      await sleep(this.periodMs, signal);
    }
  }

  private async call(signal: AbortSignal): Promise<void> {
    this.calls++;
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
        signal,
      });
      const body = (await res.json().catch(() => ({}))) as { action?: string; reason?: string };
      if (res.status >= 300 || body.action === 'failed' || body.action === 'login_required') {
        this.obs.say('cloud', `function answered ${res.status}: ${body.action ?? '?'}${body.reason ? ` (${body.reason})` : ''}`);
      } else if (body.action === 'recovered' || body.action === 'deferred') {
        this.obs.say('cloud', `function: ${body.action}${body.reason ? ` (${body.reason})` : ''}`);
      }
    } catch (err) {
      if (!signal.aborted) this.obs.say('cloud', `scheduler could not reach the function (${err instanceof Error ? err.message : String(err)})`);
    }
  }
}

/** Resolves after `ms` or on abort, whichever is first, leaving no listener behind. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}
