/**
 * Issue 15 item 5 (docs/DESIGN.md "Nothing dangerous is silent"), each with the real agent process
 * against the strict Saxo stand-in (which counts every presentation and every re-presentation):
 * - login required is an ALERT, repeated while it lasts (LOGIN_ALERT_REPEAT_SECONDS scaled to 1 s);
 * - a transient invalid_grant: the agent looks again after INVALID_GRANT_RECHECK_SECONDS with the
 *   bots' flock free; a real python bot refreshes meanwhile; the agent adopts its pair;
 * - the data dir turns read-only (EROFS: a read-only bind mount over it, as root): the due refresh
 *   that cannot take the lock is counted and ALERTs at MAX_REFRESH_FAILURES, naming path and errno;
 * - the cache watcher cannot start (the agent's uid has used up its inotify instances): WARNING
 *   `watch_failed`, no "watching the cache file" claim, `status` shows it, the timer carries on.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { until, type CliProcess } from '../helpers/agent-process.js';
import { PYTHON, pythonAvailable, runPythonBot, type PythonBot } from '../helpers/python.js';
import { cachedPair, dataDirFor, expectNoSecrets, isRoot, issuedPair, runCliAs, STANDALONE, startCliAs } from '../helpers/reliability-cli.js';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';

const APP = { key: 'rel-silent-app', secret: 'rel-silent-app-secret-0123456789abcdef' };
const procs: CliProcess[] = [];
const bots: PythonBot[] = [];
const mounts: string[] = [];
const holders: ChildProcess[] = [];
let saxo: SaxoStandin;
const seen = new Set<string>([APP.secret]);

const env = (dir: string, extra: Record<string, string> = {}) => ({
  ...STANDALONE,
  TOKEN_KEEPER_DATA_DIR: dir,
  SAXO_AUTH_BASE_URL: saxo.url,
  SAXO_APP_KEY: APP.key,
  SAXO_APP_SECRET: APP.secret,
  CHECK_INTERVAL_SECONDS: '0.3',
  REFRESH_THRESHOLD_SECONDS: '30',
  BOT_REFRESH_THRESHOLD_SECONDS: '5',
  TOKEN_EXPIRY_MARGIN_SECONDS: '1',
  REFRESH_TOKEN_ALERT_SECONDS: '0',
  SAXO_HTTP_TIMEOUT_SECONDS: '2',
  METADATA_SERVER_DETECTION: 'none',
  ...extra,
});

async function seedCache(dir: string, o: { leftSec: number; refreshLeftSec?: number }) {
  const t = issuedPair(saxo, APP, { leftSec: o.leftSec, lifeSec: 120, refreshLeftSec: o.refreshLeftSec ?? 600, generation: 1, seen });
  await createCacheFile(join(dir, 'saxo_token_cache.json')).write(t);
  return t;
}

beforeAll(async () => {
  if (!pythonAvailable()) throw new Error('python3 is required for this test');
  saxo = await startSaxoStandin({ accessLifetimeSec: 120, refreshLifetimeSec: 600, clients: { [APP.key]: APP.secret } });
});
afterEach(async () => {
  for (const b of bots.splice(0)) b.kill('SIGKILL');
  await Promise.all(procs.splice(0).map((p) => p.stop()));
  for (const m of mounts.splice(0)) spawnSync('umount', [m]);
  for (const h of holders.splice(0)) h.kill('SIGKILL');
  saxo.clearFaults();
});
afterAll(async () => {
  await saxo?.close();
});

describe('nothing dangerous is silent (real agent, strict Saxo stand-in)', () => {
  it('login required: an ALERT naming the environment and the action, repeated while it lasts; nothing presented', async () => {
    const dir = dataDirFor(undefined, 'tk-silent-login-');
    await seedCache(dir, { leftSec: 60, refreshLeftSec: -5 }); // the refresh token died: login required
    const before = saxo.stats().presentations;
    const a = startCliAs(['agent'], env(dir, { LOGIN_ALERT_REPEAT_SECONDS: '1' }));
    procs.push(a);
    await a.waitFor(() => a.logs.filter((l) => l.event === 'login_required').length >= 3, 15_000, 'three login_required pages');
    const pages = a.logs.filter((l) => l.event === 'login_required');
    expect(pages.every((l) => l.severity === 'ALERT')).toBe(true);
    expect(pages[0]!.message).toMatch(/^ALERT: Login required for Saxo SIM: the refresh token has expired\..*run `npx token-keeper login` or use the re-login link$/);
    const gaps = pages.slice(1).map((l, i) => Date.parse(l.time as string) - Date.parse(pages[i]!.time as string));
    // Repeated every LOGIN_ALERT_REPEAT_SECONDS (1 s) — not on every 0.3 s check, not only once.
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(1000);
    expect(a.logs.filter((l) => l.event === 'token_status' || l.event === 'login_required').length).toBeGreaterThan(pages.length);
    expect(saxo.stats().presentations).toBe(before);
    expectNoSecrets([a], seen);
  }, 30_000);

  it('a transient invalid_grant: looks again after the delay with the flock free; a bot\'s newer pair is adopted; 0 re-presentations', async () => {
    const dir = dataDirFor(undefined, 'tk-silent-grant-');
    const seed = await seedCache(dir, { leftSec: 20 }); // due at once (threshold 30 s)
    const before = saxo.stats();
    saxo.inject({ kind: 'invalid_grant' }); // Saxo says invalid_grant once, without spending the token
    const a = startCliAs(['agent'], env(dir, { INVALID_GRANT_RECHECK_SECONDS: '4' }));
    procs.push(a);
    const recheck = await a.waitForEvent('invalid_grant_recheck', 15_000);
    expect(recheck.severity).toBe('WARNING');
    // Meanwhile a bot refreshes (it can: the agent let go of the bots' flock before waiting).
    const bot = await runPythonBot(['--mode', 'refresh', '--data-dir', dir, '--buffer', '100000', '--margin', '1', '--lock-timeout', '2', '--token-url', `${saxo.url}/token`]);
    expect(bot.stdout).toBe('REFRESHED');
    const botPair = cachedPair(dir, seen)!;
    expect(botPair.refreshToken).not.toBe(seed.refreshToken);

    const recovered = await a.waitForEvent('recovered_newer_token', 15_000);
    expect(recovered.severity).toBe('INFO');
    await a.waitForEvent('token_adopted', 5_000);
    expect(a.logs.some((l) => l.event === 'login_required')).toBe(false);
    expect(a.logs.some((l) => l.event === 'refresh_failed')).toBe(false);
    expect(cachedPair(dir)?.refreshToken).toBe(botPair.refreshToken);
    await a.stop();
    procs.splice(0);

    // The seed's token was presented once by the bot (the agent's try was refused before Saxo spent
    // it); nothing was presented twice; the cache holds a pair Saxo accepts.
    const after = saxo.stats();
    expect(after.reusedPresentations - before.reusedPresentations).toBe(0);
    const refresh = await runCliAs(['refresh', '--force'], env(dir));
    expect(refresh.code, refresh.stdout + refresh.stderr).toBe(0);
    expect(saxo.stats().reusedPresentations - before.reusedPresentations).toBe(0);
    expectNoSecrets([a, refresh.p, bot.stdout, bot.stderr], [...seen, ...[cachedPair(dir, seen)?.refreshToken]]);
  }, 60_000);

  it.runIf(isRoot() || process.env.CI === 'true')('the data dir turns read-only (EROFS): the due refresh that cannot take the lock is counted and ALERTs at the threshold; nothing presented', async () => {
    const dir = dataDirFor(undefined, 'tk-silent-erofs-');
    await seedCache(dir, { leftSec: 60 }); // not due yet
    const a = startCliAs(['agent'], env(dir, { MAX_REFRESH_FAILURES: '3', REFRESH_THRESHOLD_SECONDS: '50' }));
    procs.push(a);
    await a.waitForEvent('agent_ready', 15_000);
    const before = saxo.stats().presentations;
    // A read-only bind mount over the data dir: every new open for writing fails with EROFS, as
    // after the kernel remounted a failing disk read-only (the agent's open instance lock stays).
    for (const args of [['--bind', dir, dir], ['-o', 'remount,bind,ro', dir]]) {
      const r = spawnSync('mount', args, { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    }
    mounts.push(dir);
    const alert = await a.waitForEvent('refresh_alert', 30_000);
    expect(alert.severity).toBe('ALERT');
    expect(alert.message).toMatch(/failed 3 consecutive times/);
    expect(alert.message).toContain('EROFS');
    expect(alert.message).toContain(join(dir, 'saxo_token.lock'));
    const failed = a.logs.filter((l) => l.event === 'refresh_failed');
    expect(failed.map((l) => l.reason)).toEqual(['lock_failed', 'lock_failed', 'lock_failed']);
    expect(failed.map((l) => l.message)).toEqual(['Token refresh failed (attempt 1/3)', 'Token refresh failed (attempt 2/3)', 'Token refresh failed (attempt 3/3)']);
    expect(a.logs.some((l) => l.event === 'reconcile_error')).toBe(false);
    expect(saxo.stats().presentations).toBe(before); // never presented without somewhere to put the successor
    expectNoSecrets([a], seen);
  }, 60_000);

  it.runIf(isRoot() || process.env.CI === 'true')('a cache watcher that cannot start: WARNING watch_failed, no "watching" claim, status shows it, the timer carries on', async () => {
    const uid = 43_210 + (process.pid % 1000);
    const as = { uid, gid: uid };
    const dir = dataDirFor(as, 'tk-silent-watch-');
    const seed = await seedCache(dir, { leftSec: 100 });
    chownSync(join(dir, 'saxo_token_cache.json'), uid, uid);
    // That uid spends every inotify instance the kernel allows it (fs.inotify.max_user_instances):
    // the agent's watcher then cannot start, as on a host whose other services used them up.
    holders.push(await holdInotifyInstances(uid));

    const a = startCliAs(['agent'], env(dir), as);
    procs.push(a);
    const warn = await a.waitForEvent('watch_failed', 15_000);
    expect(warn.severity).toBe('WARNING');
    expect(warn.message).toMatch(/^Cannot watch the cache file .*saxo_token_cache\.json .*picked up by the periodic check/);
    const ready = await a.waitForEvent('agent_ready', 15_000);
    expect(ready.message).toMatch(/NOT watching the cache file/);
    expect(ready.message).not.toMatch(/: watching the cache file/);
    // The timer carries on: further checks run after the failure.
    const from = a.logs.length;
    await a.waitFor((l) => a.logs.indexOf(l) >= from && l.event === 'token_status', 10_000, 'a periodic check after the watcher failed');
    // The state file is written at the end of each check (no event marks it): poll it.
    await until(() => readFileSync(join(dir, '.token-keeper-state.json'), 'utf8').includes('"watchFailed"'), 5_000, 'the state file to record the failure');
    const st = await runCliAs(['status', '--json'], env(dir), as);
    const report = JSON.parse(st.stdout) as { agent: { watchFailed?: { reason: string } }; problems: string[] };
    expect(report.agent.watchFailed?.reason).toBeTruthy();
    expect(report.problems.some((p) => p.startsWith('the agent cannot watch the cache file'))).toBe(true);
    expect(st.code).toBe(1);
    expect(cachedPair(dir)?.refreshToken).toBe(seed.refreshToken);
    expectNoSecrets([a, st.p], seen);
  }, 60_000);
});

/** A python3 process as `uid` holding every inotify instance it can get; resolves once it holds them. */
async function holdInotifyInstances(uid: number): Promise<ChildProcess> {
  const code = [
    'import ctypes, os, time',
    `os.setgid(${uid}); os.setuid(${uid})`,
    'libc = ctypes.CDLL(None, use_errno=True)',
    'fds = []',
    'while True:',
    '    fd = libc.inotify_init()',
    '    if fd < 0: break',
    '    fds.append(fd)',
    'print("HOLDING %d" % len(fds), flush=True)',
    'time.sleep(120)',
  ].join('\n');
  const p = spawn(PYTHON, ['-c', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      if (/HOLDING [1-9]\d*/.test(out)) resolve();
    });
    p.on('close', (c) => reject(new Error(`inotify holder exited ${c}: ${out}`)));
  });
  return p;
}
