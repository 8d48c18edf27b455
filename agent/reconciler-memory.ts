/**
 * The agent's reconciler, its memory: the newest known pair, what the state file records, the
 * upstream and health trackers, the local side, and the writes every run shares (adopt a pair,
 * write the cache under the flock, save the state, finish a journaled refresh at start-up).
 * agent/reconciler.ts decides and acts on top of it.
 */
import { errorText } from '../core/errors.js';
import type { Phase } from '../core/refresh.js';
import { compareFreshness, describeExpiry, secretsOf, withNextGeneration, type TokenSet } from '../core/token.js';
import { createLocalSide, recoverFromJournal, writeCacheIfNewer, type AgentLocalSide } from './local-side.js';
import { Serial } from './serial.js';
import { Upstream } from './upstream.js';
import { Health } from './health.js';
import { PinGuard } from './pin.js';
import type { AgentState } from './state-file.js';
import type { Outcome, ReconcilerDeps } from './reconciler-types.js';

export abstract class ReconcilerMemory {
  protected known: TokenSet | undefined;
  protected lastRefresh: AgentState['lastRefresh'];
  protected awaiting: AgentState['awaiting'];
  protected clockSkew: AgentState['clockSkew'];
  protected watchFailed: AgentState['watchFailed'];
  protected readonly serial = new Serial<Outcome>('ignored');
  protected phaseNow: Phase = 'idle';
  protected readonly up: Upstream;
  protected health: Health;
  /** The agent's side of a refresh: its flock, its cache and state (agent/local-side.ts). */
  protected readonly local: AgentLocalSide;
  /** I7: the account every adopted pair must belong to (agent/pin.ts; loaded by agent.ts). */
  readonly pin: PinGuard;

  constructor(protected readonly d: ReconcilerDeps) {
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
  protected async recoverJournal(): Promise<void> {
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

  protected adopt(token: TokenSet, from: string): void {
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
  protected async writeCacheIfNewer(token: TokenSet): Promise<boolean> {
    const r = await writeCacheIfNewer(this.local, token, this.serial.signal);
    if (r.kind === 'newer') this.adopt(withNextGeneration(r.token, this.known), 'cache');
    if (r.kind === 'failed' && !this.serial.signal.aborted) this.health.failures.failed(r.reason, r.detail);
    return r.kind === 'written';
  }

  protected requireLogin(why: string, pair: TokenSet | undefined): Outcome {
    this.health.requireLogin(why, pair);
    return 'login_required';
  }

  /** A push renumbers the pair above the secret's generation: that is the pair we hold now. */
  protected keep(stored: TokenSet | undefined): void {
    if (stored && stored.refreshToken === this.known?.refreshToken) this.known = { ...this.known, generation: stored.generation };
  }

  /** Resolves with the error when the state could not be written (logged here). */
  protected async saveState(): Promise<Error | undefined> {
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

  protected page() {
    return { clock: this.d.clock, repeatMs: this.d.settings.loginAlertRepeatMs, environment: this.d.settings.environment };
  }

  protected policy() {
    return { refreshThresholdMs: this.d.settings.thresholdMs, refreshTokenAlertMs: this.d.settings.refreshTokenAlertMs };
  }
}
