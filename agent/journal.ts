/**
 * The agent's journal (docs/DESIGN.md "Durable before interpreted"): one fixed-size 0600 file in
 * the data dir where a 2xx from Saxo is written, fsynced, before anything parses it. Pre-allocated
 * (zeros, fsynced) when room is checked, so that a full disk is found before a refresh token is
 * presented, never after; an entry overwrites those blocks in place. Wiped (zeros, fsync) as soon
 * as the successor is durable in the cache and the state file: it never holds a token longer.
 * Opened with O_NOFOLLOW and accepted only as a regular file with one link.
 */
import { constants as C, promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import { successorFrom } from '../core/grant.js';
import type { Journal, JournalEntry, Room } from '../core/ports.js';
import { pairId, type TokenSet } from '../core/token.js';
import { handOver } from './file-owner.js';

/** The journal's name in the data dir. */
export const JOURNAL_NAME = 'token-keeper.journal';

/** Room for one answer (Saxo's is ~1–2 KB). A bigger 2xx is written all the same, growing the file. */
export const JOURNAL_BYTES = 16 * 1024;
/**
 * Free space the data dir must still have besides the journal before presenting: the cache's and
 * the state file's crash-safe writes each need a new tmp file (a page or two on tmpfs/ext4).
 */
export const WRITE_ROOM_BYTES = 16 * 1024;

export class JournalFileError extends Error {
  override readonly name = 'JournalFileError';
}

export function createJournal(path: string, opts: { size?: number; writeRoomBytes?: number } = {}): Journal {
  const size = opts.size ?? JOURNAL_BYTES;
  const writeRoom = opts.writeRoomBytes ?? WRITE_ROOM_BYTES;

  /** Our own minimal safe open (the integrator unifies it with agent/safe-open.ts). */
  async function open(create: boolean, readOnly = false): Promise<fsp.FileHandle | undefined> {
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, (readOnly ? C.O_RDONLY : C.O_RDWR) | C.O_NOFOLLOW | C.O_NONBLOCK | (create ? C.O_CREAT : 0), 0o600);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && !create) return undefined;
      if (code === 'ELOOP') throw new JournalFileError(`${path} is a symlink: refused (remove it)`);
      throw e;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.nlink !== 1) throw new JournalFileError(`${path} is not a regular file with one link: refused (remove it)`);
      if (!readOnly) {
        if ((st.mode & 0o777) !== 0o600) await fh.chmod(0o600);
        await handOver(fh, path);
      }
      return fh;
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async function freeBytes(): Promise<number | undefined> {
    try {
      const st = await fsp.statfs(dirname(path));
      return st.bavail * st.bsize;
    } catch {
      return undefined;
    }
  }

  const room = async (): Promise<Room> => {
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await open(true);
      const st = await fh!.stat();
      if (st.size < size) {
        // Pre-allocate with real zeros (tmpfs and ext4 then own the blocks) and make it durable.
        await fh!.write(Buffer.alloc(size - st.size), 0, size - st.size, st.size);
        await fh!.sync();
      }
    } catch (e) {
      await fh?.close().catch(() => undefined);
      const code = (e as NodeJS.ErrnoException).code;
      const free = await freeBytes();
      return { ok: false, reason: `no room for the successor: cannot reserve the journal ${path} (${code ?? (e as Error).message})${free !== undefined ? `; ${free} bytes free in ${dirname(path)}` : ''}` };
    }
    await fh?.close();
    const free = await freeBytes();
    if (free !== undefined && free < writeRoom) {
      return { ok: false, reason: `no room for the successor: ${free} bytes free in ${dirname(path)} (the cache and state writes need ${writeRoom})` };
    }
    return { ok: true };
  };

  /** Overwrite the whole reserved area: the entry, then zeros (no old bytes survive behind it). */
  async function put(fh: fsp.FileHandle, data: Buffer): Promise<void> {
    const buf = Buffer.alloc(Math.max(size, data.length + 1));
    data.copy(buf);
    await fh.write(buf, 0, buf.length, 0);
    await fh.sync();
  }

  const record = async (entry: JournalEntry): Promise<void> => {
    const fh = await open(true);
    try {
      await put(fh!, Buffer.from(JSON.stringify(entry), 'utf8'));
    } finally {
      await fh!.close();
    }
  };

  const pending = async (): Promise<JournalEntry | undefined> => {
    const fh = await open(false, true); // a reader (status) changes nothing
    if (!fh) return undefined;
    try {
      const buf = await fh.readFile();
      const end = buf.indexOf(0);
      const text = buf.subarray(0, end < 0 ? buf.length : end).toString('utf8');
      if (text.trim() === '') return undefined;
      const v = JSON.parse(text) as JournalEntry;
      if (v?.v !== 1 || typeof v.at !== 'number' || typeof v.presented?.pairId !== 'string' || typeof v.raw?.text !== 'string') {
        throw new JournalFileError(`${path}: not a journal entry`);
      }
      return v;
    } finally {
      await fh.close();
    }
  };

  const wipe = async (): Promise<void> => {
    const fh = await open(false);
    if (!fh) return;
    try {
      const st = await fh.stat();
      await fh.write(Buffer.alloc(Math.max(size, st.size)), 0, Math.max(size, st.size), 0);
      await fh.sync();
    } finally {
      await fh.close();
    }
  };

  return { path, room, record, pending, wipe };
}

export type JournalView =
  | { kind: 'none' }
  | { kind: 'pair'; next: TokenSet }
  | { kind: 'ended'; why: string }
  | { kind: 'unreadable'; reason: string };

/**
 * What an unfinished refresh left in the journal, read (never written) with the interpreter the
 * agent uses — for `status`, which must not call a chain healthy or dead without it.
 */
export async function peekJournal(journal: Journal, candidates: (TokenSet | undefined)[], source: string, marginMs: number): Promise<JournalView> {
  let entry: JournalEntry | undefined;
  try {
    entry = await journal.pending();
  } catch (err) {
    return { kind: 'unreadable', reason: `${journal.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  if (!entry) return { kind: 'none' };
  const presented = candidates.find((t) => t && pairId(t.refreshToken) === entry.presented.pairId);
  const succ = successorFrom(entry, presented, source, marginMs);
  return succ.kind === 'pair' ? { kind: 'pair', next: succ.next } : { kind: 'ended', why: succ.why };
}
