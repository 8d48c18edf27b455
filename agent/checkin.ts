/**
 * The agent's liveness signal for paging (docs/OPERATIONS.md "Alerts"): a short `agent_checkin`
 * line every 2 minutes, labelled by what survives a restart — the host (and the logger's chain),
 * never a pid. A log-based metric counts it per host; its absence for 5 minutes pages ("agent not
 * checking in"), well inside the 10 minutes the issue allows. It is separate from the human
 * `token_status` line, which may be rarer.
 */
import { hostname } from 'node:os';
import { systemClock, type Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';

/** ≤ 2 min: the absence condition (5 min) then misses at least two check-ins before it pages. */
export const CHECKIN_INTERVAL_MS = 120_000;

export interface CheckinOptions {
  logger: Logger;
  signal: AbortSignal;
  clock?: Clock;
  intervalMs?: number;
  host?: string;
}

/** The check-in line's fields: the metric's label (host) and nothing that changes at a restart. */
export function checkinFields(host: string): Record<string, unknown> {
  return { host };
}

/** Logs a check-in now and every interval until `signal` fires; resolves then. */
export async function runCheckins(o: CheckinOptions): Promise<void> {
  const clock = o.clock ?? systemClock;
  const interval = o.intervalMs ?? CHECKIN_INTERVAL_MS;
  const fields = checkinFields(o.host ?? hostname());
  while (!o.signal.aborted) {
    o.logger.info('agent_checkin', 'check-in', fields);
    try {
      await clock.sleep(interval, o.signal);
    } catch {
      break; // aborted
    }
  }
}

/**
 * When the human `token_status` line is worth a line: the health changed (fresh → due → expired …),
 * or `everyMs` passed since the last one (default 15 min, STATUS_LOG_SECONDS; 0: every check).
 * Paging does not depend on it: liveness is the check-in above.
 */
export class StatusLineGate {
  private last: { health: string; at: number } | undefined;

  due(health: string, now: number, everyMs: number): boolean {
    const l = this.last;
    if (l && l.health === health && everyMs > 0 && now - l.at < everyMs) return false;
    this.last = { health, at: now };
    return true;
  }
}
