/**
 * `token-keeper doctor --json` as a real process in standalone mode (no GCP): a dead refresh
 * token, a due one Saxo could refresh (doctor must not), a data dir doctor must leave untouched,
 * the installed unit's User=/ReadWritePaths=, leftover tmp files, a world-readable cache, a
 * configuration that does not parse. Saxo is the plain-HTTP stand-in on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import { doctorReport } from '../../agent/doctor/command.js';
import { CHECK_IDS } from '../../agent/doctor/doctor.js';
import type { TokenSet } from '../../core/token.js';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { APP_KEY, APP_SECRET, pair, runDoctor } from '../helpers/doctor-rig.js';

const REPO = join(import.meta.dirname, '../..');

describe('doctor (standalone)', () => {
  let tmp: string;
  let saxo: SaxoStandin;
  let n = 0;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'tk-doctor-sa-'));
    saxo = await startSaxoStandin({ clients: { [APP_KEY]: APP_SECRET } });
  });
  afterAll(async () => {
    await saxo?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  async function dataDir(cache?: TokenSet, opts: { lock?: boolean; state?: boolean } = {}): Promise<string> {
    const dir = join(tmp, `d${n++}`);
    mkdirSync(dir, { mode: 0o750 });
    if (cache) await createCacheFile(join(dir, 'saxo_token_cache.json')).write(cache);
    if (cache && opts.state) await createStateFile(join(dir, '.token-keeper-state.json')).write({ token: cache, failures: 0, agentSeenAt: Date.now() - 3_600_000 });
    if (opts.lock) writeFileSync(join(dir, 'saxo_token.lock'), '', { mode: 0o600 });
    return dir;
  }

  const env = (dir: string, extra: Record<string, string | undefined> = {}) => ({
    TOKEN_KEEPER_DATA_DIR: dir,
    GOOGLE_CLOUD_PROJECT: undefined,
    GCLOUD_PROJECT: undefined,
    TOKEN_SECRET_ID: undefined,
    TOKEN_SUBSCRIPTION_ID: undefined,
    SECRET_MANAGER_EMULATOR_HOST: undefined,
    SAXO_AUTH_BASE_URL: saxo.url,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    ...extra,
  });

  it('a dead refresh token: token fails with "login" as the fix (exit 2); GCP checks skip as standalone', async () => {
    const dead = pair({ accessLeftSec: -1500, refreshLeftSec: -10 });
    const r = await runDoctor(env(await dataDir(dead, { lock: true, state: true })));
    expect(r.code).toBe(2);
    expect(r.check('token')).toMatchObject({ status: 'fail', fix: 'npx token-keeper login' });
    // 10 s when seeded, plus doctor's own start-up (over a second on a loaded 2-core machine).
    expect(r.check('token').summary).toMatch(/^the newest refresh token expired 1[0-4] s ago: the chain is dead/);
    expect(r.report.mode).toBe('standalone');
    for (const id of ['secret-manager', 'secret-manager.iam', 'pubsub.topic', 'pubsub.subscription', 'pubsub.iam', 'clock', 'cloud-path']) {
      expect(r.check(id).status, id).toBe('skip');
    }
    expect(r.check('pubsub.topic').summary).toBe('standalone: no Pub/Sub');
    expect(r.check('saxo')).toMatchObject({ status: 'skip' });
    expect(r.check('saxo').summary).toMatch(new RegExp(`^plain HTTP on loopback \\(${saxo.url}, a stand-in\\): TLS check skipped; TCP connect ok in \\d+ ms$`));
    expect(r.check('agent')).toMatchObject({ status: 'fail', fix: 'sudo systemctl enable --now token-keeper; journalctl -u token-keeper -n 50' });
    expect(r.check('agent').summary).toMatch(/^not running, last seen 60m 0\ds ago/);
  });

  it('a due token Saxo would accept: doctor warns and presents nothing (the stand-in counts 0)', async () => {
    const issued = saxo.issue(APP_KEY);
    const due = pair({ accessLeftSec: 100, access: issued.access_token, refresh: issued.refresh_token });
    const r = await runDoctor(env(await dataDir(due, { lock: true })));
    expect(r.check('token').status).toBe('warn');
    expect(r.check('token').summary).toMatch(/^only (99|100) s left: inside the agent's threshold, the agent refreshes now if it runs/);
    expect(saxo.stats()).toMatchObject({ presentations: 0, refreshes: 0, codeExchanges: 0, authorizations: 0 });
  });

  it('creates nothing in the data dir: without saxo_token.lock the lock check is skipped, not created', async () => {
    const dir = await dataDir(pair({ accessLeftSec: 900 }));
    const snap = () => readdirSync(dir).map((f) => `${f}:${statSync(join(dir, f)).mtimeMs}:${statSync(join(dir, f)).mode}`).sort();
    const before = snap();
    const r = await runDoctor(env(dir));
    expect(snap()).toEqual(before);
    expect(r.check('lock')).toMatchObject({ status: 'skip' });
    expect(r.check('lock').summary).toContain('does not exist yet: the first bot or agent to lock creates it (doctor does not)');
    expect(r.check('data-dir.files').summary).toContain('not yet created: saxo_token.lock, .token-keeper-state.json');
  });

  it("the installed unit decides the bots' user and must let the agent write the data dir", async () => {
    const dir = await dataDir(pair({ accessLeftSec: 900 }), { lock: true });
    const unit = join(tmp, 'token-keeper.service');
    writeFileSync(unit, '[Unit]\nDescription=x\n[Service]\nUser=daemon\nGroup=daemon\nProtectSystem=strict\nReadWritePaths=/opt/calypso/data\n');
    mkdirSync(`${unit}.d`);
    writeFileSync(`${unit}.d/20-local.conf`, '[Service]\nUser=root\nGroup=root\n');
    const r = await runDoctor(env(dir), ['--unit', unit]);
    const c = r.check('data-dir');
    expect(c.status).toBe('fail');
    expect(c.summary).toBe(`the unit's ReadWritePaths=/StateDirectory= (/opt/calypso/data) do not include ${dir}: under ProtectSystem=strict the agent cannot write there`);
    expect(c.fix).toBe(`sudo systemctl edit token-keeper  # [Service] ReadWritePaths=${dir}`);
    expect(c.details?.botsUser).toMatchObject({ name: 'root', basis: `User= in ${unit}` });
    // Without ProtectSystem= the service may write anywhere its user may: nothing to add.
    writeFileSync(`${unit}.d/30-unprotected.conf`, '[Service]\nProtectSystem=\n');
    const open = await runDoctor(env(dir), ['--unit', unit]);
    expect(open.check('data-dir')).toMatchObject({ status: 'ok', details: { botsUser: { name: 'root' } } });
  });

  it('--chain live: judged as token-keeper@live runs it (the repo\'s template unit, live.env over the caller\'s env, its StateDirectory as the data dir); every fix names that chain', async () => {
    // The installed layout under a temporary root: the template unit as shipped, an instance drop-in
    // for this machine's user, the chain's env file (with a data dir copied from the main unit's env,
    // which the unit ignores), and the dir systemd's StateDirectory= would create.
    const root = join(tmp, 'installed');
    const roots = { unitDir: join(root, 'units'), etcDir: join(root, 'etc'), stateDir: join(root, 'state') };
    mkdirSync(join(roots.unitDir, 'token-keeper@live.service.d'), { recursive: true });
    copyFileSync(join(REPO, 'infra/systemd/token-keeper@.service'), join(roots.unitDir, 'token-keeper@.service'));
    const me = userInfo();
    writeFileSync(join(roots.unitDir, 'token-keeper@live.service.d/10-user.conf'), `[Service]\nUser=${me.uid}\nGroup=${me.gid}\n`);
    mkdirSync(roots.etcDir);
    const live = join(roots.stateDir, 'token-keeper/live');
    mkdirSync(live, { recursive: true, mode: 0o750 });
    const dead = pair({ accessLeftSec: -1500, refreshLeftSec: -10 });
    await createCacheFile(join(live, 'saxo_token_cache.json')).write(dead);
    const fileEnv = [`SAXO_AUTH_BASE_URL="${saxo.url}"`, `SAXO_APP_KEY=${APP_KEY}`, `SAXO_APP_SECRET='${APP_SECRET}'`, '# copied from the main unit:', 'TOKEN_KEEPER_DATA_DIR=/opt/calypso/data'];
    writeFileSync(join(roots.etcDir, 'live.env'), fileEnv.join('\n') + '\n', { mode: 0o640 });
    // The caller's shell points elsewhere: the chain's file and unit win.
    const caller = env(join(tmp, 'not-this-one'), { SAXO_APP_KEY: 'the-shell-key' });

    const { report } = await doctorReport({ chain: 'live' }, caller, roots);
    const check = (id: string) => report.checks.find((c) => c.id === id)!;
    expect(report.unit).toBe('token-keeper@live');
    expect(check('data-dir')).toMatchObject({ status: 'ok', details: { path: live } }); // StateDirectory= counts as writable
    expect(check('token')).toMatchObject({ status: 'fail', fix: 'npx token-keeper login --chain live' });
    expect(check('agent').fix).toBe('sudo systemctl enable --now token-keeper@live; journalctl -u token-keeper@live -n 50');
    expect(JSON.stringify(report)).not.toMatch(new RegExp([dead.accessToken, dead.refreshToken, APP_SECRET].join('|')));
    expect(saxo.stats().presentations).toBe(0);

    // Without --chain the same tree is the main unit's: not installed there, so no unit to judge.
    const main = await doctorReport({}, env(live), roots);
    expect(main.report.unit).toBe('token-keeper');
    // A bad chain name or an unreadable NAME.env is the config finding of a report, not a throw.
    const bad = await doctorReport({ chain: 'Live!' }, caller, roots);
    expect(bad.report).toMatchObject({ exitCode: 2, mode: 'unknown' });
    expect(bad.report.checks.map((c) => c.id)).toEqual(CHECK_IDS);
    expect(bad.report.checks[0]).toMatchObject({ id: 'config', status: 'fail', fix: `ls ${roots.etcDir}  # the installed chains are the NAME of each NAME.env there` });
    expect(bad.report.checks[0]!.summary).toMatch(/^configuration error: --chain must be a chain name/);
    const sim = await doctorReport({ chain: 'sim' }, caller, roots);
    expect(sim.report.unit).toBe('token-keeper@sim');
    expect(sim.report.checks[0]).toMatchObject({ id: 'config', status: 'fail' });
    expect(sim.report.checks[0]!.summary).toMatch(/^configuration error: cannot read .*sim\.env for chain sim \(ENOENT\)/);
    expect(sim.report.checks[0]!.fix).toContain(`sudo ls -l ${join(roots.etcDir, 'sim.env')}`);
    expect(sim.report.checks.slice(1).every((c) => c.status === 'skip')).toBe(true);
  });

  it('--json with a bad --chain still prints the JSON report (exit 2), not an error line', async () => {
    const r = await runDoctor(env(tmp), ['--chain', 'Live!']);
    expect(r.code).toBe(2);
    expect(r.check('config')).toMatchObject({ status: 'fail' });
    expect(r.check('config').summary).toMatch(/^configuration error: --chain must be a chain name/);
    expect(r.report.checks.map((c) => c.id)).toEqual(CHECK_IDS);
  });

  it('stale tmp files and a world-readable cache are named with their fixes', async () => {
    const dir = await dataDir(pair({ accessLeftSec: 900 }), { lock: true });
    const old = (Date.now() - 300_000) / 1000;
    for (const f of ['saxo_token_cache.tmp', '.saxo_token_cache.json.0a1b2c3d4e5f.tmp']) {
      writeFileSync(join(dir, f), '{');
      utimesSync(join(dir, f), old, old);
    }
    chmodSync(join(dir, 'saxo_token_cache.json'), 0o644);
    const r = await runDoctor(env(dir));
    expect(r.check('data-dir.tmp')).toMatchObject({
      status: 'warn',
      fix: `rm -f ${join(dir, '.saxo_token_cache.json.0a1b2c3d4e5f.tmp')} ${join(dir, 'saxo_token_cache.tmp')}`,
    });
    expect(r.check('data-dir.tmp').summary).toMatch(/^2 stale tmp file\(s\) left by a writer that died mid-write: \.saxo_token_cache\.json\.0a1b2c3d4e5f\.tmp \(5m 0\ds old\)/);
    expect(r.check('data-dir.files')).toMatchObject({ status: 'fail', fix: `sudo chmod 0600 ${join(dir, 'saxo_token_cache.json')}` });
    expect(r.check('data-dir.files').summary).toBe('the cache has mode 0644: every user on this host can read the token (want 0600 or 0640)');
  });

  it('half a GCP configuration is a configuration error naming the missing setting (exit 2), as for every command', async () => {
    const r = await runDoctor(env(await dataDir(pair({ accessLeftSec: 900 }), { lock: true }), { GOOGLE_CLOUD_PROJECT: 'p1' }));
    expect(r.code).toBe(2);
    expect(r.check('config')).toMatchObject({ status: 'fail' });
    expect(r.check('config').summary).toBe(
      'configuration error: GOOGLE_CLOUD_PROJECT set, but cloud-connected mode also needs TOKEN_SECRET_ID: set it (terraform output agent_env has every line), or unset GOOGLE_CLOUD_PROJECT to run standalone',
    );
  });

  it('a configuration that does not parse: config fails with the message, every other check is skipped (exit 2)', async () => {
    const r = await runDoctor(env(tmp, { SAXO_ENVIRONMENT: 'DEMO' }));
    expect(r.code).toBe(2);
    expect(r.report.checks.map((c) => c.id)).toEqual(CHECK_IDS);
    expect(r.check('config')).toMatchObject({ status: 'fail', summary: 'configuration error: SAXO_ENVIRONMENT must be SIM or LIVE, got "DEMO"' });
    expect(r.report.checks.filter((c) => c.id !== 'config').every((c) => c.status === 'skip' && c.summary === 'the configuration does not parse')).toBe(true);
  });

  it('never presented a refresh token to Saxo across every run above', () => {
    expect(saxo.stats()).toMatchObject({ presentations: 0, refreshes: 0, codeExchanges: 0, invalidGrants: 0 });
  });
});
