/**
 * doctor asks the system where it answers: `systemctl show` for the unit (a stand-in systemctl on
 * PATH prints what systemd 252 prints; this container has no systemd, so the real one fails and the
 * files are parsed), `getent` for users and groups, `lslocks -J` for lock holders (else /proc/locks).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireFlock } from '../../agent/flock.js';
import { deployment } from '../../agent/deployment.js';
import { fileInfo, probeHeld } from '../../agent/lock-holders.js';
import { probeFlock } from '../../agent/doctor/checks/locks.js';
import { botsUser, nameMaps, readUnit } from '../../agent/doctor/system.js';

describe('doctor: what the system says', () => {
  let dir: string;
  const path = process.env.PATH;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tk-doctor-system-'));
  });
  afterAll(() => {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A systemctl that answers `show` as systemd does for a loaded unit at `fragment`. */
  function fakeSystemctl(fragment: string): void {
    const out = ['Group=', 'ProtectSystem=strict', 'ReadWritePaths=-/srv/live', 'StateDirectory=token-keeper/live', 'User=calypso', 'LoadState=loaded', `FragmentPath=${fragment}`];
    writeFileSync(join(dir, 'systemctl'), `#!/bin/sh\nprintf '%s\\n' ${out.map((l) => `'${l}'`).join(' ')}\n`);
    chmodSync(join(dir, 'systemctl'), 0o755);
    process.env.PATH = `${dir}:${path}`;
  }

  it("systemd's view of the unit when it has the judged file loaded; the file (with drop-ins) otherwise", async () => {
    const unitPath = join(dir, 'token-keeper@.service');
    const d = deployment('live', unitPath, { unitDir: dir, etcDir: dir, stateDir: '/var/lib' });
    fakeSystemctl(unitPath);
    // No file on disk: the answer can only come from systemctl.
    expect(await readUnit(d)).toEqual({ path: unitPath, user: 'calypso', readWritePaths: ['/srv/live'], stateDirectories: ['/var/lib/token-keeper/live'], protectSystem: 'strict' });
    fakeSystemctl('/lib/systemd/system/token-keeper@.service'); // systemd loaded another file: judge the given one
    expect(await readUnit(d)).toBeUndefined();
    writeFileSync(unitPath, '[Service]\nUser=bots\n');
    expect(await readUnit(d)).toMatchObject({ user: 'bots', protectSystem: 'no' });
    process.env.PATH = path;
    expect(await readUnit(d)).toMatchObject({ user: 'bots' }); // no systemd here: the file
  });

  it('getent: a user by name or uid, its groups; names for display', async () => {
    const names = await nameMaps();
    expect(names.users[0]).toBe('root');
    expect(names.groupIds.root).toBe(0);
    expect(await botsUser({ flag: '0', unitPath: '/nope' }, names.groupIds)).toMatchObject({ name: 'root', uid: 0, gid: 0, groups: [0], basis: '--bots-user' });
    await expect(botsUser({ flag: 'no-such-user-tk', unitPath: '/nope' }, names.groupIds)).rejects.toThrow('no such user "no-such-user-tk" (--bots-user)');
    const unit = { path: '/u', user: 'root', group: 'no-such-group-tk', readWritePaths: [], stateDirectories: [], protectSystem: 'no' as const };
    await expect(botsUser({ unit, unitPath: '/u' }, names.groupIds)).rejects.toThrow('no such group "no-such-group-tk" (User= in /u)');
  });

  // Re-homed from test/unit/doctor-probes.test.ts: looking up a holder runs lslocks (a process).
  it('probeFlock: free, held (with this process as the holder), missing (the file is not created)', async () => {
    const lock = join(dir, 'saxo_token.lock');
    expect(await probeFlock(lock, undefined)).toEqual({ state: 'missing' });
    expect(existsSync(lock)).toBe(false);
    writeFileSync(lock, '');
    const info = fileInfo(statSync(lock));
    expect((await probeFlock(lock, info)).state).toBe('free');
    const held = await acquireFlock(lock, { timeoutMs: 0 });
    try {
      const p = await probeFlock(lock, info);
      expect(p).toMatchObject({ state: 'held', holders: [{ pid: process.pid, type: 'FLOCK' }] });
      expect(await probeHeld(info)).toMatchObject({ state: 'held', holders: [{ pid: process.pid }] });
    } finally {
      await held.release();
    }
    expect(await probeHeld(info)).toEqual({ state: 'free' });
    expect(await probeHeld(info, join(dir, 'no-proc-locks'))).toMatchObject({ state: 'unknown' });
  });

  it('lock holders from lslocks -J, and from a /proc/locks file where lslocks is not used', async () => {
    const lock = join(dir, 'held.lock');
    writeFileSync(lock, '');
    const info = fileInfo(statSync(lock));
    const held = await acquireFlock(lock, { timeoutMs: 0 });
    try {
      expect(await probeHeld(info)).toMatchObject({ state: 'held', holders: [{ pid: process.pid, type: 'FLOCK', command: expect.stringContaining('node') }] });
      expect(await probeHeld(info, '/proc/locks')).toMatchObject({ state: 'held', holders: [{ pid: process.pid }] });
    } finally {
      await held.release();
    }
    expect(await probeHeld(info)).toEqual({ state: 'free' });
  });
});
