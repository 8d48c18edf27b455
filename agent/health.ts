/**
 * What the agent tells operators about the chain: consecutive failures (core/failures.ts, shared
 * with the function), "login required" as an ALERT repeated every LOGIN_ALERT_REPEAT_SECONDS while
 * it lasts and tied to the pair Saxo rejected (a newer pair from anywhere clears it), an early
 * ALERT when the refresh token itself is about to die, and the Python keeper's status line.
 */
import type { Clock } from '../core/clock.js';
import type { Plan } from '../core/decide.js';
import { chainDeadlineAlert, FailureCounter, loginAlertDue, loginRequiredMessage } from '../core/failures.js';
import type { Logger } from '../core/log.js';
import { StatusLineGate } from './checkin.js';
import { pairId, type TokenSet } from '../core/token.js';

export class Health {
  readonly failures: FailureCounter;
  /** The refresh token Saxo rejected (or that died) while it was the newest: never presented again. */
  private rejected: string | undefined;
  private loginSaid = false;
  /** When "login required" was last said (undefined: not yet by this process). */
  private loginSaidAt: number | undefined;
  private alertedRefreshExpiry: string | undefined;
  private readonly statusGate = new StatusLineGate();

  constructor(
    private readonly logger: Logger,
    maxFailures: number,
    restored: { failures?: number | undefined; loginRequired?: boolean | undefined; known?: TokenSet | undefined } = {},
    private readonly page: { clock: Clock; repeatMs: number; environment: string } | undefined = undefined,
  ) {
    this.failures = new FailureCounter(logger, maxFailures, restored.failures ?? 0);
    if (restored.loginRequired) {
      this.loginSaid = true;
      this.rejected = restored.known?.refreshToken ?? '';
    }
  }

  get loginRequired(): boolean {
    return this.loginSaid;
  }

  /** The pairId() of the pair Saxo rejected (presenting it again could only count as a reuse, I1): decide()'s gate. */
  get rejectedIds(): ReadonlySet<string> {
    return new Set(this.rejected !== undefined ? [pairId(this.rejected)] : []);
  }

  /**
   * Nothing can refresh any more: an ALERT now (also after a restart) and again every repeat
   * interval until a newer pair appears — a page nobody saw must not be the only one.
   */
  requireLogin(why: string, pair: TokenSet | undefined): void {
    const now = this.page?.clock.now() ?? 0;
    const due = this.page ? loginAlertDue(this.loginSaidAt, now, this.page.repeatMs) : !this.loginSaid;
    if (due) {
      this.loginSaidAt = now;
      this.logger.alert('login_required', loginRequiredMessage(this.page?.environment ?? 'SIM', why), {
        health: why,
        repeatSeconds: this.page ? this.page.repeatMs / 1000 : undefined,
      });
    }
    this.loginSaid = true;
    if (pair) this.rejected = pair.refreshToken;
  }

  /** `t` replaced `prev` as the newest pair: someone refreshed, so the chain lives; the rejection is history. */
  adopted(t: TokenSet, prev: TokenSet | undefined): void {
    if (prev?.refreshToken === t.refreshToken) return;
    if (prev) this.failures.recovered();
    this.rejected = undefined;
    this.loginSaid = false;
    this.loginSaidAt = undefined;
  }

  /** This agent refreshed: the rejection is history; counting the outcome is the protocol's (core/failures.ts). */
  refreshed(): void {
    this.rejected = undefined;
    this.loginSaid = false;
    this.loginSaidAt = undefined;
  }

  /** ALERT once per refresh token when it is close to dying and no refresh is due to save it. */
  watchRefreshExpiry(plan: Plan): void {
    this.failures.chainDeadline = plan.best?.refreshExpiresAt;
    if (!plan.refreshTokenExpiring || !plan.best || this.alertedRefreshExpiry === plan.best.refreshToken) return;
    this.alertedRefreshExpiry = plan.best.refreshToken;
    chainDeadlineAlert(this.logger, plan.best.refreshExpiresAt!, plan.refreshLeftMs ?? 0, 'no refresh is due before it');
  }

  /** The Python keeper's familiar line: when the health changes, else every `everyMs` (agent/checkin.ts). */
  logStatus(plan: Plan, now = 0, everyMs = 0): void {
    if (!plan.best || plan.accessLeftMs === undefined) return;
    if (!this.statusGate.due(plan.health, now, everyMs)) return;
    const mins = Math.floor(plan.accessLeftMs / 60_000);
    this.logger.info('token_status', `Token status: ${plan.health === 'fresh' ? 'valid' : plan.health}, ${mins} minutes until expiry`, {
      health: plan.health,
      accessLeftSeconds: Math.round(plan.accessLeftMs / 1000),
      refreshLeftSeconds: plan.refreshLeftMs !== undefined ? Math.round(plan.refreshLeftMs / 1000) : undefined,
      generation: plan.best.generation,
    });
  }
}
