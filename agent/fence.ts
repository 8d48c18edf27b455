/**
 * The consumed fence's cache half (docs/DESIGN.md "Consumed announcements"): when another
 * refresher announced the refresh token in the bots' cache as spent (TOKEN_CONSUMED), blank it
 * under the bots' flock — key kept, value "", every other key (the access token, the bots' own)
 * untouched — so that no bot presents it at its fallback. Only when the cache holds exactly a
 * spent pair; idempotent (a blanked cache no longer matches).
 */
import { errorText } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { CacheRead, Held, TokenCache } from '../core/ports.js';
import { pairId } from '../core/token.js';

export interface FenceDeps {
  lock: (signal?: AbortSignal) => Promise<Held>;
  cache: TokenCache;
  logger: Logger;
}

/** Resolves with the error text when the cache held a spent pair and could not be blanked. */
export async function blankSpentPair(d: FenceDeps, cache: CacheRead, consumed: ReadonlySet<string>, signal: AbortSignal): Promise<string | undefined> {
  if (cache.kind !== 'ok' || !d.cache.blankRefreshToken) return undefined;
  const id = pairId(cache.token.refreshToken);
  if (!consumed.has(id)) return undefined;
  let held: Held | undefined;
  try {
    held = await d.lock(signal);
    // Re-checked under the flock by blankRefreshToken: a bot may have written a new pair meanwhile.
    const r = await d.cache.blankRefreshToken(id);
    if (r !== 'blanked') d.logger.debug('consumed_not_blanked', `The cache no longer holds the spent refresh token (${r})`, { pairId: id });
    else {
      d.logger.warn(
        'consumed_blanked',
        "Another VM spent the refresh token in the bots' cache: blanked it so that no bot presents it (the access token stays until it expires; its successor comes from the secret or a push)",
        { pairId: id, generation: cache.token.generation },
      );
    }
    return undefined;
  } catch (err) {
    if (signal.aborted) return undefined;
    d.logger.error('consumed_blank_failed', `Could not blank the spent refresh token in the cache ${d.cache.path}: ${errorText(err)}`);
    return errorText(err);
  } finally {
    await held?.release();
  }
}
