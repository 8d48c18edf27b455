/**
 * Issue 9, item 2 at its root — the operator's `sudo npx token-keeper refresh` (or a login as
 * root) must not leave files the bots and the agent cannot use. Run as root, the real CLI writes
 * the cache and the state, and creates the bots' lock file, as the data dir's owner (nobody here):
 * a real python bot running as that user then reads the cache and takes the flock, and the agent
 * running as that user refreshes. And a state file an older version left root-owned 0600 does not
 * keep the agent from starting: it is ignored with a warning and replaced.
 * Needs root (it changes owners); CI runs as root on this machine kind.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import type { TokenSet } from '../../core/token.js';
import { PYTHON, pythonBotForOtherUsers } from '../helpers/python.js';
import { dataDirFor, expectNoSecrets, isRoot, NOBODY, runCliAs, startCliAs } from '../helpers/reliability-cli.js';
import { useStandinRig } from '../helpers/reliability-rig.js';

const APP_KEY = 'rel-root-app';
const APP_SECRET = 'rel-root-app-secret-0123456789abcdef';
const LIFE = 60;
const OWNER = { uid: NOBODY, gid: NOBODY };

const rig = useStandinRig({ appKey: APP_KEY, appSecret: APP_SECRET, accessLifetimeSec: LIFE, refreshLifetimeSec: 600 });
const { procs, seen } = rig;

const env = (dir: string) => ({
  ...rig.env(dir),
  CHECK_INTERVAL_SECONDS: '0.5',
  REFRESH_THRESHOLD_SECONDS: '10',
  BOT_REFRESH_THRESHOLD_SECONDS: '2',
  TOKEN_EXPIRY_MARGIN_SECONDS: '1',
  REFRESH_TOKEN_ALERT_SECONDS: '0',
  TOKEN_KEEPER_HOLDER_ID: 'agent:rel-root',
});

function pair(leftSec: number): TokenSet {
  const p = rig.saxo.issue(APP_KEY);
  seen.add(p.access_token).add(p.refresh_token);
  const now = Date.now();
  return {
    accessToken: p.access_token, refreshToken: p.refresh_token, accessExpiresAt: now + leftSec * 1000, refreshExpiresAt: now + 600_000,
    issuedAt: now - (LIFE - leftSec) * 1000, generation: 2, source: 'agent:before', appKey: APP_KEY, appSecret: APP_SECRET, extra: {},
  };
}

/** The python bot as the data dir's owner: one mode, its output. */
function botAsOwner(dir: string, mode: 'read' | 'try-lock'): { status: number | null; out: string } {
  const r = spawnSync(PYTHON, ['-u', pythonBotForOtherUsers(), '--mode', mode, '--data-dir', dir], { ...OWNER, encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe.skipIf(!isRoot())('a root run (sudo) leaves files the bots can use (skipped only when not root: owners cannot change)', () => {
  it('`sudo npx token-keeper refresh --force` writes the cache and state, and creates the lock, as the data dir\'s owner; the bot and the agent carry on as that user', async () => {
    const dir = dataDirFor(OWNER, 'tk-rel-root-');
    const old = pair(40);
    // The bots' cache as they left it (theirs), no lock file yet: the root run creates it.
    const cachePath = join(dir, 'saxo_token_cache.json');
    await createCacheFile(cachePath).write(old);

    const r = await runCliAs(['refresh', '--force'], env(dir)); // as root
    expect(r.code).toBe(0);
    const names = readdirSync(dir).sort();
    expect(names).toEqual(['.token-keeper-state.json', 'saxo_token.lock', 'saxo_token_cache.json', 'token-keeper.journal']);
    for (const n of names) expect([n, statSync(join(dir, n)).uid, statSync(join(dir, n)).gid]).toEqual([n, NOBODY, NOBODY]);

    // The bots' user reads the new pair and takes the lock.
    const read = botAsOwner(dir, 'read');
    expect(read.status, read.out).toBe(0);
    const cached = JSON.parse(read.out.trim().split('\n').at(-1)!) as { refresh_token: string };
    expect(cached.refresh_token).not.toBe(old.refreshToken);
    seen.add(cached.refresh_token);
    const lock = botAsOwner(dir, 'try-lock');
    expect(lock, lock.out).toMatchObject({ status: 0 });
    expect(lock.out).toContain('LOCKED');

    // …and so does the agent, as that user: it refreshes when due, nothing fails.
    const a = startCliAs(['agent'], { ...env(dir), REFRESH_THRESHOLD_SECONDS: String(LIFE) }, OWNER);
    procs.push(a);
    const refreshed = await a.waitForEvent('token_refreshed', 20_000);
    expect(refreshed.generation).toBe(4);
    expect(a.logs.filter((l) => l.severity === 'ERROR' || l.event === 'state_file_corrupt')).toEqual([]);
    expect((await a.stop()).code).toBe(0);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expectNoSecrets([r.p, a], seen);
  }, 60_000);

  it('a state file an older version left root-owned 0600: the agent starts, says so, refreshes, and replaces it', async () => {
    const dir = dataDirFor(OWNER, 'tk-rel-root-state-');
    const old = pair(5); // due at once (threshold 10 s)
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(old); // handed to nobody (we are root)
    const statePath = join(dir, '.token-keeper-state.json');
    writeFileSync(statePath, JSON.stringify({ failures: 0 }), { mode: 0o600 }); // root's, unreadable for nobody
    expect(statSync(statePath).uid).toBe(0);

    const a = startCliAs(['agent'], env(dir), OWNER);
    procs.push(a);
    const warned = await a.waitForEvent('state_file_corrupt', 20_000);
    expect(warned.reason).toMatch(/cannot read it \(EACCES\); it will be replaced/);
    const refreshed = await a.waitForEvent('token_refreshed', 20_000);
    expect(refreshed.generation).toBe(3);
    expect(statSync(statePath).uid).toBe(NOBODY);
    expect((await a.stop()).code).toBe(0);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expectNoSecrets([a], seen);
  }, 60_000);
});
