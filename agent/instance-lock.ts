/**
 * One agent per data dir: a non-blocking flock on `${dataDir}/.token-keeper-agent.lock` — never on
 * `saxo_token.lock`, which the bots flock for every refresh (docs/DESIGN.md "The bots' lock").
 *
 * Why flock and not proper-lockfile (which this module used first): proper-lockfile's mkdir lock
 * goes stale by mtime, so a kill -9'd agent blocked its own restart for the stale period (10 s),
 * and an event loop stalled past that period let a second agent in. The kernel releases a flock
 * the moment its holder dies and never while it lives, which is exactly the semantics wanted here;
 * it also keeps ~2.5 MB (proper-lockfile + graceful-fs) out of the agent's memory.
 */
import { join } from 'node:path';
import { LockTimeoutError } from '../core/errors.js';
import type { Held } from '../core/ports.js';
import { acquireFlock } from './flock.js';

export class InstanceLockedError extends Error {
  override readonly name = 'InstanceLockedError';
  constructor(readonly dataDir: string) {
    super(`Another token-keeper agent already runs on data dir ${dataDir}`);
  }
}

export const INSTANCE_LOCK_FILE = '.token-keeper-agent.lock';

export async function acquireInstanceLock(dataDir: string): Promise<Held> {
  try {
    // One attempt: a live holder means another agent runs; a dead one has already been released.
    // A link or other planted thing at the name is refused by flock.ts (UnsafePathError), not taken for an agent.
    return await acquireFlock(join(dataDir, INSTANCE_LOCK_FILE), { timeoutMs: 0 });
  } catch (e) {
    if (e instanceof LockTimeoutError) throw new InstanceLockedError(dataDir);
    throw e;
  }
}
