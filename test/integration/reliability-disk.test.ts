/**
 * Issue 9, item 2 — a cache the agent cannot read or write. The real agent runs as nobody (65534)
 * when the tests run as root (else as this user, with chmod 000 standing in for "owned by root"):
 * (a) a root-owned 0600 cache (a bot run with sudo): `status` as the agent's user says EACCES in one
 *     clear line and exits non-zero without a stack trace; the agent keeps refreshing — the rename
 *     over the unreadable file succeeds in its writable dir, so the cache ends up holding the
 *     successor, owned by the agent's user;
 * (b) a directory at the cache path: every check's write fails and is counted, the ALERT arrives
 *     at MAX_REFRESH_FAILURES with the path and errno, the state file keeps the newest pair (a
 *     refresh made meanwhile included); once the directory is gone the next check writes the cache.
 */
import { describe, expect, it } from 'vitest';
import { chmodSync, chownSync, mkdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import type { TokenSet } from '../../core/token.js';
import type { CliProcess } from '../helpers/agent-process.js';
import { until } from '../helpers/agent-process.js';
import { agentUser, cachedPair, dataDirFor, expectNoSecrets, expectNoStack, issuedPair, runCliAs, startCliAs } from '../helpers/reliability-cli.js';
import { useStandinRig } from '../helpers/reliability-rig.js';

const APP_KEY = 'rel-disk-app';
const APP_SECRET = 'rel-disk-app-secret-0123456789abcdef';
const LIFE = 30;
const as = agentUser();
const myUid = process.getuid?.() ?? 0;

const rig = useStandinRig({ appKey: APP_KEY, appSecret: APP_SECRET, accessLifetimeSec: LIFE, refreshLifetimeSec: 600 });
const { procs, seen } = rig;

function env(dir: string, extra: Record<string, string> = {}): Record<string, string | undefined> {
  return {
    ...rig.env(dir),
    CHECK_INTERVAL_SECONDS: '0.3',
    REFRESH_THRESHOLD_SECONDS: '4',
    BOT_REFRESH_THRESHOLD_SECONDS: '1',
    TOKEN_EXPIRY_MARGIN_SECONDS: '1',
    REFRESH_TOKEN_ALERT_SECONDS: '0',
    TOKEN_KEEPER_HOLDER_ID: 'agent:rel-disk',
    ...extra,
  };
}

/** A pair with `leftSec` of access left, generation 2. */
function pair(leftSec: number): TokenSet {
  return issuedPair(rig.saxo, { key: APP_KEY, secret: APP_SECRET }, { leftSec, lifeSec: LIFE, refreshLeftSec: 600, generation: 2, source: 'agent:before', seen });
}

/** The agent's own record, as a previous run left it (owned by the agent's user). */
async function writeState(dir: string, token: TokenSet): Promise<void> {
  const path = join(dir, '.token-keeper-state.json');
  await createStateFile(path).write({ token, failures: 0, agentSeenAt: Date.now() });
  if (as) chownSync(path, as.uid, as.gid);
}

const readState = (dir: string) => createStateFile(join(dir, '.token-keeper-state.json')).read();

function readCache(dir: string): TokenSet {
  const token = cachedPair(dir, seen);
  if (!token) throw new Error(`cache missing or unusable in ${dir}`);
  return token;
}

function agent(dir: string, extra: Record<string, string> = {}): CliProcess {
  const p = startCliAs(['agent'], env(dir, extra), as);
  procs.push(p);
  return p;
}

describe(`a cache the agent cannot use (item 2; agent runs as ${as ? 'uid 65534' : `this user, uid ${myUid}, with chmod 000`})`, () => {
  it('(a) a root-owned 0600 cache: status says EACCES without a stack; the agent replaces the file and keeps refreshing', async () => {
    const dir = dataDirFor(as, 'tk-rel-eacces-');
    const old = pair(6); // due 2 s from now
    await writeState(dir, old);
    const cachePath = join(dir, 'saxo_token_cache.json');
    await createCacheFile(cachePath).write(old); // written by us: root 0600 (or ours, then chmod 000)
    // A root token-keeper run hands the files it creates to the dir's owner (agent/file-owner.ts); a
    // bot run with sudo does not: give it back to root.
    if (as) chownSync(cachePath, 0, 0);
    else chmodSync(cachePath, 0o000);

    const st = await runCliAs(['status'], env(dir), as);
    expect(st.code).not.toBe(0);
    expect(st.stdout).toMatch(/cache\s+unreadable \(EACCES reading .*saxo_token_cache\.json\)/);
    expect(st.stdout).toMatch(/! cannot read the cache \(EACCES\): run status as the bots' user, or give the file back to them: sudo chown <bots-user> .*saxo_token_cache\.json/);
    expect(st.stderr).toBe('');
    expectNoStack(st.stdout + st.stderr);

    const a = agent(dir);
    const problem = await a.waitFor((l) => l.event === 'input_problem' && /cache unreadable: EACCES/.test(l.message), 20_000, 'the EACCES note');
    expect(problem.message).toContain(cachePath);
    const repaired = await a.waitFor((l) => l.event === 'cache_written', 10_000, 'cache rewritten');
    expect(repaired.reason).toBe('unreadable');
    const refreshed = await a.waitForEvent('token_refreshed', 20_000);
    expect(refreshed.generation).toBe(3);
    const state = await readState(dir);
    const cached = readCache(dir);
    expect(state?.token?.refreshToken).not.toBe(old.refreshToken);
    expect(cached.refreshToken).toBe(state?.token?.refreshToken);
    const s = statSync(cachePath);
    expect(s.uid).toBe(as?.uid ?? myUid);
    expect(s.mode & 0o777).toBe(0o600);
    expect(a.logs.filter((l) => l.event === 'refresh_failed')).toEqual([]);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect((await a.stop()).code).toBe(0);
    expectNoSecrets([st.p, a], seen);
  }, 60_000);

  it('(b) a directory at the cache path: failures counted, ALERT at MAX_REFRESH_FAILURES with path and errno, the state keeps the newest pair; the next check after removal writes the cache', async () => {
    const dir = dataDirFor(as, 'tk-rel-eisdir-');
    const old = pair(7); // due 3 s from now: a refresh happens while the directory is there
    await writeState(dir, old);
    const cachePath = join(dir, 'saxo_token_cache.json');
    mkdirSync(cachePath);
    if (as) chownSync(cachePath, as.uid, as.gid);

    const a = agent(dir, { MAX_REFRESH_FAILURES: '3' });
    const alert = await a.waitForEvent('refresh_alert', 20_000);
    expect(alert.severity).toBe('ALERT');
    console.log(`[measure] ${alert.message}`);
    expect(alert.consecutiveFailures).toBe(3);
    expect(alert.message).toMatch(/^ALERT: Token refresh failed 3 consecutive times! Manual intervention may be required\. Last error: /);
    expect(alert.message).toMatch(/EISDIR|ENOTDIR|EEXIST/);
    expect(alert.message).toContain(cachePath);
    const failures = a.logs.filter((l) => l.event === 'refresh_failed');
    expect(failures.map((l) => l.consecutiveFailures)).toEqual([1, 2, 3]);
    expect(failures.every((l) => l.reason === 'cache_write_failed')).toBe(true);

    // The refresh that falls due meanwhile still happens; its pair lives in the state file (and the
    // journal), and no success NOTICE follows the failed cache write.
    const refreshed = await a.waitForEvent('token_refreshed_unstored', 20_000);
    expect(refreshed.severity).toBe('WARNING');
    expect(a.logs.some((l) => l.event === 'token_refreshed')).toBe(false);
    expect(a.logs.find((l) => l.event === 'cache_write_failed' && /only in the agent's state file and the journal/.test(l.message))).toBeDefined();
    // The refresh itself succeeded (the count restarts), its cache write did not: counted again.
    const after = a.logs.indexOf(refreshed);
    await a.waitFor((l) => a.logs.indexOf(l) > after && l.event === 'refresh_failed' && l.reason === 'cache_write_failed', 5_000, 'a failed write counted after the refresh');
    const state = await readState(dir);
    expect(state?.token?.refreshToken).not.toBe(old.refreshToken);
    expect(state?.token?.generation).toBe(3);
    expect(state?.failures).toBeGreaterThanOrEqual(1);
    expect(statSync(cachePath).isDirectory()).toBe(true);
    const counted = a.logs.filter((l) => l.event === 'refresh_failed').length;
    console.log(`[measure] ${counted} failed cache writes counted before the directory was removed`);

    const before = a.logs.length;
    rmdirSync(cachePath);
    await a.waitFor((l) => a.logs.indexOf(l) >= before && l.event === 'cache_written', 5_000, 'the cache written after the directory went');
    await until(() => statSync(cachePath, { throwIfNoEntry: false })?.isFile() === true, 2_000, 'a regular cache file');
    expect(readCache(dir).refreshToken).toBe(state?.token?.refreshToken);
    expect(statSync(cachePath).mode & 0o777).toBe(0o600);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect((await a.stop()).code).toBe(0);
    expectNoSecrets([a], seen);
  }, 60_000);
});
