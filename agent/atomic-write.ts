/**
 * Crash-safe small-file IO shared by the cache file and the agent's state file (invariant I3):
 * unique tmp (O_EXCL|O_NOFOLLOW, 0600) → write → fsync → rename over the target → fsync the dir.
 * A reader sees the old file or the new one, never a mix; a symlink is never followed.
 */
import { randomBytes } from 'node:crypto';
import { constants as C, promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { handOver } from './file-owner.js';
import { describeUnsafe, openRegularNoFollow, UnsafePathError } from './safe-open.js';

export type WriteStage = 'opened' | 'written' | 'synced' | 'renamed';

export interface AtomicWriteOptions {
  /** Final file mode (default 0o600). */
  mode?: number;
  /**
   * A symlink at `path` is refused (UnsafePathError) instead of replaced. The rename never follows
   * it either way; refusing tells the operator who linked the bots' cache somewhere that it is not
   * updated. A directory at `path` fails the rename (EISDIR, named with the path).
   */
  refuseSymlink?: boolean;
  /** Test seam: called after each stage; a throw simulates a failure (crash) at that point. */
  onStage?: (stage: WriteStage, tmpPath: string) => void | Promise<void>;
  /** Test seam: tmp-name suffix generator (default: 12 random hex chars). */
  tmpSuffix?: () => string;
}

const TMP_ATTEMPTS = 5;

/** The tmp names this module uses for `path`: `.<base>.<suffix>.tmp` in the same directory. */
export function tmpPathFor(path: string, suffix: string): string {
  return join(dirname(path), `.${basename(path)}.${suffix}.tmp`);
}

/** Whether `name` (a directory entry) is one of this module's tmp files for `path` (default suffixes). */
export function isTmpNameOf(path: string, name: string): boolean {
  const base = basename(path).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^\\.${base}\\.[0-9a-f]{12}\\.tmp$`).test(name);
}

export async function atomicWriteFile(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const mode = opts.mode ?? 0o600;
  const suffix = opts.tmpSuffix ?? (() => randomBytes(6).toString('hex'));
  const flags = C.O_CREAT | C.O_EXCL | C.O_WRONLY; // safe-open adds O_NOFOLLOW

  let tmp = '';
  let fh: fsp.FileHandle | undefined;
  // O_EXCL refuses anything already at the name (a planted file or symlink): pick another name.
  for (let i = 0; ; i++) {
    tmp = tmpPathFor(path, suffix());
    try {
      fh = await openRegularNoFollow(tmp, flags, mode);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || i + 1 >= TMP_ATTEMPTS) throw e;
    }
  }

  let renamed = false;
  try {
    await opts.onStage?.('opened', tmp);
    await fh.chmod(mode); // the umask may have narrowed it; make the final mode exact
    await handOver(fh, path);
    await fh.writeFile(data);
    await opts.onStage?.('written', tmp);
    await fh.sync();
    await opts.onStage?.('synced', tmp);
    await fh.close();
    fh = undefined;
    await refuseTarget(path, opts.refuseSymlink === true);
    await fsp.rename(tmp, path); // replaces a name (a FIFO, an oversize file, a link) — never a link's target
    renamed = true;
    await opts.onStage?.('renamed', tmp);
    await fsyncDir(dirname(path));
  } catch (e) {
    await fh?.close().catch(() => undefined);
    if (!renamed) await fsp.unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/**
 * Remove tmp files a killed write of ours left behind for `paths` (they hold token text). Only our
 * own pattern (`.<base>.<12 hex>.tmp`) — never the bots' fixed `saxo_token_cache.tmp`, which a bot
 * may be writing right now. Call only while no writer of ours runs (the agent, at startup).
 */
export async function removeStaleTmpFiles(paths: string[]): Promise<string[]> {
  const removed: string[] = [];
  for (const path of paths) {
    const dir = dirname(path);
    let names: string[] = [];
    try {
      names = await fsp.readdir(dir);
    } catch {
      continue;
    }
    for (const n of names.filter((x) => isTmpNameOf(path, x))) {
      await fsp.unlink(join(dir, n)).then(() => removed.push(join(dir, n)), () => undefined);
    }
  }
  return removed;
}

/** A symlink at `path`, when asked, is not renamed over (a directory there fails the rename: EISDIR). */
async function refuseTarget(path: string, refuseSymlink: boolean): Promise<void> {
  if (!refuseSymlink) return;
  const st = await fsp.lstat(path).catch(() => undefined);
  if (st?.isSymbolicLink()) throw new UnsafePathError(path, 'symlink', describeUnsafe('symlink'));
}

/** Make the rename itself durable. */
async function fsyncDir(dir: string): Promise<void> {
  const dh = await fsp.open(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
