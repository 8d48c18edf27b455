/**
 * The steps of a refresh session (core/refresh.ts) that follow Saxo's answer or refusal, and the
 * bounds it runs within: store upstream and count the outcome, recover from invalid_grant (I4),
 * the session deadline, the backoff between attempts, releasing the lease with the record.
 */
import { addVersion } from './announce.js';
import { decide, type Plan, type SecretView } from './decide.js';
import { errorText, SecretStoreError, type SaxoError } from './errors.js';
import type { CacheRead } from './ports.js';
import type { SessionOptions, SessionPorts, SessionResult, SessionSettings } from './refresh.js';
import { nextRetryDelay } from './saxo/retry.js';
import { compareFreshness, describeLifetime, pairId, withPayloadCredentials, type TokenSet } from './token.js';

const MAX_SESSION_MS = 5 * 60_000;
const SECRET_RETRY_BASE_MS = 500;

/** After Saxo answered: the secret (tried a few times by the function, once by the agent), then the record. */
export async function storeUpstream(
  p: SessionPorts,
  s: SessionSettings,
  o: SessionOptions,
  secret: SecretView,
  next: TokenSet,
  lifetimeSec: number,
  start: number,
  localError?: Error | undefined,
): Promise<SessionResult> {
  const { clock, logger, store, failures } = p;
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
    failures.failed('secret_write_failed');
    return { kind: 'failed', reason: 'secret_write_failed' };
  }
  // The agent's outcome was counted with its cache write (LocalSide.persist); a secret write it
  // could not make is a pending push, not a failure. The function's is counted here.
  if (!p.local) failures.recovered();
  const fields = { by: s.refresher, version, generation: next.generation, expiresAt: new Date(next.accessExpiresAt).toISOString(), durationMs: now - start };
  if (localError && version === undefined) {
    // No success NOTICE after a failed store: the pair lives in the journal (and memory) until a write succeeds.
    logger.warn('token_refreshed_unstored', `Token refreshed, but storing it locally failed (${errorText(localError)}); the line before says where it is kept until a write succeeds`, fields);
  } else {
    logger.notice('token_refreshed', `Token refreshed successfully (${describeLifetime(lifetimeSec)})`, fields);
  }
  return { kind: 'refreshed', token: next, version, lastRefresh: { at: now, by: s.refresher, version: version ?? '' }, stored: version ? 'secret' : 'local' };
}

/** I4: a rejected refresh token may simply be an old one; look for a newer pair before failing. */
export async function recover(
  p: SessionPorts,
  s: SessionSettings,
  secret: SecretView,
  view: { cache: CacheRead; known?: TokenSet | undefined },
  presented: TokenSet,
): Promise<SessionResult> {
  const { clock, logger, failures, store, local } = p;
  let fresh: SecretView = secret;
  if (store) {
    const read = await store.latest().catch(() => undefined);
    if (read) fresh = { kind: 'read', read };
  }
  const localView = local ? await local.read() : view;
  const plan: Plan = decide({ now: clock.now(), ...localView, secret: fresh }, { refreshThresholdMs: s.thresholdMs, refreshTokenAlertMs: 0 });
  if (plan.best && compareFreshness(plan.best, presented) > 0) {
    failures.recovered();
    logger.info('recovered_newer_token', 'Refresh token was already used; recovered a newer pair instead');
    return { kind: 'superseded', token: plan.best, origin: plan.origin };
  }
  failures.failed('invalid_grant');
  return { kind: 'rejected', reason: 'invalid_grant', newest: presented };
}

/**
 * No attempt may run past: the refresh token's death, 3/4 of the lease (another refresher may take
 * it after), the bots' window when nothing keeps them out (they take no lease), five minutes.
 */
export function sessionDeadline(t: TokenSet, start: number, s: SessionSettings, leased: boolean, holdsBotsLock: boolean): number {
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

export async function release(p: SessionPorts, s: SessionSettings, result: SessionResult | undefined): Promise<void> {
  const lastRefresh = result?.kind === 'refreshed' ? result.lastRefresh : undefined;
  // The function has no state file: the secret remembers a token Saxo consumed without a successor.
  const ended = result?.kind === 'rejected' && result.reason === 'no_successor' && result.newest ? pairId(result.newest.refreshToken) : undefined;
  await p.store
    ?.releaseLease(s.holder, { failures: p.failures.count, lastRefresh, ended })
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
