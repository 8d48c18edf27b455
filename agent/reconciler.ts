/**
 * The agent's reconciler: every trigger (timer tick, cache-file change, Pub/Sub event, startup,
 * manual refresh, push retry) runs through one serialized `run()`, which gathers what the sources
 * hold, asks the pure `decide()` what to do, and applies it through the sinks. A refresh is the
 * shared protocol (core/refresh.ts) with the agent's LocalSide: the bots' flock, the cache, the
 * private state file. The secret side lives in upstream.ts, failures and alerts in health.ts, what
 * the agent remembers and the writes every run shares in reconciler-memory.ts. One decide() call
 * per trigger ('trigger' stage; a first `assess()` of the local sources only says whether the
 * secret is worth a read); the session decides again under the lock ('attempt').
 */
import { assess, decide, expiryMovedText, type Assessment, type Gates, type Plan, type SecretView } from '../core/decide.js';
import { SecretStoreError } from '../core/errors.js';
import { runRefreshSession } from '../core/refresh.js';
import { pushGraceMs } from '../core/tiers.js';
import { compareFreshness, withNextGeneration } from '../core/token.js';
import type { CacheRead } from '../core/ports.js';
import { blankSpentPair } from './fence.js';
import { ReconcilerMemory } from './reconciler-memory.js';
import type { Outcome, Trigger } from './reconciler-types.js';

export type { Outcome, ReconcilerDeps, StateStore, Trigger } from './reconciler-types.js';

export class Reconciler extends ReconcilerMemory {
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
    // A first look at the local sources (facts, no action) says whether the secret is worth a read;
    // then the trigger's one decision.
    if (secret.kind === 'unknown' && this.secretWorthReading(trigger, assess(viewOf(secret), this.policy()))) {
      secret = await this.up.read(undefined, this.known !== undefined);
    }
    const plan = decide(viewOf(secret), this.policy());
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

  /** One refresh under the flock and, when Secret Manager answers, the cross-host lease. */
  private async refresh(force: boolean, secretDown: boolean): Promise<Outcome> {
    const { clock, logger, store, bus, saxo, settings } = this.d;
    const r = await runRefreshSession(
      { clock, saxo, store, bus, logger, local: this.local, announceMark: this.up.mark },
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
        failures: this.health.failures.count,
      },
    );
    // The one place an agent refresh is counted (the state file records it at the end of this run).
    this.health.failures.apply(r.count);
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

  private async flushUpstream(announce: boolean): Promise<void> {
    this.keep(await this.up.flush(this.known, { announce }));
  }

  /**
   * Read the secret before deciding? Whenever it could change what happens: a start, a manual
   * refresh, something owed upstream, a due or unhealthy pair, a bot's pair to push. A spent pair:
   * its successor may already be readable (then no gap for the bots), unless Secret Manager just
   * failed — then the blanking must not wait for its deadline. A quiet tick costs no read.
   */
  private secretWorthReading(trigger: Trigger, a: Assessment): boolean {
    if (a.consumed) return !this.up.isDown;
    return trigger.kind === 'startup' || trigger.kind === 'refresh' || this.up.awaitingAnnounced || this.up.hasWork || a.refresh ||
      (a.origin === 'cache' && a.updateKnown) || a.health !== 'fresh';
  }

  /** The agent check's own gates: force, and (not the primary) when Secret Manager came back. */
  private triggerGates(force: boolean): Gates {
    const s = this.d.settings;
    return { stage: 'trigger', force, notPrimary: s.presentWithoutLease ? undefined : { secretBackAt: this.up.backAt, pushGraceMs: pushGraceMs(s) } };
  }

}
