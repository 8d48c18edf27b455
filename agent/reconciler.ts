/**
 * The agent's reconciler: every trigger (timer tick, cache-file change, Pub/Sub event, startup,
 * manual refresh, push retry) runs through one serialized `run()`, which gathers what the sources
 * hold, asks the pure `decide()` what to do, and applies it through the sinks. A refresh is the
 * shared protocol (core/refresh.ts) with the agent's LocalSide: the bots' flock, the cache, the
 * private state file. The secret side lives in upstream.ts, failures and alerts in health.ts.
 */
import { decide, expiryMovedText, type Gates, type Plan, type SecretView } from '../core/decide.js';
import { errorText, SecretStoreError } from '../core/errors.js';
import { runRefreshSession, type Phase } from '../core/refresh.js';
import { pushGraceMs } from '../core/tiers.js';
import { compareFreshness, describeExpiry, secretsOf, withNextGeneration, type TokenSet } from '../core/token.js';
import type { CacheRead } from '../core/ports.js';
import { blankSpentPair } from './fence.js';
import { createLocalSide, recoverFromJournal, writeCacheIfNewer, type AgentLocalSide } from './local-side.js';
import { Serial } from './serial.js';
import { Upstream } from './upstream.js';
import { Health } from './health.js';
import { PinGuard } from './pin.js';
import type { AgentState } from './state-file.js';
import type { Outcome, ReconcilerDeps, Trigger } from './reconciler-types.js';

export type { Outcome, ReconcilerDeps, StateStore, Trigger } from './reconciler-types.js';

export class Reconciler {
  private known: TokenSet | undefined;
  private lastRefresh: AgentState['lastRefresh'];
  private awaiting: AgentState['awaiting'];
  private clockSkew: AgentState['clockSkew'];
  private watchFailed: AgentState['watchFailed'];
  private readonly serial = new Serial<Outcome>('ignored');
  private phaseNow: Phase = 'idle';
  private readonly up: Upstream;
  private health: Health;
  /** The agent's side of a refresh: its flock, its cache and state (agent/local-side.ts). */
  private readonly local: AgentLocalSide;
  /** I7: the account every adopted pair must belong to (agent/pin.ts; loaded by agent.ts). */
  readonly pin: PinGuard;

  constructor(private readonly d: ReconcilerDeps) {
    this.pin = new PinGuard(d.logger, d.settings.environment ?? 'SIM');
    this.up = new Upstream({ clock: d.clock, store: d.store, bus: d.bus, logger: d.logger, keepSecretVersions: d.settings.keepSecretVersions });
    this.health = new Health(d.logger, d.settings.maxRefreshFailures, {}, this.page());
    this.local = createLocalSide({
      lock: (signal) => d.lock(signal),
      cache: d.cache,
      credentials: d.settings.credentials,
      logger: d.logger,
      known: () => this.known,
      adopt: (next) => {
        this.health.refreshed();
        this.known = next;
      },
      saveState: () => this.saveState(),
      consumed: (t) => void this.requireLogin('no_successor', t),
      journal: d.journal,
    });
  }

  /** Load the private state; call once before the first run. */
  async load(): Promise<void> {
    const s = await this.d.state.read();
    this.known = s?.token;
    this.lastRefresh = s?.lastRefresh;
    this.awaiting = s?.awaiting;
    this.clockSkew = s?.clockSkew;
    this.up.restore(s?.announce);
    this.up.restoreConsumed(s?.consumed);
    this.health = new Health(this.d.logger, this.d.settings.maxRefreshFailures, { failures: s?.failures, loginRequired: s?.loginRequired, known: s?.token }, this.page());
    this.d.logger.addSecret(...secretsOf(this.known));
    await this.recoverJournal();
  }

  /** Finish a refresh Saxo answered but this agent did not store (docs/DESIGN.md "Durable before interpreted"). */
  private async recoverJournal(): Promise<void> {
    const r = await recoverFromJournal(this.local, this.d.settings.source, this.d.settings.expiryMarginMs);
    // Reserve the journal now, so that a disk that fills later still has room for an answer.
    const room = await this.d.journal?.room();
    if (room && !room.ok) this.d.logger.warn('no_room', `At start: ${room.reason}; no refresh token will be presented until there is room`);
    if (r.kind === 'none') return;
    if (r.kind === 'ended') {
      this.d.logger.alert('refresh_token_missing', `ALERT: an unfinished refresh in the journal ended the chain (${r.why}); log in again (run \`npx token-keeper login\`)`);
      if (r.presented) await this.local.ended(r.presented, r.kept);
      else if (!(await this.saveState())) await this.d.journal?.wipe().catch(() => undefined);
      return;
    }
    if (r.adjusted.length) this.d.logger.warn('lifetime_clamped', `Saxo answered an unusable or implausible token lifetime; stored a bounded one instead (${r.adjusted.join(', ')})`, { clamped: r.adjusted });
    if (!this.known || compareFreshness(r.next, this.known) > 0) {
      this.health.refreshed();
      this.known = r.next;
      this.up.markPending();
      this.d.logger.notice('journal_recovered', 'Recovered the token Saxo issued before the last stop from the journal', { generation: r.next.generation });
    }
    this.local.hold(r.next);
    await this.writeCacheIfNewer(this.known);
    await this.local.settle(!(await this.saveState()));
  }

  /** The cache watcher failed: recorded in the state file for `status`. */
  noteWatchFailed(reason: string): void {
    this.watchFailed = { reason: reason.slice(0, 200), since: this.d.clock.now() };
  }

  get newestKnown(): TokenSet | undefined {
    return this.known;
  }
  get consecutiveFailures(): number {
    return this.health.failures.count;
  }
  /** Something waits for Secret Manager or Pub/Sub: run `{kind: 'push'}` every few seconds. */
  get hasPendingPush(): boolean {
    return this.up.hasWork;
  }
  /** 'presenting' or 'persisting' while an exchange with Saxo is in flight or being stored. */
  get phase(): Phase {
    return this.phaseNow;
  }

  /** One decision at a time, in arrival order; bursts of file events coalesce. */
  run(trigger: Trigger): Promise<Outcome> {
    // Noted on arrival, not when its turn comes: a refresh in progress (its invalid_grant recheck)
    // must see what was announced meanwhile.
    if (trigger.kind === 'consumed') this.up.noteConsumed(trigger.event);
    if (trigger.kind === 'event') this.up.noteSeen(trigger.event);
    return this.serial.run(() => this.handle(trigger), trigger.kind === 'cache-changed' ? 'cache' : undefined);
  }

  /** Start nothing new; resolves once the run in progress (an exchange, its writes) has finished. */
  stop(): Promise<void> {
    return this.serial.stop();
  }

  private async handle(trigger: Trigger): Promise<Outcome> {
    const { logger, store } = this.d;
    if (trigger.kind === 'push') {
      await this.flushUpstream(true);
      await this.saveState();
      return 'idle';
    }
    let secret: SecretView = store ? { kind: 'unknown' } : { kind: 'absent' };
    if (trigger.kind === 'event') {
      const ev = trigger.event;
      if (!this.up.worthReading(ev, this.known)) return 'ignored';
      secret = await this.up.read(ev.version, this.known !== undefined);
      if (secret.kind === 'unavailable') {
        // A newer pair exists that we cannot read: ours is consumed. Remember that (so we never
        // present it) and nack, so Pub/Sub redelivers once Secret Manager answers — unless it has
        // stayed unreadable for a token lifetime: then ack, and our own refreshes take over.
        if (!this.up.noteAnnounced(ev, this.known)) return 'ignored';
        throw new SecretStoreError('unavailable', `cannot read announced version ${ev.version} yet`);
      }
    }
    const cache = await this.d.cache.read();
    const force = trigger.kind === 'refresh' && trigger.force;
    const viewOf = (s: SecretView) => ({ now: this.d.clock.now(), cache, known: this.known, secret: s, consumed: this.up.consumed, gates: this.triggerGates(force) });
    let plan = decide(viewOf(secret), this.policy());
    const wantSecret =
      secret.kind === 'unknown' &&
      // A spent pair: its successor may already be readable (then no gap for the bots), unless
      // Secret Manager just failed — then the blanking must not wait for its deadline.
      (plan.consumed
        ? !this.up.isDown
        : trigger.kind === 'startup' || trigger.kind === 'refresh' || this.up.awaitingAnnounced || this.up.hasWork || plan.refresh ||
          (plan.origin === 'cache' && plan.updateKnown) || plan.health !== 'fresh');
    if (wantSecret) {
      secret = await this.up.read(undefined, this.known !== undefined);
      plan = decide(viewOf(secret), this.policy());
    }
    // A cache blanked by the fence reads as corrupt: expected, not worth a warning on every check.
    for (const n of plan.notes) if (!(plan.consumed && n.startsWith('cache corrupt'))) logger.warn('input_problem', n);
    if (plan.expiryMoved?.length) logger.warn('expiry_moved', expiryMovedText(plan.expiryMoved));
    if (plan.consumed) await this.fenceCache(cache);

    let outcome = await this.apply(plan, secret);
    const action = plan.action;
    if (action.kind === 'present') outcome = await this.refresh(force, secret.kind === 'unavailable');
    else if (action.kind === 'wait' && action.reason === 'awaiting_primary') {
      logger.info('awaiting_primary', 'Secret Manager is back; giving the primary VM time to push what it refreshed meanwhile');
      outcome = 'deferred';
    } else {
      // decide() never presents a dead refresh token: say "login required" (once) instead of idling.
      if (action.kind === 'login_required' && action.pair && outcome === 'idle') outcome = this.requireLogin(plan.health, action.pair);
      if (trigger.kind === 'tick') this.health.logStatus(plan, this.d.clock.now(), this.d.settings.statusLogMs);
      this.awaiting = plan.consumed
        ? (this.awaiting ?? { reason: 'another VM spent the refresh token; waiting for its successor from the secret or a push', since: this.d.clock.now() })
        : undefined;
    }
    this.health.watchRefreshExpiry(plan);
    // A failed announcement waits for the push retry (a few seconds), not for this run to repeat it;
    // a Secret Manager that just failed this run is not asked again (each try costs its deadline).
    if (!this.serial.signal.aborted && secret.kind !== 'unavailable') await this.flushUpstream(false);
    const saved = !(await this.saveState());
    if (this.local.unsettled) await this.local.settle(saved);
    return outcome;
  }

  /** Adopt the newest pair, undo a stale cache, push upstream. No Saxo call. */
  private async apply(plan: Plan, secret: SecretView): Promise<Outcome> {
    if (!plan.best) return this.requireLogin('no token in any source', undefined);
    let outcome: Outcome = 'idle';
    if (plan.updateKnown) {
      if (!this.pin.accepts(plan.best)) return 'ignored';
      this.adopt(withNextGeneration(plan.best, this.known, secret.kind === 'read' ? secret.read?.token : undefined), plan.origin ?? 'cache');
      outcome = 'adopted';
    }
    if (plan.writeCache && (await this.writeCacheIfNewer(this.known ?? plan.best)) && outcome === 'idle') outcome = 'repaired';
    if (plan.pushSecret) this.up.markPending();
    if (this.up.hasWork && secret.kind === 'read' && this.known) this.keep(await this.up.push(this.known, secret));
    return outcome;
  }

  private adopt(token: TokenSet, from: string): void {
    const prev = this.known;
    this.known = token;
    // A pair from the cache was made by a bot (or another agent): the cloud must learn of it before
    // it presents the refresh token the bot just consumed.
    if (from === 'cache') this.up.markPending();
    this.up.onAdopted(token);
    this.health.adopted(token, prev);
    this.d.logger.addSecret(...secretsOf(token));
    this.d.logger.info('token_adopted', `Adopted a newer token from the ${from} (${describeExpiry(token, this.d.clock.now())})`, {
      from,
      generation: token.generation,
      expiresAt: new Date(token.accessExpiresAt).toISOString(),
    });
  }

  /** Write under the bots' flock, re-reading first: a bot may have written something newer meanwhile. */
  private async writeCacheIfNewer(token: TokenSet): Promise<boolean> {
    const r = await writeCacheIfNewer(this.local, token, this.serial.signal);
    if (r.kind === 'newer') this.adopt(withNextGeneration(r.token, this.known), 'cache');
    if (r.kind === 'failed' && !this.serial.signal.aborted) this.health.failures.failed(r.reason, r.detail);
    return r.kind === 'written';
  }

  /** One refresh under the flock and, when Secret Manager answers, the cross-host lease. */
  private async refresh(force: boolean, secretDown: boolean): Promise<Outcome> {
    const { clock, logger, store, bus, saxo, settings } = this.d;
    const r = await runRefreshSession(
      { clock, saxo, store, bus, logger, failures: this.health.failures, local: this.local, announceMark: this.up.mark },
      settings,
      {
        force,
        secretDown,
        stop: this.serial.signal,
        onPhase: (p) => (this.phaseNow = p),
        // I7: another account's pair is never presented (nor adopted below).
        gates: { rejected: this.health.rejectedIds, pinAccepts: (t) => this.pin.accepts(t), superseded: (t) => this.up.isSuperseded(t) },
        consumed: this.up.consumed,
        announcedNewer: (t) => this.up.announcedNewer(t),
      },
    );
    const newest = r.kind === 'refreshed' ? undefined : 'token' in r ? r.token : r.newest;
    if (newest && (!this.known || compareFreshness(newest, this.known) > 0) && this.pin.accepts(newest)) {
      this.adopt(withNextGeneration(newest, this.known), r.kind === 'superseded' || r.kind === 'fresh' ? (r.origin ?? 'cache') : 'cache');
      await this.writeCacheIfNewer(this.known!);
    }
    this.awaiting = undefined;
    switch (r.kind) {
      case 'refreshed':
        this.lastRefresh = r.lastRefresh;
        if (r.clockSkew) {
          this.clockSkew = r.clockSkew;
          this.d.clockWatch?.measured(r.clockSkew);
        }
        if (r.stored === 'local') this.up.markPending();
        return 'refreshed';
      case 'superseded':
      case 'fresh':
        return 'adopted';
      case 'rejected':
        return this.requireLogin(r.reason, r.newest);
      case 'failed':
        return 'failed';
      case 'deferred':
        if (r.reason === 'secret_unavailable') {
          // Not the primary: without the lease only the primary presents (docs/DESIGN.md "Several VMs").
          this.awaiting = { reason: 'not the primary VM and Secret Manager does not answer', since: clock.now() };
          logger.warn('awaiting_primary', 'Token due, Secret Manager unreachable, this VM is not the primary: not presenting; waiting for the secret or a push');
        }
        return 'deferred';
    }
  }

  /** The fence's other half (agent/fence.ts): blank a spent refresh token in the bots' cache. */
  private async fenceCache(cache: CacheRead): Promise<void> {
    const failed = await blankSpentPair({ lock: this.d.lock, cache: this.d.cache, logger: this.d.logger }, cache, this.up.consumed, this.serial.signal);
    if (failed) this.health.failures.failed('cache_write_failed', failed);
  }

  private requireLogin(why: string, pair: TokenSet | undefined): Outcome {
    this.health.requireLogin(why, pair);
    return 'login_required';
  }

  private async flushUpstream(announce: boolean): Promise<void> {
    this.keep(await this.up.flush(this.known, { announce }));
  }

  /** A push renumbers the pair above the secret's generation: that is the pair we hold now. */
  private keep(stored: TokenSet | undefined): void {
    if (stored && stored.refreshToken === this.known?.refreshToken) this.known = { ...this.known, generation: stored.generation };
  }

  /** Resolves with the error when the state could not be written (logged here). */
  private async saveState(): Promise<Error | undefined> {
    try {
      await this.d.state.write({
        token: this.known,
        failures: this.health.failures.count,
        lastRefresh: this.lastRefresh,
        agentSeenAt: this.d.clock.now(),
        loginRequired: this.health.loginRequired,
        announce: this.up.pendingAnnouncement,
        awaiting: this.awaiting,
        clockSkew: this.d.clockWatch?.skew ?? this.clockSkew,
        consumed: [...this.up.consumed],
        watchFailed: this.watchFailed,
        subscription: this.d.bus?.subscriptionProblem?.(),
      });
      return undefined;
    } catch (err) {
      this.d.logger.error('state_write_failed', `Could not write the agent state file: ${errorText(err)}`);
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  private page() {
    return { clock: this.d.clock, repeatMs: this.d.settings.loginAlertRepeatMs, environment: this.d.settings.environment };
  }

  /** The agent check's own gates: force, and (not the primary) when Secret Manager came back. */
  private triggerGates(force: boolean): Gates {
    const s = this.d.settings;
    return { stage: 'trigger', force, notPrimary: s.presentWithoutLease ? undefined : { secretBackAt: this.up.backAt, pushGraceMs: pushGraceMs(s) } };
  }

  private policy() {
    return { refreshThresholdMs: this.d.settings.thresholdMs, refreshTokenAlertMs: this.d.settings.refreshTokenAlertMs };
  }
}
