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
import { encodeFlat, parseFlat } from '../core/codec.js';
import type { Logger } from '../core/log.js';
import type { CacheRead, TokenCache } from '../core/ports.js';
import { secretsOf, type TokenSet } from '../core/token.js';
import { atomicWriteFile, readFileNoFollow, type AtomicWriteOptions } from './atomic-write.js';
import { writeOrOverwrite } from './in-place-write.js';

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
    const text = JSON.stringify(encodeFlat(toWrite), null, 2) + '\n';
    // A full disk: in place rather than leave the bots a consumed refresh token (agent/in-place-write.ts).
    await writeOrOverwrite(path, text, () => atomicWriteFile(path, text, { mode: 0o600, ...opts.write }));
  };

  return { path, read, write };
}
