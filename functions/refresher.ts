/**
 * The cloud path's logic, free of HTTP: read the secret's latest version, and when the token is
 * within the cloud threshold refresh it under the cross-host lease, store it, announce it, prune.
 * Idempotent under Scheduler's at-least-once delivery: a duplicate call finds either a fresh token
 * (action "none") or a held lease (action "deferred").
 */
import { randomBytes } from 'node:crypto';
import { decideCloud, shouldAlert } from '../core/decide.js';
import { SaxoError, SecretStoreError, errorText } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { EventBus, SecretRead, SecretStore, TokenEndpoint } from '../core/ports.js';
import { pushToSecret, describeLifetime, withNextGeneration, type RefresherSettings } from '../core/push.js';
import { compareFreshness, fromResponse, type TokenSet } from '../core/token.js';

export interface CloudSettings extends RefresherSettings {
  cloudRefreshThresholdMs: number;
  /** How long after the access token expired the function leaves the refresh to the VM agent. */
  expiredGraceMs?: number | undefined;
  /** The agent's threshold: a token found inside it means the cloud missed its window. */
  agentThresholdMs?: number | undefined;
  /** The bots' buffer (120 s): the function's retries end before it. */
  botThresholdMs?: number | undefined;
}

const DEFAULT_EXPIRED_GRACE_MS = 45 * 60_000;
const DEFAULT_AGENT_THRESHOLD_MS = 300_000;
const DEFAULT_BOT_THRESHOLD_MS = 120_000;
/** Stop waiting for the lower tiers when the refresh token has this little life left. */
const REFRESH_SAFETY_MS = 15 * 60_000;
/** Refresh-token life beyond the access token's when Saxo's is unknown (bot pairs): 3600 − 1140 s, rounded down. */
const UNKNOWN_REFRESH_TAIL_MS = 40 * 60_000;

/**
 * The cloud found the token already inside a lower tier's window (the agent's 300 s, the bots'
 * 120 s, or expired): it missed its own window, so the agent or a bot has probably refreshed and
 * will push the pair as soon as it can. Presenting now would likely present a consumed refresh
 * token. Wait (this is re-checked at every scheduled run) while the refresh token keeps a safe
 * margin and at most `expiredGraceMs` past the expiry; after that a lone cloud path saves the chain.
 */
function awaitLowerTiers(accessLeftMs: number, refreshLeftMs: number | undefined, s: CloudSettings): boolean {
  if (accessLeftMs > (s.agentThresholdMs ?? DEFAULT_AGENT_THRESHOLD_MS)) return false;
  if (-accessLeftMs >= (s.expiredGraceMs ?? DEFAULT_EXPIRED_GRACE_MS)) return false;
  return (refreshLeftMs ?? accessLeftMs + UNKNOWN_REFRESH_TAIL_MS) > REFRESH_SAFETY_MS;
}

export interface CloudDeps {
  clock: Clock;
  store: SecretStore;
  bus?: EventBus | undefined;
  saxo: TokenEndpoint;
  logger: Logger;
  settings: CloudSettings;
}

export type CloudAction = 'none' | 'refreshed' | 'deferred' | 'recovered' | 'failed' | 'login_required';

export interface CloudResult {
  action: CloudAction;
  /** HTTP status for the Scheduler: non-2xx makes its retry policy apply. */
  status: number;
  version?: string | undefined;
  generation?: number | undefined;
  expiresAt?: string | undefined;
  accessLeftSeconds?: number | undefined;
  reason?: string | undefined;
}

export async function runCloudRefresh(d: CloudDeps, opts: { force?: boolean } = {}): Promise<CloudResult> {
  const { clock, store, logger, settings } = d;
  let latest: SecretRead | undefined;
  try {
    latest = await store.latest();
  } catch (err) {
    logger.error('secret_unavailable', 'Secret Manager did not answer', { error: errorText(err) });
    return { action: 'failed', status: 503, reason: 'secret_unavailable' };
  }
  register(logger, latest?.token);
  const plan = decideCloud(clock.now(), latest, settings.cloudRefreshThresholdMs);
  for (const n of plan.notes) logger.warn('input_problem', n);
  if (!plan.best) {
    logger.error('login_required', 'Login required: the secret holds no usable token (run `npx token-keeper login`)');
    return { action: 'login_required', status: 500, reason: 'no_token' };
  }
  // A dead refresh token is not "valid": decide() never marks it for refresh, so say so here.
  if (plan.health === 'login_required' && !opts.force) {
    logger.error('login_required', 'Login required: the refresh token in the secret has expired (run `npx token-keeper login`)');
    return { action: 'login_required', status: 500, reason: 'refresh_token_expired' };
  }
  if (plan.refresh && !opts.force && awaitLowerTiers(plan.accessLeftMs ?? 0, plan.refreshLeftMs, settings)) {
    logger.warn('awaiting_agent', 'The cloud missed its refresh window; giving the VM agent (or a bot) time to push its newer pair', {
      version: latest?.name,
      accessLeftSeconds: Math.round((plan.accessLeftMs ?? 0) / 1000),
    });
    return { action: 'deferred', status: 200, version: latest?.name, reason: 'awaiting_agent' };
  }
  if (!plan.refresh && !opts.force) {
    const left = Math.round((plan.accessLeftMs ?? 0) / 1000);
    logger.info('token_status', `Token status: valid, ${Math.floor(left / 60)} minutes until expiry`, {
      version: latest?.name,
      generation: plan.best.generation,
      accessLeftSeconds: left,
      health: plan.health,
    });
    return { action: 'none', status: 200, version: latest?.name, generation: plan.best.generation, accessLeftSeconds: left };
  }

  // One lease holder per invocation, not per instance: acquireLease lets a holder re-take its own
  // lease, so overlapping invocations in one instance (duplicate Scheduler calls) would both get in.
  const holder = `${settings.holderId}:${randomBytes(4).toString('hex')}`;
  let leased = false;
  try {
    leased = await store.acquireLease(holder, settings.leaseTtlMs, clock.now());
  } catch (err) {
    logger.error('secret_unavailable', 'Could not take the refresh lease', { error: errorText(err) });
    return { action: 'failed', status: 503, reason: 'lease_unavailable' };
  }
  if (!leased) {
    logger.info('lease_busy', 'Another refresher holds the lease; nothing to do');
    return { action: 'deferred', status: 200, reason: 'lease_held' };
  }

  let failures = 0;
  let lastRefresh: { at: number; by: string; version: string } | undefined;
  try {
    failures = (await store.meta()).failures;
    // Re-read under the lease: another refresher may have finished just before we took it.
    const again = await store.latest();
    register(logger, again?.token);
    const plan2 = decideCloud(clock.now(), again, settings.cloudRefreshThresholdMs);
    if (!plan2.best) return { action: 'login_required', status: 500, reason: 'no_token' };
    if (!plan2.refresh && !opts.force) {
      return { action: 'none', status: 200, version: again?.name, generation: plan2.best.generation };
    }
    if (plan2.health === 'login_required' && !opts.force) {
      logger.error('login_required', 'Login required: the refresh token in the secret has expired (run `npx token-keeper login`)');
      failures += 1;
      return { action: 'login_required', status: 500, reason: 'refresh_token_expired' };
    }
    const out = await present(d, plan2.best, failures);
    failures = out.failures;
    lastRefresh = out.lastRefresh;
    return out.result;
  } catch (err) {
    if (!(err instanceof SecretStoreError)) throw err;
    logger.error('secret_unavailable', 'Secret Manager failed during refresh', { error: errorText(err) });
    return { action: 'failed', status: 503, reason: 'secret_unavailable' };
  } finally {
    await store
      .releaseLease(holder, { failures, lastRefresh })
      .catch((err) => logger.warn('lease_release_failed', 'Could not release the lease (it will expire)', { error: errorText(err) }));
  }
}

async function present(
  d: CloudDeps,
  presented: TokenSet,
  failures: number,
): Promise<{ result: CloudResult; failures: number; lastRefresh?: { at: number; by: string; version: string } }> {
  const { clock, store, bus, logger, settings, saxo } = d;
  const appKey = presented.appKey ?? settings.appKey;
  const appSecret = presented.appSecret ?? settings.appSecret;
  if (!appKey) {
    logger.error('config_missing', 'No app key in the secret payload or SAXO_APP_KEY');
    return { result: { action: 'failed', status: 500, reason: 'no_app_key' }, failures: failures + 1 };
  }
  const start = clock.now();
  // Retries stop before the bots' own window (they take no lease): past it a bot may refresh the
  // same pair. An already-late pair (the chain-saving case) is bounded by the lease only.
  const botCut = presented.accessExpiresAt - (settings.botThresholdMs ?? DEFAULT_BOT_THRESHOLD_MS);
  const deadline = Math.min(presented.refreshExpiresAt ?? Infinity, start + settings.leaseTtlMs * 0.75, botCut > start ? botCut : Infinity);
  logger.info('refresh_started', 'Token needs refresh: threshold reached', { generation: presented.generation });
  let next: TokenSet;
  let lifetimeSec: number;
  try {
    const res = await saxo.refresh(presented.refreshToken, { deadline, appKey, appSecret });
    const now = clock.now();
    lifetimeSec = res.expiresIn;
    next = withNextGeneration(fromResponse(res, now, { ...presented, appKey, appSecret }, 'cloud', settings.expiryMarginMs), presented);
    register(logger, next);
  } catch (err) {
    if (!(err instanceof SaxoError)) throw err;
    return onSaxoError(d, err, presented, failures);
  }
  // I3: the new pair must reach the secret before anything else; AddSecretVersion is retried
  // (a duplicate version of the same pair is harmless; a lost pair is not).
  let version = '';
  for (let attempt = 1; ; attempt++) {
    try {
      version = await pushToSecret({ store, bus, logger, token: next, keep: settings.keepSecretVersions, reason: 'refresh' });
      break;
    } catch (err) {
      if (attempt >= 4) {
        logger.alert('secret_write_lost', 'ALERT: Saxo issued a new token but it could not be stored in Secret Manager', { error: errorText(err) });
        return { result: { action: 'failed', status: 503, reason: 'secret_write_failed' }, failures: failures + 1 };
      }
      await clock.sleep(250 * 2 ** attempt);
    }
  }
  const now = clock.now();
  logger.notice('token_refreshed', `Token refreshed successfully (${describeLifetime(lifetimeSec)})`, {
    by: settings.holderId,
    version,
    generation: next.generation,
    expiresAt: new Date(next.accessExpiresAt).toISOString(),
    durationMs: now - start,
  });
  return {
    result: {
      action: 'refreshed',
      status: 200,
      version,
      generation: next.generation,
      expiresAt: new Date(next.accessExpiresAt).toISOString(),
    },
    failures: 0,
    lastRefresh: { at: now, by: settings.holderId, version },
  };
}

async function onSaxoError(d: CloudDeps, err: SaxoError, presented: TokenSet, failures: number) {
  const { store, logger, settings } = d;
  logger.warn('refresh_api_failed', `Token refresh API failed: ${err.status ?? err.code} - ${err.code}`, {
    code: err.code,
    status: err.status,
    retryable: err.retryable,
  });
  if (err.code === 'invalid_grant') {
    // I4: someone (the agent, a bot via the agent) may have stored a newer pair meanwhile.
    const latest = await store.latest().catch(() => undefined);
    if (latest?.token && compareFreshness(latest.token, presented) > 0) {
      logger.info('recovered_newer_token', 'Refresh token was already used; the secret already holds a newer pair');
      return { result: { action: 'recovered' as const, status: 200, version: latest.name }, failures: 0 };
    }
  }
  const n = failures + 1;
  logger.error('refresh_failed', `Token refresh failed (attempt ${n}/${settings.maxRefreshFailures})`, {
    reason: err.code,
    consecutiveFailures: n,
  });
  if (shouldAlert(n, settings.maxRefreshFailures)) {
    logger.alert('refresh_alert', `ALERT: Token refresh failed ${n} consecutive times! Manual intervention may be required.`, {
      consecutiveFailures: n,
    });
  }
  const fatal = err.code === 'invalid_grant';
  if (fatal) logger.error('login_required', 'Login required: Saxo rejected the newest refresh token (run `npx token-keeper login`)');
  return {
    result: { action: fatal ? ('login_required' as const) : ('failed' as const), status: fatal ? 500 : 503, reason: err.code },
    failures: n,
  };
}

function register(logger: Logger, t: TokenSet | undefined): void {
  if (!t) return;
  logger.addSecret(t.accessToken);
  logger.addSecret(t.refreshToken);
  logger.addSecret(t.appSecret);
}
