/**
 * The CLI for people (issue 17 item 7): `--version`, `--help` with examples and every setting, and
 * the summary `login`/`refresh` print on a terminal.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tokenSummary } from '../../agent/cli-human.js';
import { SETTINGS } from '../../core/setting-names.js';
import { configEnvNames } from '../helpers/config-env.js';
import { REPO_ROOT, startCli } from '../helpers/agent-process.js';

const run = async (args: string[]) => {
  const p = startCli(args, {});
  const { code } = await p.exited;
  return { code, out: p.raw.join('\n'), err: p.stderr() };
};

describe('token-keeper --version / --help', () => {
  it('--version and -V print the package version and the Node it runs on, exit 0', async () => {
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const flag of ['--version', '-V']) {
      const r = await run([flag]);
      expect(r.code).toBe(0);
      expect(r.out).toBe(`token-keeper ${version} (Node ${process.version})`);
      expect(r.err).toBe('');
    }
  });

  it('--help lists the commands, examples, where settings come from, and every setting core/config.ts reads', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('Examples:\n  npx token-keeper status ');
    expect(r.out).toContain('npx token-keeper login --no-open');
    expect(r.out).toContain('/etc/token-keeper/token-keeper.env');
    for (const s of SETTINGS) expect(r.out).toMatch(new RegExp(`^  ${s.name} +\\S`, 'm'));
    const listed = new Set(SETTINGS.map((s) => s.name));
    expect([...configEnvNames()].filter((n) => !listed.has(n))).toEqual([]);
  });
});

describe('the terminal summary after login / refresh', () => {
  it('says the new expiry and that the agent picks it up without a restart; no token material', () => {
    const now = Date.parse('2026-12-07T10:00:00Z');
    const text = tokenSummary('Refreshed: new token stored.', { accessExpiresAt: now + 1200_000, refreshExpiresAt: now + 3600_000, generation: 7 }, now);
    expect(text).toBe(
      'Refreshed: new token stored.\n' +
        '  access token   expires 2026-12-07T10:20:00.000Z (in 20m 0s)\n' +
        '  refresh token  expires 2026-12-07T11:00:00.000Z (in 1h 0m)\n' +
        '  generation     7\n' +
        'The agent picks it up at its next check: no restart needed.\n',
    );
  });
});
