/**
 * infra/systemd/install.sh staged into a DESTDIR: every input validated before anything is written,
 * units rendered and checked by systemd-analyze verify, env files created once and their mode put
 * right, one env file per chain for the template unit, and the Ops Agent configuration offered.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../../agent/runtime-flags.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SYSTEMD = join(ROOT, 'infra', 'systemd');
const INSTALL = join(SYSTEMD, 'install.sh');
const OPS_CONFIG = join(ROOT, 'infra', 'ops-agent', 'config.yaml');
const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
// An account every Debian/Ubuntu has (not root, not nobody, which systemd refuses as unsafe).
const USER = 'daemon';
const userExists = spawnSync('getent', ['passwd', USER]).status === 0;
const group = userExists ? spawnSync('id', ['-gn', USER], { encoding: 'utf8' }).stdout.trim() : '';
const gid = userExists ? Number(spawnSync('id', ['-g', USER], { encoding: 'utf8' }).stdout.trim()) : -1;
const asRoot = process.getuid?.() === 0;

const scratch = mkdtempSync(join(tmpdir(), 'tk-install-'));
let dest: string;
let n = 0;
beforeEach(() => {
  dest = join(scratch, `d${n++}`);
  mkdirSync(dest);
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const install = (env: Record<string, string> = {}) =>
  spawnSync('bash', [INSTALL], {
    encoding: 'utf8',
    input: '',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DESTDIR: dest, NODE_BIN: process.execPath, APP_DIR: ROOT, RUN_USER: USER, ...env },
  });
const units = () => join(dest, 'etc', 'systemd', 'system');
const envDir = () => join(dest, 'etc', 'token-keeper');
const written = () => readdirSync(dest, { recursive: true });

describe.skipIf(!userExists)(userExists ? 'infra/systemd/install.sh' : `install.sh (SKIPPED: no ${USER} account)`, () => {
  it('renders both units for this machine, the drop-in from BOT_UNITS, and the env file', () => {
    const r = install({ BOT_UNITS: 'iron_fly.service  meic.service' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const main = readFileSync(join(units(), 'token-keeper.service'), 'utf8');
    expect(main).toContain(`\nExecStart=${process.execPath} ${AGENT_NODE_FLAGS.join(' ')} ${ROOT}/bin/token-keeper.js agent\n`);
    expect(main).toContain(`\nUser=${USER}\nGroup=${group}\n`);
    expect(main).toContain(`\nWorkingDirectory=${ROOT}\n`);
    const tmpl = readFileSync(join(units(), 'token-keeper@.service'), 'utf8');
    expect(tmpl).toContain(`\nExecStart=/usr/bin/env TOKEN_KEEPER_DATA_DIR=/var/lib/token-keeper/%i ${process.execPath} ${AGENT_NODE_FLAGS.join(' ')} ${ROOT}/bin/token-keeper.js agent\n`);
    expect(readFileSync(join(units(), 'token-keeper.service.d', '10-bots.conf'), 'utf8')).toMatch(/^\[Unit\]\nBefore=iron_fly\.service meic\.service\n$/m);
    const envFile = join(envDir(), 'token-keeper.env');
    expect(readFileSync(envFile, 'utf8')).toBe(readFileSync(join(SYSTEMD, 'token-keeper.env.example'), 'utf8'));
    expect(statSync(envFile).mode & 0o777).toBe(0o640);
    expect(statSync(envDir()).mode & 0o777).toBe(0o750);
    if (asRoot) expect([statSync(envFile).uid, statSync(envFile).gid]).toEqual([0, gid]);
    // No leftovers of the atomic writes.
    expect(written().map(String).filter((p) => /\.tmp\./.test(p))).toEqual([]);
  });

  it('keeps the installed BOT_UNITS list when an upgrade does not pass one', () => {
    expect(install({ BOT_UNITS: 'meic_live.service' }).status).toBe(0);
    expect(install().status).toBe(0);
    expect(readFileSync(join(units(), 'token-keeper.service.d', '10-bots.conf'), 'utf8')).toMatch(/^Before=meic_live\.service$/m);
  });

  it('never overwrites an env file, but puts its mode and owner right', () => {
    expect(install().status).toBe(0);
    const envFile = join(envDir(), 'token-keeper.env');
    writeFileSync(envFile, 'TOKEN_KEEPER_DATA_DIR=/opt/calypso/data\n# edited\n');
    chmodSync(envFile, 0o644);
    expect(install().status).toBe(0);
    expect(readFileSync(envFile, 'utf8')).toContain('# edited');
    expect(statSync(envFile).mode & 0o777).toBe(0o640);
    if (asRoot) expect(statSync(envFile).gid).toBe(gid);
  });

  it('prepares one env file per chain for the template unit, without a data dir of its own', () => {
    const r = install({ CHAINS: 'sim live' });
    expect(r.status, r.stderr).toBe(0);
    for (const c of ['sim', 'live']) {
      const text = readFileSync(join(envDir(), `${c}.env`), 'utf8');
      expect(text).not.toMatch(/^TOKEN_KEEPER_DATA_DIR=/m);
      expect(text).toContain(`/var/lib/token-keeper/${c}`);
      expect(statSync(join(envDir(), `${c}.env`)).mode & 0o777).toBe(0o640);
    }
  });

  it.each([
    [{ APP_DIR: 'opt/token-keeper' }, 'APP_DIR is not a plain absolute path'],
    [{ APP_DIR: '/opt/token#keeper' }, 'APP_DIR is not a plain absolute path'],
    [{ APP_DIR: '/nonexistent/token-keeper' }, 'APP_DIR has no bin/token-keeper.js'],
    [{ NODE_BIN: 'node' }, 'NODE_BIN is not a plain absolute path'],
    [{ NODE_BIN: '/nonexistent/node' }, 'NODE_BIN is not executable'],
    [{ RUN_USER: 'Calypso;rm' }, 'RUN_USER is not a user name'],
    [{ RUN_USER: 'no-such-user-tk' }, 'user no-such-user-tk does not exist'],
    [{ RUN_USER: 'root' }, 'RUN_USER must not be root'],
    [{ RUN_GROUP: 'no-such-group-tk' }, 'group no-such-group-tk does not exist'],
    [{ BOT_UNITS: 'meic.service;rm' }, 'not a unit name in BOT_UNITS'],
    [{ CHAINS: 'Live' }, 'not a chain name in CHAINS'],
    [{ CHAINS: 'sim ../x' }, 'not a chain name in CHAINS'],
    [{ CHAINS: 'token-keeper' }, "would share the main unit's env file"],
    [{ OPS_AGENT: 'maybe' }, 'OPS_AGENT must be yes, no or ask'],
    [{ DESTDIR: 'relative/dir' }, 'DESTDIR must be an absolute path'],
  ])('refuses %o before writing anything', (env, message) => {
    const r = install(env as Record<string, string>);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(message);
    expect(written()).toEqual([]);
  });

  it('refuses a node older than 20.19, naming the Node to install in one line', () => {
    const fake = join(scratch, 'old-node');
    writeFileSync(fake, '#!/bin/sh\necho 18.20.4\n', { mode: 0o755 });
    const r = install({ NODE_BIN: fake });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`install.sh: node 18.20.4 at ${fake} is older than 20.19: install Node 24 LTS (docs/OPERATIONS.md, VM side, step 1)\n`);
    expect(written()).toEqual([]);
  });

  it('a node older than 24 is refused on the VM; a staged install (DESTDIR) warns in one line', () => {
    const fake = join(scratch, 'node-22');
    writeFileSync(fake, '#!/bin/sh\necho 22.12.0\n', { mode: 0o755 });
    const r = install({ NODE_BIN: fake });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`install.sh: warning: node 22.12.0 at ${fake} is older than 24, the supported LTS (refused on a real install)\n`);
    const src = readFileSync(INSTALL, 'utf8');
    expect(src).toContain('[[ -n "$DESTDIR" ]] || die "node $node_version at $NODE_BIN is older than 24, the supported LTS: install Node 24');
  });

  it('no node at all: one line naming Node 24', () => {
    const bin = join(scratch, 'bin-without-node');
    mkdirSync(bin);
    for (const tool of ['bash', 'dirname', 'sed']) symlinkSync(spawnSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim(), join(bin, tool));
    const r = install({ NODE_BIN: '', PATH: bin });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('install.sh: node not found: install Node 24 LTS (docs/OPERATIONS.md, VM side, step 1) or set NODE_BIN=/path/to/node\n');
  });

  it.skipIf(!ANALYZE)('checks the rendered units with systemd-analyze verify before installing them', () => {
    // systemd refuses "nobody" as a service user: the check fails and nothing is installed.
    const r = install({ RUN_USER: 'nobody', RUN_GROUP: group });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/systemd-analyze verify token-keeper\.service: .*nobody/);
    expect(written()).toEqual([]);
    // The installed units and drop-in verify clean from their staged dir.
    expect(install({ BOT_UNITS: 'iron_fly.service' }).status).toBe(0);
    for (const u of ['./token-keeper.service']) {
      const v = spawnSync(ANALYZE!, ['verify', u], { cwd: units(), encoding: 'utf8' });
      expect(v.stderr).toBe('');
      expect(v.status).toBe(0);
    }
  });

  describe('the Ops Agent configuration', () => {
    const opsFile = () => join(dest, 'etc', 'google-cloud-ops-agent', 'config.yaml');

    it('is installed with OPS_AGENT=yes, and only mentioned otherwise', () => {
      const no = install();
      expect(no.stdout).toContain('OPS_AGENT=yes installs');
      expect(existsSync(opsFile())).toBe(false);
      expect(install({ OPS_AGENT: 'yes' }).status).toBe(0);
      expect(readFileSync(opsFile(), 'utf8')).toBe(readFileSync(OPS_CONFIG, 'utf8'));
      expect(install({ OPS_AGENT: 'yes' }).stdout).toContain("already token-keeper's");
    });

    it("replaces the package's comment-only file (keeping a backup) but never a real configuration", () => {
      mkdirSync(dirname(opsFile()), { recursive: true });
      writeFileSync(opsFile(), '# <== Enter custom agent configurations in this file.\n\n');
      expect(install({ OPS_AGENT: 'yes' }).status).toBe(0);
      expect(readFileSync(opsFile(), 'utf8')).toBe(readFileSync(OPS_CONFIG, 'utf8'));
      expect(readdirSync(dirname(opsFile())).filter((f) => f.startsWith('config.yaml.bak.'))).toHaveLength(1);

      const own = 'logging:\n  receivers:\n    app:\n      type: files\n      include_paths: [/var/log/app.log]\n';
      writeFileSync(opsFile(), own);
      const r = install({ OPS_AGENT: 'yes' });
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('not replaced. Merge');
      expect(readFileSync(opsFile(), 'utf8')).toBe(own);
    });

    it('OPS_AGENT=ask with no answer (no terminal) installs nothing', () => {
      const r = install({ OPS_AGENT: 'ask' });
      expect(r.status).toBe(0);
      expect(existsSync(opsFile())).toBe(false);
    });
  });

  it('the units start node with the flags and environment of agent/runtime-flags.ts, as the launcher does', () => {
    const shebang = readFileSync(join(ROOT, 'bin', 'token-keeper.js'), 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S ${Object.entries(AGENT_ENV).map(([k, v]) => `${k}=${v}`).join(' ')} node ${AGENT_NODE_FLAGS.join(' ')}`);
  });
});
