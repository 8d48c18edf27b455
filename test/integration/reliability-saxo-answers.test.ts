/**
 * Issue 9, item 3 — absurd lifetimes from the token endpoint. A scripted HTTP endpoint on
 * 127.0.0.1 answers 200 with expires_in 1e9, 1e12, 1e300 and then refresh_token_expires_in 1e300.
 * The real agent stores every pair (cache and state), logs a lifetime_clamped WARNING, writes
 * expiries real python3 parses with datetime.fromisoformat, bounded to an hour (access) and a day
 * (refresh). The agent's threshold is set to 3597 s, so a stored expiry of at most now + 3600 − 1 s
 * must bring the next refresh within seconds: the chain keeps moving instead of waiting for 1e9 s.
 *
 * Issue 9, item 4 (the retry sleep) — a proxy answers 503 with `Retry-After: 3` before the grant. The
 * agent waits the 3 s the server asked for with the bots' flock free (a real python probe takes it
 * every 50 ms), then presents the same, still live, refresh token once more and stores the pair.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import type { CliProcess } from '../helpers/agent-process.js';
import { PYTHON, spawnPythonBot, type PythonBot } from '../helpers/python.js';
import { expectNoSecrets, STANDALONE, startCliAs } from '../helpers/reliability-cli.js';
import { startScriptedTokenEndpoint, type ScriptedTokenEndpoint } from '../helpers/reliability-servers.js';

const APP_KEY = 'rel-answers-app';
const APP_SECRET = 'rel-answers-app-secret-0123456789abcdef';
const HOUR = 3600;
const DAY = 24 * HOUR;

// n-th refresh → the lifetimes the endpoint claims.
const SCRIPT: { expires_in: number; refresh_token_expires_in: number; clamped: RegExp }[] = [
  { expires_in: 1e9, refresh_token_expires_in: HOUR, clamped: /expires_in=1000000000 → 3600/ },
  { expires_in: 1e12, refresh_token_expires_in: HOUR, clamped: /expires_in=1000000000000 → 3600/ },
  { expires_in: 1e300, refresh_token_expires_in: HOUR, clamped: /expires_in=1e\+300 → 3600/ },
  { expires_in: 1e9, refresh_token_expires_in: 1e300, clamped: /refresh_token_expires_in=1e\+300 → 86400/ },
];

let endpoint: ScriptedTokenEndpoint;
const procs: CliProcess[] = [];
const bots: PythonBot[] = [];

beforeAll(async () => {
  endpoint = await startScriptedTokenEndpoint((n) => {
    const s = SCRIPT[n];
    return { body: s ? { expires_in: s.expires_in, refresh_token_expires_in: s.refresh_token_expires_in } : { expires_in: HOUR, refresh_token_expires_in: HOUR } };
  });
});
afterAll(async () => {
  await endpoint.close();
});
afterEach(async () => {
  for (const b of bots.splice(0)) b.kill('SIGKILL');
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
});

/** Real python3 reads the expiries as the bots would. */
function pythonExpiries(file: string): { token_expiry: number; refresh_token_expiry?: number } {
  const code = [
    'import json, sys',
    'from datetime import datetime',
    'd = json.load(open(sys.argv[1]))',
    "print(json.dumps({k: datetime.fromisoformat(d[k]).timestamp() for k in ('token_expiry', 'refresh_token_expiry') if k in d}))",
  ].join('\n');
  const r = spawnSync(PYTHON, ['-c', code, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python could not parse the cache: ${r.stderr}`);
  return JSON.parse(r.stdout) as { token_expiry: number; refresh_token_expiry?: number };
}

describe('absurd lifetimes from the token endpoint (item 3)', () => {
  it('expires_in 1e9 / 1e12 / 1e300 and refresh_token_expires_in 1e300: stored bounded (≤ 1 h / ≤ 24 h), WARNING logged, python parses the cache, the next refresh comes within the hour', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-rel-answers-'));
    const seed = endpoint.issue();
    const now = Date.now();
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write({
      accessToken: seed.access_token, refreshToken: seed.refresh_token, accessExpiresAt: now + 1000, refreshExpiresAt: now + HOUR * 1000,
      issuedAt: now - (HOUR - 2) * 1000, generation: 1, source: 'seed', appKey: APP_KEY, appSecret: APP_SECRET, extra: {},
    });
    const a = startCliAs(['agent'], {
      ...STANDALONE,
      TOKEN_KEEPER_DATA_DIR: dir,
      SAXO_AUTH_BASE_URL: endpoint.url,
      SAXO_APP_KEY: APP_KEY,
      SAXO_APP_SECRET: APP_SECRET,
      CHECK_INTERVAL_SECONDS: '0.5',
      // A pair stored with at most an hour (− 1 s margin) left is due 2 s after it was issued.
      REFRESH_THRESHOLD_SECONDS: String(HOUR - 3),
      BOT_REFRESH_THRESHOLD_SECONDS: '120',
      TOKEN_EXPIRY_MARGIN_SECONDS: '1',
      REFRESH_TOKEN_ALERT_SECONDS: '0',
      TOKEN_KEEPER_HOLDER_ID: 'agent:rel-answers',
    });
    procs.push(a);

    let lastAbsurdAt = 0;
    for (let n = 0; n < SCRIPT.length; n++) {
      const generation = n + 2;
      const ev = await a.waitFor((l) => l.event === 'token_refreshed' && l.generation === generation, 20_000, `refresh ${n}`);
      const refreshedAt = Date.parse(String(ev.time));
      lastAbsurdAt = refreshedAt;
      const snap = join(dir, `snapshot-${n}.json`);
      copyFileSync(join(dir, 'saxo_token_cache.json'), snap);
      const warn = a.logs.find((l) => l.event === 'lifetime_clamped' && SCRIPT[n]!.clamped.test(l.message));
      expect(warn, `lifetime_clamped for answer ${n}: ${a.logs.filter((l) => l.event === 'lifetime_clamped').map((l) => l.message).join(' | ')}`).toBeDefined();
      expect(warn!.severity).toBe('WARNING');

      const py = pythonExpiries(snap);
      expect(py.token_expiry * 1000).toBeLessThanOrEqual(refreshedAt + HOUR * 1000);
      expect(py.token_expiry * 1000).toBeGreaterThan(refreshedAt + (HOUR - 10) * 1000);
      expect(py.refresh_token_expiry).toBeDefined();
      expect(py.refresh_token_expiry! * 1000).toBeLessThanOrEqual(refreshedAt + (n === 3 ? DAY : HOUR) * 1000);
      if (n === 3) expect(py.refresh_token_expiry! * 1000).toBeGreaterThan(refreshedAt + (DAY - 10) * 1000);
      expect(Date.parse(String(ev.expiresAt))).toBeLessThanOrEqual(refreshedAt + HOUR * 1000);
    }
    // …and the chain moved on within seconds of each bounded pair (not after 1e9 s).
    const next = await a.waitFor((l) => l.event === 'token_refreshed' && l.generation === SCRIPT.length + 2, 20_000, 'the refresh after the last absurd answer');
    const nextAt = Date.parse(String(next.time));
    expect(next.generation).toBe(SCRIPT.length + 2);
    // Its own pair (the endpoint now answers a plain hour) is stored with at most that hour.
    expect(Date.parse(String(next.expiresAt))).toBeLessThanOrEqual(nextAt + HOUR * 1000);
    expect(Date.parse(String(next.expiresAt))).toBeGreaterThan(nextAt + (HOUR - 10) * 1000);
    // Due 2 s after the last bounded pair was issued (threshold HOUR − 3): within seconds, not after 1e9 s.
    expect(nextAt - lastAbsurdAt).toBeLessThan(10_000);
    const state = await createStateFile(join(dir, '.token-keeper-state.json')).read();
    expect(state?.token?.generation).toBeGreaterThanOrEqual(SCRIPT.length + 2);
    expect(endpoint.invalidPresentations()).toBe(0);
    expect(new Set(endpoint.presented).size).toBe(endpoint.presented.length);
    expect(a.logs.filter((l) => l.event === 'refresh_failed' || l.event === 'reconcile_error')).toEqual([]);
    expect((await a.stop()).code).toBe(0);
    expectNoSecrets([a], [...endpoint.issued, APP_SECRET]);
  }, 60_000);
});

describe('a 503 with Retry-After before the grant (item 4: no sleep under the bots\' lock)', () => {
  it('the agent sleeps the 3 s asked for with the flock free (python probe), then presents the live token again and stores the pair', async () => {
    const RETRY_AFTER = 3;
    const proxy = await startScriptedTokenEndpoint((n) =>
      n === 0
        ? { body: {}, refuse: { status: 503, headers: { 'content-type': 'text/html', 'retry-after': String(RETRY_AFTER) }, text: '<html><body>503 Service Unavailable</body></html>' } }
        : { body: { expires_in: 1200, refresh_token_expires_in: HOUR } },
    );
    try {
      const dir = mkdtempSync(join(tmpdir(), 'tk-rel-retry-after-'));
      const seed = proxy.issue();
      const now = Date.now();
      await createCacheFile(join(dir, 'saxo_token_cache.json')).write({
        accessToken: seed.access_token, refreshToken: seed.refresh_token, accessExpiresAt: now + 600_000, refreshExpiresAt: now + HOUR * 1000,
        issuedAt: now - 600_000, generation: 1, source: 'seed', appKey: APP_KEY, appSecret: APP_SECRET, extra: {},
      });
      const probe = spawnPythonBot(['--mode', 'probe-lock', '--data-dir', dir, '--interval', '0.05', '--duration', '60']);
      bots.push(probe);
      await probe.waitForLine('READY');
      const a = startCliAs(['agent'], {
        ...STANDALONE,
        TOKEN_KEEPER_DATA_DIR: dir,
        SAXO_AUTH_BASE_URL: proxy.url,
        SAXO_APP_KEY: APP_KEY,
        SAXO_APP_SECRET: APP_SECRET,
        CHECK_INTERVAL_SECONDS: '60',
        REFRESH_THRESHOLD_SECONDS: '900', // 600 s left: due at once
        BOT_REFRESH_THRESHOLD_SECONDS: '120',
        TOKEN_KEEPER_HOLDER_ID: 'agent:rel-retry-after',
      });
      procs.push(a);
      const started = Date.parse(String((await a.waitForEvent('refresh_started', 20_000)).time));
      const refreshed = Date.parse(String((await a.waitForEvent('token_refreshed', 20_000)).time));

      probe.kill('SIGTERM');
      const result = JSON.parse((await probe.waitForLine(/^PROBE /, 5_000)).slice(6)) as { attempts: number; stretches: [number, number][] };
      const during = result.stretches.map(([s, e]) => ({ s: s * 1000, e: e * 1000 })).filter((x) => x.e >= started - 200 && x.s <= refreshed + 200);
      const longest = Math.max(0, ...during.map((x) => x.e - x.s));
      console.log(`[measure] Retry-After ${RETRY_AFTER} s: refresh took ${refreshed - started} ms; ${result.attempts} probe attempts; longest flock-busy stretch ${Math.round(longest)} ms`);
      expect(refreshed - started).toBeGreaterThanOrEqual(RETRY_AFTER * 1000 - 100); // the server's wait was honoured…
      expect(longest).toBeLessThan(1_000); // …without the bots' lock
      expect(proxy.presented).toEqual([seed.refresh_token, seed.refresh_token]); // refused, then granted: never consumed twice
      expect(proxy.invalidPresentations()).toBe(0);
      const cache = await createCacheFile(join(dir, 'saxo_token_cache.json')).read();
      expect(cache.kind === 'ok' && cache.token.generation).toBe(2);
      expect((await a.stop()).code).toBe(0);
      expectNoSecrets([a], [...proxy.issued, APP_SECRET]);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});
