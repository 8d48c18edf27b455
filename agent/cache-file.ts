/**
 * The bots' token cache (`saxo_token_cache.json`, docs/DESIGN.md "The bots' cache") as a TokenCache.
 * Reads take no lock (as the bots do); bad content is reported as `corrupt` and a file that cannot
 * be read (EACCES after a `sudo` run, EIO) as `unreadable` with its path and errno — never thrown
 * (I6): the agent keeps refreshing into its state file and counts the failed writes.
 * Writes are crash-safe (atomic-write.ts) and 0600; the caller holds the flock.
 *
 * Unknown keys: the file is rewritten from the TokenSet alone, so callers keep keys they do not know
 * by passing a TokenSet whose `extra` carries them (decodeFlat puts them there on read). The one
 * exception is app_key/app_secret: when the TokenSet lacks them they are carried over from the
 * current file, because bots may rely on finding them there.
 */
import { encodeFlat, pairId, parseFlat } from '../core/codec.js';
import type { Logger } from '../core/log.js';
import type { CacheRead, TokenCache } from '../core/ports.js';
import { secretsOf, type TokenSet } from '../core/token.js';
import { atomicWriteFile, readFileNoFollow, type AtomicWriteOptions } from './atomic-write.js';

export interface CacheFileOptions {
  logger?: Logger;
  /** Test seams for the crash-safe write. */
  write?: Pick<AtomicWriteOptions, 'onStage' | 'tmpSuffix'>;
}

export function createCacheFile(path: string, opts: CacheFileOptions = {}): TokenCache {
  const read = async (): Promise<CacheRead> => {
    let raw;
    try {
      raw = await readFileNoFollow(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
      return { kind: 'unreadable', code, reason: `${code} reading ${path}` };
    }
    if (raw.kind === 'missing') return raw;
    if (raw.kind === 'unusable') return { kind: 'corrupt', reason: raw.reason };
    const decoded = parseFlat(raw.text);
    if (!decoded.ok) return { kind: 'corrupt', reason: decoded.reason };
    opts.logger?.addSecret(...secretsOf(decoded.token));
    return { kind: 'ok', token: decoded.token };
  };

  const write = async (token: TokenSet): Promise<void> => {
    let toWrite = token;
    if (token.appKey === undefined || token.appSecret === undefined) {
      const cur = await read().catch(() => undefined);
      if (cur?.kind === 'ok') {
        toWrite = {
          ...token,
          appKey: token.appKey ?? cur.token.appKey,
          appSecret: token.appSecret ?? cur.token.appSecret,
        };
      }
    }
    opts.logger?.addSecret(...secretsOf(toWrite));
    await atomicWriteFile(path, JSON.stringify(encodeFlat(toWrite), null, 2) + '\n', { mode: 0o600, ...opts.write });
  };

  // TOKEN_CONSUMED (docs/DESIGN.md "Consumed announcements"): the spent refresh token becomes "" —
  // the key stays, every other key (the access token, the bots' own) stays byte for byte.
  const blankRefreshToken = async (id: string): Promise<'blanked' | 'other' | 'missing'> => {
    const raw = await readFileNoFollow(path);
    if (raw.kind !== 'ok') return 'missing';
    let obj: unknown;
    try {
      obj = JSON.parse(raw.text);
    } catch {
      return 'other';
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return 'other';
    const rec = obj as Record<string, unknown>;
    if (typeof rec.refresh_token !== 'string' || rec.refresh_token === '' || pairId(rec.refresh_token) !== id) return 'other';
    await atomicWriteFile(path, JSON.stringify({ ...rec, refresh_token: '' }, null, 2) + '\n', { mode: 0o600, ...opts.write });
    return 'blanked';
  };

  return { path, read, write, blankRefreshToken };
}
