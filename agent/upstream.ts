/**
 * The agent's side of Secret Manager: reading it (outage warnings rate-limited), pushing pairs it
 * has not seen, and remembering announcements that could not be fetched. State lives here so the
 * reconciler only asks questions: is a push pending, is this pair superseded.
 */
import type { Clock } from '../core/clock.js';
import type { SecretView } from '../core/decide.js';
import { errorText } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { EventBus, SecretStore, TokenRotatedEvent } from '../core/ports.js';
import { pushToSecret, withNextGeneration } from '../core/push.js';
import { compareFreshness, type TokenSet } from '../core/token.js';

export interface UpstreamDeps {
  clock: Clock;
  store?: SecretStore | undefined;
  bus?: EventBus | undefined;
  logger: Logger;
  keepSecretVersions: number;
  /** Called with every pair read, so the logger can redact it. */
  onRead: (t: TokenSet | undefined) => void;
}

const OUTAGE_LOG_EVERY_MS = 60_000;

export class Upstream {
  /** The pair we hold may be ahead of the secret: compare and push once Secret Manager answers. */
  pending = false;
  /**
   * An announced version we could not fetch (Secret Manager unavailable), and the refresh token we
   * held then: the announcement proves that token was consumed, so it must never be presented.
   */
  private announced: { generation: number; version: string; consumed: string | undefined } | undefined;
  private lastOutageLog = -Infinity;

  constructor(private readonly d: UpstreamDeps) {}

  get configured(): boolean {
    return this.d.store !== undefined;
  }

  get awaitingAnnounced(): boolean {
    return this.announced !== undefined;
  }

  /** The latest version, or `version` (falling back to latest when it was destroyed). */
  async read(version: string | undefined, holding: boolean): Promise<SecretView> {
    const store = this.d.store;
    if (!store) return { kind: 'absent' };
    try {
      const read = version ? ((await store.version(version)) ?? (await store.latest())) : await store.latest();
      this.d.onRead(read?.token);
      return { kind: 'read', read };
    } catch (err) {
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

  noteAnnounced(ev: TokenRotatedEvent, heldRefreshToken: string | undefined): void {
    if (!this.announced || ev.generation > this.announced.generation) {
      this.announced = { generation: ev.generation, version: ev.version, consumed: heldRefreshToken };
    }
  }

  isSuperseded(t: TokenSet): boolean {
    return this.announced !== undefined && this.announced.consumed === t.refreshToken;
  }

  /** A different pair was adopted: the announcement it was waiting for is settled. */
  onAdopted(t: TokenSet): void {
    if (this.announced && t.refreshToken !== this.announced.consumed) this.announced = undefined;
  }

  /**
   * Push `best` when the secret (as just read) is behind it. Returns the pair as stored — renumbered
   * above the secret's generation when needed — or undefined when nothing was pushed.
   */
  async push(best: TokenSet, secret: Extract<SecretView, { kind: 'read' }>): Promise<TokenSet | undefined> {
    const { store, bus, logger } = this.d;
    if (!store) return undefined;
    const secretToken = secret.read?.token;
    if (secretToken && compareFreshness(best, secretToken) <= 0) {
      this.pending = false;
      return undefined;
    }
    try {
      const pushed = withNextGeneration(best, undefined, secretToken);
      await pushToSecret({ store, bus, logger, token: pushed, keep: this.d.keepSecretVersions, reason: 'push' });
      this.pending = false;
      return pushed;
    } catch (err) {
      this.pending = true;
      logger.warn('secret_push_failed', 'Could not push the newest token to Secret Manager; will retry', { error: errorText(err) });
      return undefined;
    }
  }
}
