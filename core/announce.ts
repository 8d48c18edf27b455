/**
 * The upstream sinks every writer of the secret shares (refresh sessions, the agent's pushes,
 * login): add a version, announce it, prune old versions. Announcing runs only after every lock
 * is released and with a short deadline: events only speed propagation up (agents also read the
 * secret at their own threshold), so an announcement may be late, never slow. One that did not go
 * out is remembered durably through an AnnounceMark and retried by its owner.
 */
import type { Clock } from './clock.js';
import { errorText } from './errors.js';
import type { Logger } from './log.js';
import type { EventBus, SecretStore, TokenConsumedEvent, TokenRotatedEvent } from './ports.js';
import { pairId, type TokenSet } from './token.js';

/** Longest a publish may take before it is left to the retry (a Pub/Sub outage costs 70–90 s otherwise). */
export const ANNOUNCE_TIMEOUT_MS = 5_000;

/** Where an announcement that failed waits for its retry (agent: state file; function: annotation). */
export interface AnnounceMark {
  set(event: TokenRotatedEvent): Promise<void>;
  clear(event: TokenRotatedEvent): Promise<void>;
}

export function rotatedEvent(token: TokenSet, version: string, now: number): TokenRotatedEvent {
  return {
    type: 'TOKEN_ROTATED',
    version,
    generation: token.generation ?? 0,
    accessExpiresAt: new Date(token.accessExpiresAt).toISOString(),
    source: token.source ?? 'unknown',
    publishedAt: new Date(now).toISOString(),
  };
}

/** TOKEN_CONSUMED for the pair just presented: its pairId() only, never the token (I5 as amended). */
export function consumedEvent(consumed: TokenSet, source: string, now: number): TokenConsumedEvent {
  return {
    type: 'TOKEN_CONSUMED',
    pairId: pairId(consumed.refreshToken),
    generation: consumed.generation ?? 0,
    source,
    publishedAt: new Date(now).toISOString(),
  };
}

/**
 * Tell the other VMs a refresh token is spent (docs/DESIGN.md "Consumed announcements"), with the
 * same deadline as TOKEN_ROTATED. Best effort: not remembered when it fails — the pair it protects
 * reaches them with the secret, and by then nothing can present the spent token anyway. Never throws.
 */
export async function announceConsumed(d: Pick<AnnounceDeps, 'bus' | 'clock' | 'logger'>, event: TokenConsumedEvent): Promise<boolean> {
  const { bus, logger } = d;
  if (!bus?.publishConsumed) return false;
  const ctl = new AbortController();
  try {
    await Promise.race([
      bus.publishConsumed(event),
      d.clock.sleep(ANNOUNCE_TIMEOUT_MS, ctl.signal).then(() => {
        throw new Error(`no answer within ${ANNOUNCE_TIMEOUT_MS} ms`);
      }),
    ]);
    logger.info('consumed_announced', 'Announced the spent refresh token (TOKEN_CONSUMED) to the other VMs', {
      pairId: event.pairId,
      generation: event.generation,
    });
    return true;
  } catch (err) {
    logger.warn('publish_failed', 'Could not publish TOKEN_CONSUMED; other VMs learn of the new pair from the secret', { error: errorText(err) });
    return false;
  } finally {
    ctl.abort();
  }
}

export type AddReason = 'refresh' | 'push' | 'login';

/** AddSecretVersion; throws SecretStoreError. */
export async function addVersion(store: SecretStore, token: TokenSet, logger: Logger, reason: AddReason): Promise<string> {
  const v = await store.add(token);
  logger.info('secret_version_added', `Stored token as secret version ${v.version}`, { version: v.name, generation: token.generation, reason });
  return v.name;
}

export interface AnnounceDeps {
  bus?: EventBus | undefined;
  clock: Clock;
  logger: Logger;
  mark?: AnnounceMark | undefined;
}

/** Publish with a deadline; true when it went out. Failures are logged and marked, never thrown. */
export async function announce(d: AnnounceDeps, event: TokenRotatedEvent): Promise<boolean> {
  const { bus, logger, mark } = d;
  if (!bus) return true;
  const ctl = new AbortController();
  try {
    await Promise.race([
      bus.publish(event),
      d.clock.sleep(ANNOUNCE_TIMEOUT_MS, ctl.signal).then(() => {
        throw new Error(`no answer within ${ANNOUNCE_TIMEOUT_MS} ms`);
      }),
    ]);
    await mark?.clear(event).catch(() => undefined);
    return true;
  } catch (err) {
    logger.warn('publish_failed', 'Could not publish TOKEN_ROTATED; will retry (agents also catch up on their next check)', {
      version: event.version,
      error: errorText(err),
    });
    await mark?.set(event).catch((e: unknown) => logger.warn('announce_mark_failed', 'Could not remember the pending announcement', { error: errorText(e) }));
    return false;
  } finally {
    ctl.abort();
  }
}

/** Destroy versions beyond the newest `keep` (each live one costs $0.06/month). Never throws. */
export async function pruneVersions(store: SecretStore, keep: number, logger: Logger): Promise<void> {
  try {
    const destroyed = await store.prune(keep);
    if (destroyed > 0) logger.info('versions_pruned', `Destroyed ${destroyed} old secret version(s)`, { destroyed, keep });
  } catch (err) {
    logger.warn('prune_failed', 'Could not destroy old secret versions', { error: errorText(err) });
  }
}
