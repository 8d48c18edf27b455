/**
 * Issue 15 item 4 and the unusable-cache part of item 5 (docs/DESIGN.md "No planted link is
 * followed"), with the real CLI. The data dir belongs to the bots' user (nobody here), who can put
 * anything at any name in it. Run as root (`sudo npx token-keeper refresh --force`, or the agent by
 * hand), token-keeper must never follow what they planted: a symlinked lock file pointing at a
 * root-owned 0600 file is refused with one line and the file keeps its owner and mode; a dangling
 * one creates nothing; Saxo sees no presentation. A lock file an earlier root run left root-owned
 * is still handed back (fchown on the opened descriptor). A symlinked state file is refused and
 * replaced, its target untouched; planted tmp names are removed, never followed.
 * A cache that is a FIFO or 50 MB, next to a state file with a valid pair: nothing hangs, the cache
 * is named unusable, `status` shows the state file's pair (not "login required"), the agent
 * replaces the cache, and a python bot then reads a pair Saxo accepts.
 * Needs root (owners change; root is the case that matters); CI runs as root on this machine kind.
 */
import { describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, lchownSync, lstatSync, mkdtempSync, readFileSync, readdirSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tmpPathFor } from '../../agent/atomic-write.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import { PYTHON, pythonBotForOtherUsers } from '../helpers/python.js';
import { cachedPair, dataDirFor, expectNoSecrets, isRoot, issuedPair, NOBODY, runCliAs, startCliAs } from '../helpers/reliability-cli.js';
import { useStandinRig } from '../helpers/reliability-rig.js';

const APP = { key: 'rel-links-app', secret: 'rel-links-app-secret-0123456789abcdef' };
const LIFE = 60;
const OWNER = { uid: NOBODY, gid: NOBODY };
const VICTIM_TEXT = 'root-only: must stay as it is\n';

const rig = useStandinRig({ appKey: APP.key, appSecret: APP.secret, accessLifetimeSec: LIFE, refreshLifetimeSec: 600 });
const { procs, seen } = rig;

const env = (dir: string) => ({
  ...rig.env(dir),
  CHECK_INTERVAL_SECONDS: '0.5',
  REFRESH_THRESHOLD_SECONDS: '10',
  BOT_REFRESH_THRESHOLD_SECONDS: '2',
  TOKEN_EXPIRY_MARGIN_SECONDS: '1',
  REFRESH_TOKEN_ALERT_SECONDS: '0',
  TOKEN_LOCK_TIMEOUT_SECONDS: '2',
  TOKEN_KEEPER_HOLDER_ID: 'agent:rel-links',
});

/** A root-only directory (0700) with a root-owned 0600 file in it: what a planted link points at. */
function rootOnly(): { dir: string; victim: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tk-rel-links-root-'));
  const victim = join(dir, 'root-secret');
  writeFileSync(victim, VICTIM_TEXT, { mode: 0o600 });
  return { dir, victim };
}

function expectUntouched(victim: string): void {
  const st = statSync(victim);
  expect([st.uid, st.gid, st.mode & 0o777, readFileSync(victim, 'utf8')]).toEqual([0, 0, 0o600, VICTIM_TEXT]);
}

/** A symlink planted by the bots' user (owned by them, like everything they make there). */
function plant(target: string, at: string): void {
  symlinkSync(target, at);
  lchownSync(at, NOBODY, NOBODY);
}

/** Output lines of a finished CLI run that mention `needle`. */
/** Lines whose message says `needle` (a JSON line's `message`; other lines whole): what a person reads. */
const linesWith = (r: { stdout: string; stderr: string }, needle: string) =>
  `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => {
    try {
      const j = JSON.parse(l) as { message?: unknown };
      return typeof j.message === 'string' && j.message.includes(needle);
    } catch {
      return l.includes(needle);
    }
  });

/** The python bot as the bots' user, run to completion (asynchronously: the Saxo stand-in answers from this process). */
async function bot(dir: string, args: string[]): Promise<{ status: number; out: string }> {
  const r = await promisify(execFile)(PYTHON, ['-u', pythonBotForOtherUsers(), '--data-dir', dir, ...args], { ...OWNER, encoding: 'utf8', timeout: 20_000 }).then(
    (x) => ({ status: 0, out: `${x.stdout}${x.stderr}` }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ status: e.code ?? -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
  );
  return r;
}

describe.skipIf(!isRoot())('no planted link is followed (skipped only when not root: owners cannot change)', () => {
  it('a symlinked lock file pointing at a root-owned 0600 file: `refresh --force` as root refuses with one line; the file keeps owner and mode; Saxo sees nothing', async () => {
    const dir = dataDirFor(OWNER, 'tk-rel-links-lock-');
    const { victim } = rootOnly();
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(issuedPair(rig.saxo, APP, { leftSec: 40, lifeSec: LIFE, generation: 2, seen }));
    plant(victim, join(dir, 'saxo_token.lock'));
    const before = rig.saxo.stats().presentations;

    const r = await runCliAs(['refresh', '--force'], env(dir)); // as root
    expect(r.code).not.toBe(0);
    const refusals = linesWith(r, 'refusing');
    expect(refusals, `${r.stdout}\n${r.stderr}`).toHaveLength(1);
    expect(refusals[0]).toContain(`refusing ${join(dir, 'saxo_token.lock')}: symlink (a link is never followed); remove it`);
    expectUntouched(victim);
    expect(lstatSync(join(dir, 'saxo_token.lock')).isSymbolicLink()).toBe(true);
    expect(rig.saxo.stats().presentations - before).toBe(0);
    expectNoSecrets([r.p], seen);
  }, 60_000);

  it('a dangling lock link into a root-only directory: refused, and root creates no file there', async () => {
    const dir = dataDirFor(OWNER, 'tk-rel-links-dangling-');
    const root = rootOnly();
    const target = join(root.dir, 'created-by-root');
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(issuedPair(rig.saxo, APP, { leftSec: 40, lifeSec: LIFE, generation: 2, seen }));
    plant(target, join(dir, 'saxo_token.lock'));
    const before = rig.saxo.stats().presentations;

    const r = await runCliAs(['refresh', '--force'], env(dir));
    expect(r.code).not.toBe(0);
    expect(linesWith(r, 'refusing')).toHaveLength(1);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(root.dir)).toEqual(['root-secret']);
    expect(rig.saxo.stats().presentations - before).toBe(0);
  }, 60_000);

  it('a lock file an earlier root run left root-owned 0600 is handed back to the data dir\'s owner (through the descriptor), and the bots can take it', async () => {
    const dir = dataDirFor(OWNER, 'tk-rel-links-handback-');
    const lock = join(dir, 'saxo_token.lock');
    writeFileSync(lock, '', { mode: 0o600 }); // root's, as an older root run left it
    expect(statSync(lock).uid).toBe(0);
    const old = issuedPair(rig.saxo, APP, { leftSec: 40, lifeSec: LIFE, generation: 2, seen });
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(old);
    const reusedBefore = rig.saxo.stats().reusedPresentations;

    const r = await runCliAs(['refresh', '--force'], env(dir)); // as root
    expect(r.code, r.stderr).toBe(0);
    expect([statSync(lock).uid, statSync(lock).gid]).toEqual([NOBODY, NOBODY]);
    const lockTry = await bot(dir, ['--mode', 'try-lock']);
    expect(lockTry.out).toContain('LOCKED');
    const now = cachedPair(dir, seen);
    expect(now?.refreshToken).not.toBe(old.refreshToken);
    expect(rig.saxo.isValidAccessToken(now!.accessToken)).toBe(true);
    expect(rig.saxo.stats().reusedPresentations - reusedBefore).toBe(0);
    expectNoSecrets([r.p], seen);
  }, 60_000);

  it('a symlinked state file and planted tmp names: refused and replaced (root run), removed at agent start (never followed); every target untouched', async () => {
    const dir = dataDirFor(OWNER, 'tk-rel-links-state-');
    const { victim } = rootOnly();
    const statePath = join(dir, '.token-keeper-state.json');
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(issuedPair(rig.saxo, APP, { leftSec: 40, lifeSec: LIFE, generation: 2, seen }));
    plant(victim, statePath);

    const r = await runCliAs(['refresh', '--force'], env(dir)); // as root
    expect(r.code, r.stderr).toBe(0);
    const warned = r.p.logs.filter((l) => l.event === 'state_file_corrupt');
    expect(warned).toHaveLength(1);
    expect(warned[0]!.reason).toBe('symlink (a link is never followed); it will be replaced');
    expectUntouched(victim);
    expect(lstatSync(statePath).isFile()).toBe(true);
    expect(statSync(statePath).uid).toBe(NOBODY);
    expect((await createStateFile(statePath).read())?.token?.refreshToken).toBe(cachedPair(dir, seen)?.refreshToken);

    // Tmp names: ours (the pattern a killed write leaves) and the bots' fixed one, all links to root's file.
    const ours = [tmpPathFor(join(dir, 'saxo_token_cache.json'), '0123456789ab'), tmpPathFor(statePath, 'ba9876543210')];
    for (const p of ours) plant(victim, p);
    plant(victim, join(dir, 'saxo_token_cache.tmp'));
    const a = startCliAs(['agent'], env(dir)); // the agent run by hand as root
    procs.push(a);
    const removed = await a.waitForEvent('stale_tmp_removed', 20_000);
    expect([...(removed.removed as string[])].sort()).toEqual([...ours].sort());
    await a.waitForEvent('agent_ready', 20_000);
    expect((await a.stop()).code).toBe(0);
    for (const p of ours) expect(lstatSync(p, { throwIfNoEntry: false })).toBeUndefined();
    expect(lstatSync(join(dir, 'saxo_token_cache.tmp')).isSymbolicLink()).toBe(true); // the bots' name: not ours to touch
    expectUntouched(victim);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expectNoSecrets([r.p, a], seen);
  }, 60_000);

  it('a symlinked cache pointing at a root-owned file, the agent run as root: named, the write refused (counted, target untouched), status shows the state\'s pair; once the link is gone the next check writes the cache', async () => {
    const dir = dataDirFor(OWNER, 'tk-rel-links-cache-');
    const { victim } = rootOnly();
    const cachePath = join(dir, 'saxo_token_cache.json');
    const pair = issuedPair(rig.saxo, APP, { leftSec: 50, lifeSec: LIFE, generation: 4, seen });
    await createStateFile(join(dir, '.token-keeper-state.json')).write({ failures: 0, token: pair });
    plant(victim, cachePath);

    const st = await runCliAs(['status', '--json'], env(dir));
    const report = JSON.parse(st.stdout) as { health: string; token?: { origin: string; generation: number }; cache: { state: string; reason?: string } };
    expect(report).toMatchObject({ health: 'degraded', token: { origin: 'known', generation: 4 }, cache: { state: 'unusable', reason: 'symlink (a link is never followed)' } });

    const a = startCliAs(['agent'], env(dir)); // as root
    procs.push(a);
    const failed = await a.waitForEvent('cache_write_failed', 20_000);
    expect(failed.message).toContain(`refusing ${cachePath}: symlink (a link is never followed); remove it`);
    await a.waitFor((l) => l.event === 'refresh_failed' && l.reason === 'cache_write_failed', 20_000, 'failure counted');
    expectUntouched(victim);
    expect(lstatSync(cachePath).isSymbolicLink()).toBe(true);

    unlinkSync(cachePath); // the operator removes the link
    const written = await a.waitForEvent('cache_written', 20_000);
    expect(written).toMatchObject({ generation: 4, reason: 'missing' });
    expect((await a.stop()).code).toBe(0);
    expect(cachedPair(dir, seen)?.refreshToken).toBe(pair.refreshToken);
    expect(statSync(cachePath).uid).toBe(NOBODY);
    expectUntouched(victim);
    expectNoSecrets([st.p, a], seen);
  }, 60_000);

  it.each([
    ['a FIFO', 'fifo', 'fifo (not a regular file)'],
    ['a 50 MB file', 'oversize', 'oversize (52428800 bytes, limit 65536)'],
  ])('a cache that is %s next to a valid state file: status shows the state\'s pair, the agent names it and repairs it, a python bot reads a pair Saxo accepts', async (_name, kind, reason) => {
    const dir = dataDirFor(OWNER, `tk-rel-links-${kind}-`);
    const cachePath = join(dir, 'saxo_token_cache.json');
    const pair = issuedPair(rig.saxo, APP, { leftSec: 50, lifeSec: LIFE, generation: 5, source: 'agent:before', seen });
    await createStateFile(join(dir, '.token-keeper-state.json')).write({ failures: 0, token: pair }); // handed to nobody (we are root)
    if (kind === 'fifo') execFileSync('mkfifo', ['-m', '600', cachePath]);
    else writeFileSync(cachePath, Buffer.alloc(50 << 20, 0x20), { mode: 0o600 });
    lchownSync(cachePath, NOBODY, NOBODY);

    // status, as the bots' user: the state file's pair, the cache named — not "login required".
    const st = await runCliAs(['status', '--json'], env(dir), OWNER);
    expect(st.code, st.stderr).toBe(1);
    const report = JSON.parse(st.stdout) as { health: string; token?: { origin: string; generation: number }; cache: { state: string; reason?: string }; problems: string[] };
    expect(report.health).toBe('degraded');
    expect(report.token).toMatchObject({ origin: 'known', generation: 5 });
    expect(report.cache).toEqual({ state: 'unusable', reason });
    expect(report.problems).toContain(`cache unusable: ${reason}`);

    // The agent, as the bots' user: does not hang, says what the cache is, replaces it from the state.
    const a = startCliAs(['agent'], env(dir), OWNER);
    procs.push(a);
    const named = await a.waitFor((l) => l.event === 'input_problem' && String(l.message).startsWith('cache unusable'), 20_000, 'cache unusable');
    expect(named.message).toBe(`cache unusable: ${reason}`);
    const written = await a.waitForEvent('cache_written', 20_000);
    expect(written).toMatchObject({ generation: 5, reason: 'corrupt' });
    await a.waitForEvent('agent_ready', 20_000);
    expect((await a.stop()).code).toBe(0);
    expect(a.logs.filter((l) => l.severity === 'ERROR' || l.severity === 'ALERT')).toEqual([]);
    expect(lstatSync(cachePath).isFile()).toBe(true);
    expect(statSync(cachePath).size).toBeLessThan(2048);

    // A python bot (the bots' user) reads the pair, and Saxo accepts it: the access token is valid,
    // and the bot's own refresh with that refresh token succeeds (buffer forces the refresh).
    const read = await bot(dir, ['--mode', 'read']);
    expect(read.status, read.out).toBe(0);
    const cached = JSON.parse(read.out.trim().split('\n').at(-1)!) as { access_token: string; refresh_token: string };
    expect(cached.refresh_token).toBe(pair.refreshToken);
    expect(rig.saxo.isValidAccessToken(cached.access_token)).toBe(true);
    const reusedBefore = rig.saxo.stats().reusedPresentations;
    const refreshed = await bot(dir, ['--mode', 'refresh', '--buffer', '100000', '--token-url', `${rig.saxo.url}/token`]);
    expect(refreshed.out, refreshed.out).toContain('REFRESHED');
    seen.add(cachedPair(dir, seen)?.refreshToken ?? '');
    expect(rig.saxo.stats().reusedPresentations - reusedBefore).toBe(0);
    expectNoSecrets([st.p, a], seen);
  }, 90_000);
});
