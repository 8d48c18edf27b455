/**
 * The agent's side of Secret Manager and Pub/Sub: reading the secret (outage warnings
 * rate-limited), pushing pairs it has not seen, announcing versions that could not be announced,
 * and remembering announcements it could not fetch. The state lives here, behind methods, so the
 * reconciler only asks questions: is there upstream work, is this pair superseded.
 */
import { addVersion, announce, pruneVersions, rotatedEvent, type AnnounceMark } from '../core/announce.js';
import type { Clock } from '../core/clock.js';
import { secretBehind, type SecretView } from '../core/decide.js';
import { errorText } from '../core/errors.js';
import { SecretIdentity, sameVersion } from '../core/gcp/resource-names.js';
import type { Logger } from '../core/log.js';
import type { EventBus, SecretStore, TokenConsumedEvent, TokenRotatedEvent } from '../core/ports.js';
import { DEFAULT_ACCESS_LIFE_MS } from '../core/tiers.js';
import { secretsOf, withNextGeneration, withPayloadCredentials, type TokenSet } from '../core/token.js';

export interface UpstreamDeps {
  clock: Clock;
  store?: SecretStore | undefined;
  bus?: EventBus | undefined;
  logger: Logger;
  keepSecretVersions: number;
}

const OUTAGE_LOG_EVERY_MS = 60_000;
/** Spent pairIds remembered (the fence); a chain spends one per refresh, so a few suffice. */
const CONSUMED_KEEP = 32;
/**
 * The shortest wait for an announced version that cannot be read. A degenerate lifetime (expires_in
 * clamped to 0, core/token.ts saneLifetimes) must not turn "one token lifetime" into no wait at
 * all; one Secret Manager read deadline (10 s, core/gcp/secret-store.ts) is the least an outage
 * gets. Any real lifetime above it — Saxo's, the stand-in's, the demo's 15–30 s — is waited as
 * documented (docs/DESIGN.md "Known limits"): one lifetime, not more.
 */
const MIN_ANNOUNCED_WAIT_MS = 10_000;

export class Upstream {
  /** The pair we hold may be ahead of the secret: compare and push once Secret Manager answers. */
  private pending = false;
  /** A version stored but not announced yet (persisted in the state file by the reconciler). */
  private unannounced: TokenRotatedEvent | undefined;
  /**
   * An announced version we could not fetch, and the refresh token we held then: the announcement
   * proves that token was consumed, so it is not presented — for at most one token lifetime, after
   * which an unreadable announcement must not stall our own refreshes any longer.
   */
  private announced: { generation: number; version: string; consumed: string | undefined; until: number } | undefined;
  private lastOutageLog = -Infinity;
  private down = false;
  /** pairId()s announced as spent by another refresher (TOKEN_CONSUMED): decide()'s fence. Oldest first. */
  private spent: string[] = [];
  /** The highest generation announced (TOKEN_ROTATED), noted on arrival, before its run. */
  private announcedGeneration = -1;
  /** When Secret Manager answered again after failing (the primary's push may still be on its way). */
  private recoveredAt = -Infinity;
  /** Our secret by project id and (once Secret Manager has answered) by project number. */
  private readonly identity: SecretIdentity | undefined;

  /** Where a failed announcement waits (the reconciler saves it with the state). */
  readonly mark: AnnounceMark = {
    set: async (e) => {
      this.unannounced = e;
    },
    clear: async (e) => {
      if (this.unannounced && sameVersion(this.unannounced.version, e.version)) this.unannounced = undefined;
    },
  };

  constructor(private readonly d: UpstreamDeps) {
    this.identity = d.store ? new SecretIdentity(d.store.name) : undefined;
  }

  private announceDeps() {
    return { bus: this.d.bus, clock: this.d.clock, logger: this.d.logger, mark: this.mark };
  }

  get configured(): boolean {
    return this.d.store !== undefined;
  }

  /** Something waits for Secret Manager or Pub/Sub (the push retry keeps running while true). */
  get hasWork(): boolean {
    return (this.configured && this.pending) || this.unannounced !== undefined;
  }

  get awaitingAnnounced(): boolean {
    return this.announced !== undefined;
  }

  get pendingAnnouncement(): TokenRotatedEvent | undefined {
    return this.unannounced;
  }

  restore(unannounced: TokenRotatedEvent | undefined): void {
    this.unannounced = unannounced;
  }

  markPending(): void {
    if (this.configured) this.pending = true;
  }

  /**
   * Is this announcement worth a read? Not when it names another project's or secret's version
   * (acked and logged, never read), nor when it is not newer than what we hold. Our secret's
   * versions come by project id or number alike (core/gcp/resource-names.ts).
   */
  worthReading(ev: TokenRotatedEvent, known: TokenSet | undefined): boolean {
    if (!this.identity?.ownsVersion(ev.version)) {
      this.d.logger.warn('event_foreign', 'Ignored a TOKEN_ROTATED for another secret (not read)', { version: ev.version });
      return false;
    }
    if (known?.generation !== undefined && ev.generation <= known.generation) {
      this.d.logger.debug('event_ignored', 'Ignored TOKEN_ROTATED event: not newer than what we hold', { version: ev.version, generation: ev.generation });
      return false;
    }
    // The push path at work (tests and operators tell it from the periodic check by this line).
    this.d.logger.info('event_received', `TOKEN_ROTATED for our secret: reading version ${ev.version.slice(ev.version.lastIndexOf('/') + 1)}`, {
      version: ev.version,
      generation: ev.generation,
    });
    return true;
  }

  /** The latest version, or `version` (falling back to latest when it was destroyed). */
  async read(version: string | undefined, holding: boolean): Promise<SecretView> {
    const store = this.d.store;
    if (!store) return { kind: 'absent' };
    try {
      const read = version ? ((await store.version(version)) ?? (await store.latest())) : await store.latest();
      this.identity?.learn(read?.name);
      this.d.logger.addSecret(...secretsOf(read?.token));
      if (this.down) this.recoveredAt = this.d.clock.now();
      this.down = false;
      return { kind: 'read', read };
    } catch (err) {
      this.down = true;
      // Whatever we hold may now get ahead of the secret (a local refresh, a restart) before it
      // answers again; the push retry then compares and pushes.
      if (holding) this.pending = true;
      const now = this.d.clock.now();
      const quiet = now - this.lastOutageLog < OUTAGE_LOG_EVERY_MS;
      if (!quiet) this.lastOutageLog = now;
      this.d.logger[quiet ? 'debug' : 'warn']('secret_unavailable', 'Secret Manager did not answer; working from local state', {
        error: errorText(err),
      });
      return { kind: 'unavailable' };
    }
  }

  /** When Secret Manager last answered again after failing (-Infinity: never failed). */
  get backAt(): number {
    return this.recoveredAt;
  }

  /** Secret Manager failed its last call (a TOKEN_CONSUMED then blanks at once instead of asking it first). */
  get isDown(): boolean {
    return this.down;
  }

  /** The fence: pairIds announced as spent. */
  get consumed(): ReadonlySet<string> {
    return new Set(this.spent);
  }

  restoreConsumed(ids: readonly string[] | undefined): void {
    this.spent = [...(ids ?? [])].slice(-CONSUMED_KEEP);
  }

  /** Remember a TOKEN_CONSUMED (idempotent); true when it was new. */
  noteConsumed(ev: TokenConsumedEvent): boolean {
    if (this.spent.includes(ev.pairId)) return false;
    this.spent = [...this.spent, ev.pairId].slice(-CONSUMED_KEEP);
    this.d.logger.info('consumed_noted', 'A refresh token was spent (TOKEN_CONSUMED); it will never be presented or handed to the bots from here', {
      pairId: ev.pairId,
      generation: ev.generation,
      source: ev.source,
    });
    return true;
  }

  /** A TOKEN_ROTATED arrived (its run may still wait in the queue). */
  noteSeen(ev: TokenRotatedEvent): void {
    if (this.identity?.ownsVersion(ev.version)) this.announcedGeneration = Math.max(this.announcedGeneration, ev.generation);
  }

  /** An announcement names a pair newer than `t` (by generation): `t` is not the end of the chain. */
  announcedNewer(t: TokenSet): boolean {
    return t.generation !== undefined && this.announcedGeneration > t.generation;
  }

  /** Returns false when this announcement has been unreadable for longer than a token lifetime. */
  noteAnnounced(ev: TokenRotatedEvent, held: TokenSet | undefined): boolean {
    const now = this.d.clock.now();
    if (!this.announced || ev.generation > this.announced.generation) {
      const life = held?.issuedAt !== undefined ? held.accessExpiresAt - held.issuedAt : DEFAULT_ACCESS_LIFE_MS;
      this.announced = { generation: ev.generation, version: ev.version, consumed: held?.refreshToken, until: now + Math.max(life, MIN_ANNOUNCED_WAIT_MS) };
    }
    return now < this.announced.until;
  }

  isSuperseded(t: TokenSet): boolean {
    const a = this.announced;
    if (!a || a.consumed !== t.refreshToken) return false;
    if (this.d.clock.now() < a.until) return true;
    this.d.logger.warn('announcement_unreadable', 'An announced version stayed unreadable for a token lifetime; refreshing from here again', {
      version: a.version,
    });
    this.announced = undefined;
    return false;
  }

  /** A different pair was adopted: the announcement it was waiting for is settled. */
  onAdopted(t: TokenSet): void {
    if (this.announced && t.refreshToken !== this.announced.consumed) this.announced = undefined;
  }

  /**
   * Push `best` when the secret (as just read) is behind it. Returns the pair as stored —
   * renumbered above the secret's generation when needed — or undefined when nothing was pushed.
   */
  async push(best: TokenSet, secret: Extract<SecretView, { kind: 'read' }>): Promise<TokenSet | undefined> {
    const { store, logger } = this.d;
    if (!store) return undefined;
    const secretToken = secret.read?.token;
    if (!secretBehind(best, secretToken)) {
      this.pending = false;
      return undefined;
    }
    const pushed = withNextGeneration(best, undefined, secretToken);
    let version: string;
    try {
      version = await addVersion(store, withPayloadCredentials(pushed, secretToken), logger, 'push');
    } catch (err) {
      this.pending = true;
      logger.warn('secret_push_failed', 'Could not push the newest token to Secret Manager; will retry', { error: errorText(err) });
      return undefined;
    }
    this.pending = false;
    await announce(this.announceDeps(), rotatedEvent(pushed, version, this.d.clock.now()));
    await pruneVersions(store, this.d.keepSecretVersions, logger);
    return pushed;
  }

  /** Retry what waits: the pending push of `known`, then (unless told not to) a pending announcement. */
  async flush(known: TokenSet | undefined, o: { announce: boolean }): Promise<TokenSet | undefined> {
    let stored: TokenSet | undefined;
    if (this.configured && this.pending && known) {
      const secret = await this.read(undefined, true);
      if (secret.kind === 'read') stored = await this.push(known, secret);
    }
    if (o.announce && this.unannounced) await announce(this.announceDeps(), this.unannounced);
    return stored;
  }
}
