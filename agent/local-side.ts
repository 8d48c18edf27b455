/**
 * The agent's side of a refresh session (core/refresh.ts LocalSide): the bots' flock, the cache and
 * the agent's private state, made durable in that order (I3). A cache that cannot be written does
 * not lose the pair: the state file holds it, and the failure is reported to be counted.
 */
import { errorText, LockTimeoutError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Held, TokenCache } from '../core/ports.js';
import { believedExpiry } from '../core/decide.js';
import type { LocalSide } from '../core/refresh.js';
import { compareFreshness, withCredentials, type Credentials, type TokenSet } from '../core/token.js';

export interface LocalSideDeps {
  lock: (signal?: AbortSignal) => Promise<Held>;
  cache: TokenCache;
  /** Configured credentials: the bots' cache carries them, winning over the pair's (the bots' own fallback uses them). */
  credentials: Credentials;
  logger: Logger;
  known: () => TokenSet | undefined;
  /** The new pair is ours now (before anything is written). */
  adopt: (next: TokenSet) => void;
  /** Write the private state file; resolves with the error when it could not. */
  saveState: () => Promise<Error | undefined>;
}

export interface AgentLocalSide extends LocalSide {
  readonly deps: LocalSideDeps;
}

export function createLocalSide(d: LocalSideDeps): AgentLocalSide {
  return {
    deps: d,
    lock: (signal) => d.lock(signal),
    read: async () => ({ cache: await d.cache.read(), known: d.known() }),
    persist: async (next, counted) => {
      d.adopt(next);
      let failure: Error | undefined;
      try {
        await d.cache.write(withCredentials(next, d.credentials));
      } catch (err) {
        failure = err instanceof Error ? err : new Error(String(err));
      }
      counted(failure);
      const stateFailure = await d.saveState();
      // Say where the only copy of the pair is — and only what is true (docs/DESIGN.md "Nothing dangerous is silent").
      if (failure) {
        const where = stateFailure ? "only in this process's memory (the agent's state file could not be written either)" : "only in the agent's state file";
        d.logger.error('cache_write_failed', `Could not write the cache ${d.cache.path}: ${errorText(failure)}; the new token is ${where}`, {
          onlyCopy: stateFailure ? 'memory' : 'state_file',
        });
      }
      return stateFailure ?? failure;
    },
  };
}

export type CacheWrite =
  | { kind: 'written' }
  | { kind: 'current' }
  /** The cache already holds a newer pair (a bot wrote it meanwhile): adopt it instead. */
  | { kind: 'newer'; token: TokenSet }
  | { kind: 'failed'; reason: 'lock_timeout' | 'cache_write_failed'; detail: string };

/** Write `token` under the bots' flock unless the cache, re-read under it, already holds it or something newer. */
export async function writeCacheIfNewer(side: AgentLocalSide, token: TokenSet, signal: AbortSignal): Promise<CacheWrite> {
  const d = side.deps;
  let held: Held | undefined;
  try {
    held = await d.lock(signal);
    const now = await d.cache.read();
    // The same pair with an expiry moved later (docs/DESIGN.md "Server time") is rewritten, not kept.
    if (now.kind === 'ok' && compareFreshness(now.token, token) >= 0 && !believedExpiry(now.token, token).moved) {
      return compareFreshness(now.token, token) > 0 ? { kind: 'newer', token: now.token } : { kind: 'current' };
    }
    await d.cache.write(withCredentials(token, d.credentials));
    d.logger.info('cache_written', 'Cache updated with the newest token', { generation: token.generation, reason: now.kind === 'ok' ? 'older' : now.kind });
    return { kind: 'written' };
  } catch (err) {
    const reason = err instanceof LockTimeoutError ? 'lock_timeout' : 'cache_write_failed';
    if (!signal.aborted) d.logger.error(reason, `Could not write the cache ${d.cache.path}: ${errorText(err)}`);
    return { kind: 'failed', reason, detail: errorText(err) };
  } finally {
    await held?.release();
  }
}
