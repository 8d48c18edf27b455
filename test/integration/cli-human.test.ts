/**
 * The CLI for people (issue 17 item 7): `--version`, `--help` with examples and every setting, and
 * the summary `login`/`refresh` print on a terminal.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tokenSummary } from '../../agent/cli-human.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { startSaxoStandin } from '../../standins/saxo/server.js';
import { STANDALONE } from '../helpers/reliability-cli.js';
import { PYTHON } from '../helpers/python.js';
import { SETTINGS } from '../../core/setting-names.js';
import { configEnvNames } from '../helpers/config-env.js';
import { CLI, REPO_ROOT, startCli } from '../helpers/agent-process.js';

/** Run the CLI on a pseudo-terminal (python3's pty), as a person at a terminal does; all output. */
function onTerminal(args: string[], env: Record<string, string | undefined>): Promise<{ code: number | null; out: string }> {
  const script = 'import os, pty, sys\nstatus = pty.spawn(sys.argv[1:])\nsys.exit(os.waitstatus_to_exitcode(status))';
  const p = spawn(PYTHON, ['-c', script, process.execPath, CLI, ...args], {
    env: { ...process.env, METADATA_SERVER_DETECTION: 'none', TOKEN_KEEPER_ENV_FILE: 'none', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  p.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, out: out.replace(/\r\n/g, '\n') })));
}

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
  it('`refresh --force` on a terminal ends with the new expiry and "no restart"; piped, JSON lines only', async () => {
    const key = 'cli-human-app';
    const secret = 'cli-human-app-secret-0123456789abcdef';
    const saxo = await startSaxoStandin({ accessLifetimeSec: 1200, refreshLifetimeSec: 3600, clients: { [key]: secret } });
    try {
      const seen: string[] = [secret];
      const seed = async (dir: string) => {
        const p = saxo.issue(key);
        seen.push(p.access_token, p.refresh_token);
        const now = Date.now();
        await createCacheFile(join(dir, 'saxo_token_cache.json')).write({
          accessToken: p.access_token, refreshToken: p.refresh_token, accessExpiresAt: now + 1_000_000, refreshExpiresAt: now + 3_000_000,
          issuedAt: now, generation: 4, source: 'login', appKey: key, appSecret: secret, extra: {},
        });
      };
      const env = (dir: string) => ({ ...STANDALONE, TOKEN_KEEPER_DATA_DIR: dir, SAXO_AUTH_BASE_URL: saxo.url, SAXO_APP_KEY: key, SAXO_APP_SECRET: secret });
      const tty = mkdtempSync(join(tmpdir(), 'tk-cli-tty-'));
      await seed(tty);
      const t = await onTerminal(['refresh', '--force'], env(tty));
      expect(t.code, t.out).toBe(0);
      expect(t.out).toMatch(/\nRefreshed: new token stored\.\n {2}access token {3}expires \d{4}-\d\d-\d\dT[\d:.]+Z \(in (1[89]m \d+s|20m 0s)\)\n {2}refresh token {2}expires .*\n {2}generation {5}5\nThe agent picks it up at its next check: no restart needed\.\n$/);

      const piped = mkdtempSync(join(tmpdir(), 'tk-cli-pipe-'));
      await seed(piped);
      const p = startCli(['refresh', '--force'], env(piped));
      expect((await p.exited).code).toBe(0);
      expect(p.raw.filter((l) => l.trim() !== '').every((l) => l.startsWith('{'))).toBe(true);
      expect(p.logs.some((l) => l.event === 'refresh_command' && l.outcome === 'refreshed')).toBe(true);
      for (const tok of seen) expect(t.out.includes(tok) || p.raw.join('\n').includes(tok)).toBe(false);
    } finally {
      await saxo.close();
    }
  }, 40_000);

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
