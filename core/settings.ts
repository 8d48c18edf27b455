/**
 * Config → the settings each refresher runs with, built in one place (the agent's wiring, the
 * function's entry, the demo, the bench, the soak and the test rigs all call these). Every field
 * is required downstream: the protocol has no defaults of its own to drift from these.
 */
import type { Config } from './config.js';
import type { SessionSettings } from './refresh.js';
import { DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_CAP_MS, DEFAULT_MAX_ATTEMPTS } from './saxo/retry.js';
import { pushRetryMs, type Patience } from './tiers.js';

export interface AgentSettings extends SessionSettings {
  maxRefreshFailures: number;
  /** The human status line's period when nothing changes (agent/checkin.ts StatusLineGate); absent: every check. */
  statusLogMs?: number;
  /** While login is required, the ALERT is repeated this often. */
  loginAlertRepeatMs: number;
  /** How often a pair (or an announcement) the secret has not seen yet is retried. */
  pushRetryMs: number;
  /** SIM or LIVE: named in the login-required ALERT; the identity pin's environment (agent/pin.ts). */
  environment: 'SIM' | 'LIVE';
}

export interface CloudSettings extends Omit<SessionSettings, 'holder'> {
  maxRefreshFailures: number;
  loginAlertRepeatMs: number;
  environment: string;
  patience: Patience;
  /** A failed run with less than this left on the refresh token logs the chain_deadline ALERT (0/absent: never). */
  chainDeadlineAlertMs?: number;
}

export interface SettingsOverrides {
  /** Backoff jitter source (the soak passes its seeded RNG). */
  random?: () => number;
  holderId?: string;
}

function common(c: Config, o: SettingsOverrides) {
  return {
    refreshTokenAlertMs: c.refreshTokenAlertMs,
    botThresholdMs: c.botThresholdMs,
    leaseTtlMs: c.leaseTtlMs,
    expiryMarginMs: c.expiryMarginMs,
    keepSecretVersions: c.keepSecretVersions,
    credentials: { appKey: c.appKey, appSecret: c.appSecret },
    retry: {
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
      baseMs: DEFAULT_BACKOFF_BASE_MS,
      capMs: DEFAULT_BACKOFF_CAP_MS,
      minAttemptMs: Math.min(c.httpTimeoutMs, 1000),
      random: o.random ?? Math.random,
    },
    maxRefreshFailures: c.maxRefreshFailures,
    invalidGrantRecheckMs: c.invalidGrantRecheckMs,
    loginAlertRepeatMs: c.loginAlertRepeatMs,
    environment: c.environment,
  };
}

export function agentSettings(c: Config, o: SettingsOverrides = {}): AgentSettings {
  const holderId = o.holderId ?? c.holderId;
  return {
    ...common(c, o),
    holder: holderId,
    refresher: holderId,
    source: holderId,
    thresholdMs: c.refreshThresholdMs,
    // Without Secret Manager nobody can grant a lease: standalone and the primary VM present anyway.
    presentWithoutLease: !c.gcp || c.primary,
    // The agent keeps the pair on disk; a failed secret write becomes a pending push, retried.
    secretWriteAttempts: 1,
    pushRetryMs: pushRetryMs(c.checkIntervalMs),
    statusLogMs: c.statusLogMs,
  };
}

/** `holderId` names this function instance; each run adds its own suffix for the lease. */
export function cloudSettings(c: Config, o: SettingsOverrides = {}): CloudSettings {
  return {
    ...common(c, o),
    refresher: o.holderId ?? c.holderId,
    source: 'cloud',
    thresholdMs: c.cloudRefreshThresholdMs,
    refreshTokenAlertMs: 0,
    chainDeadlineAlertMs: c.refreshTokenAlertMs,
    presentWithoutLease: false,
    // The secret is the function's only durable place: a pair Saxo issued must get there.
    secretWriteAttempts: 4,
    patience: {
      agentThresholdMs: c.refreshThresholdMs,
      expiredGraceMs: c.cloudExpiredGraceMs,
      schedulePeriodMs: c.cloudSchedulePeriodMs,
      leaseTtlMs: c.leaseTtlMs,
      pushRetryMs: pushRetryMs(c.checkIntervalMs),
    },
  };
}
