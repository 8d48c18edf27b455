/**
 * The bots' token cache (`saxo_token_cache.json`, docs/DESIGN.md "The bots' cache") as a TokenCache.
 * Reads take no lock (as the bots do); bad content is reported as `corrupt` and a file that cannot
 * be read (EACCES after a `sudo` run, EIO) as `unreadable` with its path and errno — never thrown
 * (I6): the agent keeps refreshing into its state file and counts the failed writes.
 * Writes are crash-safe (atomic-write.ts) and 0600; the caller holds the flock. A cache that is no
 * regular file (FIFO, oversize, hard-linked) reads as `corrupt` with `unusable` naming it and is
 * replaced by the next write; a symlink or directory there is refused by the write (never followed).
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
import { atomicWriteFile, type AtomicWriteOptions } from './atomic-write.js';
import { writeOrOverwrite } from './in-place-write.js';
import { readRegularNoFollow } from './safe-open.js';

/** A real cache is under 2 KiB; anything above this is not a cache (docs/DESIGN.md "No planted link is followed"). */
export const CACHE_MAX_BYTES = 64 * 1024;

export interface CacheFileOptions {
  logger?: Logger;
  /** Test seams for the crash-safe write. */
  write?: Pick<AtomicWriteOptions, 'onStage' | 'tmpSuffix'>;
}

export function createCacheFile(path: string, opts: CacheFileOptions = {}): TokenCache {
  const read = async (): Promise<CacheRead> => {
    let raw;
    try {
      raw = await readRegularNoFollow(path, CACHE_MAX_BYTES);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
      return { kind: 'unreadable', code, reason: `${code} reading ${path}` };
    }
    if (raw.kind === 'missing') return raw;
    // A FIFO, an oversize file, a hard link: named, and repaired from the newest pair (the rename
    // replaces the name). A symlink or a directory: named, and the write below refuses it.
    if (raw.kind === 'unusable') return { kind: 'corrupt', reason: raw.reason, unusable: raw.unsafe };
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
    const text = JSON.stringify(encodeFlat(toWrite), null, 2) + '\n';
    // A full disk: in place rather than leave the bots a consumed refresh token (agent/in-place-write.ts).
    await writeOrOverwrite(path, text, () => atomicWriteFile(path, text, { mode: 0o600, refuseSymlink: true, ...opts.write }));
  };

  // TOKEN_CONSUMED (docs/DESIGN.md "Consumed announcements"): the spent refresh token becomes "" —
  // the key stays, every other key (the access token, the bots' own) stays byte for byte.
  const blankRefreshToken = async (id: string): Promise<'blanked' | 'other' | 'missing'> => {
    const raw = await readRegularNoFollow(path, CACHE_MAX_BYTES);
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
    await atomicWriteFile(path, JSON.stringify({ ...rec, refresh_token: '' }, null, 2) + '\n', { mode: 0o600, refuseSymlink: true, ...opts.write });
    return 'blanked';
  };

  return { path, read, write, blankRefreshToken };
}
