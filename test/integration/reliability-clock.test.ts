/**
 * Issue 15, item 3 — server time, not local time, for expiries (docs/DESIGN.md "Server time").
 *
 * The real agent runs under Debian's libfaketime (LD_PRELOAD) with FAKETIME_TIMESTAMP_FILE changed
 * at run time and FAKETIME_DONT_FAKE_MONOTONIC=1 (only the wall clock steps, as with an NTP step
 * or a VM resume). The Saxo stand-in runs in this process on the true clock and stamps its own
 * Date header. The wall clock is stepped +2 h while a refresh is in flight (a delayed answer),
 * kept there for a refresh, stepped back, then −2 h. Every pair the cache holds must expire no
 * later than Saxo granted (true time), refreshes must keep their rhythm (no storm at +2 h, no
 * two-hour silence at −2 h), and the stand-in must see no re-presentation.
 * A one-shot `refresh --force` at +2 h reads Saxo's time before deciding (without it the pair looks
 * dead by the local clock and the attempt has no time left).
 * Also: a hand-edited 2099 `token_expiry` for the same pair is not adopted, and `status` does not
 * say HEALTHY on an expiry the state file knows to be wrong, nor with a recorded skew.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import type { CliProcess, LogLine } from '../helpers/agent-process.js';
import { cachedPair, expectNoSecrets, issuedPair, runCliAs, STANDALONE, startCliAs } from '../helpers/reliability-cli.js';

const APP = { key: 'rel-clock-app', secret: 'rel-clock-app-secret-0123456789abcdef' };
const LIFE = 15; // expires_in (s)
// The agent dates a pair from Saxo's Date header less its 1 s resolution (token_expiry ≈ grant + 13 s)
// and refreshes 9 s before token_expiry: one refresh every ~4 s; a storm would be one every check (0.25 s).
const THRESHOLD = 9;
const MARGIN = 1;
const CHECK = 0.25;
/** How long Saxo sits on the refresh during which the clock steps +2 h. */
const DELAY_MS = 2000;
const HOUR = 3600_000;
const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';

let saxo: SaxoStandin;
const procs: CliProcess[] = [];
const seen = new Set<string>();

beforeAll(async () => {
  if (!existsSync(FAKETIME_LIB)) throw new Error(`${FAKETIME_LIB} missing: apt-get install -y faketime (.ci/run installs it)`);
  saxo = await startSaxoStandin({ accessLifetimeSec: LIFE, refreshLifetimeSec: 120, clients: { [APP.key]: APP.secret } });
});
afterAll(async () => {
  await saxo.close();
});
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
});

function agentEnv(dir: string): Record<string, string | undefined> {
  return {
    ...STANDALONE,
    TOKEN_KEEPER_DATA_DIR: dir,
    SAXO_AUTH_BASE_URL: saxo.url,
    SAXO_APP_KEY: APP.key,
    SAXO_APP_SECRET: APP.secret,
    CHECK_INTERVAL_SECONDS: String(CHECK),
    REFRESH_THRESHOLD_SECONDS: String(THRESHOLD),
    BOT_REFRESH_THRESHOLD_SECONDS: '3',
    TOKEN_EXPIRY_MARGIN_SECONDS: String(MARGIN),
    REFRESH_TOKEN_ALERT_SECONDS: '0',
    SAXO_HTTP_TIMEOUT_SECONDS: '5',
    TOKEN_KEEPER_HOLDER_ID: 'agent:rel-clock',
  };
}

async function seed(dir: string, leftSec: number): Promise<void> {
  await createCacheFile(join(dir, 'saxo_token_cache.json')).write(
    issuedPair(saxo, APP, { leftSec, lifeSec: LIFE, refreshLeftSec: 120, generation: 1, source: 'seed', seen }),
  );
}

/** The n-th refresh, with the true time this process saw it at (≥ Saxo's grant) and the cache then. */
async function refreshNo(a: CliProcess, dir: string, generation: number, timeoutMs = 20_000) {
  await a.waitFor((l) => l.event === 'token_refreshed' && l.generation === generation, timeoutMs, `refresh to generation ${generation}`);
  const seenAt = Date.now();
  const pair = cachedPair(dir, seen);
  expect(pair?.generation, 'the cache holds the new pair').toBeGreaterThanOrEqual(generation);
  return { seenAt, pair: pair! };
}

/** token_expiry within what Saxo granted: never after grant + expires_in (true time), and not absurdly early. */
function expectWithinGrant(p: { seenAt: number; pair: { accessExpiresAt: number; refreshExpiresAt?: number | undefined } }, what: string): void {
  expect(p.pair.accessExpiresAt, `${what}: token_expiry ≤ Saxo's grant + expires_in`).toBeLessThanOrEqual(p.seenAt + LIFE * 1000);
  expect(p.pair.accessExpiresAt, `${what}: token_expiry not far before the grant's`).toBeGreaterThan(p.seenAt + (LIFE - MARGIN - 8) * 1000);
  expect(p.pair.refreshExpiresAt!, `${what}: refresh_token_expiry ≤ Saxo's grant`).toBeLessThanOrEqual(p.seenAt + 120_000);
}

const jumps = (a: CliProcess): LogLine[] => a.logs.filter((l) => l.event === 'clock_jump');

/** On a failure, the agent's own account of the timeline (its log lines, time-stamped by its clock). */
function dumpOnFailure(a: CliProcess): void {
  onTestFailed(() => {
    const t0 = Date.parse(String(a.logs[0]?.time));
    console.log(a.logs.map((l) => `${String(l.time)} (+${Date.parse(String(l.time)) - t0} ms) ${l.event} ${String(l.generation ?? '')} ${l.message}`).join('\n'));
  });
}

describe('the wall clock stepped ±2 h (libfaketime, monotonic clock untouched)', () => {
  it('+2 h during a refresh, held, back, then −2 h: token_expiry stays within Saxo\'s grant, refreshes keep their rhythm, 0 re-presentations', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-rel-clock-'));
    const stepFile = join(dir, '..', `tk-rel-clock-faketime-${process.pid}`);
    writeFileSync(stepFile, '+0\n');
    await seed(dir, THRESHOLD + 1);
    const before = saxo.stats();
    const a = startCliAs(['agent'], {
      ...agentEnv(dir),
      LD_PRELOAD: FAKETIME_LIB,
      FAKETIME_TIMESTAMP_FILE: stepFile,
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
      FAKETIME_NO_CACHE: '1',
      NO_FAKE_STAT: '1',
    });
    procs.push(a);
    dumpOnFailure(a);
    const step = (offset: string) => writeFileSync(stepFile, `${offset}\n`);

    // Generation 2 on a right clock.
    const g2 = await refreshNo(a, dir, 2);
    expectWithinGrant(g2, 'clock right');

    // Generation 3: the answer is delayed 2 s and the wall clock jumps +2 h while it is in flight.
    saxo.inject({ kind: 'delay', delayMs: DELAY_MS });
    await a.waitFor((l) => l.event === 'refresh_started' && a.logs.indexOf(l) > a.logs.findIndex((x) => x.event === 'token_refreshed' && x.generation === 2), 30_000, 'the next refresh');
    step('+2h');
    const g3 = await refreshNo(a, dir, 3);
    expectWithinGrant(g3, '+2 h during the refresh');
    expect(jumps(a).map((l) => l.jumpSeconds)).toContainEqual(expect.closeTo(7200, 0));
    const skewWarn = a.logs.find((l) => l.event === 'clock_skew');
    expect(skewWarn?.severity).toBe('WARNING');
    expect(skewWarn?.message).toMatch(/720\d s ahead of Saxo/);
    expect(skewWarn?.message).toMatch(/bots .* may misjudge/);

    // Held at +2 h for a refresh: on time (not a storm every check, not "login required").
    const g4 = await refreshNo(a, dir, 4);
    expectWithinGrant(g4, 'held at +2 h');
    expect(g4.seenAt - g3.seenAt).toBeGreaterThan(1500);

    // Back to the right time.
    step('+0');
    const g5 = await refreshNo(a, dir, 5);
    expectWithinGrant(g5, 'stepped back');
    expect(jumps(a).map((l) => l.jumpSeconds)).toContainEqual(expect.closeTo(-7200, 0));

    // −2 h: the pairs keep Saxo's time and the next refresh comes on time, not two hours late.
    step('-2h');
    const g6 = await refreshNo(a, dir, 6);
    const g7 = await refreshNo(a, dir, 7);
    expectWithinGrant(g6, '−2 h');
    expectWithinGrant(g7, '−2 h, held');
    expect(jumps(a).map((l) => l.jumpSeconds)).toContainEqual(expect.closeTo(-7200, 0));

    // The rhythm: every refresh ~4 s after the one before (a storm would be ~0.25 s, a stall 2 h).
    const times = [g2, g3, g4, g5, g6, g7].map((g) => g.seenAt);
    console.log(`[measure] refresh intervals ${times.slice(1).map((t, i) => t - times[i]!).join(', ')} ms`);
    for (let i = 1; i < times.length; i++) {
      expect(times[i]! - times[i - 1]!, `refresh ${i + 2} → ${i + 3}`).toBeGreaterThan(1500);
      expect(times[i]! - times[i - 1]!, `refresh ${i + 2} → ${i + 3}`).toBeLessThan(10_000);
    }
    const state = await createStateFile(join(dir, '.token-keeper-state.json')).read();
    expect(state?.clockSkew?.by).toBe('saxo');
    expect(Math.abs(state!.clockSkew!.ms + 2 * HOUR)).toBeLessThan(5000);
    expect(a.logs.filter((l) => ['refresh_failed', 'reconcile_error', 'login_required'].includes(l.event))).toEqual([]);

    // `status` on this host (still 2 h behind): judged on Saxo's time, and not HEALTHY while the clock is off.
    const st = await runCliAs(['status', '--json'], {
      ...agentEnv(dir),
      LD_PRELOAD: FAKETIME_LIB,
      FAKETIME_TIMESTAMP_FILE: stepFile,
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
      FAKETIME_NO_CACHE: '1',
      NO_FAKE_STAT: '1',
    });
    const report = JSON.parse(st.stdout) as { health: string; token: { accessLeftSeconds: number }; problems: string[]; agent: { clockSkew?: { seconds: number } } };
    expect(report.health).not.toBe('healthy');
    expect(report.token.accessLeftSeconds).toBeLessThanOrEqual(LIFE);
    expect(report.token.accessLeftSeconds).toBeGreaterThan(-5);
    expect(Math.abs((report.agent.clockSkew?.seconds ?? 0) + 7200)).toBeLessThan(5);
    expect(report.problems.join('\n')).toMatch(/(7199|7200|7201) s behind Saxo/);
    expect((await a.stop()).code).toBe(0);

    // Saxo saw every refresh token once, and the cache holds a pair Saxo accepts.
    const after = saxo.stats();
    expect(after.reusedPresentations - before.reusedPresentations).toBe(0);
    expect(after.invalidGrants - before.invalidGrants).toBe(0);
    const last = cachedPair(dir, seen)!;
    expect(last.generation).toBeGreaterThanOrEqual(7);
    expect(saxo.isValidAccessToken(last.accessToken)).toBe(true);
    const present = await fetch(`${saxo.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: last.refreshToken, client_id: APP.key, client_secret: APP.secret }),
    });
    expect(present.status).toBe(201);
    const fresh = (await present.json()) as { access_token: string; refresh_token: string };
    seen.add(fresh.access_token).add(fresh.refresh_token);
    expectNoSecrets([a], [...seen, APP.secret]);
  }, 90_000);
});

describe('a one-shot run with the clock 2 h ahead (an operator\'s refresh on a VM just resumed)', () => {
  it('refresh --force at +2 h reads Saxo\'s time first: it presents (not "no time left"), stores token_expiry in Saxo\'s time, records the skew and warns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-rel-clock-oneshot-'));
    const stepFile = join(dir, '..', `tk-rel-clock-oneshot-faketime-${process.pid}`);
    writeFileSync(stepFile, '+2h\n');
    await seed(dir, THRESHOLD + 3);
    const before = saxo.stats();
    const r = await runCliAs(['refresh', '--force'], {
      ...agentEnv(dir),
      LD_PRELOAD: FAKETIME_LIB,
      FAKETIME_TIMESTAMP_FILE: stepFile,
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
      FAKETIME_NO_CACHE: '1',
      NO_FAKE_STAT: '1',
    });
    const seenAt = Date.now();
    expect(r.code, r.stdout + r.stderr).toBe(0);
    // The process really ran 2 h ahead: its own log lines carry the faked time.
    const refreshed = r.p.logs.find((l) => l.event === 'token_refreshed');
    expect(Date.parse(String(refreshed?.time)) - seenAt).toBeGreaterThan(2 * HOUR - 60_000);
    const pair = cachedPair(dir, seen)!;
    expect(pair.generation).toBe(2);
    expectWithinGrant({ seenAt, pair }, 'one-shot at +2 h');
    const warn = r.p.logs.find((l) => l.event === 'clock_skew');
    expect(warn?.severity).toBe('WARNING');
    expect(warn?.message).toMatch(/720\d s ahead of Saxo/);
    const state = await createStateFile(join(dir, '.token-keeper-state.json')).read();
    expect(state?.clockSkew?.by).toBe('saxo');
    expect(Math.abs(state!.clockSkew!.ms - 2 * HOUR)).toBeLessThan(5000);
    expect(saxo.stats().reusedPresentations - before.reusedPresentations).toBe(0);
    expect(saxo.isValidAccessToken(pair.accessToken)).toBe(true);
    expectNoSecrets([r.p], [...seen, APP.secret]);
  }, 60_000);
});

describe('a hand-edited future token_expiry for the same pair', () => {
  it('2099 in the cache: WARNING expiry_moved, not adopted, the cache is put back, the next refresh comes on time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-rel-clock-edit-'));
    await seed(dir, THRESHOLD + 1);
    const before = saxo.stats();
    const a = startCliAs(['agent'], agentEnv(dir));
    procs.push(a);
    dumpOnFailure(a);
    const g2 = await refreshNo(a, dir, 2);
    // The edit: same pair, token_expiry 2099 (and the bots would trust it for 73 years).
    const cachePath = join(dir, 'saxo_token_cache.json');
    const flat = JSON.parse(readFileSync(cachePath, 'utf8')) as Record<string, string>;
    const trueExpiry = flat.token_expiry;
    writeFileSync(cachePath, JSON.stringify({ ...flat, token_expiry: '2099-01-01T00:00:00+00:00' }));
    const warn = await a.waitForEvent('expiry_moved', 10_000);
    expect(warn.severity).toBe('WARNING');
    expect(warn.message).toMatch(/not believed/);
    const g3 = await refreshNo(a, dir, 3);
    expect(g3.seenAt - g2.seenAt).toBeLessThan(10_000);
    expectWithinGrant(g3, 'after the edit');
    // The cache was put back to the true expiry before that refresh (the bots must not trust 2099).
    expect(a.logs.some((l) => l.event === 'cache_written' && a.logs.indexOf(l) > a.logs.indexOf(warn))).toBe(true);
    expect(trueExpiry).not.toContain('2099');
    expect(a.logs.filter((l) => l.event === 'token_adopted' && a.logs.indexOf(l) > a.logs.indexOf(warn))).toEqual([]);
    expect((await a.stop()).code).toBe(0);
    expect(saxo.stats().reusedPresentations - before.reusedPresentations).toBe(0);
    expect(saxo.isValidAccessToken(cachedPair(dir, seen)!.accessToken)).toBe(true);
    expectNoSecrets([a], [...seen, APP.secret]);
  }, 60_000);
});

describe('status on an expiry the state file knows to be wrong', () => {
  it('the cache says 2099 for the state file\'s pair: not HEALTHY, the state file\'s expiry is shown; a recorded skew of 2 h: not HEALTHY', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-rel-clock-status-'));
    const pair = issuedPair(saxo, APP, { leftSec: 600, refreshLeftSec: 3000, generation: 4, source: 'agent:x', seen });
    const state = createStateFile(join(dir, '.token-keeper-state.json'));
    await state.write({ token: pair, failures: 0, agentSeenAt: Date.now() });
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write({ ...pair, accessExpiresAt: Date.UTC(2099, 0, 1) });
    const env = { ...agentEnv(dir), CHECK_INTERVAL_SECONDS: '60' };
    const r = await runCliAs(['status', '--json'], env);
    const report = JSON.parse(r.stdout) as { health: string; token: { accessExpiresAt: string }; problems: string[] };
    expect(report.health).not.toBe('healthy');
    expect(r.code).not.toBe(0);
    expect(Date.parse(report.token.accessExpiresAt)).toBe(pair.accessExpiresAt);
    expect(report.problems.join('\n')).toMatch(/later expiry .* not believed/);

    // The same pair everywhere, but the agent measured this host 2 h behind Saxo.
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(pair);
    await state.write({ token: pair, failures: 0, agentSeenAt: Date.now(), clockSkew: { ms: -2 * HOUR, at: Date.now() + 2 * HOUR, by: 'saxo' } });
    const r2 = await runCliAs(['status'], env);
    expect(r2.stdout).not.toMatch(/HEALTHY \(exit 0\)/);
    expect(r2.stdout).toMatch(/clock skew +-7200 s/);
    expect(r2.stdout).toMatch(/(7199|7200|7201) s behind Saxo/);
    // Judged on Saxo's time, the pair (10 min left in true time) is already past its expiry.
    expect(r2.code).toBe(2);
    expectNoSecrets([r.stdout + r.stderr, r2.stdout + r2.stderr], [...seen, APP.secret]);
  }, 30_000);
});
