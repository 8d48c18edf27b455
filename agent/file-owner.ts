/**
 * Files created by a root run (`sudo npx token-keeper refresh`, a login as root) belong to the data
 * dir's owner, not to root: the bots and the agent run as that user and must read, replace and
 * lock them. A root-owned 0600 cache or lock file would lock them out until someone notices.
 * Unprivileged runs do nothing here (they cannot give files away, and need not).
 * Ownership changes only through the descriptor the caller opened with agent/safe-open.ts (fchown,
 * never chown(path)): a link planted at the name can never redirect it to another file. `path` only
 * names the data dir (a symlinked data dir is fine: only the last component is checked).
 */
import { fchownSync, fstatSync, statSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/** The data dir's owner when this process is root and the dir belongs to someone else. */
function handOverTo(path: string): { uid: number; gid: number } | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  const st = statSync(dirname(path), { throwIfNoEntry: false });
  return st && st.uid !== 0 ? { uid: st.uid, gid: st.gid } : undefined;
}

/** Give a file just created at `path` (open as `fh`) to the data dir's owner when running as root. */
export async function handOver(fh: FileHandle, path: string): Promise<void> {
  const to = handOverTo(path);
  if (to) await fh.chown(to.uid, to.gid);
}

/** Same for a descriptor: a lock file root created (now or by an earlier root run) goes back to the owner. */
export function handOverFd(fd: number, path: string): void {
  const to = handOverTo(path);
  if (to && fstatSync(fd).uid === 0) fchownSync(fd, to.uid, to.gid);
}
