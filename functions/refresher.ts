/**
 * The cloud path, free of HTTP: what only the function decides — a cheap look at the secret before
 * taking the lease, its patience with the lower tiers after it missed its own window, and retrying
 * an announcement that did not go out last run — around the one refresh protocol (core/refresh.ts),
 * run with no local side and the secret as the only durable place. Idempotent under Scheduler's
 * at-least-once delivery: a duplicate call finds a fresh token or a held lease.
 */
import { randomBytes } from 'node:crypto';
import { announce, rotatedEvent, type AnnounceMark } from '../core/announce.js';
import type { Clock } from '../core/clock.js';
import { decideCloud } from '../core/decide.js';
import { errorText } from '../core/errors.js';
import { chainDeadlineAlert, FailureCounter, loginRequiredMessage } from '../core/failures.js';
import type { Logger } from '../core/log.js';
import type { EventBus, SecretMeta, SecretRead, SecretStore, TokenEndpoint } from '../core/ports.js';
import { runRefreshSession, type SessionResult } from '../core/refresh.js';
import type { CloudSettings } from '../core/settings.js';
import { pushGraceMs } from '../core/tiers.js';
import { secretsOf } from '../core/token.js';

export interface CloudDeps {
  clock: Clock;
  store: SecretStore;
  bus?: EventBus | undefined;
  saxo: TokenEndpoint;
  logger: Logger;
  settings: CloudSettings;
  /** Issues a phone re-login link when the chain needs a login (functions/relogin/settings.ts); optional. */
  relogin?: ((reason: string) => Promise<void>) | undefined;
}

export type CloudOutcome = SessionResult['kind'];

/** What one run did; functions/handler.ts turns it into an HTTP status for the Scheduler. */
export interface CloudResult {
  outcome: CloudOutcome;
  reason?: string | undefined;
  version?: string | undefined;
  generation?: number | undefined;
  expiresAt?: string | undefined;
  accessLeftSeconds?: number | undefined;
}

export async function runCloudRefresh(d: CloudDeps, opts: { force?: boolean } = {}): Promise<CloudResult> {
  const { clock, store, logger, settings } = d;
  let meta: SecretMeta;
  let latest: SecretRead | undefined;
  try {
    meta = await store.meta();
    if (meta.announcePending) await retryAnnouncement(d, meta.announcePending);
    latest = await store.latest();
  } catch (err) {
    logger.error('secret_unavailable', 'Secret Manager did not answer', { error: errorText(err) });
    return { outcome: 'failed', reason: 'secret_unavailable' };
  }
  logger.addSecret(...secretsOf(latest?.token));
  // Saxo rejected this pair's refresh token with nothing newer, or consumed it without a successor
  // (both recorded in the secret): never presented again. Before the lease a forced run skips the
  // first (the session, under the lease, still refuses it).
  const rejected = new Set([meta.rejected, meta.ended].filter((id): id is string => id !== undefined));
  const plan = decideCloud(clock.now(), latest, settings.thresholdMs, {
    stage: 'attempt',
    force: opts.force,
    rejected: !opts.force && meta.rejected !== undefined ? new Set([meta.rejected]) : undefined,
    cloud: settings.patience,
  });
  const action = plan.action;
  for (const n of plan.notes) logger.warn('input_problem', n);
  const accessLeftSeconds = Math.round((plan.accessLeftMs ?? 0) / 1000);
  switch (action.kind) {
    case 'login_required':
      logger.alert('login_required', loginRequiredMessage(settings.environment, action.reason), { reason: action.reason });
      if (action.reason === 'no_token') {
        await d.relogin?.('no usable token in the secret');
        return { outcome: 'rejected', reason: 'no_token' };
      }
      // A dead refresh token is not "valid"; a pair Saxo rejected at an earlier run is not presented again.
      if (action.reason === 'refresh_token_expired') await d.relogin?.('the refresh token has expired');
      return { outcome: 'rejected', reason: action.reason, version: latest?.name };
    case 'fresh':
      logger.info('token_status', `Token status: valid, ${Math.floor(accessLeftSeconds / 60)} minutes until expiry`, {
        version: latest?.name,
        generation: action.pair.generation,
        accessLeftSeconds,
        health: plan.health,
      });
      return { outcome: 'fresh', version: latest?.name, generation: action.pair.generation, accessLeftSeconds };
    case 'wait':
      logger.warn('awaiting_agent', 'The cloud missed its refresh window; giving the VM agent (or a bot) time to push its newer pair', {
        version: latest?.name,
        accessLeftSeconds,
      });
      return { outcome: 'deferred', reason: 'awaiting_lower_tiers', version: latest?.name, accessLeftSeconds };
    case 'present':
      if (action.lastChance) {
        // A pair the agent refreshed during an outage is pushed within a push retry of Secret Manager
        // answering again: give it that long to land before presenting what may be its predecessor.
        logger.warn('last_chance', 'The lower tiers have not pushed a newer pair; refreshing from the cloud to save the chain', { accessLeftSeconds });
        await clock.sleep(pushGraceMs(settings.patience));
      }
      break;
    default:
      return { outcome: 'failed', reason: action.kind };
  }
  const best = action.pair;

  const failures = new FailureCounter(logger, settings.maxRefreshFailures, meta.failures);
  failures.chainDeadline = best.refreshExpiresAt;
  const r = await runRefreshSession(
    { clock, saxo: d.saxo, store, bus: d.bus, logger, announceMark: cloudMark(store) },
    // One lease holder per invocation, not per instance: acquireLease lets a holder re-take its own
    // lease, so overlapping invocations in one instance (duplicate Scheduler calls) would both get in.
    { ...settings, holder: `${settings.refresher}:${randomBytes(4).toString('hex')}` },
    { force: opts.force, gates: { rejected }, failures: failures.count },
  );
  // The one place a cloud refresh is counted; the lease's release recorded the same count with the secret.
  failures.apply(r.count);
  if (r.kind === 'failed' || r.kind === 'deferred') watchChainDeadline(d, best.refreshExpiresAt);
  switch (r.kind) {
    case 'refreshed':
      return { outcome: r.kind, version: r.version, generation: r.token.generation, expiresAt: new Date(r.token.accessExpiresAt).toISOString() };
    case 'superseded':
    case 'fresh':
      return { outcome: r.kind, generation: r.token.generation, expiresAt: new Date(r.token.accessExpiresAt).toISOString() };
    case 'deferred':
      // Without Secret Manager the function can do nothing: that is a failure the Scheduler retries.
      return r.reason === 'secret_unavailable' ? { outcome: 'failed', reason: r.reason } : { outcome: r.kind, reason: r.reason };
    case 'rejected':
      logger.alert('login_required', loginRequiredMessage(settings.environment, r.reason), { reason: r.reason });
      await d.relogin?.('Saxo rejected the newest refresh token');
      return { outcome: r.kind, reason: r.reason };
    case 'failed':
      return { outcome: r.kind, reason: r.reason };
  }
}

/** The run did not save the chain and its refresh token dies within the alert window: page (chain_deadline). */
function watchChainDeadline(d: CloudDeps, deadline: number | undefined): void {
  const left = deadline !== undefined ? deadline - d.clock.now() : undefined;
  if (left === undefined || left <= 0 || left > (d.settings.chainDeadlineAlertMs ?? 0)) return;
  chainDeadlineAlert(d.logger, deadline!, left, 'the cloud refresh did not succeed');
}

/** The function's announce mark: an annotation, retried at the start of its next run. */
function cloudMark(store: SecretStore): AnnounceMark {
  return {
    set: (e) => store.record({ announcePending: e.version }),
    clear: () => store.record({ announcePending: null }),
  };
}

async function retryAnnouncement(d: CloudDeps, version: string): Promise<void> {
  const read = await d.store.version(version);
  if (!read?.token) {
    await d.store.record({ announcePending: null }); // destroyed or unusable: nothing left to announce
    return;
  }
  d.logger.addSecret(...secretsOf(read.token));
  await announce({ bus: d.bus, clock: d.clock, logger: d.logger, mark: cloudMark(d.store) }, rotatedEvent(read.token, read.name, d.clock.now()));
}
