/**
 * A trading bot's TokenCoordinator (docs/DESIGN.md "The bots"), in TypeScript so the demo needs no python:
 * trust the cache while more than `bufferSec` remain; otherwise take the flock on
 * `saxo_token.lock`, re-read, refresh with Saxo itself, write the cache (tmp + rename, naive local
 * `token_expiry` as Python writes it). Every tick then uses the token against the bearer endpoint.
 * Reports carry no token material (I5).
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { acquireFlock } from '../../agent/flock.js';
import { parseTimestamp } from '../../core/codec.js';
import { LockTimeoutError } from '../../core/errors.js';

export interface BotOptions {
  dataDir: string;
  /** Saxo stand-in base URL (…/token and …/openapi/port/v1/users/me). */
  saxoUrl: string;
  appKey: string;
  appSecret: string;
  bufferSec: number;
  marginSec: number;
  lockTimeoutMs?: number;
}

export interface BotTick {
  t: number;
  refreshed: boolean;
  /** Seconds left on the cache's token_expiry when the token was used. */
  remaining?: number | undefined;
  /** The stand-in accepted the access token. */
  valid?: boolean | undefined;
  error?: string | undefined;
}

type Cache = Record<string, unknown>;

/** Python's `datetime.now().isoformat()` shape: naive local time with microseconds. */
export function naiveLocalIso(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return (
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}` +
    `.${p(d.getMilliseconds() * 1000, 6)}`
  );
}

export class DemoBot {
  private readonly cachePath: string;
  private readonly lockPath: string;

  constructor(private readonly o: BotOptions) {
    this.cachePath = join(o.dataDir, 'saxo_token_cache.json');
    this.lockPath = join(o.dataDir, 'saxo_token.lock');
  }

  private read(): Cache | undefined {
    try {
      const v: unknown = JSON.parse(readFileSync(this.cachePath, 'utf8'));
      return v && typeof v === 'object' && !Array.isArray(v) ? (v as Cache) : undefined;
    } catch {
      return undefined; // missing, or a torn read (bots never see one: writers rename)
    }
  }

  private remaining(c: Cache | undefined): number | undefined {
    const exp = typeof c?.token_expiry === 'string' ? parseTimestamp(c.token_expiry) : undefined;
    return exp === undefined ? undefined : (exp - Date.now()) / 1000;
  }

  private trusted(c: Cache | undefined): boolean {
    if (!c || typeof c.access_token !== 'string' || typeof c.refresh_token !== 'string') return false;
    const rem = this.remaining(c);
    return rem !== undefined && rem > this.o.bufferSec;
  }

  private write(data: Cache): void {
    const tmp = this.cachePath + '.tmp';
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(data));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.cachePath);
  }

  private async refresh(c: Cache): Promise<Cache> {
    const body = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: String(c.refresh_token),
      client_id: this.o.appKey,
      client_secret: this.o.appSecret,
    });
    const res = await fetch(`${this.o.saxoUrl}/token`, { method: 'POST', body, signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    if (res.status !== 200 && res.status !== 201) {
      let code = `http_${res.status}`;
      try {
        code = String((JSON.parse(text) as { error?: unknown }).error ?? code);
      } catch {
        /* non-JSON error body */
      }
      throw new Error(code);
    }
    const tok = JSON.parse(text) as { access_token: string; refresh_token: string; expires_in: number };
    const next: Cache = {
      access_token: tok.access_token,
      refresh_token: tok.refresh_token,
      token_expiry: naiveLocalIso(Date.now() + (Number(tok.expires_in) - this.o.marginSec) * 1000),
      app_key: this.o.appKey,
      app_secret: this.o.appSecret,
    };
    this.write(next);
    return next;
  }

  /** The bots' get_token(): the cache when trusted, else refresh under the flock. */
  private async getToken(): Promise<{ cache: Cache; refreshed: boolean }> {
    const first = this.read();
    if (first && this.trusted(first)) return { cache: first, refreshed: false };
    const held = await acquireFlock(this.lockPath, { timeoutMs: this.o.lockTimeoutMs ?? 30_000, retryMs: 100 });
    try {
      const again = this.read(); // someone may have refreshed while we waited
      if (again && this.trusted(again)) return { cache: again, refreshed: false };
      if (!again || typeof again.refresh_token !== 'string') throw new Error('no_token');
      return { cache: await this.refresh(again), refreshed: true };
    } finally {
      await held.release();
    }
  }

  private async bearerValid(accessToken: string): Promise<boolean> {
    const res = await fetch(`${this.o.saxoUrl}/openapi/port/v1/users/me`, {
      headers: { authorization: `Bearer ${accessToken}` },
      signal: AbortSignal.timeout(10_000),
    });
    await res.arrayBuffer();
    return res.ok;
  }

  async tick(): Promise<BotTick> {
    const t = Date.now();
    try {
      const { cache, refreshed } = await this.getToken();
      const remaining = this.remaining(cache);
      const valid = await this.bearerValid(String(cache.access_token));
      return { t, refreshed, remaining, valid };
    } catch (err) {
      const error = err instanceof LockTimeoutError ? 'lock_timeout' : err instanceof Error ? err.message.slice(0, 80) : 'error';
      return { t, refreshed: false, error };
    }
  }
}
