/**
 * agent/safe-open.ts on the real filesystem: every shape the data dir's owner can put at a name —
 * symlink (live and dangling), FIFO, directory, hard link, oversize file — is refused with what it
 * is, nothing is created or changed behind a link, a FIFO never blocks; a plain file opens.
 * Plus the writers built on it: the atomic write (tmp and target) and the flock.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, constants as C, existsSync, fstatSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { atomicWriteFile } from '../../agent/atomic-write.js';
import { probeFlock } from '../../agent/doctor/checks/locks.js';
import { fileInfo } from '../../agent/lock-holders.js';
import { acquireFlock } from '../../agent/flock.js';
import { acquireInstanceLock, INSTANCE_LOCK_FILE } from '../../agent/instance-lock.js';
import { check, openRegularNoFollow, openRegularNoFollowSync, readRegularNoFollow, UnsafePathError, type UnsafeKind } from '../../agent/safe-open.js';

let dir: string;
let victim: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tk-safe-open-'));
  victim = join(dir, 'victim');
  writeFileSync(victim, 'untouched', { mode: 0o600 });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The UnsafePathError thrown by `fn`, checked to name the path and the kind. */
async function refusal(fn: () => unknown, path: string, kind: UnsafeKind): Promise<UnsafePathError> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(UnsafePathError);
  const e = caught as UnsafePathError;
  expect([e.path, e.kind]).toEqual([path, kind]);
  expect(e.message).toContain(`refusing ${path}: ${kind}`);
  expect(e.message.split('\n')).toHaveLength(1);
  return e;
}

const mkfifo = (p: string) => execFileSync('mkfifo', ['-m', '600', p]);

describe('openRegularNoFollow / readRegularNoFollow', () => {
  it('a plain file opens (sync and async) and reads', async () => {
    const p = join(dir, 'plain');
    writeFileSync(p, 'hello');
    const fd = openRegularNoFollowSync(p, C.O_RDWR);
    expect(fstatSync(fd).isFile()).toBe(true);
    closeSync(fd);
    const fh = await openRegularNoFollow(p, C.O_RDONLY);
    await fh.close();
    expect(await readRegularNoFollow(p, 100)).toEqual({ kind: 'ok', text: 'hello' });
    expect(await readRegularNoFollow(join(dir, 'none'), 100)).toEqual({ kind: 'missing' });
  });

  it('creates a missing file with O_CREAT (mode as asked)', () => {
    const p = join(dir, 'new.lock');
    closeSync(openRegularNoFollowSync(p, C.O_CREAT | C.O_RDWR, 0o600));
    expect(statSync(p).mode & 0o777).toBe(0o600);
  });

  it('a symlink to a file is refused; the target is neither opened for writing nor changed', async () => {
    const p = join(dir, 'link');
    symlinkSync(victim, p);
    await refusal(() => openRegularNoFollowSync(p, C.O_CREAT | C.O_RDWR | C.O_TRUNC), p, 'symlink');
    await refusal(() => openRegularNoFollow(p, C.O_WRONLY | C.O_TRUNC), p, 'symlink');
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    expect(await readRegularNoFollow(p, 100)).toMatchObject({ kind: 'unusable', unsafe: 'symlink' });
  });

  it('a dangling symlink is refused and nothing is created at its target', async () => {
    const p = join(dir, 'dangling');
    const target = join(dir, 'root-only', 'created-by-root');
    mkdirSync(join(dir, 'root-only'));
    symlinkSync(target, p);
    await refusal(() => openRegularNoFollowSync(p, C.O_CREAT | C.O_RDWR, 0o600), p, 'symlink');
    expect(existsSync(target)).toBe(false);
  });

  it('a FIFO never blocks: read-only and write-only opens are refused at once', async () => {
    const p = join(dir, 'fifo');
    mkfifo(p);
    const t0 = Date.now();
    await refusal(() => openRegularNoFollowSync(p, C.O_RDONLY), p, 'fifo');
    await refusal(() => openRegularNoFollowSync(p, C.O_WRONLY), p, 'fifo'); // ENXIO: no reader
    await refusal(() => openRegularNoFollowSync(p, C.O_CREAT | C.O_RDWR), p, 'fifo');
    expect(await readRegularNoFollow(p, 100)).toEqual({ kind: 'unusable', unsafe: 'fifo', reason: 'fifo (not a regular file)' });
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('a directory is refused, read-only or read-write', async () => {
    const p = join(dir, 'sub');
    mkdirSync(p);
    await refusal(() => openRegularNoFollowSync(p, C.O_RDONLY), p, 'directory');
    await refusal(() => openRegularNoFollowSync(p, C.O_CREAT | C.O_RDWR), p, 'directory');
    expect(await readRegularNoFollow(p, 100)).toMatchObject({ kind: 'unusable', unsafe: 'directory' });
  });

  it('a file with a second hard link is refused (nlink 2)', async () => {
    const p = join(dir, 'hard');
    linkSync(victim, p);
    const e = await refusal(() => openRegularNoFollowSync(p, C.O_RDWR), p, 'hard-linked');
    expect(e.message).toContain('2 links');
    expect(await readRegularNoFollow(p, 100)).toMatchObject({ kind: 'unusable', unsafe: 'hard-linked' });
  });

  it('a file replaced by a rename after we opened it (nlink 0) is read, not refused: a bot\'s atomic write must never make the cache look unusable', () => {
    const p = join(dir, 'replaced');
    writeFileSync(p, 'old');
    const fd = openRegularNoFollowSync(p, C.O_RDONLY);
    try {
      writeFileSync(join(dir, 'new'), 'new');
      execFileSync('mv', [join(dir, 'new'), p]); // the rename a writer does: our descriptor's file is unlinked
      const st = fstatSync(fd, { bigint: false });
      expect(st.nlink).toBe(0);
      expect(() => check(p, st, {})).not.toThrow();
      expect(() => check(p, { ...st, nlink: 2, isFile: () => true, isSymbolicLink: () => false, isFIFO: () => false, isDirectory: () => false, isSocket: () => false, isCharacterDevice: () => false, isBlockDevice: () => false } as typeof st, {})).toThrow(UnsafePathError);
    } finally {
      closeSync(fd);
    }
  });

  it('an oversize file is refused by a bounded read, and by a bounded open', async () => {
    const p = join(dir, 'big');
    writeFileSync(p, Buffer.alloc(64 * 1024 + 1, 0x20));
    const r = await readRegularNoFollow(p, 64 * 1024);
    expect(r).toEqual({ kind: 'unusable', unsafe: 'oversize', reason: 'oversize (65537 bytes, limit 65536)' });
    await refusal(() => openRegularNoFollowSync(p, C.O_RDONLY, 0, { maxBytes: 10 }), p, 'oversize');
    writeFileSync(p, Buffer.alloc(64 * 1024, 0x20)); // exactly the bound: fine
    expect((await readRegularNoFollow(p, 64 * 1024)).kind).toBe('ok');
  });
});

describe('writers built on it', () => {
  it('atomicWriteFile: a symlink at the target is replaced (never followed) — or refused when asked; a directory fails (EISDIR)', async () => {
    const p = join(dir, 'state.json');
    symlinkSync(victim, p);
    await refusal(() => atomicWriteFile(p, 'new', { refuseSymlink: true }), p, 'symlink');
    expect(lstatSync(p).isSymbolicLink()).toBe(true);
    await atomicWriteFile(p, 'new');
    expect(lstatSync(p).isFile()).toBe(true);
    expect(readFileSync(p, 'utf8')).toBe('new');
    expect(readFileSync(victim, 'utf8')).toBe('untouched');

    const d = join(dir, 'cache.json');
    mkdirSync(d);
    await expect(atomicWriteFile(d, 'new')).rejects.toMatchObject({ code: 'EISDIR' });
    expect(lstatSync(d).isDirectory()).toBe(true);
  });

  it('atomicWriteFile: replaces a FIFO and a hard link by name (the other name keeps its content)', async () => {
    const f = join(dir, 'fifo.json');
    mkfifo(f);
    await atomicWriteFile(f, 'a');
    expect(readFileSync(f, 'utf8')).toBe('a');
    const h = join(dir, 'hard.json');
    linkSync(victim, h);
    await atomicWriteFile(h, 'b');
    expect([readFileSync(h, 'utf8'), readFileSync(victim, 'utf8')]).toEqual(['b', 'untouched']);
  });

  it('acquireFlock: a symlinked or hard-linked lock file is refused, a dangling one creates nothing', async () => {
    const lock = join(dir, 'saxo_token.lock');
    symlinkSync(victim, lock);
    await refusal(() => acquireFlock(lock, { timeoutMs: 0 }), lock, 'symlink');
    rmSync(lock);
    const target = join(dir, 'nowhere.lock');
    symlinkSync(target, lock);
    await refusal(() => acquireFlock(lock, { timeoutMs: 0 }), lock, 'symlink');
    expect(existsSync(target)).toBe(false);
    rmSync(lock);
    linkSync(victim, lock);
    await refusal(() => acquireFlock(lock, { timeoutMs: 0 }), lock, 'hard-linked');
    rmSync(lock);
    const held = await acquireFlock(lock, { timeoutMs: 0 });
    await held.release();
    expect(lstatSync(lock).isFile()).toBe(true);
  });

  it("doctor's lock probe does not open (nor flock) a symlinked lock file's target", async () => {
    const lock = join(dir, 'saxo_token.lock');
    symlinkSync(victim, lock);
    const held = await acquireFlock(victim, { timeoutMs: 0 }); // were the link followed, the probe would see it held
    try {
      expect(await probeFlock(lock, fileInfo(lstatSync(lock)))).toEqual({ state: 'error', error: 'refused: symlink (a link is never followed)' });
    } finally {
      await held.release();
    }
  });

  it('acquireInstanceLock: a symlinked instance lock is refused (not "another agent runs"), its target untouched', async () => {
    const lock = join(dir, INSTANCE_LOCK_FILE);
    symlinkSync(victim, lock);
    await refusal(() => acquireInstanceLock(dir), lock, 'symlink');
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
  });
});
