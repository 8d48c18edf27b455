/**
 * Who holds a lock on a file, looked up only — for `status` (is an agent running: agent/agent-liveness.ts)
 * and doctor (the bots' lock, the agent's instance lock). Taking the instance lock, even for a
 * moment, could turn away an agent starting right then. Holders come from `lslocks -J`
 * (util-linux), else /proc/locks; command lines from /proc/<pid>/cmdline.
 */
import { execFile } from 'node:child_process';
import { promises as fsp, type Stats } from 'node:fs';
import { promisify } from 'node:util';

/** A file as status and doctor judge it (lstat: a symlink is itself); `mode`: permission bits only (0o7777). */
export function fileInfo(st: Stats) {
  const kind: 'file' | 'dir' | 'symlink' | 'other' = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  return { kind, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev };
}
export type FileInfo = ReturnType<typeof fileInfo>;

/** lstat; undefined when the path does not exist. */
export async function statNoFollow(path: string): Promise<FileInfo | undefined> {
  return fsp.lstat(path).then(fileInfo, (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
}

/** `command`: /proc/<pid>/cmdline, spaces for NULs; undefined when unreadable (another pid namespace). `type`: FLOCK, POSIX, OFDLCK. */
export type LockHolder = { pid: number; command?: string | undefined; type: string };

/** Parse /proc/locks (the fallback where lslocks is missing); waiters (`->`) do not hold the lock. */
export function parseProcLocks(text: string) {
  return [...text.matchAll(/^\d+:\s+(FLOCK|POSIX|OFDLCK|LEASE|DELEG)\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/gim)].map((m) => ({
    type: m[1]!.toUpperCase(),
    pid: Number(m[2]),
    major: parseInt(m[3]!, 16),
    minor: parseInt(m[4]!, 16),
    ino: Number(m[5]),
  }));
}

type ProcLock = ReturnType<typeof parseProcLocks>[number];

/** `lslocks -J`: the same table, waiters (a BLOCKER) left out; its MAJ:MIN is decimal. */
async function lslocks(): Promise<ProcLock[]> {
  const { stdout } = await promisify(execFile)('lslocks', ['-J', '-u', '-o', 'PID,TYPE,INODE,MAJ:MIN,BLOCKER'], { timeout: 2000 });
  const rows = (JSON.parse(stdout || '{"locks":[]}') as { locks: { pid: number; type: string; inode: number; 'maj:min': string; blocker: unknown }[] }).locks;
  return rows.filter((r) => r.blocker === null || r.blocker === undefined).map((r) => {
    const [major, minor] = r['maj:min'].split(':').map(Number);
    return { type: r.type, pid: Number(r.pid), major: major!, minor: minor!, ino: Number(r.inode) };
  });
}

/** Linux dev_t → (major, minor), as glibc's gnu_dev_major/minor (for device numbers below 2^32). */
export function devParts(dev: number): { major: number; minor: number } {
  const lo = dev >>> 0;
  return { major: (lo >>> 8) & 0xfff, minor: (lo & 0xff) | ((lo >>> 12) & 0xfff00) };
}

/** The locks on `file`: device and inode, or inode alone when none matches both (overlay filesystems). */
export function locksOn(locks: ProcLock[], file: Pick<FileInfo, 'dev' | 'ino'>): ProcLock[] {
  const { major, minor } = devParts(file.dev);
  const byIno = locks.filter((l) => l.ino === file.ino);
  const exact = byIno.filter((l) => l.major === major && l.minor === minor);
  return exact.length ? exact : byIno;
}

/** The holders of a lock on `file`: from `procLocks` when given, else lslocks, else /proc/locks. */
export async function holdersOf(file: Pick<FileInfo, 'dev' | 'ino'>, procLocks?: string): Promise<LockHolder[]> {
  const fromFile = async () => parseProcLocks(await fsp.readFile(procLocks ?? '/proc/locks', 'utf8'));
  const table = procLocks ? await fromFile() : await lslocks().catch(fromFile);
  const seen = new Map<number, LockHolder>();
  for (const l of locksOn(table, file)) {
    if (seen.has(l.pid)) continue;
    const raw = l.pid > 0 ? await fsp.readFile(`/proc/${l.pid}/cmdline`, 'utf8').catch(() => '') : '';
    seen.set(l.pid, { pid: l.pid, type: l.type, command: raw.split('\0').filter(Boolean).join(' ').slice(0, 200) || undefined });
  }
  return [...seen.values()];
}

export type InstanceProbe = { state: 'missing' } | { state: 'free' } | { state: 'held'; holders: LockHolder[] } | { state: 'unknown'; reason: string };

/** Whether some process holds a lock on `info` (the agent's instance lock), looked up only. */
export async function probeHeld(info: FileInfo | undefined, procLocks?: string): Promise<InstanceProbe> {
  if (!info) return { state: 'missing' };
  try {
    const holders = await holdersOf(info, procLocks);
    return holders.length ? { state: 'held', holders } : { state: 'free' };
  } catch (e) {
    return { state: 'unknown', reason: `cannot read ${procLocks ?? 'lslocks -J or /proc/locks'}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
  }
}
