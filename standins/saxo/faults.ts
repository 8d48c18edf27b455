/**
 * The Saxo stand-in's fault injection: what a test may queue (also over POST /_admin/faults) and the
 * queue the /token handler draws from, one fault per request, each `times` times (default 1).
 */
import { z } from 'zod/v3';

export const faultSchema = z.object({
  kind: z.enum(['html503', 'bare429', 'json500', 'invalid_grant', 'delay', 'reset', 'odd2xx']),
  times: z.number().int().positive().optional(),
  delayMs: z.number().nonnegative().optional(),
  /**
   * odd2xx: the grant is made (the presented token is consumed, a pair issued) but the answer is
   * odd — fields replaced (`set`: expires_in −5, "1200 seconds", …), left out (`omit`), or the
   * whole body an HTML page (`html`).
   */
  set: z.record(z.unknown()).optional(),
  omit: z.array(z.string()).optional(),
  html: z.boolean().optional(),
});
export type SaxoFault = z.infer<typeof faultSchema>;

export type QueuedFault = { kind: SaxoFault['kind']; remaining: number; delayMs: number; odd?: Pick<SaxoFault, 'set' | 'omit' | 'html'> };

/** The body of html503: what a load balancer in front of Saxo answers. */
export const HTML_503 = '<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your request.</p></body></html>';

export class FaultQueue {
  private readonly faults: QueuedFault[] = [];

  inject(f: SaxoFault | SaxoFault[]): void {
    for (const one of Array.isArray(f) ? f : [f]) {
      this.faults.push({ kind: one.kind, remaining: one.times ?? 1, delayMs: one.delayMs ?? 1000, odd: { set: one.set, omit: one.omit, html: one.html } });
    }
  }

  /** The fault for this request, if any (used up after `times` requests). */
  next(): QueuedFault | undefined {
    const head = this.faults[0];
    if (!head) return undefined;
    if (--head.remaining <= 0) this.faults.shift();
    return head;
  }

  clear(): void {
    this.faults.length = 0;
  }

  /** Requests still to be answered with a fault. */
  queued(): number {
    return this.faults.reduce((n, f) => n + f.remaining, 0);
  }
}
