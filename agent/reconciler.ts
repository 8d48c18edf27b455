/**
 * The agent's reconciler: every trigger (timer tick, cache-file change, Pub/Sub event, startup,
 * manual refresh) runs through one serialized `run()`, which gathers what the sources hold, asks
 * the pure `decide()` what to do, and applies that through the sinks (cache, state, secret, bus).
 * All IO is injected so the same code runs for real, in tests with fake clocks, and in the soak.
 * The secret side lives in upstream.ts and failure/alert bookkeeping in health.ts; what remains
 * (~450 lines) is the agent's state machine — adopt, repair, refresh, recover — kept in one file on
 * purpose: the ordering between those steps (locks, re-reads, durable-first writes) is the design.
 */
import { decide, type Plan, type SecretView, type View } from '../core/decide.js';
import { SaxoError, SecretStoreError, LockTimeoutError, errorText } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Clock } from '../core/clock.js';
import type { EventBus, Held, SecretStore, TokenCache, TokenEndpoint, TokenRotatedEvent } from '../core/ports.js';
import { compareFreshness, fromResponse, type TokenSet } from '../core/token.js';
import { describeExpiry, describeLifetime, pushToSecret, withNextGeneration, type RefresherSettings } from '../core/push.js';
import { Upstream } from './upstream.js';
import { Health } from './health.js';
import type { AgentState } from './state-file.js';

export type { AgentState };

/** The agent's private record (agent/state-file.ts in production, memory in tests and the soak). */
export interface StateStore {
  read(): Promise<AgentState | undefined>;
  write(state: AgentState): Promise<void>;
}

export interface ReconcilerSettings extends RefresherSettings {
  refreshThresholdMs: number;
  refreshTokenAlertMs: number;
}

export interface ReconcilerDeps {
  clock: Clock;
  cache: TokenCache;
  /** Takes the bots' flock (agent/flock.ts); throws LockTimeoutError after the bots' 30 s. */
  lock: () => Promise<Held>;
  state: StateStore;
  saxo: TokenEndpoint;
  store?: SecretStore | undefined;
  bus?: EventBus | undefined;
  logger: Logger;
  settings: ReconcilerSettings;
}

export type Trigger =
  | { kind: 'startup' }
  | { kind: 'tick' }
  | { kind: 'cache-changed' }
  | { kind: 'event'; event: TokenRotatedEvent }
  | { kind: 'refresh'; force: boolean }
  /** Retry only the pending upstream push (run every few seconds while one is pending). */
  | { kind: 'push' };

export type Outcome =
  | 'idle'
  | 'refreshed'
  | 'adopted'
  | 'repaired'
  | 'ignored'
  | 'deferred'
  | 'failed'
  | 'login_required';

export class Reconciler {
  private known: TokenSet | undefined;
  private lastRefresh: AgentState['lastRefresh'];
  private queue: Promise<unknown> = Promise.resolve();
  private cacheChangePending = false;

  private readonly up: Upstream;
  private readonly health: Health;

  constructor(private readonly d: ReconcilerDeps) {
    this.up = new Upstream({
      clock: d.clock,
      store: d.store,
      bus: d.bus,
      logger: d.logger,
      keepSecretVersions: d.settings.keepSecretVersions,
      onRead: (t) => this.registerSecrets(t),
    });
    this.health = new Health(d.logger, d.settings.maxRefreshFailures);
  }

  /** Load the private state; call once before the first run. */
  async load(): Promise<void> {
    const s = await this.d.state.read();
    this.known = s?.token;
    this.health.failures = s?.failures ?? 0;
    this.lastRefresh = s?.lastRefresh;
    this.health.loginRequired = s?.loginRequired ?? false;
    this.registerSecrets(this.known);
  }

  get newestKnown(): TokenSet | undefined {
    return this.known;
  }

  get consecutiveFailures(): number {
    return this.health.failures;
  }

  /** Serialize triggers: one decision at a time, in arrival order; bursts of file events coalesce. */
  run(trigger: Trigger): Promise<Outcome> {
    if (trigger.kind === 'cache-changed') {
      if (this.cacheChangePending) return Promise.resolve('ignored');
      this.cacheChangePending = true;
    }
    const next = this.queue.then(() => {
      if (trigger.kind === 'cache-changed') this.cacheChangePending = false;
      return this.handle(trigger);
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** A pair the secret has not seen yet is waiting for Secret Manager to answer. */
  get hasPendingPush(): boolean {
    return this.up.pending;
  }

  private async handle(trigger: Trigger): Promise<Outcome> {
    const { logger, store } = this.d;
    if (trigger.kind === 'push') {
      await this.flushPush();
      if (!this.up.pending) await this.saveState();
      return 'idle';
    }
    let secret: SecretView = store ? { kind: 'unknown' } : { kind: 'absent' };

    if (trigger.kind === 'event') {
      const ev = trigger.event;
      if (this.known?.generation !== undefined && ev.generation <= this.known.generation) {
        logger.debug('event_ignored', 'Ignored TOKEN_ROTATED event: not newer than what we hold', {
          version: ev.version,
          generation: ev.generation,
        });
        return 'ignored';
      }
      secret = await this.readSecret(ev.version);
      if (secret.kind === 'unavailable') {
        // A newer pair exists that we cannot read: our own is consumed. Remember that (so we never
        // present it) and nack, so Pub/Sub redelivers once Secret Manager answers again.
        this.up.noteAnnounced(ev, this.known?.refreshToken);
        throw new SecretStoreError('unavailable', `cannot read announced version ${ev.version} yet`);
      }
    }

    const cache = await this.d.cache.read();
    const viewOf = (s: SecretView): View => ({ now: this.d.clock.now(), cache, known: this.known, secret: s });
    let plan = decide(viewOf(secret), this.policy());

    const wantSecret =
      secret.kind === 'unknown' &&
      (trigger.kind === 'startup' ||
        this.up.awaitingAnnounced ||
        trigger.kind === 'refresh' ||
        plan.refresh ||
        this.up.pending ||
        plan.origin === 'cache' && plan.updateKnown ||
        plan.health !== 'fresh');
    if (wantSecret) {
      secret = await this.readSecret();
      plan = decide(viewOf(secret), this.policy());
    }
    for (const n of plan.notes) logger.warn('input_problem', n);

    let outcome: Outcome = await this.apply(plan, secret);
    const force = trigger.kind === 'refresh' && trigger.force;
    if (plan.refresh || force) outcome = await this.refresh(force);
    else {
      // decide() never refreshes a dead refresh token: say "login required" (once) instead of idling.
      if (plan.health === 'login_required' && plan.best && outcome === 'idle') outcome = this.markLoginRequired(plan);
      if (trigger.kind === 'tick') this.health.logStatus(plan);
    }
    this.health.watchRefreshExpiry(plan);
    await this.flushPush();
    await this.saveState();
    return outcome;
  }

  /** Push a pair the secret has not seen yet (adopted from a bot, or refreshed while it was down). */
  private async flushPush(): Promise<void> {
    if (!this.up.configured || !this.up.pending || !this.known) return;
    const secret = await this.readSecret();
    if (secret.kind === 'read') await this.push(this.known, secret);
  }

  /** Adopt the newest pair, undo a stale cache, push upstream. No Saxo call. */
  private async apply(plan: Plan, secret: SecretView): Promise<Outcome> {
    if (!plan.best) return this.known || this.health.loginRequired ? 'login_required' : 'idle';
    let outcome: Outcome = 'idle';
    let best = plan.best;
    if (plan.updateKnown) {
      best = withNextGeneration(best, this.known, secret.kind === 'read' ? secret.read?.token : undefined);
      this.adopt(best, plan.origin ?? 'cache');
      outcome = 'adopted';
    }
    if (plan.writeCache) {
      const wrote = await this.writeCacheIfNewer(best);
      if (wrote) outcome = outcome === 'adopted' ? 'adopted' : 'repaired';
    }
    if (this.up.configured && (plan.pushSecret || this.up.pending) && secret.kind === 'read') {
      await this.push(best, secret);
    } else if (this.up.configured && plan.pushSecret) {
      this.up.pending = true;
    }
    return outcome;
  }

  private adopt(token: TokenSet, from: string): void {
    const prev = this.known;
    this.known = token;
    // A pair from the cache was made by a bot (or another agent): the cloud must learn of it before
    // it presents the refresh token the bot just consumed.
    if (from === 'cache' && this.up.configured) this.up.pending = true;
    this.up.onAdopted(token);
    this.registerSecrets(token);
    if (prev && prev.refreshToken !== token.refreshToken) this.health.recovered();
    else if (!prev) this.health.loginRequired = false;
    this.d.logger.info('token_adopted', `Adopted a newer token from the ${from} (${describeExpiry(token, this.d.clock.now())})`, {
      from,
      generation: token.generation,
      expiresAt: new Date(token.accessExpiresAt).toISOString(),
    });
  }

  /** Write under the bots' flock, re-reading first: a bot may have written something newer meanwhile. */
  private async writeCacheIfNewer(token: TokenSet): Promise<boolean> {
    let held: Held | undefined;
    try {
      held = await this.d.lock();
      const now = await this.d.cache.read();
      if (now.kind === 'ok' && compareFreshness(now.token, token) >= 0) {
        if (compareFreshness(now.token, token) > 0) this.adopt(now.token, 'cache');
        return false;
      }
      await this.d.cache.write(token);
      this.d.logger.info('cache_written', 'Cache updated with the newest token', {
        generation: token.generation,
        reason: now.kind === 'ok' ? 'older' : now.kind,
      });
      return true;
    } catch (err) {
      if (err instanceof LockTimeoutError) {
        this.d.logger.warn('lock_timeout', `Could not acquire token lock: ${err.message}`);
        return false;
      }
      throw err;
    } finally {
      await held?.release();
    }
  }

  private async push(best: TokenSet, secret: Extract<SecretView, { kind: 'read' }>): Promise<void> {
    const stored = await this.up.push(best, secret);
    // Renumbered above the secret's generation: that is the pair we hold now.
    if (stored && stored.generation !== best.generation && this.known?.refreshToken === stored.refreshToken) this.known = stored;
  }

  private readSecret(version?: string): Promise<SecretView> {
    return this.up.read(version, this.known !== undefined);
  }

  /** One refresh under the flock and (when Secret Manager answers) the cross-host lease. */
  private async refresh(force: boolean): Promise<Outcome> {
    const { clock, logger, store, settings } = this.d;
    let held: Held | undefined;
    let leased = false;
    try {
      try {
        held = await this.d.lock();
      } catch (err) {
        if (err instanceof LockTimeoutError) {
          logger.warn('lock_timeout', `Could not acquire token lock; will retry next check (${err.message})`);
          return 'deferred';
        }
        throw err;
      }
      let secret: SecretView = store ? { kind: 'unavailable' } : { kind: 'absent' };
      if (store) {
        try {
          leased = await store.acquireLease(settings.holderId, settings.leaseTtlMs, clock.now());
          if (!leased) {
            logger.info('lease_busy', 'Another refresher holds the lease; waiting for its result');
            return 'deferred';
          }
          secret = await this.readSecret();
        } catch (err) {
          if (!(err instanceof SecretStoreError)) throw err;
          logger.warn('secret_unavailable', 'Secret Manager did not answer; refreshing locally', { error: errorText(err) });
        }
      }
      // Re-read everything under the locks: someone may have refreshed while we waited.
      const cache = await this.d.cache.read();
      const plan = decide({ now: clock.now(), cache, known: this.known, secret }, this.policy());
      if (plan.best && plan.updateKnown) this.adopt(withNextGeneration(plan.best, this.known, undefined), plan.origin ?? 'cache');
      // loginRequired survives only while the pair Saxo rejected is still the newest (adopt() clears
      // it): presenting that pair again every tick could only count as a reuse (I1).
      // Even --force never re-presents the pair Saxo already rejected: that could only count as a
      // reuse (I1). A dead refresh-token expiry, by contrast, may be wrong (clock skew): --force tries.
      if (!plan.best || this.health.loginRequired || (plan.health === 'login_required' && !force)) return this.markLoginRequired(plan);
      if (!plan.refresh && !force) {
        if (plan.writeCache) await this.d.cache.write(this.known ?? plan.best);
        return 'adopted';
      }
      const presented = this.known ?? plan.best;
      if (this.up.isSuperseded(presented)) {
        logger.warn('superseded_token', 'A newer token was announced but Secret Manager cannot be read yet; not presenting the consumed one', {
          generation: presented.generation,
        });
        return 'deferred';
      }
      return await this.presentAndStore(presented, secret, leased);
    } finally {
      if (leased && store) {
        await store
          .releaseLease(settings.holderId, { failures: this.health.failures, lastRefresh: this.lastRefresh && { ...this.lastRefresh, version: this.lastRefresh.version ?? '' } })
          .catch((err) => logger.warn('lease_release_failed', 'Could not release the lease (it will expire)', { error: errorText(err) }));
      }
      await held?.release();
    }
  }

  private async presentAndStore(presented: TokenSet, secret: SecretView, leased: boolean): Promise<Outcome> {
    const { clock, logger, store, bus, settings, saxo } = this.d;
    const start = clock.now();
    const deadline = Math.min(
      presented.refreshExpiresAt ?? Infinity,
      leased ? start + settings.leaseTtlMs * 0.75 : Infinity,
      start + 5 * 60_000,
    );
    const appKey = presented.appKey ?? settings.appKey;
    const appSecret = presented.appSecret ?? settings.appSecret;
    if (!appKey) {
      logger.error('config_missing', 'No app key: set SAXO_APP_KEY or store app_key with the token');
      return this.countFailure('no app key');
    }
    let res;
    try {
      logger.info('refresh_started', 'Token needs refresh: threshold reached', { generation: presented.generation });
      res = await saxo.refresh(presented.refreshToken, { deadline, appKey, appSecret });
    } catch (err) {
      if (err instanceof SaxoError) return this.onSaxoError(err, presented);
      throw err;
    }
    const now = clock.now();
    const base = { ...presented, appKey, appSecret };
    let next = fromResponse(res, now, base, settings.holderId, settings.expiryMarginMs);
    next = withNextGeneration(next, presented, secret.kind === 'read' ? secret.read?.token : undefined);
    this.registerSecrets(next);
    // I3: durable locally first (cache fsync + rename, then the private state), then upstream. A
    // failing cache write must not lose the pair: it stays in memory, the state file and the
    // secret, and the next check rewrites the cache.
    this.known = next;
    try {
      await this.d.cache.write(next);
    } catch (err) {
      logger.error('cache_write_failed', 'Could not write the cache; keeping the new token in the state file and the secret', {
        error: errorText(err),
      });
    }
    this.health.recovered();
    this.lastRefresh = { at: now, by: settings.holderId };
    await this.saveState();
    logger.notice('token_refreshed', `Token refreshed successfully (${describeLifetime(res.expiresIn)})`, {
      by: settings.holderId,
      generation: next.generation,
      expiresAt: new Date(next.accessExpiresAt).toISOString(),
      durationMs: now - start,
    });
    if (store && secret.kind === 'read') {
      try {
        const v = await pushToSecret({ store, bus, logger, token: next, keep: settings.keepSecretVersions, reason: 'refresh' });
        this.lastRefresh = { ...this.lastRefresh, version: v };
        this.up.pending = false;
      } catch (err) {
        this.up.pending = true;
        logger.warn('secret_push_failed', 'Refreshed locally; Secret Manager write failed, will retry', { error: errorText(err) });
      }
    } else if (store) {
      this.up.pending = true;
    }
    await this.saveState();
    return 'refreshed';
  }

  /** I4: a rejected token may simply be an old one; look for a newer pair before failing. */
  private async onSaxoError(err: SaxoError, presented: TokenSet): Promise<Outcome> {
    const { logger } = this.d;
    logger.warn('refresh_api_failed', `Token refresh API failed: ${err.status ?? err.code} - ${err.code}`, {
      code: err.code,
      status: err.status,
      retryable: err.retryable,
    });
    if (err.code === 'invalid_grant') {
      const cache = await this.d.cache.read();
      const secret = await this.readSecret();
      const plan = decide({ now: this.d.clock.now(), cache, known: this.known, secret }, this.policy());
      if (plan.best && compareFreshness(plan.best, presented) > 0) {
        this.adopt(withNextGeneration(plan.best, this.known, undefined), plan.origin ?? 'cache');
        if (plan.writeCache) await this.d.cache.write(this.known ?? plan.best);
        logger.info('recovered_newer_token', 'Refresh token was already used; recovered a newer pair instead');
        return 'adopted';
      }
      this.health.loginRequired = true;
      this.health.failed(err.code);
      logger.error('login_required', 'Login required: Saxo rejected the newest refresh token (run `npx token-keeper login`)');
      return 'login_required';
    }
    return this.countFailure(err.code);
  }

  private countFailure(reason: string): Outcome {
    this.health.failed(reason);
    return 'failed';
  }

  private markLoginRequired(plan: Plan): Outcome {
    this.health.requireLogin(plan.health);
    return 'login_required';
  }

  private async saveState(): Promise<void> {
    try {
      await this.d.state.write({
        token: this.known,
        failures: this.health.failures,
        lastRefresh: this.lastRefresh,
        agentSeenAt: this.d.clock.now(),
        loginRequired: this.health.loginRequired,
      });
    } catch (err) {
      this.d.logger.error('state_write_failed', 'Could not write the agent state file', { error: errorText(err) });
    }
  }

  private policy() {
    return { refreshThresholdMs: this.d.settings.refreshThresholdMs, refreshTokenAlertMs: this.d.settings.refreshTokenAlertMs };
  }

  private registerSecrets(t: TokenSet | undefined): void {
    if (!t) return;
    this.d.logger.addSecret(t.accessToken);
    this.d.logger.addSecret(t.refreshToken);
    this.d.logger.addSecret(t.appSecret);
  }
}


