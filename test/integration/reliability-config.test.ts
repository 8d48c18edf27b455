/**
 * Issue 9, items 8 and 9 — configuration validated as a whole, and the small startup rules, on the
 * real CLI: impossible settings exit 2 with one line on stderr (never echoing a password); tiers
 * out of order start but warn; `refresh` with no token exits 2; a missing data dir is refused
 * unless TOKEN_KEEPER_CREATE_DATA_DIR=true; our stale tmp files are removed at startup while the
 * bots' fixed `saxo_token_cache.tmp` is left alone.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { startCli, type CliProcess } from '../helpers/agent-process.js';
import { cloudEnv, startSecretManagerFixture, type SecretManagerFixture } from '../helpers/gcp.js';
import { expectNoSecrets, expectNoStack, runCliAs, STANDALONE } from '../helpers/reliability-cli.js';

const APP_KEY = 'rel-config-app';
const APP_SECRET = 'rel-config-app-secret-0123456789abcdef';
const PASSWORD = 'url-pass-3f9a1c77d2e4b8';
const procs: CliProcess[] = [];

afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
});

const tmp = (prefix = 'tk-rel-config-') => mkdtempSync(join(tmpdir(), prefix));

function base(dir: string): Record<string, string | undefined> {
  return {
    ...STANDALONE,
    TOKEN_KEEPER_DATA_DIR: dir,
    SAXO_AUTH_BASE_URL: 'http://127.0.0.1:9', // never contacted: nothing is due
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    CHECK_INTERVAL_SECONDS: '60',
  };
}

/** A cache with a pair that is nowhere near due (made-up tokens: nobody presents them). */
async function freshCache(dir: string): Promise<string[]> {
  const t = { accessToken: `sa_${randomBytes(24).toString('base64url')}`, refreshToken: `sr_${randomBytes(24).toString('base64url')}` };
  const now = Date.now();
  await createCacheFile(join(dir, 'saxo_token_cache.json')).write({
    ...t, accessExpiresAt: now + 3000_000, refreshExpiresAt: now + 3600_000, issuedAt: now, generation: 1, source: 'seed', appKey: APP_KEY, appSecret: APP_SECRET, extra: {},
  });
  return [t.accessToken, t.refreshToken];
}

function agent(env: Record<string, string | undefined>): CliProcess {
  const p = startCli(['agent'], env);
  procs.push(p);
  return p;
}

describe('configuration validated as a whole (item 8)', () => {
  it('`npx token-keeper agent` exits 2 with one line on stderr for each impossible setting, never printing the URL password', async () => {
    const dir = tmp();
    const cases: [string, Record<string, string>, RegExp][] = [
      ['CHECK_INTERVAL_SECONDS=0', { CHECK_INTERVAL_SECONDS: '0' }, /CHECK_INTERVAL_SECONDS must be a positive number/],
      ['LOCK_TIMEOUT_SECONDS=3000000', { LOCK_TIMEOUT_SECONDS: '3000000' }, /LOCK_TIMEOUT_SECONDS must be at most \d+ seconds/],
      ['LEASE_TTL_SECONDS=5 SAXO_HTTP_TIMEOUT_SECONDS=10', { LEASE_TTL_SECONDS: '5', SAXO_HTTP_TIMEOUT_SECONDS: '10' }, /LEASE_TTL_SECONDS \(5\) must be longer than SAXO_HTTP_TIMEOUT_SECONDS \(10\)/],
      ['SAXO_AUTH_BASE_URL with user:password@', { SAXO_AUTH_BASE_URL: `https://operator:${PASSWORD}@sim.logonvalidation.net` }, /SAXO_AUTH_BASE_URL must not contain credentials/],
    ];
    const runs = cases.map(([, env]) => {
      const p = startCli(['agent'], { ...base(dir), ...env }, { viaNpx: true });
      procs.push(p);
      return p;
    });
    const exits = await Promise.all(runs.map((p) => p.exited));
    cases.forEach(([name, , re], i) => {
      const p = runs[i]!;
      expect(exits[i]!.code, name).toBe(2);
      const lines = p.stderr().split('\n').filter((l) => l.trim() !== '');
      expect(lines, name).toHaveLength(1);
      expect(lines[0], name).toMatch(/^token-keeper: configuration error: /);
      expect(lines[0], name).toMatch(re);
      expectNoStack(p.stderr());
      expect(p.logs.some((l) => l.event === 'agent_starting'), `${name}: nothing may start`).toBe(false);
    });
    expectNoSecrets(runs, [PASSWORD, APP_SECRET]);
    // The data dir was not touched: no lock, no state file.
    expect(existsSync(join(dir, '.token-keeper-state.json'))).toBe(false);
    expect(existsSync(join(dir, 'saxo_token.lock'))).toBe(false);
  }, 60_000);

  it('standalone: REFRESH_THRESHOLD_SECONDS not above the bots\' buffer starts, with a tiers_out_of_order WARNING', async () => {
    const dir = tmp();
    const secrets = await freshCache(dir);
    const a = agent({ ...base(dir), REFRESH_THRESHOLD_SECONDS: '60', BOT_REFRESH_THRESHOLD_SECONDS: '120' });
    const w = await a.waitForEvent('tiers_out_of_order', 20_000);
    expect(w.severity).toBe('WARNING');
    expect(w.message).toMatch(/REFRESH_THRESHOLD_SECONDS \(60 s\) must be above the bots' buffer BOT_REFRESH_THRESHOLD_SECONDS \(120 s\)/);
    expect(w.message).toMatch(/fix: REFRESH_THRESHOLD_SECONDS=\d+/);
    await a.waitForEvent('agent_ready', 20_000);
    expect((await a.stop()).code).toBe(0);
    expectNoSecrets([a], [...secrets, APP_SECRET]);
  }, 30_000);

  describe('cloud-connected', () => {
    let sm: SecretManagerFixture;
    beforeAll(async () => {
      sm = await startSecretManagerFixture('tk-rel-config', 'saxo-token');
    });
    afterAll(async () => {
      await sm?.close();
    });

    it('CLOUD_REFRESH_THRESHOLD_SECONDS below REFRESH_THRESHOLD_SECONDS starts, with a tiers_out_of_order WARNING', async () => {
      const dir = tmp(); // no token: nothing is pushed or announced, the tiers are all this is about
      const a = agent({
        ...base(dir),
        ...cloudEnv(sm, { pubsubHost: '127.0.0.1:9' }),
        CLOUD_REFRESH_THRESHOLD_SECONDS: '200',
        REFRESH_THRESHOLD_SECONDS: '300',
      });
      const w = await a.waitForEvent('tiers_out_of_order', 20_000);
      expect(w.severity).toBe('WARNING');
      expect(w.message).toMatch(/CLOUD_REFRESH_THRESHOLD_SECONDS \(200 s\) must be above REFRESH_THRESHOLD_SECONDS \(300 s\)/);
      expect(a.logs.find((l) => l.event === 'agent_starting')?.mode).toBe('cloud-connected');
      await a.waitForEvent('agent_ready', 20_000);
      expect((await a.stop()).code).toBe(0);
      expectNoSecrets([a], [APP_SECRET]);
    }, 30_000);
  });
});

describe('small startup rules (item 9)', () => {
  it('`refresh` with no token anywhere exits 2', async () => {
    const dir = tmp();
    const r = await runCliAs(['refresh'], base(dir));
    expect(r.code).toBe(2);
    expect(r.p.logs.find((l) => l.event === 'refresh_command')?.outcome).toBe('login_required');
    expect(r.p.logs.some((l) => l.event === 'login_required')).toBe(true);
    expectNoStack(r.stderr);
    expectNoSecrets([r.p], [APP_SECRET]);
  }, 30_000);

  it('the agent refuses a data dir that does not exist (exit 2, naming TOKEN_KEEPER_CREATE_DATA_DIR) and creates it when told to', async () => {
    const missing = join(tmp(), 'no', 'such', 'data');
    const refused = await runCliAs(['agent'], base(missing));
    expect(refused.code).toBe(2);
    const lines = refused.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(missing);
    expect(lines[0]).toContain('TOKEN_KEEPER_CREATE_DATA_DIR');
    expectNoStack(refused.stderr);
    expect(existsSync(missing)).toBe(false);

    const a = agent({ ...base(missing), TOKEN_KEEPER_CREATE_DATA_DIR: 'true' });
    await a.waitForEvent('agent_ready', 20_000);
    expect(statSync(missing).isDirectory()).toBe(true);
    expect(statSync(missing).mode & 0o777).toBe(0o750);
    expect((await a.stop()).code).toBe(0);
    expectNoSecrets([refused.p, a], [APP_SECRET]);
  }, 30_000);

  it('stale tmp files of ours are removed at startup; the bots\' saxo_token_cache.tmp is left alone', async () => {
    const dir = tmp();
    const secrets = await freshCache(dir);
    // What atomic-write.ts names them: `.<base>.<12 hex>.tmp`, so the state file's (a dot file) starts with two dots.
    const ours = ['.saxo_token_cache.json.0123456789ab.tmp', '..token-keeper-state.json.abcdef012345.tmp'];
    const notOurs = ['saxo_token_cache.tmp', '.saxo_token_cache.json.0123.tmp', '.saxo_token_cache.json.0123456789AB.tmp'];
    for (const f of [...ours, ...notOurs]) writeFileSync(join(dir, f), '{"access_token": "half-writ');
    const a = agent(base(dir));
    const ev = await a.waitForEvent('stale_tmp_removed', 20_000);
    expect([...(ev.removed as string[])].sort()).toEqual(ours.map((f) => join(dir, f)).sort());
    for (const f of ours) expect(existsSync(join(dir, f)), f).toBe(false);
    for (const f of notOurs) expect(existsSync(join(dir, f)), f).toBe(true);
    await a.waitForEvent('agent_ready', 20_000);
    expect((await a.stop()).code).toBe(0);
    expectNoSecrets([a], [...secrets, APP_SECRET]);
  }, 30_000);
});
