/**
 * Lock facts. `saxo_token.lock`: a real non-blocking flock, taken and released at once, and only
 * when the file exists (the file is opened without O_CREAT: doctor creates nothing). Holders come
 * from /proc/locks (inode → pid) and /proc/<pid>/cmdline. The agent's instance lock is read from
 * /proc/locks alone: taking it, even for a moment, could turn away an agent starting right then.
 */
import { constants as C, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { FileInfo, InstanceProbe, LockHolder, LockProbe } from '../facts.js';
import { openRegularNoFollowSync, UnsafePathError } from '../../safe-open.js';

interface FsExt {
  flockSync(fd: number, flags: 'exnb' | 'un'): void;
}
const fsExt = createRequire(import.meta.url)('fs-ext') as FsExt;

interface ProcLock {
  type: string;
  pid: number;
  major: number;
  minor: number;
  ino: number;
}

/** Parse /proc/locks; lines of waiters (`->`) are left out: they do not hold the lock. */
export function parseProcLocks(text: string): ProcLock[] {
  const out: ProcLock[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+(FLOCK|POSIX|OFDLCK|LEASE|DELEG)\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/i.exec(line);
    if (!m) continue;
    out.push({ type: m[1]!.toUpperCase(), pid: Number(m[2]), major: parseInt(m[3]!, 16), minor: parseInt(m[4]!, 16), ino: Number(m[5]) });
  }
  return out;
}

/** Linux dev_t → (major, minor), as glibc's gnu_dev_major/minor (for device numbers below 2^32). */
export function devParts(dev: number): { major: number; minor: number } {
  const lo = dev >>> 0;
  return { major: (lo >>> 8) & 0xfff, minor: (lo & 0xff) | ((lo >>> 12) & 0xfff00) };
}

/**
 * The locks on `file`: device and inode must match; when no entry matches both (overlay filesystems
 * report the underlying device), inode alone.
 */
export function locksOn(locks: ProcLock[], file: Pick<FileInfo, 'dev' | 'ino'>): ProcLock[] {
  const { major, minor } = devParts(file.dev);
  const byIno = locks.filter((l) => l.ino === file.ino);
  const exact = byIno.filter((l) => l.major === major && l.minor === minor);
  return exact.length ? exact : byIno;
}

async function commandOf(pid: number): Promise<string | undefined> {
  if (pid <= 0) return undefined;
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    const cmd = raw.split('\0').filter(Boolean).join(' ');
    return cmd ? cmd.slice(0, 200) : undefined;
  } catch {
    return undefined;
  }
}

async function holdersOf(file: Pick<FileInfo, 'dev' | 'ino'>, procLocks = '/proc/locks'): Promise<LockHolder[]> {
  const locks = locksOn(parseProcLocks(await readFile(procLocks, 'utf8')), file);
  const seen = new Map<number, LockHolder>();
  for (const l of locks) if (!seen.has(l.pid)) seen.set(l.pid, { pid: l.pid, type: l.type, command: await commandOf(l.pid) });
  return [...seen.values()];
}

const contended = (e: unknown) => ['EAGAIN', 'EWOULDBLOCK'].includes((e as NodeJS.ErrnoException | undefined)?.code ?? '');

/** Try LOCK_EX|LOCK_NB on an existing lock file and release it at once. */
export async function probeFlock(path: string, info: FileInfo | undefined): Promise<LockProbe> {
  if (!info) return { state: 'missing' };
  const start = Date.now();
  let fd: number;
  try {
    fd = openRegularNoFollowSync(path, C.O_RDWR); // no O_CREAT: never create the bots' lock file; never through a link
  } catch (e) {
    if (e instanceof UnsafePathError) return { state: 'error', error: `refused: ${e.detail}` };
    return { state: 'error', error: `cannot open: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
  }
  try {
    fsExt.flockSync(fd, 'exnb');
    fsExt.flockSync(fd, 'un');
    return { state: 'free', ms: Date.now() - start };
  } catch (e) {
    if (!contended(e)) return { state: 'error', error: `flock failed: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
    return { state: 'held', holders: await holdersOf(info).catch(() => []) };
  } finally {
    closeSync(fd);
  }
}

/** Whether some process holds a lock on `info` (the agent's instance lock), from /proc/locks only. */
export async function probeHeld(info: FileInfo | undefined, procLocks = '/proc/locks'): Promise<InstanceProbe> {
  if (!info) return { state: 'missing' };
  try {
    const holders = await holdersOf(info, procLocks);
    return holders.length ? { state: 'held', holders } : { state: 'free' };
  } catch (e) {
    return { state: 'unknown', reason: `cannot read ${procLocks}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
  }
}
