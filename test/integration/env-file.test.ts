/**
 * One environment everywhere (issue 17 item 3): the commands read the unit's env file as the unit
 * does, say which, and the file wins over the shell; an unreadable root-only file is one line; a
 * setting (TOKEN_KEEPER_ENV_FILE) overrides the path, so no test reads the host's /etc.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { unitEnv, unitEnvLine } from '../../agent/env-file.js';
import type { StatusReport } from '../../agent/status.js';
import { startCli } from '../helpers/agent-process.js';
import { isRoot, NOBODY, STANDALONE } from '../helpers/reliability-cli.js';

const run = async (args: string[], env: Record<string, string | undefined>, as?: { uid: number; gid: number }) => {
  const p = startCli(args, { ...STANDALONE, ...env }, { as });
  const { code } = await p.exited;
  return { code, out: p.raw.join('\n'), err: p.stderr() };
};

function envFile(lines: string[], mode = 0o640): string {
  const dir = mkdtempSync(join(tmpdir(), 'tk-envfile-'));
  chmodSync(dir, 0o755);
  const path = join(dir, 'token-keeper.env');
  writeFileSync(path, lines.join('\n') + '\n', { mode });
  chmodSync(path, mode);
  return path;
}

describe('the unit env file, read by the commands (real CLI)', () => {
  it('status reads TOKEN_KEEPER_ENV_FILE, says so on stderr, and its values win over the shell\'s', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tk-envfile-data-'));
    const file = envFile(['# the unit\'s settings', `TOKEN_KEEPER_DATA_DIR=${dataDir}`, 'CHECK_INTERVAL_SECONDS="30"']);
    const r = await run(['status', '--json'], { TOKEN_KEEPER_ENV_FILE: file, TOKEN_KEEPER_DATA_DIR: '/nonexistent/shell-dir', CHECK_INTERVAL_SECONDS: '30' });
    expect(r.err).toBe(`token-keeper: settings from ${file} (as the unit reads them; they win over this shell's TOKEN_KEEPER_DATA_DIR)\n`);
    const report = JSON.parse(r.out) as StatusReport;
    expect(report.health).toBe('missing'); // the file's (empty) data dir, not the shell's
    expect(r.code).toBe(2);
  });

  it('TOKEN_KEEPER_ENV_FILE=none: this shell only, nothing said', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tk-envfile-data-'));
    const r = await run(['status', '--json'], { TOKEN_KEEPER_ENV_FILE: 'none', TOKEN_KEEPER_DATA_DIR: dataDir });
    expect(r.err).toBe('');
    expect((JSON.parse(r.out) as StatusReport).health).toBe('missing');
  });

  it('a named file that does not exist: exit 2, one line with the fix', async () => {
    const r = await run(['status'], { TOKEN_KEEPER_ENV_FILE: '/nonexistent/token-keeper.env' });
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toBe(
      "token-keeper: configuration error: cannot read /nonexistent/token-keeper.env (ENOENT; TOKEN_KEEPER_ENV_FILE): fix the path, or TOKEN_KEEPER_ENV_FILE=none to use only this shell's settings\n",
    );
  });

  it(`a root-only env file read by another user: exit 2, one line saying so (${isRoot() ? 'as uid 65534' : 'chmod 000'})`, async () => {
    const file = envFile(['SAXO_APP_SECRET=not-for-you'], isRoot() ? 0o600 : 0o000);
    if (isRoot()) chownSync(file, 0, 0);
    const dataDir = mkdtempSync(join(tmpdir(), 'tk-envfile-data-'));
    if (isRoot()) chownSync(dataDir, NOBODY, NOBODY);
    const r = await run(['status'], { TOKEN_KEEPER_ENV_FILE: file, TOKEN_KEEPER_DATA_DIR: dataDir }, isRoot() ? { uid: NOBODY, gid: NOBODY } : undefined);
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      `token-keeper: configuration error: cannot read ${file} (EACCES), the agent's settings: run as root or the bots' user (sudo -u <bots-user> npx token-keeper …), or TOKEN_KEEPER_ENV_FILE=none to use only this shell's settings\n`,
    );
    expect(r.err).not.toContain('not-for-you');
  });
});

describe('unitEnv (the rule)', () => {
  const roots = () => {
    const root = mkdtempSync(join(tmpdir(), 'tk-envfile-roots-'));
    const r = { unitDir: join(root, 'units'), etcDir: join(root, 'etc'), stateDir: join(root, 'lib') };
    mkdirSync(r.etcDir);
    return r;
  };

  it('the default file missing (a workstation): the shell as it is; present: it wins, overridden names listed', async () => {
    const r = roots();
    const shell = { CHECK_INTERVAL_SECONDS: '5', SAXO_APP_KEY: 'k' };
    expect(await unitEnv({ env: shell, roots: r })).toEqual({ env: shell, overridden: [] });
    writeFileSync(join(r.etcDir, 'token-keeper.env'), 'CHECK_INTERVAL_SECONDS=60\nSAXO_APP_KEY=k\nTOKEN_SECRET_ID=s\n');
    const u = await unitEnv({ env: shell, roots: r });
    expect(u.env).toEqual({ CHECK_INTERVAL_SECONDS: '60', SAXO_APP_KEY: 'k', TOKEN_SECRET_ID: 's' });
    expect(u.read).toBe(join(r.etcDir, 'token-keeper.env'));
    expect(u.overridden).toEqual(['CHECK_INTERVAL_SECONDS']);
    expect(unitEnvLine(u)).toBe(`token-keeper: settings from ${u.read} (as the unit reads them; they win over this shell's CHECK_INTERVAL_SECONDS)`);
  });

  it('--chain NAME: the chain\'s file and the data dir its unit sets', async () => {
    const r = roots();
    writeFileSync(join(r.etcDir, 'live.env'), 'TOKEN_KEEPER_DATA_DIR=/elsewhere\nSAXO_ENVIRONMENT=LIVE\n');
    const u = await unitEnv({ chain: 'live', env: {}, roots: r });
    expect(u.env).toEqual({ SAXO_ENVIRONMENT: 'LIVE', TOKEN_KEEPER_DATA_DIR: join(r.stateDir, 'token-keeper', 'live') });
    expect(u.read).toBe(join(r.etcDir, 'live.env'));
  });
});
