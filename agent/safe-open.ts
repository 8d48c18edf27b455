/**
 * Opening a file in the data dir without trusting its last path component (docs/DESIGN.md "No
 * planted link is followed"). The data dir belongs to the bots' user, who can put anything at any
 * name in it: a symlink to a root-owned file, a FIFO, a directory, a hard link, a 50 MB file. Every
 * file the agent opens there — the bots' lock, its own state and instance lock, the cache, tmp
 * files, the journal — goes through here: O_NOFOLLOW (a symlink is refused, a dangling one creates
 * nothing), O_NONBLOCK (a FIFO never blocks the open), then fstat on the descriptor: a regular file
 * with exactly one link, or refused with an UnsafePathError naming the path and what it is.
 * A symlinked data dir itself is fine: only the last component is checked.
 */
import { constants as C, closeSync, fstatSync, lstatSync, openSync, promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

export type UnsafeKind = 'symlink' | 'fifo' | 'directory' | 'socket' | 'device' | 'hard-linked' | 'oversize';

/** One clear line: the path, what is there, that it was refused and what to do (never its content). */
export class UnsafePathError extends Error {
  override readonly name = 'UnsafePathError';
  constructor(
    readonly path: string,
    readonly kind: UnsafeKind,
    readonly detail: string,
  ) {
    super(`refusing ${path}: ${detail}; remove it`);
  }
}

export interface SafeOpenOptions {
  /** Refuse a file larger than this (reads of small files). */
  maxBytes?: number;
}

const NEVER_FOLLOW = C.O_NOFOLLOW | C.O_NONBLOCK;

/** What a refused name is, in words an operator can act on. */
export function describeUnsafe(kind: UnsafeKind, extra = ''): string {
  switch (kind) {
    case 'symlink':
      return 'symlink (a link is never followed)';
    case 'hard-linked':
      return `hard-linked (${extra} links; a file that has another name is never used)`;
    case 'oversize':
      return `oversize (${extra})`;
    default:
      return `${kind} (not a regular file)`;
  }
}

function refuse(path: string, kind: UnsafeKind, extra = ''): UnsafePathError {
  return new UnsafePathError(path, kind, describeUnsafe(kind, extra));
}

function kindOf(st: Stats): UnsafeKind | undefined {
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isDirectory()) return 'directory';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'device';
  return undefined;
}

/** The descriptor's file must be regular, singly linked and (when bounded) small. */
export function check(path: string, st: Stats, opts: SafeOpenOptions): void {
  const k = kindOf(st);
  if (k) throw refuse(path, k);
  // nlink 0 is the file we opened being replaced by a rename (a bot's or our own atomic write)
  // between open and fstat: what we read is that whole, older file — never a reason to refuse it
  // (a refused cache would be "repaired" over the bot's newer pair). Two or more is a planted link.
  if (st.nlink > 1) throw refuse(path, 'hard-linked', String(st.nlink));
  if (opts.maxBytes !== undefined && st.size > opts.maxBytes) throw refuse(path, 'oversize', `${st.size} bytes, limit ${opts.maxBytes}`);
}

/** An open error that is really a bad shape at the name (ELOOP: a symlink; ENXIO: a FIFO or socket with no peer). */
function openError(path: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EISDIR') return refuse(path, 'directory');
  if (code !== 'ELOOP' && code !== 'ENXIO') return err;
  const st = lstatSync(path, { throwIfNoEntry: false });
  const k = st && kindOf(st);
  return k ? refuse(path, k) : err;
}

/**
 * Open `path` (flags as for open(2); O_NOFOLLOW and O_NONBLOCK are always added — O_NONBLOCK has no
 * effect on a regular file) and return the descriptor of a regular, singly linked file; otherwise
 * close it and throw UnsafePathError. Other errors (ENOENT, EACCES, EEXIST) are thrown as they are.
 */
export function openRegularNoFollowSync(path: string, flags: number, mode = 0o600, opts: SafeOpenOptions = {}): number {
  let fd: number;
  try {
    fd = openSync(path, flags | NEVER_FOLLOW, mode);
  } catch (err) {
    throw openError(path, err);
  }
  try {
    check(path, fstatSync(fd), opts);
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** The same as a FileHandle (fh.chown is fchown, fh.sync is fsync: everything goes through the descriptor). */
export async function openRegularNoFollow(path: string, flags: number, mode = 0o600, opts: SafeOpenOptions = {}): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(path, flags | NEVER_FOLLOW, mode);
  } catch (err) {
    throw openError(path, err);
  }
  try {
    check(path, await fh.stat(), opts);
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

export type SafeRead =
  | { kind: 'ok'; text: string }
  | { kind: 'missing' }
  | { kind: 'unusable'; unsafe: UnsafeKind; reason: string };

/**
 * Read a small regular file at `path` through openRegularNoFollow. A bad shape is reported (not
 * thrown) with what it is; other IO errors (EACCES, EIO) are thrown. At most `maxBytes` are read
 * even if the file grows meanwhile.
 */
export async function readRegularNoFollow(path: string, maxBytes: number): Promise<SafeRead> {
  let fh: FileHandle;
  try {
    fh = await openRegularNoFollow(path, C.O_RDONLY, 0, { maxBytes });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    if (err instanceof UnsafePathError) return { kind: 'unusable', unsafe: err.kind, reason: err.detail };
    throw err;
  }
  try {
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > maxBytes) return { kind: 'unusable', unsafe: 'oversize', reason: describeUnsafe('oversize', `more than ${maxBytes} bytes`) };
    }
    return { kind: 'ok', text: buf.subarray(0, n).toString('utf8') };
  } finally {
    await fh.close();
  }
}
