/**
 * Consecutive refresh failures and what they tell operators — one place for the agent and the
 * function: every failure is logged with its attempt number, and the Python keeper's ALERT is
 * raised at MAX_REFRESH_FAILURES and every MAX after (5, 10, 15 …), not on every check. Where the
 * count lives between runs is the caller's business (the agent's state file, the secret's
 * annotations for the function).
 */
import type { Logger } from './log.js';

/** Alert on the Nth consecutive failure and every `max` after (5, 10, 15 …). */
export function shouldAlert(consecutiveFailures: number, max: number): boolean {
  return consecutiveFailures >= max && (consecutiveFailures - max) % max === 0;
}

export class FailureCounter {
  private n: number;

  constructor(
    private readonly logger: Logger,
    private readonly max: number,
    initial = 0,
  ) {
    this.n = Math.max(0, Math.floor(initial));
  }

  get count(): number {
    return this.n;
  }

  /**
   * One more failure. `detail` (a path and errno, a status) goes into the ALERT's message so the
   * page itself says what to fix; it must be secret-free (errors of this project are).
   */
  failed(reason: string, detail?: string): number {
    this.n += 1;
    // The Python keeper's "attempt N/MAX" while it means something; past MAX a count, never "attempt 4/3".
    const which = this.n <= this.max ? `attempt ${this.n}/${this.max}` : `${this.n} consecutive failures`;
    this.logger.error('refresh_failed', `Token refresh failed (${which})`, {
      reason,
      ...(detail ? { detail } : {}),
      consecutiveFailures: this.n,
    });
    if (shouldAlert(this.n, this.max)) {
      this.logger.alert(
        'refresh_alert',
        `ALERT: Token refresh failed ${this.n} consecutive times! Manual intervention may be required.` +
          (detail ? ` Last error: ${detail}` : ` Last error: ${reason}`),
        { consecutiveFailures: this.n, reason },
      );
    }
    return this.n;
  }

  recovered(): void {
    this.n = 0;
  }
}
