/**
 * Configuration checked as a whole (issue 17 item 6), through the real CLI: every mistake exits 2
 * with one line and its fix; a setting that is not one (a typo, an unknown name with our prefixes)
 * is a warning naming the closest known setting, since it would otherwise be ignored in silence.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { closestSetting, unknownSettings } from '../../core/config-check.js';
import { startCli } from '../helpers/agent-process.js';
import { expectNoStack, STANDALONE } from '../helpers/reliability-cli.js';

const dataDir = () => mkdtempSync(join(tmpdir(), 'tk-config-'));
const run = async (args: string[], env: Record<string, string | undefined>) => {
  const p = startCli(args, { ...STANDALONE, TOKEN_KEEPER_DATA_DIR: dataDir(), ...env });
  const { code } = await p.exited;
  return { code, out: p.raw.join('\n'), err: p.stderr() };
};

describe('a configuration mistake: exit 2, one line with the fix (status, refresh, agent)', () => {
  const cases: [string, Record<string, string>, string][] = [
    ['GOOGLE_CLOUD_PROJECT alone', { GOOGLE_CLOUD_PROJECT: 'foo' },
      'GOOGLE_CLOUD_PROJECT set, but cloud-connected mode also needs TOKEN_SECRET_ID: set it (terraform output agent_env has every line), or unset GOOGLE_CLOUD_PROJECT to run standalone'],
    ['TOKEN_SECRET_ID alone', { TOKEN_SECRET_ID: 'saxo-token' },
      'TOKEN_SECRET_ID set, but cloud-connected mode also needs GOOGLE_CLOUD_PROJECT: set it (terraform output agent_env has every line), or unset TOKEN_SECRET_ID to run standalone'],
    ['a topic without project and secret', { TOKEN_TOPIC_ID: 'token-rotated' },
      'TOKEN_TOPIC_ID set, but cloud-connected mode also needs GOOGLE_CLOUD_PROJECT and TOKEN_SECRET_ID: set them (terraform output agent_env has every line), or unset TOKEN_TOPIC_ID to run standalone'],
    ['a non-loopback http:// Saxo URL', { SAXO_AUTH_BASE_URL: 'http://sim.logonvalidation.net/' },
      "SAXO_AUTH_BASE_URL must be https (plain http only for a stand-in on this machine), got http://sim.logonvalidation.net: use https://sim.logonvalidation.net, or unset it for Saxo's own (SAXO_ENVIRONMENT)"],
  ];
  it.each(cases)('%s', async (_name, env, line) => {
    for (const cmd of [['status'], ['refresh'], ['agent']]) {
      const r = await run(cmd, env);
      expect(r.code, cmd[0]).toBe(2);
      expect(r.err, cmd[0]).toBe(`token-keeper: configuration error: ${line}\n`);
      expectNoStack(r.err);
    }
  });

  it('http:// to a stand-in on loopback is fine (tests, the demo)', async () => {
    const r = await run(['status', '--json'], { SAXO_AUTH_BASE_URL: 'http://127.0.0.1:9' });
    expect(r.err).toBe('');
    expect(r.code).toBe(2); // missing token: the status, not a configuration error
  });
});

describe('a setting that is not one: warned with the closest known name', () => {
  it('status warns on stderr, one line each, and still answers', async () => {
    const r = await run(['status', '--json'], { CHECK_INTERVL_SECONDS: '30', TOKEN_KEEPER_DATADIR: '/x', SAXO_APP_KY: 'k', CLOUD_FOO: '1' });
    expect(r.err.split('\n').filter(Boolean)).toEqual([
      'token-keeper: warning: unknown setting CHECK_INTERVL_SECONDS is ignored: did you mean CHECK_INTERVAL_SECONDS?',
      'token-keeper: warning: unknown setting CLOUD_FOO is ignored (npx token-keeper --help lists every setting)',
      'token-keeper: warning: unknown setting SAXO_APP_KY is ignored: did you mean SAXO_APP_KEY?',
      'token-keeper: warning: unknown setting TOKEN_KEEPER_DATADIR is ignored: did you mean TOKEN_KEEPER_DATA_DIR?',
    ]);
    expect(JSON.parse(r.out)).toMatchObject({ health: 'missing' });
  });

  it('the agent logs it as a WARNING line', async () => {
    const p = startCli(['agent'], { ...STANDALONE, TOKEN_KEEPER_DATA_DIR: dataDir(), CHECK_INTERVL_SECONDS: '30', SAXO_AUTH_BASE_URL: 'http://127.0.0.1:9' });
    try {
      const w = await p.waitForEvent('config_unknown_setting', 20_000);
      expect(w).toMatchObject({ severity: 'WARNING', message: 'Configuration: unknown setting CHECK_INTERVL_SECONDS is ignored: did you mean CHECK_INTERVAL_SECONDS?' });
    } finally {
      await p.stop('SIGKILL');
    }
  });

  it('other programs\' variables are left alone (no prefix of ours, not near a setting name)', () => {
    expect(unknownSettings({ PATH: '/bin', HOME: '/root', CLOUD_SDK_VERSION: '528', CLOUD_SHELL: 'true', NODE_OPTIONS: '', PUBSUB_EMULATOR_HOST: 'h' })).toEqual([]);
    expect(closestSetting('REFRESH_TRESHOLD_SECONDS')).toBe('REFRESH_THRESHOLD_SECONDS');
  });
});
