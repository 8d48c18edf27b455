/**
 * What a refresh session (core/refresh.ts) is given and what it answers: the ports, the tier's
 * settings, the per-run options and gates, the local side (the agent's; the function has none),
 * and the one result. Types only, so that the session's steps (refresh-steps.ts,
 * refresh-answer.ts) and the session import this, not each other.
 */
import type { AnnounceMark } from './announce.js';
import type { Clock } from './clock.js';
import type { Gates, Origin, WaitReason } from './decide.js';
import type { Count } from './failures.js';
import type { Logger } from './log.js';
import type { CacheRead, EventBus, Held, JournalEntry, Room, SecretStore, TokenEndpoint } from './ports.js';
import type { ClockSkew } from './server-time.js';
import type { Credentials, TokenSet } from './token.js';

/** The refresher's own side: the agent's flock, cache and state file. The function has none. */
export interface LocalSide {
  /** The bots' flock for one attempt; throws LockTimeoutError when it stays held. */
  lock(signal?: AbortSignal): Promise<Held>;
  /** The local sources, re-read under the lock, and whether a successor would have room. */
  read(): Promise<{ cache: CacheRead; known?: TokenSet | undefined; room?: Room | undefined }>;
  /** Keep Saxo's 2xx durably before anything parses it (the journal, fsynced). Never throws: a failure is logged. */
  keep(entry: JournalEntry): Promise<void>;
  /**
   * Make `next` durable here: the cache, then the private state; the journal is wiped once both
   * hold it. Resolves with what failed, if anything (the journal then still holds the answer).
   */
  persist(next: TokenSet): Promise<{ cacheError?: Error | undefined; stateError?: Error | undefined }>;
  /**
   * Saxo consumed `presented` and issued no successor: record that it may never be presented
   * again; `kept` (same refresh token, the new access token) is what the bots may still use.
   */
  ended(presented: TokenSet, kept?: TokenSet | undefined): Promise<void>;
}

/** Where the session is, for a clean stop: an answer that arrived must reach the disk first. */
export type Phase = 'idle' | 'presenting' | 'persisting';

export interface SessionSettings {
  /** Lease holder: unique per refresher (per invocation for the function). */
  holder: string;
  /** Who refreshed, for logs and the lastRefresh record ("cloud:…", "agent:host:pid"). */
  refresher: string;
  /** Written as the new pair's `source`. */
  source: string;
  /** This tier's threshold. */
  thresholdMs: number;
  refreshTokenAlertMs: number;
  /** The bots' buffer: retries end before it unless the LocalSide's flock keeps the bots out. */
  botThresholdMs: number;
  leaseTtlMs: number;
  expiryMarginMs: number;
  keepSecretVersions: number;
  /** Present even when Secret Manager cannot grant the lease (standalone, or the primary VM). */
  presentWithoutLease: boolean;
  /** Configured credentials (they win over those stored with the pair). */
  credentials: Credentials;
  /** AddSecretVersion attempts after Saxo answered (function: several; agent: one, then the push retry). */
  secretWriteAttempts: number;
  /** After invalid_grant with no newer pair anywhere: wait this long and look once more (0: never). */
  invalidGrantRecheckMs: number;
  retry: { maxAttempts: number; baseMs: number; capMs: number; minAttemptMs: number; random: () => number };
}

export interface SessionPorts {
  clock: Clock;
  saxo: TokenEndpoint;
  store?: SecretStore | undefined;
  bus?: EventBus | undefined;
  logger: Logger;
  local?: LocalSide | undefined;
  /** Remembers an announcement that did not go out. */
  announceMark?: AnnounceMark | undefined;
}

export interface SessionOptions {
  force?: boolean | undefined;
  /** What else decides whether a pair is presented (rejected pairs, the pin, superseded pairs): decide()'s gates. */
  gates?: Pick<Gates, 'rejected' | 'pinAccepts' | 'superseded'> | undefined;
  /** Stop: start nothing new; an exchange already sent still finishes and is stored. */
  stop?: AbortSignal | undefined;
  onPhase?: ((p: Phase) => void) | undefined;
  /** The secret write is abandoned after this long while stopping (the pair is already on disk). */
  stopSecretTimeoutMs?: number | undefined;
  /** The caller just saw Secret Manager fail: do not spend another deadline asking it for the lease. */
  secretDown?: boolean | undefined;
  /** An announcement seen meanwhile names a pair newer than this one (recover()'s second look). */
  announcedNewer?: ((t: TokenSet) => boolean) | undefined;
  /** pairId()s announced as spent by another refresher (TOKEN_CONSUMED): never presented (decide()'s fence). */
  consumed?: ReadonlySet<string> | undefined;
  /** Consecutive failures before this run: the lease's release records them with this run's count applied. */
  failures?: number | undefined;
}

export type DeferReason = 'lease_held' | 'secret_unavailable' | 'stopping' | WaitReason;

/**
 * One result; `newest` is the newest pair seen under the locks, for the caller to adopt. `count` is
 * what the caller adds to its consecutive-failure count (core/failures.ts), once: the session
 * itself counts nothing.
 */
export type SessionResult = SessionAnswer & { count: Count };

export type SessionAnswer =
  | {
      kind: 'refreshed';
      token: TokenSet;
      version?: string | undefined;
      lastRefresh: { at: number; by: string; version: string };
      stored: 'secret' | 'local';
      /** This machine's clock against Saxo's Date header at this exchange (docs/DESIGN.md "Server time"). */
      clockSkew?: ClockSkew | undefined;
    }
  | { kind: 'superseded'; token: TokenSet; origin: Origin | undefined }
  | { kind: 'fresh'; token: TokenSet; origin: Origin | undefined }
  | { kind: 'deferred'; reason: DeferReason; newest?: TokenSet | undefined }
  | { kind: 'rejected'; reason: 'no_token' | 'refresh_token_expired' | 'invalid_grant' | 'no_successor'; newest?: TokenSet | undefined }
  | { kind: 'failed'; reason: string; newest?: TokenSet | undefined };
