/**
 * One agent per data dir. proper-lockfile (a mkdir lock with mtime heartbeats, so a crashed agent's
 * lock goes stale) on `${dataDir}/.token-keeper-agent` — never on `saxo_token.lock`, whose flock the
 * bots use and which a mkdir lock would neither exclude nor coexist with (DESIGN §3).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import type { Logger } from '../core/log.js';
import type { Held } from '../core/ports.js';

export class InstanceLockedError extends Error {
  override readonly name = 'InstanceLockedError';
  constructor(readonly dataDir: string) {
    super(`Another token-keeper agent already runs on data dir ${dataDir}`);
  }
}

export interface InstanceLockOptions {
  /** A lock not refreshed for this long is taken over (default 10 s). */
  staleMs?: number;
  /** Heartbeat period (default 5 s). */
  updateMs?: number;
  logger?: Logger;
  /** Called if the lock was lost (e.g. the event loop stalled past staleMs); default logs an error. */
  onCompromised?: (err: Error) => void;
}

export const INSTANCE_LOCK_NAME = '.token-keeper-agent';

export async function acquireInstanceLock(dataDir: string, opts: InstanceLockOptions = {}): Promise<Held> {
  await mkdir(dataDir, { recursive: true });
  const target = join(dataDir, INSTANCE_LOCK_NAME);
  const onCompromised =
    opts.onCompromised ??
    ((err: Error) => opts.logger?.error('instance_lock_compromised', 'Agent instance lock was lost', { error: err.message }));
  let unlock: () => Promise<void>;
  try {
    unlock = await lockfile.lock(target, {
      realpath: false,
      stale: opts.staleMs ?? 10_000,
      update: opts.updateMs ?? 5_000,
      retries: 0,
      onCompromised,
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOCKED') throw new InstanceLockedError(dataDir);
    throw e;
  }
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await unlock().catch((e: NodeJS.ErrnoException) => {
        // Already released by a compromise: nothing left to undo.
        if (e.code !== 'ERELEASED' && e.code !== 'ENOTACQUIRED') throw e;
      });
    },
  };
}
