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
    this.logger.error('refresh_failed', `Token refresh failed (attempt ${this.n}/${this.max})`, {
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
