/**
 * The agent's side of a refresh session (core/refresh.ts LocalSide): the bots' flock, the journal,
 * the cache and the agent's private state. Saxo's answer goes to the journal before it is read;
 * the successor then goes to the cache and the state (I3), and the journal is wiped once both hold
 * it. A write that fails does not lose the pair: the journal (or the state file) still holds it,
 * the messages say which, and the caller counts the failure (the session's `count`).
 */
import { errorText, LockTimeoutError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Held, Journal, TokenCache } from '../core/ports.js';
import { believedExpiry } from '../core/decide.js';
import type { LocalSide } from '../core/refresh.js';
import { successorFrom } from '../core/grant.js';
import { compareFreshness, pairId, secretsOf, withCredentials, withNextGeneration, type Credentials, type TokenSet } from '../core/token.js';

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
  /** Saxo consumed this pair and issued no successor: never present it again (login required). */
  consumed: (presented: TokenSet) => void;
  journal?: Journal | undefined;
}

export interface AgentLocalSide extends LocalSide {
  readonly deps: LocalSideDeps;
  /** A successor kept only in the journal so far (its cache or state write failed). */
  readonly unsettled: TokenSet | undefined;
  /** After a run: wipe the journal once its successor (or something newer) is in the cache and the state. */
  settle(stateSaved: boolean): Promise<void>;
  /** Mark `t` as held by the journal until settle() finds it durable (startup recovery). */
  hold(t: TokenSet): void;
}

export function createLocalSide(d: LocalSideDeps): AgentLocalSide {
  let unsettled: TokenSet | undefined;
  /** Whether the answer being stored reached the journal (the messages say where the pair is). */
  let journaled = false;
  const where = () => (d.journal && journaled ? `the journal ${d.journal.path}` : 'memory only');
  const wipe = async (): Promise<boolean> => {
    try {
      await d.journal?.wipe();
      unsettled = undefined;
      return true;
    } catch (err) {
      d.logger.error('journal_wipe_failed', `Could not wipe the journal ${d.journal?.path}: ${errorText(err)}`);
      return false;
    }
  };
  return {
    deps: d,
    get unsettled() {
      return unsettled;
    },
    lock: (signal) => d.lock(signal),
    read: async () => ({ cache: await d.cache.read(), known: d.known(), room: d.journal ? await d.journal.room() : undefined }),
    keep: async (entry) => {
      journaled = false;
      try {
        await d.journal?.record(entry);
        journaled = d.journal !== undefined;
      } catch (err) {
        d.logger.error('journal_write_failed', `Could not write Saxo's answer to the journal ${d.journal?.path}: ${errorText(err)}; storing it directly`);
      }
    },
    persist: async (next) => {
      d.adopt(next);
      unsettled = next;
      let failure: Error | undefined;
      try {
        await d.cache.write(withCredentials(next, d.credentials));
      } catch (err) {
        failure = err instanceof Error ? err : new Error(String(err));
      }
      const stateError = await d.saveState();
      // Say where the only copies of the pair are — and only what is true (docs/DESIGN.md "Nothing dangerous is silent").
      if (failure) {
        const inJournal = d.journal !== undefined && journaled;
        const places = [
          ...(stateError ? [] : ["the agent's state file"]),
          ...(inJournal ? [`the journal ${d.journal?.path ?? ''}`] : []),
          ...(stateError && !inJournal ? ["this process's memory (the agent's state file could not be written either)"] : []),
        ];
        d.logger.error('cache_write_failed', `Could not write the cache ${d.cache.path}: ${errorText(failure)}; the new token is only in ${places.join(' and ')}`, {
          onlyCopy: stateError ? (inJournal ? 'journal' : 'memory') : 'state_file',
        });
      } else if (stateError) {
        d.logger.error('state_write_failed', `The new token is in the cache; the state file write failed, so it is also kept in ${where()}`);
      }
      if (!failure && !stateError) await wipe();
      return { cacheError: failure, stateError };
    },
    ended: async (presented, kept) => {
      if (kept) {
        d.adopt(kept);
        await d.cache.write(withCredentials(kept, d.credentials)).catch((err: unknown) => {
          d.logger.error('cache_write_failed', `Could not write the cache ${d.cache.path}: ${errorText(err)}`);
        });
      }
      d.consumed(kept ?? presented);
      if (!(await d.saveState())) await wipe();
    },
    settle: async (stateSaved) => {
      if (!unsettled || !stateSaved) return;
      const cache = await d.cache.read().catch(() => undefined);
      if (cache?.kind === 'ok' && compareFreshness(cache.token, unsettled) >= 0) await wipe();
    },
    hold: (t) => {
      unsettled = t;
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

export type Recovered =
  | { kind: 'none' }
  | { kind: 'pair'; next: TokenSet; adjusted: string[] }
  | { kind: 'ended'; presented: TokenSet | undefined; kept?: TokenSet | undefined; why: string };

/**
 * Startup: finish a refresh whose answer reached the journal but not (all of) the disk — a crash,
 * a stop, a parse error or a failed write after Saxo answered. Read with the same interpreter as
 * the live path (core/grant.ts); the presented pair is whichever local pair carries the journaled tag.
 */
export async function recoverFromJournal(side: AgentLocalSide, source: string, marginMs: number): Promise<Recovered> {
  const d = side.deps;
  if (!d.journal) return { kind: 'none' };
  let entry;
  try {
    entry = await d.journal.pending();
  } catch (err) {
    d.logger.error('journal_unreadable', `The journal ${d.journal.path} cannot be used: ${errorText(err)}`);
    return { kind: 'none' };
  }
  if (!entry) return { kind: 'none' };
  const cache = await d.cache.read();
  const candidates = [d.known(), cache.kind === 'ok' ? cache.token : undefined];
  const presented = candidates.find((t) => t && pairId(t.refreshToken) === entry.presented.pairId);
  const succ = successorFrom(entry, presented, source, marginMs);
  if (succ.kind === 'ended') return { kind: 'ended', presented, kept: succ.kept, why: succ.why };
  d.logger.addSecret(...secretsOf(succ.next));
  return { kind: 'pair', next: withNextGeneration(succ.next, ...candidates), adjusted: succ.adjusted };
}
