/**
 * Issue 15 items 1 and 2 — durable before interpreted; any 2xx with a refresh token consumes the
 * presented one. The real agent (as nobody when we are root) against the strict Saxo stand-in,
 * which counts every presentation; each test ends with 0 re-presentations and, where a chain
 * goes on, a cache whose pair Saxo accepts (presented once more at the end, by us).
 * - odd 2xx fields, each variant (expires_in −5, 0, "1200 seconds", missing; refresh_token_expires_in −1):
 *   every successor stored with a bounded lifetime and a WARNING naming the field;
 * - a 2xx without refresh_token, and an HTML 2xx: ALERT, login required, the consumed token never
 *   presented again, not even after a restart;
 * - kill -9 after the answer reached the journal but before any local write: the next start
 *   finishes the job from the journal, presenting nothing.
 */
import { describe, expect, it } from 'vitest';
import { chownSync, mkdirSync, readFileSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import { pairOf } from '../../core/grant.js';
import { createSaxoClient } from '../../core/saxo/client.js';
import type { TokenSet } from '../../core/token.js';
import type { CliProcess } from '../helpers/agent-process.js';
import { agentUser, cachedPair, dataDirFor, expectNoSecrets, issuedPair, runCliAs, STANDALONE, startCliAs } from '../helpers/reliability-cli.js';
import { useStandinRig } from '../helpers/reliability-rig.js';

const APP_KEY = 'rel-journal-app';
const APP_SECRET = 'rel-journal-app-secret-0123456789abcdef';
const HOUR = 3600;
const as = agentUser();

const rig = useStandinRig({ appKey: APP_KEY, appSecret: APP_SECRET, accessLifetimeSec: 30, refreshLifetimeSec: 600 });
const { procs, seen } = rig;

export function journalEnv(dir: string, url: string, extra: Record<string, string> = {}): Record<string, string | undefined> {
  return {
    ...STANDALONE,
    TOKEN_KEEPER_DATA_DIR: dir,
    SAXO_AUTH_BASE_URL: url,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    CHECK_INTERVAL_SECONDS: '0.3',
    REFRESH_THRESHOLD_SECONDS: '4',
    BOT_REFRESH_THRESHOLD_SECONDS: '1',
    TOKEN_EXPIRY_MARGIN_SECONDS: '1',
    REFRESH_TOKEN_ALERT_SECONDS: '0',
    TOKEN_KEEPER_HOLDER_ID: 'agent:rel-journal',
    ...extra,
  };
}

function agent(dir: string, extra: Record<string, string> = {}): CliProcess {
  const p = startCliAs(['agent'], journalEnv(dir, rig.saxo.url, extra), as);
  procs.push(p);
  return p;
}

/** A data dir whose cache and state hold a live pair with `leftSec` of access left (generation 2). */
async function seeded(prefix: string, leftSec: number, lifeSec = 30): Promise<{ dir: string; seed: TokenSet }> {
  const dir = dataDirFor(as, prefix);
  const seed = issuedPair(rig.saxo, { key: APP_KEY, secret: APP_SECRET }, { leftSec, lifeSec, refreshLeftSec: 600, generation: 2, source: 'agent:before', seen });
  for (const [path, write] of [
    [join(dir, '.token-keeper-state.json'), (p: string) => createStateFile(p).write({ token: seed, failures: 0, agentSeenAt: Date.now() })],
    [join(dir, 'saxo_token_cache.json'), (p: string) => createCacheFile(p).write(seed)],
  ] as const) {
    await write(path);
    if (as) chownSync(path, as.uid, as.gid);
  }
  return { dir, seed };
}

/** Saxo accepts the cached pair: its refresh token buys a new pair (presented once, by us). */
async function expectSaxoAccepts(dir: string): Promise<void> {
  const cached = cachedPair(dir, seen);
  expect(cached, 'the cache holds a pair').toBeDefined();
  const client = createSaxoClient({ authBaseUrl: rig.saxo.url, httpTimeoutMs: 5_000 });
  const next = pairOf(await client.refresh(cached!.refreshToken, { deadline: Date.now() + 5_000, appKey: APP_KEY, appSecret: APP_SECRET }));
  seen.add(next.accessToken).add(next.refreshToken);
}

export const journalBytes = (dir: string): Buffer => readFileSync(join(dir, 'token-keeper.journal'));

describe('odd 2xx fields: the successor is always kept (item 2)', () => {
  it('expires_in −5, 0, "1200 seconds", missing and refresh_token_expires_in −1: each stored with a default, a WARNING naming the field, 0 re-presentations', async () => {
    const VARIANTS = [
      { set: { expires_in: -5 }, note: /expires_in=-5 → 600 \(default\)/ },
      { set: { expires_in: 0 }, note: /expires_in=0 → 600 \(default\)/ },
      { set: { expires_in: '1200 seconds' }, note: /expires_in="1200 seconds" → 600 \(default\)/ },
      { omit: ['expires_in'], note: /expires_in=missing → 600 \(default\)/ },
      { set: { refresh_token_expires_in: -1 }, note: /refresh_token_expires_in=-1 → 3600 \(default\)/ },
    ];
    rig.saxo.setLifetimes({ accessLifetimeSec: HOUR });
    try {
      const { dir } = await seeded('tk-rel-odd-', 3, HOUR);
      const before = rig.saxo.stats();
      rig.saxo.inject(VARIANTS.map((v) => ({ kind: 'odd2xx' as const, set: v.set, omit: v.omit })));
      // Every stored pair is due within seconds (threshold HOUR − 3): the default 600 s at once,
      // Saxo's plain hour 2 s later — so the chain walks through every odd answer in turn.
      const a = agent(dir, { REFRESH_THRESHOLD_SECONDS: String(HOUR - 3) });
      for (let i = 0; i < VARIANTS.length; i++) {
        const gen = 3 + i;
        const ev = await a.waitFor((l) => l.event === 'token_refreshed' && l.generation === gen, 20_000, `refresh to generation ${gen}`);
        const at = Date.parse(String(ev.time));
        const warn = a.logs.find((l) => l.event === 'lifetime_clamped' && VARIANTS[i]!.note.test(l.message));
        expect(warn, `WARNING for variant ${i}`).toBeDefined();
        expect(warn!.severity).toBe('WARNING');
        // Access lifetime bounded by the default where the field was unusable (600 s − 1 s margin).
        if (i < 4) expect(Date.parse(String(ev.expiresAt))).toBeLessThanOrEqual(at + 600_000);
      }
      await a.waitFor((l) => l.event === 'token_refreshed' && l.generation === 3 + VARIANTS.length, 20_000, 'the plain refresh after the odd ones');
      expect((await a.stop()).code).toBe(0);
      const st = rig.saxo.stats();
      expect(st.reusedPresentations - before.reusedPresentations).toBe(0);
      expect(st.presentations - before.presentations).toBe(st.refreshes - before.refreshes); // every presentation was a live token
      expect(a.logs.filter((l) => l.event === 'refresh_failed' || l.event === 'reconcile_error' || l.event === 'refresh_api_failed')).toEqual([]);
      const state = await createStateFile(join(dir, '.token-keeper-state.json')).read();
      expect(state?.token?.refreshToken).toBe(cachedPair(dir, seen)?.refreshToken);
      expect(journalBytes(dir).every((b) => b === 0)).toBe(true); // wiped after each durable pair
      await expectSaxoAccepts(dir);
      expectNoSecrets([a], seen);
    } finally {
      rig.saxo.setLifetimes({ accessLifetimeSec: 30 });
    }
  }, 90_000);
});

describe('a 2xx without a successor ends the chain, loudly, and the consumed token is never presented again (item 2)', () => {
  it.each([
    { name: 'JSON without refresh_token', fault: { kind: 'odd2xx' as const, omit: ['refresh_token'] }, why: /without a refresh_token/, newAccess: true },
    { name: 'an HTML 2xx', fault: { kind: 'odd2xx' as const, html: true }, why: /non-JSON 201 body \(text\/html/, newAccess: false },
  ])('$name: ALERT naming the cause, login required, no presentation after it (restart included)', async ({ fault, why, newAccess }) => {
    const { dir, seed } = await seeded('tk-rel-norefresh-', 6);
    const before = rig.saxo.stats();
    rig.saxo.inject(fault);
    const a = agent(dir);
    const alert = await a.waitForEvent('refresh_token_missing', 20_000);
    expect(alert.severity).toBe('ALERT');
    expect(alert.message).toMatch(why);
    expect(alert.message).toMatch(/consumed/);
    expect(a.logs.some((l) => l.event === 'token_refreshed')).toBe(false);
    // Absence over time: 2 s of 0.3 s checks with the token due must present nothing more.
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await a.stop()).code).toBe(0);
    const state = await createStateFile(join(dir, '.token-keeper-state.json')).read();
    expect(state?.loginRequired).toBe(true);
    expect(state?.token?.refreshToken).toBe(seed.refreshToken);
    expect(journalBytes(dir).every((b) => b === 0)).toBe(true);
    // The answer's access token is kept for the bots until a login (the refresh token stays the consumed one).
    const cached = cachedPair(dir, seen);
    expect(cached?.refreshToken).toBe(seed.refreshToken);
    expect(cached?.accessToken === seed.accessToken).toBe(!newAccess);
    expect(rig.saxo.isValidAccessToken(cached!.accessToken)).toBe(true);

    const b = agent(dir);
    await b.waitForEvent('agent_ready', 20_000);
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await b.stop()).code).toBe(0);
    const st = rig.saxo.stats();
    expect(st.presentations - before.presentations).toBe(1);
    expect(st.reusedPresentations - before.reusedPresentations).toBe(0);
    expectNoSecrets([a, b], seen);
  }, 60_000);
});

describe('a stop after the answer reached the journal, before any local write succeeded (item 1)', () => {
  it.each(['SIGKILL', 'SIGTERM'] as const)('%s, then the next start finishes the job from the journal: cache and state hold the successor, the journal is wiped, nothing is presented again', async (signal) => {
    const { dir, seed } = await seeded('tk-rel-crash-', 6);
    const cachePath = join(dir, 'saxo_token_cache.json');
    const statePath = join(dir, '.token-keeper-state.json');
    const before = rig.saxo.stats();
    rig.saxo.inject({ kind: 'delay', delayMs: 1_500 }); // Saxo answers 1.5 s after the presentation
    const a = agent(dir);
    await a.waitForEvent('refresh_started', 20_000);
    // While the answer is on its way, neither the cache nor the state can be written any more.
    for (const p of [cachePath, statePath]) {
      unlinkSync(p);
      mkdirSync(p);
    }
    await a.waitForEvent('token_refreshed_unstored', 10_000);
    expect(a.logs.some((l) => l.event === 'token_refreshed')).toBe(false); // no success NOTICE after a failed store
    const kept = a.logs.find((l) => l.event === 'cache_write_failed');
    expect(kept?.message).toMatch(/only in the journal .*token-keeper\.journal/);
    expect(kept?.message).not.toMatch(/state file/); // its write failed too: the message says so
    const stopped = await a.stop(signal);
    if (signal === 'SIGTERM') {
      expect(stopped.code).toBe(0);
      expect(a.logs.some((l) => /kept in the agent's state file/.test(l.message))).toBe(false); // its write failed: no such claim
    }
    const journaled = JSON.parse(journalBytes(dir).toString('utf8').replace(/\0+$/, '')) as { raw: { text: string } };
    const successor = (JSON.parse(journaled.raw.text) as { refresh_token: string }).refresh_token;
    seen.add(successor);
    expect(successor).not.toBe(seed.refreshToken);

    for (const p of [cachePath, statePath]) rmdirSync(p);
    // `status` reads the journal with the same interpreter: the successor is there, not yet stored.
    const st0 = await runCliAs(['status'], journalEnv(dir, rig.saxo.url), as);
    expect(st0.code).toBe(1);
    expect(st0.stdout).toMatch(/an unfinished refresh waits in the journal/);
    expect(st0.stdout).toMatch(/generation\s*:?\s*3/i);
    const b = agent(dir);
    const rec = await b.waitForEvent('journal_recovered', 20_000);
    expect(rec.generation).toBe(3);
    await b.waitForEvent('agent_ready', 10_000);
    expect(cachedPair(dir, seen)?.refreshToken).toBe(successor);
    expect((await createStateFile(statePath).read())?.token?.refreshToken).toBe(successor);
    expect(journalBytes(dir).every((x) => x === 0)).toBe(true);
    expect((await b.stop()).code).toBe(0);
    const st = rig.saxo.stats();
    expect(st.presentations - before.presentations).toBe(1);
    expect(st.reusedPresentations - before.reusedPresentations).toBe(0);
    await expectSaxoAccepts(dir);
    expectNoSecrets([a, b, st0.p], seen);
  }, 60_000);
});
