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

/** Why login is required, in words for the page (the codes the protocol and decide() use). */
const LOGIN_WHY: Record<string, string> = {
  invalid_grant: 'Saxo rejected the newest refresh token (invalid_grant) and no newer pair exists anywhere',
  refresh_token_expired: 'the refresh token has expired',
  login_required: 'the refresh token has expired',
  no_token: 'no token is stored anywhere',
  'no token in any source': 'no token is stored anywhere',
};

/**
 * The one "login required" page, for the agent and the function: the environment, what happened
 * and the action (docs/DESIGN.md "Nothing dangerous is silent").
 */
export function loginRequiredMessage(environment: string, why: string): string {
  return `ALERT: Login required for Saxo ${environment}: ${LOGIN_WHY[why] ?? why}. The bots have no way to renew their token; run \`npx token-keeper login\` or use the re-login link`;
}

/** Say "login required" now? The first time, then every `repeatMs` while it lasts. */
export function loginAlertDue(lastSaidAt: number | undefined, now: number, repeatMs: number): boolean {
  return lastSaidAt === undefined || now - lastSaidAt >= repeatMs;
}

/**
 * What one refresh run adds to the consecutive-failure count: a failure (its reason and a
 * secret-free detail for the ALERT), a success (the count resets), or nothing (waited, fresh).
 */
export type Count = { kind: 'failure'; reason: string; detail?: string | undefined } | { kind: 'success' } | { kind: 'none' };

export const failure = (reason: string, detail?: string): Count => ({ kind: 'failure', reason, ...(detail !== undefined ? { detail } : {}) });
export const SUCCESS: Count = { kind: 'success' };
export const NOTHING: Count = { kind: 'none' };

/** The count after `c`: the one rule the counter and the function's lease record share. */
export function countAfter(n: number, c: Count): number {
  return c.kind === 'failure' ? n + 1 : c.kind === 'success' ? 0 : n;
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

  /** When the newest refresh token dies (epoch ms): the ALERT names it (set where the plan is known). */
  chainDeadline: number | undefined;

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
          ` Last error: ${sentence(detail ?? reason)}` +
          ` ${deadlineSentence(this.chainDeadline)} Action: ${FAILURE_ACTION}`,
        { consecutiveFailures: this.n, reason, ...(this.chainDeadline !== undefined ? { deadline: isoUtc(this.chainDeadline) } : {}) },
      );
    }
    return this.n;
  }

  /** Count one run's outcome (the refresh session's `count`). */
  apply(c: Count): void {
    if (c.kind === 'failure') this.failed(c.reason, c.detail);
    else if (c.kind === 'success') this.recovered();
  }

  /** A refresh succeeded (or someone else's pair arrived): after failures, say so once. */
  recovered(): void {
    if (this.n > 0) this.logger.notice('recovered', `Token refresh recovered after ${this.n} consecutive failure(s)`, { consecutiveFailures: this.n });
    this.n = 0;
  }
}

const sentence = (s: string): string => (/[.!?]$/.test(s) ? s : `${s}.`);

/** What a person does about failing refreshes (docs/OPERATIONS.md "When the chain dies"). */
export const FAILURE_ACTION = 'run `npx token-keeper doctor` on the VM and fix what it names; if the chain has died, log in again (the re-login link, or `npx token-keeper login`).';

export const isoUtc = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** "The chain dies at 03:47 UTC (2026-12-07T03:47:00Z) unless a refresh succeeds." — or that it is already dead. */
export function deadlineSentence(deadline: number | undefined, now?: number): string {
  if (deadline === undefined) return 'The refresh token\'s deadline is unknown.';
  const hhmm = new Date(deadline).toISOString().slice(11, 16);
  return now !== undefined && deadline <= now
    ? `The refresh token died at ${hhmm} UTC (${isoUtc(deadline)}): the chain needs a login.`
    : `The chain dies at ${hhmm} UTC (${isoUtc(deadline)}) unless a refresh succeeds.`;
}

/**
 * The `chain_deadline` ALERT (its own alert policy): the refresh token dies within the alert window
 * and nothing has refreshed it. Agent and function say it the same way.
 */
export function chainDeadlineAlert(logger: Logger, deadline: number, leftMs: number, why: string): void {
  logger.alert('chain_deadline', `ALERT: the refresh token dies in ${Math.max(0, Math.round(leftMs / 60_000))} min and ${why}. ${deadlineSentence(deadline, deadline - leftMs)} Action: ${FAILURE_ACTION}`, {
    deadline: isoUtc(deadline),
    refreshLeftSeconds: Math.round(leftMs / 1000),
  });
}
