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
import { announce, announceConsumed, consumedEvent, pruneVersions, rotatedEvent } from './announce.js';
import { decide, type Action, type PresentAction, type SecretView } from './decide.js';
import { errorText, LockTimeoutError, SaxoError, SecretStoreError } from './errors.js';
import { failure, NOTHING, SUCCESS } from './failures.js';
import { recover, release, retryDelay, sessionDeadline, storeUpstream } from './refresh-steps.js';
import { takeAnswer } from './refresh-answer.js';
import { httpRequestRecord } from './log.js';
import type { CacheRead, Held } from './ports.js';
import { issueTime, serverTimeNote, type ClockSkew } from './server-time.js';
import type { SessionOptions, SessionPorts, SessionResult, SessionSettings } from './session.js';
import { requestCredentials, secretsOf, type TokenSet } from './token.js';

export type { DeferReason, LocalSide, Phase, SessionOptions, SessionPorts, SessionResult, SessionSettings } from './session.js';

export async function runRefreshSession(p: SessionPorts, s: SessionSettings, o: SessionOptions = {}): Promise<SessionResult> {
  const { clock, store, logger } = p;
  if (o.stop?.aborted) return { kind: 'deferred', reason: 'stopping', count: NOTHING };
  let secret: SecretView = store ? { kind: 'unavailable' } : { kind: 'absent' };
  let leased = false;
  if (store) {
    try {
      if (o.secretDown) throw new SecretStoreError('unavailable', 'Secret Manager did not answer this check');
      leased = await store.acquireLease(s.holder, s.leaseTtlMs, clock.now());
      if (!leased) {
        logger.info('lease_busy', 'Another refresher holds the lease; waiting for its result');
        return { kind: 'deferred', reason: 'lease_held', count: NOTHING };
      }
      const read = await store.latest();
      logger.addSecret(...secretsOf(read?.token));
      secret = { kind: 'read', read };
    } catch (err) {
      if (!(err instanceof SecretStoreError)) throw err;
      if (leased) await release(p, s, o, undefined);
      leased = false;
      if (!s.presentWithoutLease) {
        logger.warn('secret_unavailable', 'Secret Manager did not answer: no lease, so no refresh from here', { error: errorText(err) });
        return { kind: 'deferred', reason: 'secret_unavailable', count: NOTHING };
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
    if (leased) await release(p, s, o, result);
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
  const { clock, logger, local } = p;
  const start = clock.now();
  let presented: TokenSet | undefined;
  for (let attempt = 1; ; attempt++) {
    let held: Held | undefined;
    let next: TokenSet | undefined;
    let lifetimeSec = 0;
    /** Why Saxo's 2xx ended the chain (no refresh token), if it did. */
    let ended: string | undefined;
    let saxoHttp: Record<string, unknown> | undefined;
    let clockSkew: ClockSkew | undefined;
    let spent: TokenSet;
    let localError: Error | undefined;
    let cacheError: Error | undefined;
    try {
      if (o.stop?.aborted) return { kind: 'deferred', reason: 'stopping', newest: presented, count: NOTHING };
      try {
        held = await local?.lock(o.stop);
      } catch (err) {
        if (err instanceof LockTimeoutError) {
          logger.warn('lock_timeout', `Could not acquire token lock; will retry next check (${err.message})`);
          return { kind: 'failed', reason: 'lock_timeout', newest: presented, count: failure('lock_timeout', err.message) };
        }
        if (o.stop?.aborted) return { kind: 'deferred', reason: 'stopping', newest: presented, count: NOTHING };
        // A lock file that cannot be opened (EROFS, EACCES, ENOSPC): a due refresh that cannot
        // happen is a failure like any other — counted, and ALERTed at the threshold.
        logger.error('lock_failed', `Could not take the token lock: ${errorText(err)}`);
        return { kind: 'failed', reason: 'lock_failed', newest: presented, count: failure('lock_failed', errorText(err)) };
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
        return { kind: 'failed', reason: 'no_app_key', newest: best, count: failure('no_app_key') };
      }
      const deadline = sessionDeadline(s, { pair: best, start, leased, holdsBotsLock: local !== undefined });
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
          return await recover(p, s, { presented: best, secret, view, unlock, stop: o.stop, announcedNewer: o.announcedNewer });
        }
        if (delay === undefined) return { kind: 'failed', reason: err.code, newest: best, count: failure(err.code, err.message) };
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
        if (!slept) return { kind: 'deferred', reason: 'stopping', newest: best, count: NOTHING };
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
      if (taken.kind === 'ended') ended = taken.why;
      else ({ next, lifetimeSec, localError, cacheError } = taken);
    } finally {
      await held?.release();
    }
    // The spent token is announced once its successor is durable here (the function: at once), or
    // once Saxo ended the chain, after the flock and independent of the secret write and the lease:
    // with Secret Manager down this is the only word other VMs get before their bots' fallback would
    // present it (docs/DESIGN.md "Consumed announcements").
    if (p.bus?.publishConsumed) background.push(announceConsumed(p, consumedEvent(spent, s.source, clock.now())));
    // Saxo consumed the presented token and issued no refresh token: the chain has ended (ALERTed by takeAnswer).
    if (ended !== undefined || !next) return { kind: 'rejected', reason: 'no_successor', newest: spent, count: failure('no_refresh_token', ended) };
    const stored = await storeUpstream(p, s, o, { secret, next, lifetimeSec, start, localError, cacheError, httpRequest: saxoHttp });
    return stored.kind === 'refreshed' && clockSkew ? { ...stored, clockSkew } : stored;
  }
}

/** The only call of TokenEndpoint.refresh: it takes a present action (test/unit/architecture.test.ts). */
function present(p: SessionPorts, action: PresentAction, opts: { deadline: number; appKey: string; appSecret?: string | undefined }) {
  return p.saxo.refresh(action.pair.refreshToken, opts);
}

/** decide() said not to present under the locks: say why, name what is a failure, and answer. */
function answerWithout(p: SessionPorts, action: Exclude<Action, PresentAction>): SessionResult {
  const { logger } = p;
  switch (action.kind) {
    case 'adopt':
      logger.info('superseded', 'Someone else refreshed while this refresher backed off; adopting their pair');
      return { kind: 'superseded', token: action.pair, origin: action.origin, count: SUCCESS };
    case 'fresh':
      return { kind: 'fresh', token: action.pair, origin: action.origin, count: NOTHING };
    case 'login_required':
      return action.pair ? { kind: 'rejected', reason: action.reason, newest: action.pair, count: NOTHING } : { kind: 'rejected', reason: 'no_token', count: NOTHING };
    case 'no_room':
      // Durable before interpreted: a successor with nowhere to go would be lost with the presented token.
      logger.error('no_room', `Not presenting the refresh token: ${action.reason}`, { generation: action.pair.generation });
      return { kind: 'failed', reason: 'no_room', newest: action.pair, count: failure('no_room', action.reason) };
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
      return { kind: 'deferred', reason: action.reason, newest: action.pair, count: NOTHING };
  }
}
