/**
 * The last resort of a full disk (docs/DESIGN.md "Durable before interpreted"): when the crash-safe
 * write (unique tmp + rename) cannot get a new block, overwrite the existing file in its own blocks.
 * Not atomic — a crash mid-write may leave it torn — so it is used only while the journal still
 * holds the answer (wiped only once both writes succeeded), and only when the new text fits in
 * the blocks the file already owns. It keeps the bots from reading a refresh token Saxo consumed.
 */
import { constants as C, promises as fsp } from 'node:fs';

const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);

export function isNoSpace(err: unknown): boolean {
  return NO_SPACE.has((err as NodeJS.ErrnoException)?.code ?? '');
}

/** Overwrite `path` (a regular file with one link, never followed) with `data` in place; false when it does not fit. */
export async function overwriteInPlace(path: string, data: string): Promise<boolean> {
  const buf = Buffer.from(data, 'utf8');
  const fh = await fsp.open(path, C.O_WRONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.nlink !== 1) return false;
    if (buf.length > st.blocks * 512) return false; // would need a new block: the disk has none
    await fh.write(buf, 0, buf.length, 0);
    await fh.truncate(buf.length);
    await fh.sync();
    return true;
  } finally {
    await fh.close();
  }
}

/** The crash-safe write, or — on a full disk only — the same text written in place. */
export async function writeOrOverwrite(path: string, data: string, atomic: () => Promise<void>): Promise<void> {
  try {
    await atomic();
  } catch (err) {
    if (!isNoSpace(err) || !(await overwriteInPlace(path, data).catch(() => false))) throw err;
  }
}
