/** The pure doctor checks of this host: configuration, tiers, data dir, lock, token, agent. */
import { describe, expect, it } from 'vitest';
import { can } from '../../agent/doctor/checks/data-dir.js';
import { configCheck, tiersCheck } from '../../agent/doctor/checks/config.js';
import { dataDirCheck, filesCheck, spaceCheck, tmpCheck } from '../../agent/doctor/checks/data-dir.js';
import { agentCheck, lockCheck } from '../../agent/doctor/checks/locks.js';
import { tokenCheck } from '../../agent/doctor/checks/token.js';
import { judge } from '../../agent/doctor/doctor.js';
import { tokenView } from '../../agent/doctor/checks/token.js';
import { facts, failed, file, NOW, ok, STANDALONE_ENV, token } from '../helpers/doctor-facts.js';

const GCP = { TOKEN_KEEPER_DATA_DIR: '/opt/calypso/data', GOOGLE_CLOUD_PROJECT: 'p1', TOKEN_SECRET_ID: 's' };

describe('doctor: the healthy default', () => {
  it('every check is ok (cloud-connected) — the baseline every other test changes one thing in', () => {
    expect(judge(facts()).filter((c) => c.status !== 'ok').map((c) => `${c.id}: ${c.summary}`)).toEqual([]);
  });
});

describe('doctor: configuration and tiers', () => {
  it('names the environment, the mode and whether this VM is the primary', () => {
    expect(configCheck(facts()).summary).toMatch(/^SIM via https:\/\/sim\.logonvalidation\.net; cloud-connected \(project p1, secret saxo-token, topic token-rotated, subscription token-rotated-vm1\); this VM is the primary/);
    const c = configCheck(facts({}, { ...GCP, TOKEN_KEEPER_PRIMARY: 'false', TOKEN_SUBSCRIPTION_ID: 'x' }));
    expect(c).toMatchObject({ status: 'ok' });
    expect(c.summary).toContain('this VM is not the primary (waits for Secret Manager when it is down)');
    expect(c.details).toMatchObject({ primary: false, cloudSchedulePeriodSeconds: 300 });
  });

  it('plain http to a non-loopback Saxo host fails; a LIVE/SIM mismatch and a missing subscription warn', () => {
    // Refused before doctor looks (core/config-check.ts): doctor reports it as the config check's failure.
    expect(() => facts({}, { ...STANDALONE_ENV, SAXO_AUTH_BASE_URL: 'http://10.1.2.3:8080' })).toThrow(/SAXO_AUTH_BASE_URL must be https/);
    expect(configCheck(facts({}, { ...STANDALONE_ENV, SAXO_AUTH_BASE_URL: 'http://127.0.0.1:8080' })).status).toBe('ok');
    const mismatch = configCheck(facts({}, { ...STANDALONE_ENV, SAXO_ENVIRONMENT: 'LIVE', SAXO_AUTH_BASE_URL: 'https://sim.logonvalidation.net' }));
    expect(mismatch).toMatchObject({ status: 'warn', summary: 'SAXO_ENVIRONMENT=LIVE but SAXO_AUTH_BASE_URL points at sim.logonvalidation.net' });
    const nosub = configCheck(facts({}, GCP));
    expect(nosub.status).toBe('warn');
    expect(nosub.summary).toMatch(/^no TOKEN_SUBSCRIPTION_ID/);
  });

  it('tiers: uses the newest pair\'s real life; a cloud tier above it fails with the fix', () => {
    const short = token({ issuedAt: NOW - 100_000, accessExpiresAt: NOW + 400_000 }); // 500 s usable life
    const c = tiersCheck(facts({ cache: ok({ kind: 'ok', token: short }), state: ok(undefined) }));
    expect(c.status).toBe('fail');
    expect(c.summary).toBe("CLOUD_REFRESH_THRESHOLD_SECONDS (600 s) must be below the token's usable life (500 s): it would refresh on every check");
    expect(c.fix).toBe('CLOUD_REFRESH_THRESHOLD_SECONDS=400 in /etc/token-keeper/token-keeper.env'); // above the agent's 300 s, below the 500 s life
    expect(tiersCheck(facts()).summary).toBe("cloud 600 s > agent 300 s > bots 120 s, all inside the token's usable life 19m 00s (the newest pair's)");
  });

  it('tiers: standalone ignores the (unused) cloud threshold; a Scheduler period longer than the cloud window warns', () => {
    expect(tiersCheck(facts({}, { ...STANDALONE_ENV, CLOUD_REFRESH_THRESHOLD_SECONDS: '100' })).status).toBe('ok');
    expect(tiersCheck(facts({}, { ...STANDALONE_ENV, REFRESH_THRESHOLD_SECONDS: '100' })).status).toBe('fail');
    const slow = tiersCheck(facts({}, { ...GCP, TOKEN_SUBSCRIPTION_ID: 's', CLOUD_SCHEDULE_SECONDS: '600' }));
    expect(slow.status).toBe('warn');
    expect(slow.summary).toMatch(/^CLOUD_SCHEDULE_SECONDS \(600 s\) is longer than the cloud's window \(300 s/);
  });
});

describe('doctor: data dir, judged for the bots\' user', () => {
  const bots = { uid: 1000, groups: [1000, 2000] };
  it('can(): the owner class decides even when it grants less; root reads anything', () => {
    expect(can(file({ uid: 1000, mode: 0o077 }), bots, 'r')).toBe(false);
    expect(can(file({ uid: 5, gid: 2000, mode: 0o640 }), bots, 'r')).toBe(true);
    expect(can(file({ uid: 5, gid: 2000, mode: 0o640 }), bots, 'rw')).toBe(false);
    expect(can(file({ uid: 65534, gid: 65534, mode: 0o600 }), { uid: 0, groups: [0] }, 'rw')).toBe(true);
    expect(can(file({ kind: 'dir', uid: 5, gid: 5, mode: 0o755 }), bots, 'rwx')).toBe(false);
  });

  it('a missing dir fails with the install command; a dir the bots cannot write fails with chown', () => {
    const missing = dataDirCheck(facts({ dataDir: { ...facts().dataDir, dir: ok(undefined) } }));
    expect(missing).toMatchObject({ status: 'fail', summary: 'data dir /opt/calypso/data does not exist' });
    expect(missing.fix).toBe('sudo install -d -o calypso -g calypso -m 0750 /opt/calypso/data (or TOKEN_KEEPER_CREATE_DATA_DIR=true for the agent)');
    const rootOwned = dataDirCheck(facts({ dataDir: { ...facts().dataDir, dir: ok(file({ kind: 'dir', uid: 0, gid: 0, mode: 0o755 })) } }));
    expect(rootOwned.status).toBe('fail');
    expect(rootOwned.fix).toBe('sudo chown calypso:calypso /opt/calypso/data && sudo chmod 0750 /opt/calypso/data');
    const open = dataDirCheck(facts({ dataDir: { ...facts().dataDir, dir: ok(file({ kind: 'dir', mode: 0o777 })) } }));
    expect(open).toMatchObject({ status: 'warn', fix: 'sudo chmod o-w /opt/calypso/data' });
    expect(dataDirCheck(facts({ botsUser: failed('ENOENT', 'no such user "calypso"') })).fix).toBe("npx token-keeper doctor --bots-user <the bots' user>");
  });

  it('files: 0640 via the bots\' group is fine; 0660 warns; a symlinked cache fails; a foreign owner warns', () => {
    const d = facts().dataDir;
    const withCache = (c: ReturnType<typeof file>) => filesCheck(facts({ dataDir: { ...d, cache: ok(c) } }));
    expect(withCache(file({ mode: 0o640 })).status).toBe('ok');
    expect(withCache(file({ mode: 0o660 }))).toMatchObject({ status: 'warn', fix: 'sudo chmod 0600 /opt/calypso/data/saxo_token_cache.json' });
    expect(withCache(file({ kind: 'symlink', mode: 0o777 })).summary).toBe('the cache is a symlink (the agent never follows one)');
    const foreign = withCache(file({ uid: 7, gid: 1000, mode: 0o660 }));
    expect(foreign.status).toBe('warn');
    expect(foreign.summary).toContain("the cache belongs to 7:calypso(1000), not the bots' user calypso");
    const state = filesCheck(facts({ dataDir: { ...d, state: ok(file({ mode: 0o604 })) } }));
    expect(state).toMatchObject({ status: 'fail', summary: 'the agent state file has mode 0604: every user on this host can read the token (want 0600)' });
  });

  it('tmp files: a write in progress is fine, one older than a minute is stale; space thresholds', () => {
    const d = facts().dataDir;
    expect(tmpCheck(facts({ dataDir: { ...d, tmpFiles: ok([{ name: 'saxo_token_cache.tmp', ageMs: 50 }]) } })).summary).toBe('1 tmp file(s) of a write in progress');
    expect(tmpCheck(facts({ dataDir: { ...d, tmpFiles: ok([{ name: 'saxo_token_cache.tmp', ageMs: 61_000 }]) } }))).toMatchObject({
      status: 'warn',
      fix: 'rm -f /opt/calypso/data/saxo_token_cache.tmp',
    });
    expect(spaceCheck(facts({ dataDir: { ...d, space: ok({ freeBytes: 10 * 1024 ** 2, freeInodes: 9, files: 1000 }) } })).status).toBe('warn');
    expect(spaceCheck(facts({ dataDir: { ...d, space: ok({ freeBytes: 10 * 1024 ** 3, freeInodes: 0, files: 1000 }) } })).status).toBe('fail');
  });

  it('space: a filesystem that allocates inodes on demand (btrfs: 0 total, 0 free) is not out of inodes', () => {
    const d = facts().dataDir;
    const btrfs = spaceCheck(facts({ dataDir: { ...d, space: ok({ freeBytes: 10 * 1024 ** 3, freeInodes: 0, files: 0 }) } }));
    expect(btrfs).toMatchObject({ status: 'ok', summary: '10240 MiB free (inodes allocated on demand)' });
    expect(spaceCheck(facts({ dataDir: { ...d, space: ok({ freeBytes: 1000, freeInodes: 0, files: 0 }) } })).status).toBe('fail');
  });

  it('a data dir doctor may not stat (EACCES on a parent) is not "missing": run doctor as the bots\' user or root', () => {
    const denied = facts({ dataDir: { ...facts().dataDir, dir: failed('EACCES', "EACCES: permission denied, lstat '/opt/calypso/data'") } });
    const c = dataDirCheck(denied);
    expect(c.status).toBe('warn');
    expect(c.summary).toBe('cannot stat /opt/calypso/data as this user (EACCES): a parent directory is closed to it, so doctor cannot judge the data dir');
    expect(c.fix).toMatch(/^run doctor as the bots' user or root: sudo -u calypso npx token-keeper doctor /);
    expect(c.fix).not.toContain('install -d');
    expect(filesCheck(denied)).toMatchObject({ status: 'skip' });
    expect(filesCheck(denied).summary).toMatch(/^cannot stat the data dir: EACCES/);
  });

  it('ReadWritePaths=/StateDirectory= matter only where ProtectSystem= makes the data dir read-only', () => {
    const unit = (protectSystem: 'no' | 'yes' | 'full' | 'strict', readWritePaths: string[] = []) => ({ path: '/u', readWritePaths, stateDirectories: [], protectSystem });
    expect(dataDirCheck(facts({ unit: unit('no') })).status).toBe('ok');
    expect(dataDirCheck(facts({ unit: unit('full') })).status).toBe('ok'); // /opt stays writable under full
    const strict = dataDirCheck(facts({ unit: unit('strict') }));
    expect(strict).toMatchObject({ status: 'fail', fix: 'sudo systemctl edit token-keeper  # [Service] ReadWritePaths=/opt/calypso/data' });
    expect(strict.summary).toBe("the unit's ReadWritePaths=/StateDirectory= (none) do not include /opt/calypso/data: under ProtectSystem=strict the agent cannot write there");
    expect(dataDirCheck(facts({ unit: unit('strict', ['/opt/calypso']) })).status).toBe('ok');
    const etc = { ...STANDALONE_ENV, TOKEN_KEEPER_DATA_DIR: '/etc/calypso' };
    expect(dataDirCheck(facts({ unit: unit('full') }, etc)).summary).toContain('under ProtectSystem=full the agent cannot write there');
    expect(dataDirCheck(facts({ unit: unit('yes') }, etc)).status).toBe('ok');
  });
});

describe('doctor: lock, token, agent', () => {
  it('a lock held by a process in another pid namespace still says what to look at', () => {
    const c = lockCheck(facts({ lock: { state: 'held', holders: [{ pid: 0, type: 'FLOCK' }] } }));
    expect(c).toMatchObject({ status: 'warn', fix: 'cat /proc/locks' });
    expect(c.summary).toContain('held by a process in another pid namespace');
  });

  it('token: none anywhere, expired, flagged by the agent, a stale cache, no app key', () => {
    const none = tokenCheck(facts({ cache: ok({ kind: 'missing' }), state: ok(undefined), secret: { ...facts().secret!, latest: ok(undefined) } }));
    expect(none).toMatchObject({ status: 'fail', summary: 'no token in the cache, the agent state or the secret', fix: 'npx token-keeper login' });
    const exp = token({ accessExpiresAt: NOW - 30_000, generation: 8, accessToken: 'a2', refreshToken: 'r2' });
    expect(tokenCheck(facts({ cache: ok({ kind: 'ok', token: exp }) })).summary).toMatch(/^the access token expired 30 s ago and nobody refreshed it/);
    const healthy = facts();
    const flagged = facts({
      state: ok({ ...(healthy.state as { ok: true; value: { failures: number } }).value, failures: 1, loginRequired: true }),
      secret: { ...healthy.secret!, latest: ok(undefined) },
    });
    expect(tokenCheck(flagged)).toMatchObject({ status: 'fail', fix: 'npx token-keeper login' });
    expect(tokenCheck(flagged).summary).toMatch(/^the agent recorded that Saxo rejected the newest refresh token \(login required\); the secret holds an older pair/);
    const older = token({ generation: 6, refreshToken: 'r-old' });
    const stale = tokenCheck(facts({ cache: ok({ kind: 'ok', token: older }) }));
    expect(stale.status).toBe('warn');
    expect(stale.summary).toContain('the cache holds an older pair than the newest');
    const keyless = token({ appKey: undefined });
    expect(tokenCheck(facts({ cache: ok({ kind: 'ok', token: keyless }), state: ok(undefined), secret: undefined }, STANDALONE_ENV)).summary).toMatch(/^no app key/);
  });

  it('token: an unreadable cache (EACCES) is named with its errno and the access fix, never "login" or "none"', () => {
    const eacces = ok({ kind: 'unreadable' as const, code: 'EACCES', reason: 'EACCES reading /opt/calypso/data/saxo_token_cache.json' });
    const chown = 'sudo chown calypso:calypso /opt/calypso/data/saxo_token_cache.json && sudo chmod 0600 /opt/calypso/data/saxo_token_cache.json';
    // With a good agent state: the pair is known, but what the bots see is not.
    const withState = tokenCheck(facts({ cache: eacces }));
    expect(withState.status).toBe('warn');
    expect(withState.summary).toMatch(/^cannot read the cache \/opt\/calypso\/data\/saxo_token_cache\.json \(EACCES\): doctor cannot tell what the bots see/);
    expect(withState.details).toMatchObject({ sources: { cache: null, state: 7, secret: 7 } });
    expect(withState.fix).toBe(`run doctor as the bots' user or root (sudo -u calypso npx token-keeper doctor); if the bots cannot read it either, give the file back: ${chown}`);
    // With an unreadable state too, in standalone: nothing was read, so no login is proposed.
    const neither = tokenCheck(facts({ cache: eacces, state: failed('EACCES', 'EACCES: permission denied'), secret: undefined }, STANDALONE_ENV));
    expect(neither.status).toBe('warn');
    expect(neither.summary).toMatch(/^no token in what doctor could read \(cannot read the cache .* \(EACCES\); cannot read the agent state file .*\(EACCES\)\)/);
    expect(neither.fix).toContain(chown);
    expect(neither.fix).not.toContain('login');
    // An unreadable agent state alone: the cache and the secret answer for the token (agent warns).
    const state = tokenCheck(facts({ state: failed('EACCES', 'EACCES: permission denied') }));
    expect(state).toMatchObject({ status: 'ok' });
    expect(state.summary).toContain('(cache gen 7, state unreadable (EACCES), secret gen 7)');
  });

  it('token: login is proposed only when every source was read — not when the secret did not answer', () => {
    const empty = { cache: ok({ kind: 'missing' as const }), state: ok(undefined) };
    const down = tokenCheck(facts({ ...empty, secret: { ...facts().secret!, latest: failed('UNAVAILABLE') } }));
    expect(down).toMatchObject({ status: 'fail', fix: 'see secret-manager' });
    expect(down.summary).toBe('no token in what doctor could read (the secret did not answer): the newest pair may be there, so no login is proposed yet');
    const read = tokenCheck(facts({ ...empty, secret: { ...facts().secret!, latest: ok(undefined) } }));
    expect(read).toMatchObject({ status: 'fail', fix: 'npx token-keeper login' });
  });

  it('the checks read the one token view of the facts (computed once, by gather)', () => {
    const f = facts();
    const older = token({ generation: 3, accessExpiresAt: NOW + 100_000 });
    const view = tokenView({ ...f, cache: ok({ kind: 'ok', token: older }), state: ok(undefined), secret: undefined });
    expect(tokenCheck({ ...f, view }).summary).toMatch(/^only 100 s left: inside the agent's threshold/);
  });

  it('token: the healthy summary names every source and never the token text', () => {
    const c = tokenCheck(facts());
    expect(c.summary).toBe(
      'newest: gen 7 from the cache (cache gen 7, state gen 7, secret gen 7); access 16m 40s left; refresh 56m 40s left; obtained by cloud:rev:ab 2m 20s ago; last refresh 2m 20s ago by cloud:rev:ab; chain started 77h 00m ago (login)',
    );
    expect(c.details).toMatchObject({ chainAgeSeconds: 77 * 3600 });
    const unknown = tokenCheck(facts({ cache: ok({ kind: 'ok', token: token({ chainStartedAt: undefined }) }) }));
    expect(unknown.summary).toMatch(/; chain start unknown \(a bot wrote a pair of this chain, or the login predates token-keeper\)$/);
    expect(JSON.stringify(c)).not.toMatch(/sa_unit|sr_unit|unit-app-secret/);
  });

  it('agent: not running fails; running but silent warns; failures at MAX_REFRESH_FAILURES fail', () => {
    expect(agentCheck(facts({ instance: { state: 'free' } }))).toMatchObject({ status: 'fail', fix: 'sudo systemctl enable --now token-keeper; journalctl -u token-keeper -n 50' });
    const silent = agentCheck(facts({ state: ok({ failures: 0, agentSeenAt: NOW - 600_000 }) }));
    expect(silent.status).toBe('warn');
    expect(silent.summary).toBe('running but last seen 10m 00s ago (expected every 60 s): its check loop may be stuck');
    expect(agentCheck(facts({ state: ok({ failures: 5, agentSeenAt: NOW }) })).status).toBe('fail');
    expect(agentCheck(facts({ state: ok({ failures: 2, agentSeenAt: NOW }) })).status).toBe('warn');
    expect(agentCheck(facts({ instance: { state: 'unknown', reason: 'no /proc' } })).status).toBe('ok');
    expect(agentCheck(facts()).summary).toBe('running: pid 4242 (node /opt/token-keeper/bin/token-keeper.js agent); last seen 20 s ago; 0 consecutive failures');
  });
});
