/**
 * Issue 15 item 1 on a real full disk: the data dir is a 64 KiB tmpfs (mounted here, unmounted in
 * teardown; root only), the agent runs as nobody against the strict Saxo stand-in, a real python3
 * bot reads the cache as the fleet's bots do.
 * (a) Full before the refresh: the refresh token is not presented (no room for the successor);
 *     each check counts a failure, the ALERT at MAX_REFRESH_FAILURES names the data dir and its
 *     free bytes; the bot still reads a live, never-presented pair; with room again the chain moves on.
 * (b) Full while Saxo is answering: the answer reaches the journal reserved before presenting; the
 *     cache and the state are overwritten in their own blocks, so the bot reads the successor, never
 *     the consumed token; SIGTERM and a restart on the still-full disk present nothing; with room
 *     again the journal is all zeros.
 * (c) As (b) with no state file to overwrite: the answer waits in the journal through SIGTERM, the
 *     restart on the full disk recovers it from there (`journal_recovered`) and presents nothing;
 *     with room the state is written and the journal wiped.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import { pairOf } from '../../core/grant.js';
import { createSaxoClient } from '../../core/saxo/client.js';
import type { TokenSet } from '../../core/token.js';
import type { CliProcess } from '../helpers/agent-process.js';
import { spawnPythonBot } from '../helpers/python.js';
import { agentUser, cachedPair, expectNoSecrets, isRoot, issuedPair, startCliAs } from '../helpers/reliability-cli.js';
import { useStandinRig } from '../helpers/reliability-rig.js';

const APP_KEY = 'rel-full-app';
const APP_SECRET = 'rel-full-app-secret-0123456789abcdef';
const as = agentUser();

const mounts: string[] = [];
const rig = useStandinRig({ appKey: APP_KEY, appSecret: APP_SECRET, accessLifetimeSec: 30, refreshLifetimeSec: 600 });
const { procs, seen } = rig;
afterEach(async () => {
  await rig.stopAll(); // before the unmount: a running agent keeps the tmpfs busy
  for (const m of mounts.splice(0)) {
    execFileSync('umount', [m]);
    rmSync(m, { recursive: true, force: true });
  }
});

/** A 64 KiB tmpfs data dir owned by the agent's user, its cache and state holding a live pair. */
async function smallDisk(prefix: string, leftSec: number): Promise<{ dir: string; seed: TokenSet }> {
  if (!isRoot()) throw new Error('mounting a tmpfs needs root (these tests run as root in CI)');
  const dir = mkdtempSync(join(tmpdir(), prefix));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0750', 'tmpfs', dir]);
  mounts.push(dir);
  if (as) chownSync(dir, as.uid, as.gid);
  const seed = issuedPair(rig.saxo, { key: APP_KEY, secret: APP_SECRET }, { leftSec, lifeSec: 30, refreshLeftSec: 600, generation: 2, source: 'agent:before', seen });
  await createStateFile(join(dir, '.token-keeper-state.json')).write({ token: seed, failures: 0, agentSeenAt: Date.now() });
  await createCacheFile(join(dir, 'saxo_token_cache.json')).write(seed);
  return { dir, seed };
}

/** Fill the disk to the last block; returns the filler's path. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const chunk = Buffer.alloc(1024, 0x78);
  for (;;) {
    try {
      appendFileSync(path, chunk);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOSPC') return path;
      throw e;
    }
  }
}

function agent(dir: string, extra: Record<string, string> = {}): CliProcess {
  const p = startCliAs(['agent'], {
    ...rig.env(dir),
    CHECK_INTERVAL_SECONDS: '0.3',
    REFRESH_THRESHOLD_SECONDS: '4',
    BOT_REFRESH_THRESHOLD_SECONDS: '1',
    TOKEN_EXPIRY_MARGIN_SECONDS: '1',
    REFRESH_TOKEN_ALERT_SECONDS: '0',
    MAX_REFRESH_FAILURES: '3',
    TOKEN_KEEPER_HOLDER_ID: 'agent:rel-full',
    ...extra,
  }, as);
  procs.push(p);
  return p;
}

/** What a real python bot reads from the cache. */
async function botReads(dir: string): Promise<{ refresh_token?: string } | null> {
  const bot = spawnPythonBot(['--mode', 'read', '--data-dir', dir]);
  const { code } = await bot.exited;
  expect(code).toBe(0);
  return JSON.parse(bot.lines.join('\n')) as { refresh_token?: string } | null;
}

async function expectSaxoAccepts(dir: string): Promise<void> {
  const cached = cachedPair(dir, seen);
  expect(cached, 'the cache holds a pair').toBeDefined();
  const client = createSaxoClient({ authBaseUrl: rig.saxo.url, httpTimeoutMs: 5_000 });
  const next = pairOf(await client.refresh(cached!.refreshToken, { deadline: Date.now() + 5_000, appKey: APP_KEY, appSecret: APP_SECRET }));
  seen.add(next.accessToken).add(next.refreshToken);
}

const journalIsZero = (dir: string) => readFileSync(join(dir, 'token-keeper.journal')).every((b) => b === 0);

describe('a full data dir (64 KiB tmpfs)', () => {
  it('(a) full before the refresh: nothing presented, failures counted, ALERT naming the dir and its free bytes; the bot reads a live pair; with room the chain moves on', async () => {
    const { dir, seed } = await smallDisk('tk-rel-full-a-', 6);
    const filler = fill(dir);
    const before = rig.saxo.stats();
    const a = agent(dir);
    const alert = await a.waitForEvent('refresh_alert', 20_000).catch((e: unknown) => {
      console.log(a.logs.map((l) => `${l.event}: ${l.message}`).join('\n'));
      throw e;
    });
    console.log(`[measure] ${alert.message}`);
    expect(alert.severity).toBe('ALERT');
    expect(alert.message).toContain(dir);
    expect(alert.message).toMatch(/no room for the successor/);
    expect(alert.message).toMatch(/\d+ bytes free/);
    const noRoom = a.logs.filter((l) => l.event === 'refresh_failed');
    expect(noRoom.map((l) => l.reason)).toEqual(['no_room', 'no_room', 'no_room']);
    expect(noRoom.map((l) => l.message)).toEqual(['Token refresh failed (attempt 1/3)', 'Token refresh failed (attempt 2/3)', 'Token refresh failed (attempt 3/3)']);
    expect(rig.saxo.stats().presentations).toBe(before.presentations); // never presented without room
    expect((await botReads(dir))?.refresh_token).toBe(seed.refreshToken); // live: nobody consumed it

    unlinkSync(filler);
    const refreshed = await a.waitForEvent('token_refreshed', 20_000);
    expect(refreshed.generation).toBe(3);
    const cached = cachedPair(dir, seen);
    expect(cached?.refreshToken).not.toBe(seed.refreshToken);
    expect((await botReads(dir))?.refresh_token).toBe(cached?.refreshToken);
    expect(journalIsZero(dir)).toBe(true);
    expect((await a.stop()).code).toBe(0);
    const st = rig.saxo.stats();
    expect(st.presentations - before.presentations).toBe(1);
    expect(st.reusedPresentations - before.reusedPresentations).toBe(0);
    await expectSaxoAccepts(dir);
    expectNoSecrets([a], seen);
  }, 60_000);

  it('(b) full while Saxo answers: the successor is stored in place, the bot reads it (never the consumed token); SIGTERM + restart on the full disk present nothing; the journal ends wiped', async () => {
    const { dir, seed } = await smallDisk('tk-rel-full-b-', 6);
    const before = rig.saxo.stats();
    rig.saxo.inject({ kind: 'delay', delayMs: 1_500 });
    const a = agent(dir);
    await a.waitForEvent('refresh_started', 20_000);
    const filler = fill(dir); // the disk fills while the answer is on its way
    const refreshed = await a.waitFor((l) => l.event === 'token_refreshed' || l.event === 'token_refreshed_unstored', 10_000, 'the answer stored');
    console.log(`[measure] with the disk full during the exchange: ${refreshed.event} — ${refreshed.message}`);
    expect(a.logs.some((l) => l.event === 'journal_write_failed')).toBe(false);
    const cached = cachedPair(dir, seen);
    expect(cached?.refreshToken).not.toBe(seed.refreshToken);
    expect((await botReads(dir))?.refresh_token).toBe(cached?.refreshToken); // the successor, not the consumed token

    const stop = await a.stop('SIGTERM');
    expect(stop.code).toBe(0);
    const b = agent(dir);
    await b.waitForEvent('agent_ready', 20_000);
    expect((await botReads(dir))?.refresh_token).toBe(cached?.refreshToken);
    unlinkSync(filler);
    // With room again nothing is due (the successor is fresh): the journal is wiped by the next check.
    const { until } = await import('../helpers/agent-process.js');
    await until(() => journalIsZero(dir), 10_000, 'the journal wiped once the pair is durable');
    expect((await b.stop()).code).toBe(0);
    expect(cachedPair(dir, seen)?.refreshToken).toBe(cached?.refreshToken);
    expect((await createStateFile(join(dir, '.token-keeper-state.json')).read())?.token?.refreshToken).toBe(cached?.refreshToken);
    const st = rig.saxo.stats();
    expect(st.presentations - before.presentations).toBe(1);
    expect(st.reusedPresentations - before.reusedPresentations).toBe(0);
    await expectSaxoAccepts(dir);
    expectNoSecrets([a, b], seen);
  }, 60_000);

  it('(c) full while Saxo answers and no state file to overwrite: the answer waits in the journal through SIGTERM; the restart recovers it from there, presenting nothing; with room it is stored and the journal wiped', async () => {
    const { dir, seed } = await smallDisk('tk-rel-full-c-', 3);
    const statePath = join(dir, '.token-keeper-state.json');
    const before = rig.saxo.stats();
    rig.saxo.inject({ kind: 'delay', delayMs: 1_500 });
    const a = agent(dir, { CHECK_INTERVAL_SECONDS: '60' }); // the startup run refreshes; no tick meanwhile
    await a.waitForEvent('refresh_started', 20_000);
    unlinkSync(statePath); // (a state file lost with a reinstall, say) …
    const filler = fill(dir); // … and the disk fills while the answer is on its way
    const unstored = await a.waitForEvent('token_refreshed_unstored', 10_000);
    expect(unstored.severity).toBe('WARNING');
    expect(a.logs.find((l) => l.event === 'state_write_failed' && /also kept in the journal/.test(l.message))).toBeDefined();
    const successor = cachedPair(dir, seen)?.refreshToken; // the cache was overwritten in place
    expect(successor).toBeDefined();
    expect(successor).not.toBe(seed.refreshToken);
    expect((await botReads(dir))?.refresh_token).toBe(successor);
    expect(journalIsZero(dir)).toBe(false);
    expect((await a.stop('SIGTERM')).code).toBe(0);
    expect(journalIsZero(dir)).toBe(false); // the stop did not lose it

    const b = agent(dir);
    const rec = await b.waitForEvent('journal_recovered', 20_000);
    expect(rec.generation).toBe(3);
    await b.waitForEvent('agent_ready', 10_000);
    expect(journalIsZero(dir)).toBe(false); // still not durable in the state file: kept
    unlinkSync(filler);
    // With room again, the next check writes the state file and then wipes the journal.
    const { until } = await import('../helpers/agent-process.js');
    await until(() => journalIsZero(dir), 5_000, 'the journal wiped once cache and state hold the pair');
    expect((await b.stop()).code).toBe(0);
    expect((await createStateFile(statePath).read())?.token?.refreshToken).toBe(successor);
    expect(cachedPair(dir, seen)?.refreshToken).toBe(successor);
    const st = rig.saxo.stats();
    expect(st.presentations - before.presentations).toBe(1);
    expect(st.reusedPresentations - before.reusedPresentations).toBe(0);
    await expectSaxoAccepts(dir);
    expectNoSecrets([a, b], seen);
  }, 60_000);
});
