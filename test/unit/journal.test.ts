/**
 * agent/journal.ts on real files: reserved (0600, fixed size, zeros) when room is checked; an
 * entry read back exactly; wiped to zeros; a planted symlink, hard link or FIFO refused; no room
 * reported with the path and the free space.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { linkSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createJournal, JOURNAL_BYTES } from '../../agent/journal.js';
import type { JournalEntry } from '../../core/ports.js';

const dirs: string[] = [];
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), 'tk-journal-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const TOKEN = 'sr_journal-refresh-token-0123456789abcdef';
const entry = (text = JSON.stringify({ access_token: 'sa_x', refresh_token: TOKEN, expires_in: 1200 })): JournalEntry => ({
  v: 1,
  at: 1_800_000_000_000,
  presented: { pairId: '0123456789abcdef', generation: 3 },
  raw: { status: 201, contentType: 'application/json', retryAfter: null, date: 'Mon, 07 Dec 2026 10:00:00 GMT', text },
});

describe('journal adapter', () => {
  it('room() reserves a 0600 file of zeros; record/pending round-trip; wipe leaves only zeros', async () => {
    const path = join(dir(), 'token-keeper.journal');
    const j = createJournal(path);
    expect(await j.pending()).toBeUndefined(); // no file yet
    expect(await j.room()).toEqual({ ok: true });
    const st = statSync(path);
    expect(st.size).toBe(JOURNAL_BYTES);
    expect(st.mode & 0o777).toBe(0o600);
    expect(readFileSync(path).every((b) => b === 0)).toBe(true);
    expect(await j.pending()).toBeUndefined();

    const e = entry();
    await j.record(e);
    expect(statSync(path).size).toBe(JOURNAL_BYTES); // written in place, no new blocks
    expect(await j.pending()).toEqual(e);
    await j.record(entry('{"short":1}')); // a shorter entry leaves nothing of the longer one behind
    expect(readFileSync(path).includes(Buffer.from(TOKEN))).toBe(false);
    await j.record(e);

    await j.wipe();
    const bytes = readFileSync(path);
    expect(bytes.length).toBe(JOURNAL_BYTES);
    expect(bytes.every((b) => b === 0)).toBe(true);
    expect(await j.pending()).toBeUndefined();
  });

  it('an answer bigger than the reservation is still kept whole', async () => {
    const j = createJournal(join(dir(), 'j'), { size: 4096 });
    const big = entry(JSON.stringify({ refresh_token: TOKEN, filler: 'x'.repeat(10_000) }));
    await j.record(big);
    expect(await j.pending()).toEqual(big);
    await j.wipe();
    expect(await j.pending()).toBeUndefined();
  });

  it('a planted symlink, a hard link or a FIFO is refused, never followed', async () => {
    const d = dir();
    const target = join(d, 'root-only-file');
    writeFileSync(target, 'precious', { mode: 0o600 });
    symlinkSync(target, join(d, 'sym.journal'));
    const viaLink = createJournal(join(d, 'sym.journal'));
    expect(await viaLink.room()).toMatchObject({ ok: false, reason: expect.stringMatching(/symlink: refused/) });
    await expect(viaLink.record(entry())).rejects.toThrow(/symlink: refused/);
    expect(readFileSync(target, 'utf8')).toBe('precious');

    linkSync(target, join(d, 'hard.journal'));
    expect(await createJournal(join(d, 'hard.journal')).room()).toMatchObject({ ok: false, reason: expect.stringMatching(/one link: refused/) });
    expect(readFileSync(target, 'utf8')).toBe('precious');

    execFileSync('mkfifo', [join(d, 'fifo.journal')]);
    expect(await createJournal(join(d, 'fifo.journal')).room()).toMatchObject({ ok: false, reason: expect.stringMatching(/not a regular file/) });
  });

  it('no room when the data dir cannot take the cache and state writes: names the path and the free space', async () => {
    const d = dir();
    const j = createJournal(join(d, 'token-keeper.journal'), { writeRoomBytes: Number.MAX_SAFE_INTEGER });
    const r = await j.room();
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(new RegExp(`no room for the successor: \\d+ bytes free in ${d}`));
  });

  it('no room when the journal cannot be created (read-only dir is simulated by a missing one)', async () => {
    const r = await createJournal(join(dir(), 'missing', 'token-keeper.journal')).room();
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/cannot reserve the journal .*ENOENT/) });
  });
});

describe('in-place overwrite (a full disk only)', () => {
  it('writes over the file\'s own blocks, shorter text leaves nothing behind; never through a symlink; refuses what does not fit', async () => {
    const { overwriteInPlace, writeOrOverwrite } = await import('../../agent/in-place-write.js');
    const d = dir();
    const path = join(d, 'saxo_token_cache.json');
    writeFileSync(path, JSON.stringify({ refresh_token: TOKEN, pad: 'p'.repeat(200) }), { mode: 0o600 });
    const ino = statSync(path).ino;
    expect(await overwriteInPlace(path, '{"refresh_token":"sr_next"}')).toBe(true);
    expect(readFileSync(path, 'utf8')).toBe('{"refresh_token":"sr_next"}');
    expect(statSync(path).ino).toBe(ino);
    expect(await overwriteInPlace(path, 'x'.repeat(1 << 20))).toBe(false); // more than its blocks
    symlinkSync(path, join(d, 'link'));
    await expect(overwriteInPlace(join(d, 'link'), '{}')).rejects.toMatchObject({ code: 'ELOOP' });
    // Only ENOSPC/EDQUOT fall back; any other failure of the crash-safe write stands.
    const fail = (code: string) => () => Promise.reject(Object.assign(new Error(code), { code }));
    await expect(writeOrOverwrite(path, '{"a":1}', fail('EACCES'))).rejects.toMatchObject({ code: 'EACCES' });
    await writeOrOverwrite(path, '{"a":1}', fail('ENOSPC'));
    expect(readFileSync(path, 'utf8')).toBe('{"a":1}');
  });
});
