/**
 * `token-keeper refresh [--force]` as a real process against the Saxo stand-in, in standalone
 * mode: no needless presentation, exactly one when forced, waits for a real Python bot holding
 * the bots' flock, and exits 2 (login required) when Saxo rejects the only pair there is.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import type { TokenSet } from '../../core/token.js';
import { startCli, type CliProcess } from '../helpers/agent-process.js';
import { spawnPythonBot, type PythonBot } from '../helpers/python.js';
import { cachedPair, issuedPair } from '../helpers/reliability-cli.js';

const APP_KEY = 'refresh-app-key';
const APP_SECRET = 'refresh-app-secret-0123456789abcdef';

let standin: SaxoStandin;
const procs: CliProcess[] = [];
const bots: PythonBot[] = [];
const seen = new Set<string>([APP_SECRET]);

beforeAll(async () => {
  standin = await startSaxoStandin({ clients: { [APP_KEY]: APP_SECRET } });
});
afterAll(async () => {
  await standin.close();
});
afterEach(async () => {
  for (const b of bots.splice(0)) b.kill('SIGKILL');
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
});

const cacheOf = (dir: string) => join(dir, 'saxo_token_cache.json');

function readCache(dir: string): TokenSet {
  const token = cachedPair(dir, seen);
  if (!token) throw new Error(`cache missing or unreadable in ${dir}`);
  return token;
}

/** A data dir whose cache holds a live pair with `leftSec` of access left. */
async function seed(leftSec: number): Promise<{ dir: string; token: TokenSet }> {
  const dir = mkdtempSync(join(tmpdir(), 'tk-refresh-'));
  // Issued a minute ago, whatever is left.
  const token = issuedPair(standin, { key: APP_KEY, secret: APP_SECRET }, { leftSec, lifeSec: leftSec + 60, refreshLeftSec: 3000, generation: 4, source: 'agent:vm1', seen });
  await createCacheFile(cacheOf(dir)).write(token);
  return { dir, token };
}

async function refresh(dir: string, args: string[] = []): Promise<{ p: CliProcess; code: number | null }> {
  const p = startCli(['refresh', ...args], {
    TOKEN_KEEPER_DATA_DIR: dir,
    SAXO_AUTH_BASE_URL: standin.url,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    TOKEN_KEEPER_HOLDER_ID: 'cli:test',
    GOOGLE_CLOUD_PROJECT: undefined,
    GCLOUD_PROJECT: undefined,
    TOKEN_SECRET_ID: undefined,
  });
  procs.push(p);
  const closed = new Promise<void>((r) => p.proc.once('close', () => r()));
  const [{ code }] = await Promise.all([p.exited, closed]);
  return { p, code };
}

function assertNothingSecret(p: CliProcess): void {
  const out = p.raw.join('\n') + p.stderr();
  for (const s of seen) expect(out.includes(s), 'a token or the app secret appeared in the refresh output').toBe(false);
}

describe('refresh CLI', () => {
  it('fresh token: exit 0 and no presentation', async () => {
    const { dir, token } = await seed(1000);
    const before = standin.stats().presentations;
    const { p, code } = await refresh(dir);
    expect(code).toBe(0);
    expect(standin.stats().presentations).toBe(before);
    expect(readCache(dir).refreshToken).toBe(token.refreshToken);
    expect(p.logs.find((l) => l.event === 'refresh_command')?.outcome).not.toBe('refreshed');
    expect(p.logs.filter((l) => l.event === 'token_refreshed')).toEqual([]);
    assertNothingSecret(p);
  }, 20_000);

  it('--force: exactly one presentation and a new pair in the cache', async () => {
    const { dir, token } = await seed(1000);
    const before = standin.stats();
    const { p, code } = await refresh(dir, ['--force']);
    expect(code).toBe(0);
    const after = standin.stats();
    expect(after.presentations).toBe(before.presentations + 1);
    expect(after.refreshes).toBe(before.refreshes + 1);
    expect(after.reusedPresentations).toBe(before.reusedPresentations);
    const next = readCache(dir);
    expect(next.refreshToken).not.toBe(token.refreshToken);
    expect(next.generation).toBe(5);
    expect(next.appKey).toBe(APP_KEY);
    expect(standin.isValidAccessToken(next.accessToken)).toBe(true);
    expect(p.logs.filter((l) => l.event === 'token_refreshed')).toHaveLength(1);
    expect(p.logs.find((l) => l.event === 'refresh_command')?.outcome).toBe('refreshed');
    assertNothingSecret(p);
  }, 20_000);

  it('a due token while a Python bot holds the flock: waits for the release, then refreshes once', async () => {
    const { dir, token } = await seed(100); // within the 300 s agent threshold
    const HOLD_S = 3;
    const tSpawn = Date.now();
    const bot = spawnPythonBot(['--mode', 'hold-lock', '--data-dir', dir, '--hold', String(HOLD_S)]);
    bots.push(bot);
    await bot.waitForLine('LOCKED', 10_000);
    const before = standin.stats().presentations;
    const { p, code } = await refresh(dir);
    expect(code).toBe(0);
    expect((await bot.exited).code).toBe(0);
    expect(bot.lines).toContain('RELEASED');
    // The bot got the lock after tSpawn and held it HOLD_S: a presentation before then was not waiting.
    const started = p.logs.find((l) => l.event === 'refresh_started');
    expect(started).toBeDefined();
    expect(Date.parse(started!.time as string)).toBeGreaterThanOrEqual(tSpawn + HOLD_S * 1000);
    expect(standin.stats().presentations).toBe(before + 1);
    const next = readCache(dir);
    expect(next.refreshToken).not.toBe(token.refreshToken);
    expect(next.accessExpiresAt).toBeGreaterThan(token.accessExpiresAt);
    assertNothingSecret(p);
  }, 30_000);

  it('invalid_grant with nothing newer: exit 2 (login required), and a second run does not present the dead token again', async () => {
    const { dir, token } = await seed(100);
    // Someone else (outside this system) already used the refresh token.
    const used = await fetch(`${standin.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token.refreshToken, client_id: APP_KEY, client_secret: APP_SECRET }),
    });
    expect(used.status).toBe(201);
    const stolen = (await used.json()) as { access_token: string; refresh_token: string };
    seen.add(stolen.access_token);
    seen.add(stolen.refresh_token);

    const before = standin.stats();
    const first = await refresh(dir);
    expect(first.code).toBe(2);
    expect(standin.stats().presentations).toBe(before.presentations + 1);
    expect(first.p.logs.some((l) => l.event === 'login_required')).toBe(true);
    expect(first.p.logs.find((l) => l.event === 'refresh_command')?.outcome).toBe('login_required');
    expect(readCache(dir).refreshToken).toBe(token.refreshToken); // nothing replaced it
    expect((await createStateFile(join(dir, '.token-keeper-state.json')).read())?.loginRequired).toBe(true);

    const second = await refresh(dir);
    expect(second.code).toBe(2);
    expect(standin.stats().presentations).toBe(before.presentations + 1);
    for (const x of [first.p, second.p]) assertNothingSecret(x);
  }, 30_000);
});
