/**
 * The small interfaces IO hides behind (Vault-Agent style: sources → one reconciler → sinks).
 * Implementations: agent/cache-file.ts, core/gcp/secret-store.ts, core/gcp/lean-event-bus.ts,
 * core/saxo/client.ts. The in-memory doubles (standins/memory.ts) are proven against them by the
 * contract suites in test/contracts/.
 */
import type { IdentityPin } from './identity.js';
import type { TokenResponse, TokenSet } from './token.js';

/**
 * One answer from Saxo's /token endpoint exactly as it arrived: nothing rewritten, nothing parsed.
 * A 2xx is handed over in this form so that it can be made durable (the Journal) before anything
 * interprets it (core/grant.ts, docs/DESIGN.md "Durable before interpreted").
 */
export interface RawAnswer {
  status: number;
  contentType: string;
  retryAfter: string | null;
  /** The HTTP Date header (server time), for judging the local clock. */
  date: string | null;
  text: string;
}

/**
 * Saxo's /token endpoint. Each call is ONE HTTP attempt: retries belong to the refresh protocol
 * (core/refresh.ts), which must release the bots' lock and look again between attempts.
 */
export interface TokenEndpoint {
  /**
   * Present `refreshToken` once. Resolves with any 2xx as it arrived (it may carry the successor:
   * the presented token is consumed); throws a classified SaxoError for everything else.
   */
  refresh(refreshToken: string, opts: RefreshOptions): Promise<RawAnswer>;
  /** The login's code exchange: a code is not a chain, so its answer is interpreted here (throws SaxoError). */
  exchangeCode(code: string, codeVerifier: string, opts: RefreshOptions): Promise<TokenResponse>;
}

export interface RefreshOptions {
  /** Epoch ms by which the attempt must end (its timeout is clipped to it; none starts past it). */
  deadline: number;
  signal?: AbortSignal | undefined;
  /** Client credentials; the fleet sends them in the form body. PKCE apps omit the secret. */
  appKey: string;
  appSecret?: string | undefined;
  /** Required by exchangeCode (must equal the one sent to /authorize); ignored by refresh. */
  redirectUri?: string | undefined;
}

/** One version of the token secret, as read. `token` is absent when the payload is corrupt (I6). */
export interface SecretRead {
  /** Full resource name: projects/P/secrets/S/versions/N */
  name: string;
  version: number;
  token?: TokenSet | undefined;
  /** Why the payload could not be used (never contains the payload). */
  error?: string | undefined;
}

export interface SecretMeta {
  etag: string;
  lease?: { holder: string; expiresAt: number } | undefined;
  /** Consecutive refresh failures persisted across function invocations. */
  failures: number;
  /** Last refresh outcome recorded by a refresher (for `status`). */
  lastRefresh?: { at: number; by: string; version: string } | undefined;
  /** A version the function stored but could not announce yet (retried at its next run). */
  announcePending?: string | undefined;
  /** pairId() of a refresh token Saxo rejected with nothing newer anywhere: never presented again. */
  rejected?: string | undefined;
  /** pairId of a refresh token Saxo consumed without issuing a successor: never presented again. */
  ended?: string | undefined;
  annotations: Record<string, string>;
}

/** Bookkeeping written into the secret's annotations (with a lease release, or on its own). */
export interface SecretRecord {
  failures?: number | undefined;
  lastRefresh?: SecretMeta['lastRefresh'];
  /** A version name to remember as not yet announced; null clears it. */
  announcePending?: string | null | undefined;
  /** pairId() of a refresh token Saxo rejected (invalid_grant, nothing newer); null clears it. */
  rejected?: string | null | undefined;
  /** The account this chain belongs to (core/identity.ts); set at login, never cleared by a refresher. */
  pin?: IdentityPin | undefined;
  /** Remember a pairId Saxo consumed without a successor (docs/DESIGN.md "Durable before interpreted"). */
  ended?: string | undefined;
}

/** Secret Manager as the source of truth. Throws SecretStoreError. */
export interface SecretStore {
  /** The secret's resource name, `projects/P/secrets/S`. */
  readonly name: string;
  /** The latest ENABLED version; undefined when the secret has none. */
  latest(): Promise<SecretRead | undefined>;
  /** A specific version by number or full name; undefined when destroyed or missing. */
  version(ref: string | number): Promise<SecretRead | undefined>;
  /** AddSecretVersion with a crc32c checksum. */
  add(token: TokenSet): Promise<{ name: string; version: number }>;
  /** Destroy ENABLED/DISABLED versions beyond the newest `keep`. Returns how many were destroyed. */
  prune(keep: number): Promise<number>;
  /** Number of non-destroyed versions. */
  countVersions(): Promise<number>;
  meta(): Promise<SecretMeta>;
  /**
   * Cross-host lease: UpdateSecret with the current etag (compare-and-swap). True when `holder`
   * now holds it until now + ttlMs; false when someone else holds an unexpired lease or won the race.
   */
  acquireLease(holder: string, ttlMs: number, now: number): Promise<boolean>;
  /** Release if still held by `holder`; also records bookkeeping in the same update. */
  releaseLease(holder: string, record?: SecretRecord): Promise<void>;
  /** Record bookkeeping without holding the lease. */
  record(record: SecretRecord): Promise<void>;
}

/** Announcement of a new version. Carries no token material (I5). */
export interface TokenRotatedEvent {
  type: 'TOKEN_ROTATED';
  /** Full secret version name. */
  version: string;
  generation: number;
  /** ISO 8601 (UTC) access-token expiry. */
  accessExpiresAt: string;
  source: string;
  publishedAt: string;
}

/**
 * A refresh token was just presented and Saxo answered with its successor (docs/DESIGN.md
 * "Consumed announcements"). Carries the consumed token's pairId() — a truncated hash of a token
 * that can never be used again (I5 as amended) — so that other VMs blank it in their bots' cache.
 */
export interface TokenConsumedEvent {
  type: 'TOKEN_CONSUMED';
  /** pairId() of the consumed refresh token (16 hex). */
  pairId: string;
  /** Generation of the consumed pair (0 when it had none). */
  generation: number;
  source: string;
  publishedAt: string;
}

export interface EventBus {
  publish(event: TokenRotatedEvent): Promise<string>;
  /** Optional: the buses that carry TOKEN_CONSUMED (the Pub/Sub adapter); others simply lack it. */
  publishConsumed?(event: TokenConsumedEvent): Promise<string>;
  /**
   * Streaming pull. The handler's promise decides: resolve → ack, reject → nack (redelivery).
   * Malformed messages are logged and acked without calling the handler; a TOKEN_CONSUMED goes to
   * `onConsumed` (acked unread when there is none).
   * Returns a function that closes the subscription.
   */
  subscribe(
    handler: (event: TokenRotatedEvent, meta: { id: string }) => Promise<void>,
    onConsumed?: (event: TokenConsumedEvent, meta: { id: string }) => Promise<void>,
  ): Promise<() => Promise<void>>;
  /** Why the subscription cannot be pulled now (deleted, a role removed), if it cannot. */
  subscriptionProblem?(): SubscriptionProblem | undefined;
}

/** A subscription that retrying fast cannot heal (core/gcp/pull-retry.ts); shown by `status`. */
export interface SubscriptionProblem {
  subscription: string;
  /** gRPC status name, e.g. NOT_FOUND. */
  code: string;
  /** One line: what is wrong and how to fix it. */
  problem: string;
  /** Epoch ms of the first failure of this episode. */
  since: number;
}

/** The bots' cache file (agent/cache-file.ts). */
export type CacheRead =
  | { kind: 'ok'; token: TokenSet }
  | { kind: 'missing' }
  /** `unusable`: no regular file at all (fifo, oversize, symlink…, agent/safe-open.ts), named as such. */
  | { kind: 'corrupt'; reason: string; unusable?: string | undefined }
  /** The file exists but cannot be read (EACCES after a `sudo` run, EIO): `reason` names path and errno. */
  | { kind: 'unreadable'; reason: string; code: string };

export interface TokenCache {
  readonly path: string;
  read(): Promise<CacheRead>;
  /** Crash-safe write (unique tmp, 0600, fsync, rename, fsync dir). Caller holds the flock. */
  write(token: TokenSet): Promise<void>;
  /**
   * Blank `refresh_token` (key kept, value "") when the file's refresh token has this pairId();
   * every other key stays as it is. Caller holds the flock. Optional: doubles may lack it.
   */
  blankRefreshToken?(pairId: string): Promise<'blanked' | 'other' | 'missing'>;
}

/** Whether a successor would have somewhere to go; decide() presents nothing without it. */
export type Room = { ok: true } | { ok: false; reason: string };

/** One Saxo answer kept durably before it is interpreted (agent/journal.ts). Carries token text: 0600, wiped. */
export interface JournalEntry {
  v: 1;
  /** Local epoch ms when the answer arrived. */
  at: number;
  /**
   * When the pair was issued on Saxo's clock (core/server-time.ts issueTime, from the answer's Date
   * header), fixed at receipt so a recovery computes the same expiries (docs/DESIGN.md "Server time").
   */
  issuedAt?: number | undefined;
  /** The pair that was presented, by its one-way tag (core/token.ts pairId), with what its successor inherits. */
  presented: { pairId: string; generation?: number | undefined; chainStartedAt?: number | undefined };
  raw: RawAnswer;
}

/**
 * Where a 2xx from Saxo goes before anything parses it. `room()` also reserves the space (so a full
 * disk is found before presenting, not after); `record` fsyncs; `wipe` zeroes and fsyncs.
 */
export interface Journal {
  readonly path: string;
  room(): Promise<Room>;
  record(entry: JournalEntry): Promise<void>;
  /** The answer of a refresh that did not finish (crash, stop, failed writes); undefined when none. */
  pending(): Promise<JournalEntry | undefined>;
  wipe(): Promise<void>;
}

/** A held lock; release is idempotent. */
export interface Held {
  release(): Promise<void>;
}
