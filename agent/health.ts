/**
 * The agent's failure bookkeeping and what it tells operators: consecutive failures with an ALERT
 * at MAX_REFRESH_FAILURES and every MAX after (not every check), "login required" said once, an
 * early ALERT when the refresh token itself is about to die, and the Python keeper's status line.
 */
import { shouldAlert, type Plan } from '../core/decide.js';
import type { Logger } from '../core/log.js';

export class Health {
  failures = 0;
  /** Saxo rejected the newest pair and nothing newer exists: a person must log in. */
  loginRequired = false;
  private alertedRefreshExpiry: string | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly maxFailures: number,
  ) {}

  /** A refresh failed: count it; ALERT on the Nth consecutive failure and every N after. */
  failed(reason: string): void {
    this.failures += 1;
    this.logger.error('refresh_failed', `Token refresh failed (attempt ${this.failures}/${this.maxFailures})`, {
      reason,
      consecutiveFailures: this.failures,
    });
    if (shouldAlert(this.failures, this.maxFailures)) {
      this.logger.alert(
        'refresh_alert',
        `ALERT: Token refresh failed ${this.failures} consecutive times! Manual intervention may be required.`,
        { consecutiveFailures: this.failures },
      );
    }
  }

  /** Nothing can refresh any more; said once until a newer pair appears. */
  requireLogin(health: string): void {
    if (!this.loginRequired) {
      this.logger.error('login_required', 'Login required: no usable refresh token (run `npx token-keeper login`)', { health });
    }
    this.loginRequired = true;
  }

  /** A refresh succeeded or a different, newer pair arrived. */
  recovered(): void {
    this.failures = 0;
    this.loginRequired = false;
  }

  /** ALERT once per refresh token when it is close to dying and no refresh is due to save it. */
  watchRefreshExpiry(plan: Plan): void {
    if (!plan.refreshTokenExpiring || !plan.best || this.alertedRefreshExpiry === plan.best.refreshToken) return;
    this.alertedRefreshExpiry = plan.best.refreshToken;
    this.logger.alert('refresh_token_expiring', 'ALERT: refresh token expires soon and no refresh is due yet', {
      refreshLeftSeconds: Math.round((plan.refreshLeftMs ?? 0) / 1000),
    });
  }

  /** The Python keeper's familiar line, once per check. */
  logStatus(plan: Plan): void {
    if (!plan.best || plan.accessLeftMs === undefined) return;
    const mins = Math.floor(plan.accessLeftMs / 60_000);
    this.logger.info('token_status', `Token status: ${plan.health === 'fresh' ? 'valid' : plan.health}, ${mins} minutes until expiry`, {
      health: plan.health,
      accessLeftSeconds: Math.round(plan.accessLeftMs / 1000),
      refreshLeftSeconds: plan.refreshLeftMs !== undefined ? Math.round(plan.refreshLeftMs / 1000) : undefined,
      generation: plan.best.generation,
    });
  }
}
