import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, lstatSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tmpPathFor } from '../../agent/atomic-write.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import { parseFlat } from '../../core/codec.js';
import { createLogger } from '../../core/log.js';
import type { TokenSet } from '../../core/token.js';
import { runPythonBot } from '../helpers/python.js';

const ACCESS = 'access-CACHE-SECRET-0123456789abcdef';
const REFRESH = 'refresh-CACHE-SECRET-fedcba9876543210';

let dir: string;
let path: string;

function token(over: Partial<TokenSet> = {}): TokenSet {
  return {
    accessToken: ACCESS,
    refreshToken: REFRESH,
    accessExpiresAt: Date.now() + 20 * 60_000,
    refreshExpiresAt: Date.now() + 60 * 60_000,
    issuedAt: Date.now(),
    generation: 3,
    source: 'agent:test',
    appKey: 'key-1',
    appSecret: 'app-secret-CACHE-0000',
    extra: { bot_extra: 'kept' },
    ...over,
  };
}

const strays = () => readdirSync(dir).filter((n) => n.endsWith('.tmp'));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tk-cache-'));
  path = join(dir, 'saxo_token_cache.json');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('createCacheFile', () => {
  it('reads missing as missing', async () => {
    expect(await createCacheFile(path).read()).toEqual({ kind: 'missing' });
  });

  it('writes 0600, round-trips, leaves no tmp files', async () => {
    const cache = createCacheFile(path);
    const t = token();
    await cache.write(t);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(strays()).toEqual([]);
    const r = await cache.read();
    expect(r.kind).toBe('ok');
    if (r.kind !== 'ok') return;
    expect(r.token.refreshToken).toBe(REFRESH);
    expect(r.token.generation).toBe(3);
    expect(r.token.extra).toEqual({ bot_extra: 'kept' });
    // millisecond precision survives the ISO round trip
    expect(r.token.accessExpiresAt).toBe(t.accessExpiresAt);
  });

  it('replaces an older, wider-mode file with a 0600 one', async () => {
    writeFileSync(path, '{}', { mode: 0o644 });
    await createCacheFile(path).write(token());
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('carries app_key/app_secret over from the current file when the token lacks them', async () => {
    const cache = createCacheFile(path);
    await cache.write(token({ appKey: 'k-old', appSecret: 's-old-secret' }));
    await cache.write(token({ appKey: undefined, appSecret: undefined, refreshToken: 'refresh-next-0000000000' }));
    const flat = JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
    expect(flat).toMatchObject({ app_key: 'k-old', app_secret: 's-old-secret', refresh_token: 'refresh-next-0000000000' });
  });

  it.each(['opened', 'written', 'synced'] as const)('a failure after "%s" leaves the old content intact and no tmp file', async (stage) => {
    const good = createCacheFile(path);
    await good.write(token());
    const before = readFileSync(path, 'utf8');
    let tmpSeen = '';
    const failing = createCacheFile(path, {
      write: {
        onStage: (s, tmp) => {
          tmpSeen = tmp;
          if (s === stage) throw new Error(`injected crash after ${s}`);
        },
      },
    });
    await expect(failing.write(token({ refreshToken: 'refresh-NEW-never-landed' }))).rejects.toThrow(/injected crash/);
    expect(tmpSeen.startsWith(dir)).toBe(true);
    expect(readFileSync(path, 'utf8')).toBe(before);
    expect(strays()).toEqual([]);
  });

  it('a failing rename (target is a non-empty directory) throws and leaves no tmp file', async () => {
    mkdirSync(path);
    writeFileSync(join(path, 'x'), 'x');
    await expect(createCacheFile(path).write(token())).rejects.toThrow();
    expect(strays()).toEqual([]);
    expect(await createCacheFile(path).read()).toMatchObject({ kind: 'corrupt' });
  });

  it('treats a symlink at the target as unusable on read, and refuses (never follows nor replaces) it on write', async () => {
    const victim = join(dir, 'victim.json');
    writeFileSync(victim, JSON.stringify({ access_token: 'a-victim', refresh_token: 'r-victim', token_expiry: '2030-01-01T00:00:00Z' }));
    symlinkSync(victim, path);
    const cache = createCacheFile(path);
    const r = await cache.read();
    expect(r).toMatchObject({ kind: 'corrupt', unusable: 'symlink' });
    expect(r.kind === 'corrupt' && r.reason).toMatch(/symlink/);

    await expect(cache.write(token())).rejects.toThrow(/refusing .*saxo_token_cache\.json: symlink/);
    expect(lstatSync(path).isSymbolicLink()).toBe(true);
    expect(readFileSync(victim, 'utf8')).toContain('r-victim');
    expect(strays()).toEqual([]);
  });

  it('never writes through a symlink planted at a tmp name (O_EXCL|O_NOFOLLOW), picks another name', async () => {
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'untouched');
    const planted = tmpPathFor(path, 'predictable');
    symlinkSync(victim, planted);
    // Also the name a naive writer (and the bots) use.
    symlinkSync(victim, `${path}.tmp`);
    const names = ['predictable', 'fresh0000001'];
    const cache = createCacheFile(path, { write: { tmpSuffix: () => names.shift() ?? 'fallback' } });
    await cache.write(token());
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    expect(lstatSync(planted).isSymbolicLink()).toBe(true); // not ours: left alone
    expect((await cache.read()).kind).toBe('ok');
  });

  it.each([
    ['truncated', (s: string) => s.slice(0, Math.floor(s.length / 2))],
    ['empty', () => ''],
    ['garbage', () => '\u0000\u0001binary'],
    ['array', (s: string) => `[${s}]`],
  ])('a %s file reads as corrupt with a reason free of token text', async (_n, mangle) => {
    const cache = createCacheFile(path);
    await cache.write(token());
    writeFileSync(path, mangle(readFileSync(path, 'utf8')));
    const r = await cache.read();
    expect(r.kind).toBe('corrupt');
    if (r.kind !== 'corrupt') return;
    expect(r.reason).not.toContain(ACCESS);
    expect(r.reason).not.toContain(REFRESH);
  });

  it('registers the tokens it reads with the logger for redaction', async () => {
    const lines: string[] = [];
    const logger = createLogger({ write: (l) => lines.push(l) });
    const cache = createCacheFile(path, { logger });
    await createCacheFile(path).write(token());
    await cache.read();
    logger.info('test', `leak attempt ${REFRESH} ${ACCESS}`);
    expect(lines.join('\n')).not.toContain(REFRESH);
    expect(lines.join('\n')).not.toContain(ACCESS);
  });
});

describe('Python interop (real python3)', () => {
  const savedTz = process.env.TZ;
  const TZ = 'Europe/Copenhagen';
  beforeAll(() => {
    process.env.TZ = TZ; // the naive times Python writes are local: both sides in a non-UTC zone
  });
  afterAll(() => {
    if (savedTz === undefined) delete process.env.TZ;
    else process.env.TZ = savedTz;
  });

  it('Python reads what we wrote, and trusts it by the same expiry instant', async () => {
    const t = token({ accessExpiresAt: Date.now() + 600_000 });
    await createCacheFile(path).write(t);
    const read = await runPythonBot(['--mode', 'read', '--data-dir', dir], { env: { TZ } });
    expect(read.code, read.stderr).toBe(0);
    const flat = JSON.parse(read.stdout) as Record<string, string>;
    expect(flat.refresh_token).toBe(REFRESH);
    expect(flat.bot_extra).toBe('kept');
    const check = await runPythonBot(['--mode', 'check', '--data-dir', dir], { env: { TZ } });
    const c = JSON.parse(check.stdout) as { trusted: boolean; expiry_epoch: number; remaining: number };
    expect(c.trusted).toBe(true);
    expect(Math.round(c.expiry_epoch * 1000)).toBe(t.accessExpiresAt);
  });

  it('we read what Python writes (naive local token_expiry, five keys)', async () => {
    const src = join(dir, 'pair.json');
    writeFileSync(src, JSON.stringify({
      access_token: ACCESS,
      refresh_token: REFRESH,
      token_expiry: '2026-01-27T14:35:00.250000', // naive, Copenhagen winter = UTC+1
      app_key: 'key-py',
      app_secret: 'secret-py-000000',
    }));
    const w = await runPythonBot(['--mode', 'write-stale', '--data-dir', dir, '--from', src], { env: { TZ } });
    expect(w.code, w.stderr).toBe(0);
    const r = await createCacheFile(path).read();
    expect(r.kind).toBe('ok');
    if (r.kind !== 'ok') return;
    expect(r.token.accessExpiresAt).toBe(Date.UTC(2026, 0, 27, 13, 35, 0, 250));
    expect(r.token.generation).toBeUndefined();
    expect(r.token.appKey).toBe('key-py');
    // and the bytes Python wrote parse the same through the shared codec
    expect(parseFlat(readFileSync(path, 'utf8')).ok).toBe(true);
  });
});

describe('createStateFile', () => {
  it('round-trips token, failures, lastRefresh, agentSeenAt with 0600', async () => {
    const sf = createStateFile(join(dir, 'agent-state.json'));
    expect(await sf.read()).toBeUndefined();
    const state = { token: token(), failures: 2, lastRefresh: { at: 1000, by: 'agent:x', version: '7' }, agentSeenAt: 5000 };
    await sf.write(state);
    expect(statSync(sf.path).mode & 0o777).toBe(0o600);
    expect(await sf.read()).toEqual(state);
    expect(strays()).toEqual([]);
  });

  it('writes without a token', async () => {
    const sf = createStateFile(join(dir, 'agent-state.json'));
    await sf.write({ failures: 0 });
    expect(await sf.read()).toEqual({ token: undefined, failures: 0, lastRefresh: undefined, agentSeenAt: undefined });
  });

  it.each([
    ['not JSON', '{"version":1,'],
    ['wrong version', JSON.stringify({ version: 2, failures: 0 })],
    ['bad failures', JSON.stringify({ version: 1, failures: 'many' })],
    ['bad token', JSON.stringify({ version: 1, failures: 0, token: { access_token: ACCESS, refresh_token: '', token_expiry: 'x' } })],
  ])('%s → undefined, reason logged without token text', async (_n, text) => {
    const p = join(dir, 'agent-state.json');
    writeFileSync(p, text);
    const lines: string[] = [];
    const sf = createStateFile(p, { logger: createLogger({ write: (l) => lines.push(l) }) });
    expect(await sf.read()).toBeUndefined();
    expect(lines.some((l) => l.includes('state_file_corrupt'))).toBe(true);
    expect(lines.join('\n')).not.toContain(ACCESS);
  });
});
