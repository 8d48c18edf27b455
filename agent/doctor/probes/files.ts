/**
 * Read-only file facts of the data dir: lstat of each file, leftover tmp files, free space.
 * Nothing here opens a file for writing or creates one (doctor leaves the data dir as it found it).
 */
import { promises as fsp, type Stats } from 'node:fs';
import type { Config } from '../../../core/config.js';
import { isTmpNameOf } from '../../atomic-write.js';
import type { DataDirFacts, FileInfo, TmpFile } from '../facts.js';
import { attempt } from './attempt.js';

export function fileInfo(st: Stats): FileInfo {
  const kind = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  return { kind, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ino: st.ino, dev: st.dev };
}

/** lstat; undefined when the path does not exist. */
export async function statNoFollow(path: string): Promise<FileInfo | undefined> {
  try {
    return fileInfo(await fsp.lstat(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Tmp files writers leave behind when they die mid-write: the bots' fixed `saxo_token_cache.tmp`
 * and agent/atomic-write.ts's own for the cache and the state file (its naming rule, `isTmpNameOf`).
 */
export function isTmpName(name: string, config: Pick<Config, 'cachePath' | 'statePath'>): boolean {
  return name === 'saxo_token_cache.tmp' || isTmpNameOf(config.cachePath, name) || isTmpNameOf(config.statePath, name);
}

async function listTmp(config: Config, now: number): Promise<TmpFile[]> {
  const dir = config.dataDir;
  const out: TmpFile[] = [];
  for (const name of await fsp.readdir(dir)) {
    if (!isTmpName(name, config)) continue;
    const st = await statNoFollow(`${dir}/${name}`).catch(() => undefined);
    if (st) out.push({ name, ageMs: now - st.mtimeMs });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export async function dataDirFacts(config: Config, now: number, timeoutMs: number): Promise<DataDirFacts> {
  const [dir, cache, lock, state] = await Promise.all(
    [config.dataDir, config.cachePath, config.lockPath, config.statePath].map((p) => attempt(() => statNoFollow(p), timeoutMs)),
  );
  const present = dir!.ok && dir!.value?.kind === 'dir';
  const [tmpFiles, space] = await Promise.all([
    attempt(async () => (present ? listTmp(config, now) : []), timeoutMs),
    attempt(async () => {
      if (!present) throw new Error('no data dir');
      const s = await fsp.statfs(config.dataDir);
      return { freeBytes: s.bavail * s.bsize, freeInodes: s.ffree, files: s.files };
    }, timeoutMs),
  ]);
  return { dir: dir!, cache: cache!, lock: lock!, state: state!, tmpFiles, space };
}
