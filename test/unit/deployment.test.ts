import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deployment, deploymentEnv, parseEnvFile } from '../../agent/deployment.js';

describe('deployment: the main unit or one chain of the template', () => {
  it('names the unit, its file, drop-in dirs, env file and CLI flag', () => {
    expect(deployment()).toEqual({
      unit: 'token-keeper',
      unitPath: '/etc/systemd/system/token-keeper.service',
      dropInDirs: ['/etc/systemd/system/token-keeper.service.d'],
      envFile: '/etc/token-keeper/token-keeper.env',
      stateDir: '/var/lib',
      cliFlags: '',
    });
    expect(deployment('live')).toEqual({
      unit: 'token-keeper@live',
      unitPath: '/etc/systemd/system/token-keeper@.service',
      dropInDirs: ['/etc/systemd/system/token-keeper@.service.d', '/etc/systemd/system/token-keeper@live.service.d'],
      instance: 'live',
      envFile: '/etc/token-keeper/live.env',
      stateDir: '/var/lib',
      cliFlags: ' --chain live',
    });
    expect(deployment('sim', '/tmp/u@.service').unitPath).toBe('/tmp/u@.service');
  });

  it.each(['Live', 'li ve', '../etc', '-x', 'token-keeper', '', 'a'.repeat(32)])('refuses the chain name %j (install.sh would too)', (name) => {
    expect(() => deployment(name)).toThrow(/--chain must be a chain name/);
  });

  it('parseEnvFile: KEY=VALUE, comments, quotes, export, blank lines; nothing else', () => {
    const text = ['# comment', '; also a comment', '', 'A=1', '  B = two words ', 'C="quoted # not a comment"', "D='single'", 'export E=e', 'not a line', 'F=', 'G="unbalanced'].join('\n');
    expect(parseEnvFile(text)).toEqual({ A: '1', B: 'two words', C: 'quoted # not a comment', D: 'single', E: 'e', F: '', G: '"unbalanced' });
  });

  it("a chain's environment: its file over the caller's, and the unit's data dir over both", async () => {
    const etcDir = mkdtempSync(join(tmpdir(), 'tk-deploy-'));
    writeFileSync(join(etcDir, 'live.env'), 'SAXO_APP_KEY=live-key\nTOKEN_KEEPER_DATA_DIR=/opt/calypso/data\n');
    const d = deployment('live', undefined, { unitDir: '/nowhere', etcDir, stateDir: '/srv/state' });
    const env = await deploymentEnv(d, { SAXO_APP_KEY: 'shell-key', PATH: '/usr/bin', TOKEN_KEEPER_DATA_DIR: '/elsewhere' });
    expect(env).toEqual({ SAXO_APP_KEY: 'live-key', PATH: '/usr/bin', TOKEN_KEEPER_DATA_DIR: '/srv/state/token-keeper/live' });
    const caller = { A: '1' };
    expect(await deploymentEnv(deployment(), caller)).toBe(caller); // the main unit: the caller's own
  });
});
