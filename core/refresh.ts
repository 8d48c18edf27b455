/**
 * One refresh session: the protocol both refreshers run (docs/DESIGN.md "One refresh, step by
 * step"). Lease → re-read under the locks → decide → present the refresh token once → successor
 * with the next generation → durable (locally first, then the secret) → release → announce → prune.
 *
 * What differs between the agent and the function arrives as parameters: the LocalSide (the bots'
 * flock, the cache and the agent's state; the function has none), whether this refresher may
 * present without the lease (only the primary agent), how many times the secret write is tried
 * (the function has no other durable place), and where a failed announcement is remembered.
 * The session never holds the bots' flock across anything slow: only one exchange and the local
 * writes happen under it; backoff sleeps, Secret Manager and Pub/Sub calls happen outside it.
 */
import { announce, announceConsumed, consumedEvent, pruneVersions, rotatedEvent, type AnnounceMark } from './announce.js';
import type { Clock } from './clock.js';
import { decide, type Action, type Gates, type Origin, type PresentAction, type SecretView, type WaitReason } from './decide.js';
import { errorText, LockTimeoutError, SaxoError, SecretStoreError } from './errors.js';
import { recover, release, retryDelay, sessionDeadline, storeUpstream } from './refresh-steps.js';
import { takeAnswer } from './refresh-answer.js';
import type { FailureCounter } from './failures.js';
import { httpRequestRecord, type Logger } from './log.js';
import type { CacheRead, EventBus, Held, JournalEntry, Room, SecretStore, TokenEndpoint } from './ports.js';
import { issueTime, serverTimeNote, type ClockSkew } from './server-time.js';
import { requestCredentials, secretsOf, type Credentials, type TokenSet } from './token.js';

/** The refresher's own side: the agent's flock, cache and state file. The function has none. */
export interface LocalSide {
  /** The bots' flock for one attempt; throws LockTimeoutError when it stays held. */
  lock(signal?: AbortSignal): Promise<Held>;
  /** The local sources, re-read under the lock, and whether a successor would have room. */
  read(): Promise<{ cache: CacheRead; known?: TokenSet | undefined; room?: Room | undefined }>;
  /** Keep Saxo's 2xx durably before anything parses it (the journal, fsynced). Never throws: a failure is logged. */
  keep(entry: JournalEntry): Promise<void>;
  /**
   * Make `next` durable here: the cache, then `counted` with the cache's outcome (so the state
   * records the count), then the private state; the journal is wiped once both hold it. Resolves
   * with what failed, if anything (the journal then still holds the answer).
   */
  persist(next: TokenSet, counted: (cacheError: Error | undefined) => void): Promise<Error | undefined>;
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
  failures: FailureCounter;
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
}

export type DeferReason = 'lease_held' | 'secret_unavailable' | 'stopping' | WaitReason;

/** One result; `newest` is the newest pair seen under the locks, for the caller to adopt. */
export type SessionResult =
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


export async function runRefreshSession(p: SessionPorts, s: SessionSettings, o: SessionOptions = {}): Promise<SessionResult> {
  const { clock, store, logger } = p;
  if (o.stop?.aborted) return { kind: 'deferred', reason: 'stopping' };
  let secret: SecretView = store ? { kind: 'unavailable' } : { kind: 'absent' };
  let leased = false;
  if (store) {
    try {
      if (o.secretDown) throw new SecretStoreError('unavailable', 'Secret Manager did not answer this check');
      leased = await store.acquireLease(s.holder, s.leaseTtlMs, clock.now());
      if (!leased) {
        logger.info('lease_busy', 'Another refresher holds the lease; waiting for its result');
        return { kind: 'deferred', reason: 'lease_held' };
      }
      const read = await store.latest();
      logger.addSecret(...secretsOf(read?.token));
      secret = { kind: 'read', read };
    } catch (err) {
      if (!(err instanceof SecretStoreError)) throw err;
      if (leased) await release(p, s, undefined);
      leased = false;
      if (!s.presentWithoutLease) {
        logger.warn('secret_unavailable', 'Secret Manager did not answer: no lease, so no refresh from here', { error: errorText(err) });
        return { kind: 'deferred', reason: 'secret_unavailable' };
      }
      logger.warn('secret_unavailable', 'Secret Manager did not answer; refreshing without the lease (this is the primary refresher)', {
        error: errorText(err),
      });
    }
  }
  let result: SessionResult | undefined;
  // Publishes that must not hold the flock or the lease (TOKEN_CONSUMED): awaited after the release.
  const background: Promise<unknown>[] = [];
  try {
    result = await attempts(p, s, o, secret, leased, background);
    return result;
  } finally {
    if (leased) await release(p, s, result);
    // Stopping: nothing slow may follow; a publish in flight goes on unawaited.
    const published = o.stop?.aborted ? undefined : Promise.allSettled(background);
    if (result?.kind === 'refreshed' && result.version && store) {
      const event = rotatedEvent(result.token, result.version, clock.now());
      // Stopping: the version is stored; announcing is left to the next start (nothing slow now).
      if (o.stop?.aborted) await p.announceMark?.set(event).catch(() => undefined);
      else {
        await announce({ bus: p.bus, clock, logger, mark: p.announceMark }, event);
        await pruneVersions(store, s.keepSecretVersions, logger);
      }
    }
    await published;
  }
}

async function attempts(
  p: SessionPorts,
  s: SessionSettings,
  o: SessionOptions,
  secret: SecretView,
  leased: boolean,
  background: Promise<unknown>[],
): Promise<SessionResult> {
  const { clock, logger, local, failures } = p;
  const start = clock.now();
  let presented: TokenSet | undefined;
  for (let attempt = 1; ; attempt++) {
    let held: Held | undefined;
    let next: TokenSet | undefined;
    let lifetimeSec = 0;
    let ended = false;
    let saxoHttp: Record<string, unknown> | undefined;
    let clockSkew: ClockSkew | undefined;
    let spent: TokenSet;
    let localError: Error | undefined;
    try {
      if (o.stop?.aborted) return { kind: 'deferred', reason: 'stopping', newest: presented };
      try {
        held = await local?.lock(o.stop);
      } catch (err) {
        if (err instanceof LockTimeoutError) {
          logger.warn('lock_timeout', `Could not acquire token lock; will retry next check (${err.message})`);
          failures.failed('lock_timeout', err.message);
          return { kind: 'failed', reason: 'lock_timeout', newest: presented };
        }
        if (o.stop?.aborted) return { kind: 'deferred', reason: 'stopping', newest: presented };
        // A lock file that cannot be opened (EROFS, EACCES, ENOSPC): a due refresh that cannot
        // happen is a failure like any other — counted, and ALERTed at the threshold.
        logger.error('lock_failed', `Could not take the token lock: ${errorText(err)}`);
        failures.failed('lock_failed', errorText(err));
        return { kind: 'failed', reason: 'lock_failed', newest: presented };
      }
      // Re-read everything under the locks: someone may have refreshed while we waited or slept.
      const view = local ? await local.read() : { cache: { kind: 'missing' } as CacheRead, known: undefined };
      const plan = decide(
        { now: clock.now(), ...view, secret, consumed: o.consumed, gates: { ...o.gates, stage: 'attempt', force: o.force, presented } },
        { refreshThresholdMs: s.thresholdMs, refreshTokenAlertMs: s.refreshTokenAlertMs },
      );
      for (const n of plan.notes) logger.warn('input_problem', n);
      const action = plan.action;
      if (action.kind !== 'present') return answerWithout(p, action);
      const best = action.pair;
      const creds = requestCredentials(s.credentials, best);
      if (!creds.appKey) {
        logger.error('config_missing', 'No app key: set SAXO_APP_KEY or store app_key with the token');
        failures.failed('no_app_key');
        return { kind: 'failed', reason: 'no_app_key', newest: best };
      }
      const deadline = sessionDeadline(best, start, s, leased, local !== undefined);
      if (attempt === 1) logger.info('refresh_started', 'Token needs refresh: threshold reached', { generation: best.generation });
      o.onPhase?.('presenting');
      let res;
      const sentAt = clock.now();
      try {
        res = await present(p, action, { deadline, appKey: creds.appKey, appSecret: creds.appSecret });
      } catch (err) {
        o.onPhase?.('idle');
        if (!(err instanceof SaxoError)) throw err;
        // One line per attempt (docs/DESIGN.md "Logs for people and for Cloud Logging"): a retried
        // attempt says saxo_attempt_failed, the last one refresh_api_failed; both carry the HTTP record.
        const httpRequest = httpRequestRecord({ status: err.status, latencyMs: clock.now() - sentAt });
        const delay = err.code !== 'invalid_grant' && err.retryable && !o.stop?.aborted ? retryDelay(s, attempt, clock.now(), deadline, err) : undefined;
        if (delay === undefined) {
          logger.warn('refresh_api_failed', `Token refresh API failed: ${err.status ?? err.code} - ${err.code}`, {
            code: err.code,
            status: err.status,
            retryable: err.retryable,
            attempt,
            httpRequest,
          });
        }
        if (err.code === 'invalid_grant') {
          const unlock = async () => {
            await held?.release();
            held = undefined;
          };
          return await recover(p, s, secret, view, best, { unlock, stop: o.stop, announcedNewer: o.announcedNewer });
        }
        if (delay === undefined) {
          failures.failed(err.code, err.message);
          return { kind: 'failed', reason: err.code, newest: best };
        }
        logger.warn('saxo_attempt_failed', `Saxo refresh attempt ${attempt} failed (${err.status ?? err.code} - ${err.code}); retrying in ${delay} ms`, {
          attempt,
          delayMs: delay,
          code: err.code,
          status: err.status,
          httpRequest,
        });
        presented = best;
        await held?.release();
        held = undefined;
        // Sleep without the bots' flock: a bot may refresh meanwhile, and the next attempt sees it.
        const slept = await clock.sleep(delay, o.stop).then(() => true, () => false);
        if (!slept) return { kind: 'deferred', reason: 'stopping', newest: best };
        continue;
      }
      o.onPhase?.('persisting');
      saxoHttp = httpRequestRecord({ status: res.status, latencyMs: clock.now() - sentAt });
      spent = best;
      // Expiries count from Saxo's clock, not ours (docs/DESIGN.md "Server time").
      const issued = issueTime({ sentAt, receivedAt: clock.now(), serverDate: res.date, notAfter: best.refreshExpiresAt, appliedSkewMs: clock.localSkewMs?.() });
      const note = serverTimeNote(issued, clock.now());
      clockSkew = note.skew;
      if (note.warning) logger.warn('clock_skew', note.warning, { skewSeconds: Math.round((clockSkew?.ms ?? 0) / 1000) });
      else if (note.info) logger.info('server_time_unknown', note.info);
      const secretToken = secret.kind === 'read' ? secret.read?.token : undefined;
      // Durable before interpreted: the raw answer reaches the journal before anything reads it.
      const taken = await takeAnswer(p, s, { raw: res, presented: best, others: [secretToken, view.known], issuedAt: issued.issuedAt });
      if (taken.kind === 'ended') ended = true;
      else ({ next, lifetimeSec, localError } = taken);
    } finally {
      await held?.release();
    }
    // The spent token is announced once its successor is durable here (the function: at once), or
    // once Saxo ended the chain, after the flock and independent of the secret write and the lease:
    // with Secret Manager down this is the only word other VMs get before their bots' fallback would
    // present it (docs/DESIGN.md "Consumed announcements").
    if (p.bus?.publishConsumed) background.push(announceConsumed(p, consumedEvent(spent, s.source, clock.now())));
    if (ended || !next) return { kind: 'rejected', reason: 'no_successor', newest: spent };
    const stored = await storeUpstream(p, s, o, { secret, next, lifetimeSec, start, localError, httpRequest: saxoHttp });
    return stored.kind === 'refreshed' && clockSkew ? { ...stored, clockSkew } : stored;
  }
}

/** The only call of TokenEndpoint.refresh: it takes a present action (test/unit/architecture.test.ts). */
function present(p: SessionPorts, action: PresentAction, opts: { deadline: number; appKey: string; appSecret?: string | undefined }) {
  return p.saxo.refresh(action.pair.refreshToken, opts);
}

/** decide() said not to present under the locks: say why, count what is a failure, and answer. */
function answerWithout(p: SessionPorts, action: Exclude<Action, PresentAction>): SessionResult {
  const { logger, failures } = p;
  switch (action.kind) {
    case 'adopt':
      failures.recovered();
      logger.info('superseded', 'Someone else refreshed while this refresher backed off; adopting their pair');
      return { kind: 'superseded', token: action.pair, origin: action.origin };
    case 'fresh':
      return { kind: 'fresh', token: action.pair, origin: action.origin };
    case 'login_required':
      return action.pair ? { kind: 'rejected', reason: action.reason, newest: action.pair } : { kind: 'rejected', reason: 'no_token' };
    case 'no_room':
      // Durable before interpreted: a successor with nowhere to go would be lost with the presented token.
      logger.error('no_room', `Not presenting the refresh token: ${action.reason}`, { generation: action.pair.generation });
      failures.failed('no_room', action.reason);
      return { kind: 'failed', reason: 'no_room', newest: action.pair };
    case 'wait':
      if (action.reason === 'consumed_elsewhere') {
        logger.warn('consumed_token', 'Another VM announced this refresh token as spent; not presenting it, waiting for its successor', {
          generation: action.pair.generation,
        });
      } else if (action.reason === 'superseded_unreadable') {
        logger.warn('superseded_token', 'A newer token was announced but Secret Manager cannot be read yet; not presenting the consumed one', {
          generation: action.pair.generation,
        });
      }
      return { kind: 'deferred', reason: action.reason, newest: action.pair };
  }
}
