import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireFlock } from '../../agent/flock.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { acquireInstanceLock, INSTANCE_LOCK_FILE, InstanceLockedError } from '../../agent/instance-lock.js';
import type { Clock } from '../../core/clock.js';
import { LockTimeoutError } from '../../core/errors.js';
import { runPythonBot, spawnPythonBot, type PythonBot } from '../helpers/python.js';

let dir: string;
let lockPath: string;
const bots: PythonBot[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tk-flock-'));
  lockPath = join(dir, 'saxo_token.lock');
});
afterEach(async () => {
  for (const b of bots.splice(0)) {
    b.kill('SIGKILL');
    await b.exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

function bot(args: string[]): PythonBot {
  const b = spawnPythonBot(['--data-dir', dir, ...args]);
  bots.push(b);
  return b;
}

const tryLock = () => runPythonBot(['--mode', 'try-lock', '--data-dir', dir]);

describe('acquireFlock against Python fcntl.flock', () => {
  it('waits while Python holds, and gets the lock right after Python releases', async () => {
    const HOLD = 1.5;
    const py = bot(['--mode', 'hold-lock', '--hold', String(HOLD)]);
    await py.waitForLine('LOCKED');
    const t0 = Date.now();
    let releasedAt = 0;
    void py.waitForLine('RELEASED').then(() => (releasedAt = Date.now()));
    const held = await acquireFlock(lockPath, { timeoutMs: 10_000 });
    const got = Date.now();
    await py.waitForLine('RELEASED');
    expect(got - t0).toBeGreaterThanOrEqual(HOLD * 1000 - 100);
    // Right after the release, not at our 10 s timeout (the bound separates the two, with room for a slow machine).
    expect(got - releasedAt).toBeLessThan(5000);
    // we hold it now: Python is refused
    expect((await tryLock()).stdout).toBe('EWOULDBLOCK');
    await held.release();
  });

  it('throws LockTimeoutError when Python holds longer than the timeout', async () => {
    const py = bot(['--mode', 'hold-lock', '--hold', '30']);
    await py.waitForLine('LOCKED');
    const t0 = Date.now();
    const err = await acquireFlock(lockPath, { timeoutMs: 500, retryMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockTimeoutError);
    expect((err as LockTimeoutError).waitedMs).toBeGreaterThanOrEqual(500);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect((err as Error).message).toContain(lockPath);
  });

  it('while we hold, Python gets EWOULDBLOCK; after release Python locks', async () => {
    const held = await acquireFlock(lockPath);
    const refused = await tryLock();
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('EWOULDBLOCK');
    // a bot's full 100 ms retry loop also gives up
    const timedOut = await runPythonBot(['--mode', 'hold-lock', '--data-dir', dir, '--lock-timeout', '0.3', '--hold', '0']);
    expect(timedOut.stdout).toBe('WAITING\nLOCK_TIMEOUT');
    expect(timedOut.code).toBe(3);
    await held.release();
    const ok = await tryLock();
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('LOCKED');
  });

  it('a waiting Python bot gets the lock as soon as we release', async () => {
    const held = await acquireFlock(lockPath);
    const py = bot(['--mode', 'hold-lock', '--hold', '0', '--lock-timeout', '10']);
    await py.waitForLine('WAITING');
    // it must still be waiting after a few of its 100 ms retries
    await expect(py.waitForLine('LOCKED', 350)).rejects.toThrow(/no line/);
    const releasedAt = Date.now();
    await held.release();
    await py.waitForLine('LOCKED', 5000); // its own timeout is 10 s: getting it within 5 s is the hand-off
    expect(Date.now() - releasedAt).toBeLessThan(5000);
  });

  it('kill -9 of a Python holder frees the lock at once (kernel release)', async () => {
    const py = bot(['--mode', 'hold-lock', '--hold', '60']);
    await py.waitForLine('LOCKED');
    expect(await acquireFlock(lockPath, { timeoutMs: 200 }).catch((e: unknown) => e)).toBeInstanceOf(LockTimeoutError);
    py.kill('SIGKILL');
    const killedAt = Date.now();
    await py.exited;
    // The holder's 60 s would outlast this 5 s wait: getting the lock at all is the kernel's release.
    const held = await acquireFlock(lockPath, { timeoutMs: 5000 });
    expect(Date.now() - killedAt).toBeLessThan(5000);
    await held.release();
  });

  it('children we spawn do not inherit the lock (O_CLOEXEC)', async () => {
    const held = await acquireFlock(lockPath);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await held.release();
      const r = await tryLock();
      expect(r.stdout).toBe('LOCKED');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('acquireFlock semantics', () => {
  it('two acquires in the same process exclude each other (separate open file descriptions)', async () => {
    const a = await acquireFlock(lockPath);
    await expect(acquireFlock(lockPath, { timeoutMs: 250, retryMs: 50 })).rejects.toBeInstanceOf(LockTimeoutError);
    const waiting = acquireFlock(lockPath, { timeoutMs: 5000, retryMs: 20 });
    await a.release();
    const b = await waiting;
    await b.release();
  });

  it('creates the lock file 0600, never deletes it, and release is idempotent', async () => {
    const a = await acquireFlock(lockPath);
    expect(statSync(lockPath).mode & 0o777).toBe(0o600);
    await a.release();
    await a.release();
    expect(existsSync(lockPath)).toBe(true);
    // the double release must not have closed someone else's fd: a new holder keeps excluding
    const b = await acquireFlock(lockPath);
    await a.release();
    expect((await tryLock()).stdout).toBe('EWOULDBLOCK');
    await b.release();
  });

  it('times out after the full 30 s default on a fake clock, retrying every 100 ms', async () => {
    const other = await acquireFlock(lockPath);
    let now = 1_000_000;
    let sleeps = 0;
    const clock: Clock = { now: () => now, sleep: async (ms) => void ((now += ms), sleeps++) };
    const err = await acquireFlock(lockPath, { clock }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockTimeoutError);
    expect((err as LockTimeoutError).waitedMs).toBe(30_000);
    expect(sleeps).toBe(300);
    await other.release();
  });

  it('an abort signal stops the wait and does not leave the lock held', async () => {
    const other = await acquireFlock(lockPath);
    const ac = new AbortController();
    const p = acquireFlock(lockPath, { signal: ac.signal, timeoutMs: 10_000 });
    ac.abort(new Error('shutting down'));
    await expect(p).rejects.toThrow('shutting down');
    await other.release();
    expect((await tryLock()).stdout).toBe('LOCKED');
  });
});

describe('acquireInstanceLock', () => {
  it('refuses a second agent on the same data dir, and allows one after release', async () => {
    const first = await acquireInstanceLock(dir);
    const err = await acquireInstanceLock(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InstanceLockedError);
    expect((err as InstanceLockedError).dataDir).toBe(dir);
    await first.release();
    await first.release();
    const again = await acquireInstanceLock(dir);
    await again.release();
  });

  it('coexists with the bots’ flock on saxo_token.lock (a different file)', async () => {
    const inst = await acquireInstanceLock(dir);
    const fl = await acquireFlock(lockPath);
    expect(statSync(lockPath).isFile()).toBe(true);
    expect(existsSync(join(dir, INSTANCE_LOCK_FILE))).toBe(true);
    await fl.release();
    await inst.release();
  });

  it('refuses while another process holds it, and is free the moment that process is killed', async () => {
    const target = join(dir, INSTANCE_LOCK_FILE);
    const script = `import fcntl, os, sys, time
fd = os.open(${JSON.stringify(target)}, os.O_CREAT | os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("LOCKED", flush=True)
time.sleep(120)`;
    const other = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        other.stdout.on('data', (d: Buffer) => d.toString().includes('LOCKED') && resolve());
        other.on('exit', () => reject(new Error('lock holder exited')));
      });
      await expect(acquireInstanceLock(dir)).rejects.toBeInstanceOf(InstanceLockedError);
      other.kill('SIGKILL');
      await new Promise((r) => other.once('close', r));
      // No stale period: the kernel released the dead holder's lock.
      const mine = await acquireInstanceLock(dir);
      await mine.release();
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('never creates a missing data dir (a typo must not run a keeper for nobody: the agent refuses first)', async () => {
    const sub = join(dir, 'nested', 'data');
    await expect(acquireInstanceLock(sub)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(existsSync(sub)).toBe(false);
  });
});

describe('python_bot loop (the bots’ double-checked refresh)', () => {
  let server: Server;
  let posts: URLSearchParams[];
  let url: string;
  beforeEach(async () => {
    posts = [];
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        posts.push(new URLSearchParams(body));
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: `acc-${posts.length}`, refresh_token: `ref-${posts.length}`, token_type: 'Bearer', expires_in: 1200, refresh_token_expires_in: 3600 }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  });
  afterEach(async () => {
    await new Promise((r) => server.close(r));
  });

  const stale = () => ({
    accessToken: 'acc-old', refreshToken: 'ref-old', accessExpiresAt: Date.now() + 30_000,
    appKey: 'key-1', appSecret: 'secret-1', extra: {},
  });

  it('refreshes itself when the cache is near expiry (201 accepted), then trusts the cache', async () => {
    const cache = createCacheFile(join(dir, 'saxo_token_cache.json'));
    await cache.write(stale());
    const report = join(dir, 'report.jsonl');
    const py = bot(['--mode', 'loop', '--duration', '0.5', '--interval', '0.1', '--report', report, '--token-url', url]);
    await py.waitForLine('DONE');
    expect(posts).toHaveLength(1);
    expect(Object.fromEntries(posts[0]!)).toEqual({ grant_type: 'refresh_token', refresh_token: 'ref-old', client_id: 'key-1', client_secret: 'secret-1' });
    const recs = readFileSync(report, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { refreshed: boolean; expired: boolean });
    expect(recs.length).toBeGreaterThan(1);
    expect(recs.filter((r) => r.refreshed)).toHaveLength(1);
    expect(recs.every((r) => !r.expired)).toBe(true);
    const r = await cache.read();
    expect(r.kind === 'ok' && r.token.refreshToken).toBe('ref-1');
    expect(r.kind === 'ok' && Object.keys(r.token.extra)).toEqual([]);
  });

  it('waits on our flock, re-reads, and uses the token we wrote instead of refreshing', async () => {
    const cache = createCacheFile(join(dir, 'saxo_token_cache.json'));
    await cache.write(stale());
    const held = await acquireFlock(lockPath);
    const report = join(dir, 'report.jsonl');
    const py = bot(['--mode', 'loop', '--duration', '0.3', '--interval', '0.1', '--report', report, '--token-url', url]);
    // it found the cache near expiry and now contends for the lock we hold
    await py.waitForLine('WAITING');
    await cache.write({ ...stale(), accessToken: 'acc-agent', refreshToken: 'ref-agent', accessExpiresAt: Date.now() + 1_200_000, generation: 9 });
    await held.release();
    await py.waitForLine('DONE');
    expect(posts).toHaveLength(0);
    const recs = readFileSync(report, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { refreshed: boolean; expired: boolean });
    expect(recs.every((r) => !r.refreshed && !r.expired)).toBe(true);
  });
});
