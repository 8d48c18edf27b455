/**
 * A real flock(2) on the bots' `saxo_token.lock` (docs/DESIGN.md "The bots' lock"), interoperable with Python's
 * `fcntl.flock(LOCK_EX|LOCK_NB)`: the same non-blocking attempt, retried every 100 ms, for 30 s.
 * flock locks belong to the open file description, so every acquire opens the file itself and
 * owns that fd until release; two acquires in one process exclude each other like two processes.
 * libuv opens with O_CLOEXEC, so spawned children never inherit (and so never prolong) the lock.
 */
import { constants as C, closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { systemClock, type Clock } from '../core/clock.js';
import { LockTimeoutError } from '../core/errors.js';
import type { Held } from '../core/ports.js';
import { handOverFd } from './file-owner.js';
import { openRegularNoFollowSync } from './safe-open.js';

interface FsExt {
  flockSync(fd: number, flags: 'exnb' | 'un'): void;
}
// fs-ext is CommonJS without types; the two calls used are typed above.
const fsExt = createRequire(import.meta.url)('fs-ext') as FsExt;

export interface FlockOptions {
  timeoutMs?: number;
  retryMs?: number;
  signal?: AbortSignal | undefined;
  clock?: Clock;
}

export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;
export const DEFAULT_LOCK_RETRY_MS = 100;

function isContended(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EAGAIN' || code === 'EWOULDBLOCK';
}

/** Take the exclusive lock, waiting up to timeoutMs; throws LockTimeoutError when it stays held. */
export async function acquireFlock(path: string, opts: FlockOptions = {}): Promise<Held> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const retryMs = opts.retryMs ?? DEFAULT_LOCK_RETRY_MS;
  const clock = opts.clock ?? systemClock;
  // Like the bots: O_CREAT|O_RDWR, never deleted. But never through a planted link: a symlink (even a
  // dangling one), a FIFO or a hard link at the name throws UnsafePathError (docs/DESIGN.md "No planted
  // link is followed"); a root run would otherwise create or hand over a file outside the data dir.
  const fd = openRegularNoFollowSync(path, C.O_CREAT | C.O_RDWR, 0o600);
  const start = clock.now();
  try {
    handOverFd(fd, path);
    for (;;) {
      opts.signal?.throwIfAborted();
      try {
        fsExt.flockSync(fd, 'exnb');
        return heldFd(fd);
      } catch (e) {
        if (!isContended(e)) throw e;
      }
      const waited = clock.now() - start;
      if (waited >= timeoutMs) throw new LockTimeoutError(path, waited);
      await clock.sleep(Math.max(1, Math.min(retryMs, timeoutMs - waited)), opts.signal);
    }
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

function heldFd(fd: number): Held {
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      try {
        fsExt.flockSync(fd, 'un');
      } finally {
        closeSync(fd); // closing the description releases the lock in any case
      }
    },
  };
}
