/**
 * The steps of a refresh session (core/refresh.ts) that follow Saxo's answer or refusal, and the
 * bounds it runs within: store upstream and count the outcome, recover from invalid_grant (I4),
 * the session deadline, the backoff between attempts, releasing the lease with the record.
 */
import { addVersion } from './announce.js';
import { decide, type Action, type SecretView } from './decide.js';
import { errorText, SecretStoreError, type SaxoError } from './errors.js';
import { countAfter, failure, NOTHING, SUCCESS } from './failures.js';
import type { CacheRead } from './ports.js';
import type { SessionOptions, SessionPorts, SessionResult, SessionSettings } from './session.js';
import { nextRetryDelay } from './saxo/retry.js';
import { describeLifetime, pairId, withPayloadCredentials, type TokenSet } from './token.js';

const MAX_SESSION_MS = 5 * 60_000;
const SECRET_RETRY_BASE_MS = 500;

/** What storeUpstream needs about the exchange that just happened. */
export interface StoreArgs {
  secret: SecretView;
  next: TokenSet;
  /** The access token's lifetime Saxo granted (s), for the familiar NOTICE. */
  lifetimeSec: number;
  /** When the session started (its duration is logged). */
  start: number;
  /** The local write that failed, if any (then no success NOTICE). */
  localError?: Error | undefined;
  /** The bots' cache write failed: a failure to count, though the pair is kept (state file, journal). */
  cacheError?: Error | undefined;
  /** The successful Saxo exchange (LogEntry.httpRequest: status, latency), carried by token_refreshed. */
  httpRequest?: Record<string, unknown> | undefined;
}

/** After Saxo answered: the secret (tried a few times by the function, once by the agent), then the record. */
export async function storeUpstream(
  p: SessionPorts,
  s: SessionSettings,
  o: SessionOptions,
  a: StoreArgs,
): Promise<SessionResult> {
  const { clock, logger, store } = p;
  const { secret, next, lifetimeSec, start } = a;
  let version: string | undefined;
  if (store && secret.kind === 'read') {
    const payload = withPayloadCredentials(next, secret.read?.token);
    const attempts = o.stop?.aborted ? 1 : s.secretWriteAttempts;
    for (let i = 1; i <= attempts && version === undefined; i++) {
      try {
        const add = addVersion(store, payload, logger, 'refresh');
        version = o.stop?.aborted ? await withTimeout(add, o.stopSecretTimeoutMs ?? 5_000) : await add;
      } catch (err) {
        logger.warn('secret_push_failed', `Refreshed; Secret Manager write failed (attempt ${i}/${attempts})`, { error: errorText(err) });
        if (i < attempts) await clock.sleep(SECRET_RETRY_BASE_MS * 2 ** i);
      }
    }
  }
  const now = clock.now();
  o.onPhase?.('idle');
  if (!p.local && version === undefined) {
    // The function has nowhere else to keep the pair: Saxo consumed the old one, the new one is gone.
    logger.alert('secret_write_lost', 'ALERT: Saxo issued a new token but it could not be stored in Secret Manager', {});
    return { kind: 'failed', reason: 'secret_write_failed', count: failure('secret_write_failed') };
  }
  // The agent's outcome is its cache write: a secret write it could not make is a pending push, not a failure.
  const count = a.cacheError ? failure('cache_write_failed', a.cacheError.message) : SUCCESS;
  const fields = {
    by: s.refresher,
    version,
    generation: next.generation,
    expiresAt: new Date(next.accessExpiresAt).toISOString(),
    durationMs: now - start,
    httpRequest: a.httpRequest,
  };
  if (a.localError && version === undefined) {
    // No success NOTICE after a failed store: the pair lives in the journal (and memory) until a write succeeds.
    logger.warn('token_refreshed_unstored', `Token refreshed, but storing it locally failed (${errorText(a.localError)}); the line before says where it is kept until a write succeeds`, fields);
  } else {
    logger.notice('token_refreshed', `Token refreshed successfully (${describeLifetime(lifetimeSec)})`, fields);
  }
  return { kind: 'refreshed', token: next, version, lastRefresh: { at: now, by: s.refresher, version: version ?? '' }, stored: version ? 'secret' : 'local', count };
}

/** What recover() looks at (the presented pair, the sources read under the lock) and may do while it waits. */
export interface RecoverArgs {
  presented: TokenSet;
  secret: SecretView;
  view: { cache: CacheRead; known?: TokenSet | undefined };
  /** Release the bots' flock before waiting (a bot may write the newer pair meanwhile). */
  unlock?: (() => Promise<void>) | undefined;
  stop?: AbortSignal | undefined;
  /** An announcement (seen meanwhile) names a pair newer than `t`, even if it cannot be read yet. */
  announcedNewer?: ((t: TokenSet) => boolean) | undefined;
}

/**
 * I4: a rejected refresh token may simply be an old one; look for a newer pair before failing —
 * and, finding none, look once more after `invalidGrantRecheckMs` (secret, cache, state,
 * announcements seen meanwhile): the refresher that spent it may still be storing its successor.
 * Each look is decide() with the `refused` gate: adopt a newer pair, wait for an announced one, or
 * login required. The presented token is never presented again, whatever a look finds.
 */
export async function recover(p: SessionPorts, s: SessionSettings, hooks: RecoverArgs): Promise<SessionResult> {
  const { clock, logger } = p;
  const { presented } = hooks;
  let action = await look(p, s, hooks);
  if (action.kind !== 'adopt' && s.invalidGrantRecheckMs > 0 && !hooks.stop?.aborted) {
    logger.warn('invalid_grant_recheck', `Saxo rejected the refresh token; looking once more for a newer pair in ${s.invalidGrantRecheckMs} ms before saying login required`, {
      generation: presented.generation,
    });
    await hooks.unlock?.();
    await clock.sleep(s.invalidGrantRecheckMs, hooks.stop).catch(() => undefined);
    action = await look(p, s, hooks);
  }
  switch (action.kind) {
    case 'adopt':
      logger.info('recovered_newer_token', 'Refresh token was already used; recovered a newer pair instead');
      return { kind: 'superseded', token: action.pair, origin: action.origin, count: SUCCESS };
    case 'wait':
      // A newer version was announced but cannot be read yet: the chain lives; wait for it.
      logger.warn('superseded_token', 'Saxo rejected the refresh token and a newer one was announced but cannot be read yet; waiting for it', {
        generation: presented.generation,
      });
      return { kind: 'deferred', reason: 'superseded_unreadable', newest: presented, count: NOTHING };
    default:
      return { kind: 'rejected', reason: 'invalid_grant', newest: presented, count: failure('invalid_grant') };
  }
}

/** One look at every source after Saxo refused `presented`: the same decide() as under the lock, with the `refused` gate. */
async function look(p: SessionPorts, s: SessionSettings, { secret, view, presented, announcedNewer }: RecoverArgs): Promise<Action> {
  const { clock, store, local } = p;
  let fresh: SecretView = secret;
  if (store) {
    const read = await store.latest().catch(() => undefined);
    if (read) fresh = { kind: 'read', read };
  }
  const localView = local ? await local.read() : view;
  const gates = { stage: 'attempt' as const, presented, refused: true, superseded: announcedNewer };
  return decide({ now: clock.now(), ...localView, secret: fresh, gates }, { refreshThresholdMs: s.thresholdMs, refreshTokenAlertMs: 0 }).action;
}

/**
 * No attempt may run past: the refresh token's death, 3/4 of the lease (another refresher may take
 * it after), the bots' window when nothing keeps them out (they take no lease), five minutes.
 */
export function sessionDeadline(s: SessionSettings, { pair: t, start, leased, holdsBotsLock }: { pair: TokenSet; start: number; leased: boolean; holdsBotsLock: boolean }): number {
  const botCut = t.accessExpiresAt - s.botThresholdMs;
  return Math.min(
    t.refreshExpiresAt ?? Infinity,
    leased ? start + s.leaseTtlMs * 0.75 : Infinity,
    !holdsBotsLock && botCut > start ? botCut : Infinity,
    start + MAX_SESSION_MS,
  );
}

export function retryDelay(s: SessionSettings, attempts: number, now: number, deadline: number, err: SaxoError): number | undefined {
  return nextRetryDelay({
    attempts,
    maxAttempts: s.retry.maxAttempts,
    now,
    deadline,
    minAttemptMs: s.retry.minAttemptMs,
    retryAfterMs: err.retryAfter !== undefined ? err.retryAfter * 1000 : undefined,
    random: s.retry.random,
    baseMs: s.retry.baseMs,
    capMs: s.retry.capMs,
  });
}

export async function release(p: SessionPorts, s: SessionSettings, o: SessionOptions, result: SessionResult | undefined): Promise<void> {
  const lastRefresh = result?.kind === 'refreshed' ? result.lastRefresh : undefined;
  // A refresh token Saxo rejected with nothing newer anywhere, or consumed without a successor, is
  // remembered with the secret, so that no later run of the function (which keeps no memory) presents it again.
  const rejected =
    result?.kind === 'rejected' && result.reason === 'invalid_grant' && result.newest ? pairId(result.newest.refreshToken) : result?.kind === 'refreshed' ? null : undefined;
  const ended = result?.kind === 'rejected' && result.reason === 'no_successor' && result.newest ? pairId(result.newest.refreshToken) : undefined;
  await p.store
    ?.releaseLease(s.holder, { failures: countAfter(o.failures ?? 0, result?.count ?? NOTHING), lastRefresh, ended, ...(rejected !== undefined ? { rejected } : {}) })
    .catch((err: unknown) => p.logger.warn('lease_release_failed', 'Could not release the lease (it will expire)', { error: errorText(err) }));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SecretStoreError('unavailable', `no answer within ${ms} ms while stopping`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
