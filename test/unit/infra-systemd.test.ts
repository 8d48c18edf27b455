/**
 * The agent's systemd units (token-keeper.service, the template token-keeper@.service), the Before=
 * drop-in and the example env file: directives the issues require, the same hardening in both units,
 * a stop timeout that covers a refresh in flight, `systemd-analyze security` exposure <= 2.0 where
 * the tool exists, and env names the code really reads.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { BlockList, isIPv6 } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { configEnvNames } from '../helpers/config-env.js';
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../../agent/runtime-flags.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SYSTEMD = join(ROOT, 'infra', 'systemd');
const UNIT = join(SYSTEMD, 'token-keeper.service');
const TEMPLATE = join(SYSTEMD, 'token-keeper@.service');
const DROPIN = join(SYSTEMD, 'token-keeper.service.d', '10-bots.conf');
const ENV_EXAMPLE = join(SYSTEMD, 'token-keeper.env.example');
const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
const MAX_EXPOSURE = 2.0;

type Unit = Map<string, Array<[string, string]>>;

/** Minimal systemd INI reader: section -> [key, value] in order (keys may repeat). */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      if (!unit.has(section)) unit.set(section, []);
      continue;
    }
    const eq = line.indexOf('=');
    expect(eq, `malformed line: ${line}`).toBeGreaterThan(0);
    unit.get(section)!.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}
const values = (unit: Unit, section: string, key: string) => (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
const value = (unit: Unit, section: string, key: string) => values(unit, section, key).at(-1);

/** The code's default for an env var read with seconds(env, 'NAME', default). */
function codeDefaultSeconds(name: string): number {
  const m = new RegExp(`seconds\\(env, '${name}', ([\\d.]+)[,)]`).exec(readFileSync(join(ROOT, 'core', 'config.ts'), 'utf8'));
  expect(m, `${name} default in core/config.ts`).toBeTruthy();
  return Number(m![1]);
}

/** The hardening block: every [Service] line after the marker comment, minus the data-dir lines. */
function hardening(text: string): string[] {
  const block = text.slice(text.indexOf('# --- Hardening'), text.indexOf('[Install]'));
  return block.split('\n').filter((l) => /^[A-Z]/.test(l) && !/^(ReadWritePaths|StateDirectory|StateDirectoryMode)=/.test(l));
}

const main = parseUnit(readFileSync(UNIT, 'utf8'));
const template = parseUnit(readFileSync(TEMPLATE, 'utf8'));
const units = [['token-keeper.service', main], ['token-keeper@.service', template]] as const;

describe('infra/systemd units', () => {
  it('token-keeper.service runs the agent as calypso with its env file, forever, into journald', () => {
    expect(value(main, 'Service', 'User')).toBe('calypso');
    expect(value(main, 'Service', 'Group')).toBe('calypso');
    expect(value(main, 'Service', 'EnvironmentFile')).toBe('/etc/token-keeper/token-keeper.env');
    expect(value(main, 'Service', 'ExecStart')).toBe(`/usr/bin/node ${AGENT_NODE_FLAGS.join(' ')} /opt/token-keeper/bin/token-keeper.js agent`);
    expect(value(main, 'Unit', 'Conflicts')).toBe('token_keeper.service');
    // The bots' dir, never created by the unit ("-": the agent itself says it is missing).
    expect(values(main, 'Service', 'ReadWritePaths')).toEqual(['-/opt/calypso/data']);
    for (const k of ['StateDirectory', 'BindPaths', 'ReadWriteDirectories']) expect(value(main, 'Service', k)).toBeUndefined();
  });

  it('token-keeper@<chain>.service has its own env file and data dir, which the env file cannot redirect', () => {
    expect(value(template, 'Service', 'EnvironmentFile')).toBe('/etc/token-keeper/%i.env');
    expect(value(template, 'Service', 'StateDirectory')).toBe('token-keeper/%i');
    expect(value(template, 'Service', 'StateDirectoryMode')).toBe('0750');
    // Set on the command line: EnvironmentFile= would override an Environment= line.
    expect(value(template, 'Service', 'ExecStart')).toBe(
      `/usr/bin/env TOKEN_KEEPER_DATA_DIR=/var/lib/token-keeper/%i /usr/bin/node ${AGENT_NODE_FLAGS.join(' ')} /opt/token-keeper/bin/token-keeper.js agent`,
    );
    expect(values(template, 'Service', 'Environment').join(' ')).not.toContain('TOKEN_KEEPER_DATA_DIR');
    // No other writable path: the main chain's /opt/calypso/data stays read-only for an instance.
    expect(value(template, 'Service', 'ReadWritePaths')).toBeUndefined();
    expect(value(template, 'Unit', 'Conflicts')).toBeUndefined();
    expect(value(template, 'Unit', 'Description')).toContain('%i');
  });

  it.each(units)('%s: restarts forever, logs to journald, no secret in the unit, same runtime flags', (_n, unit) => {
    expect(value(unit, 'Service', 'Restart')).toBe('always');
    expect(value(unit, 'Unit', 'StartLimitIntervalSec')).toBe('0');
    expect(value(unit, 'Service', 'StandardOutput')).toBe('journal');
    expect(value(unit, 'Service', 'StandardError')).toBe('journal');
    expect(value(unit, 'Service', 'SyslogIdentifier')).toBe('token-keeper');
    expect(value(unit, 'Service', 'KillSignal')).toBe('SIGTERM');
    expect(value(unit, 'Install', 'WantedBy')).toBe('multi-user.target');
    expect(values(unit, 'Service', 'Environment')).toEqual(Object.entries(AGENT_ENV).map(([k, v]) => `${k}=${v}`));
    expect(value(unit, 'Service', 'ExecStart')).toContain(AGENT_NODE_FLAGS.join(' '));
  });

  it.each(units)('%s: TimeoutStopSec covers a Saxo exchange in flight + 5 s for the secret + the writes', (_n, unit) => {
    const httpTimeout = codeDefaultSeconds('SAXO_HTTP_TIMEOUT_SECONDS');
    expect(httpTimeout).toBe(10);
    const stop = Number(value(unit, 'Service', 'TimeoutStopSec'));
    expect(stop).toBe(30);
    expect(stop).toBeGreaterThanOrEqual(httpTimeout + 15);
  });

  it('both units carry the same hardening block, with every directive the issue names', () => {
    const a = hardening(readFileSync(UNIT, 'utf8'));
    expect(hardening(readFileSync(TEMPLATE, 'utf8'))).toEqual(a);
    const u = parseUnit(`[Service]\n${a.join('\n')}`);
    const expected: Record<string, string> = {
      ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes', PrivateDevices: 'yes', PrivateMounts: 'yes',
      PrivateUsers: 'yes', ProtectProc: 'invisible', ProcSubset: 'pid', NoNewPrivileges: 'yes', CapabilityBoundingSet: '',
      KeyringMode: 'private', SocketBindDeny: 'any', SystemCallErrorNumber: 'EPERM', SystemCallArchitectures: 'native',
      RestrictNamespaces: 'yes', LockPersonality: 'yes', RestrictAddressFamilies: 'AF_UNIX AF_INET AF_INET6', UMask: '0077',
    };
    for (const [k, v] of Object.entries(expected)) expect(value(u, 'Service', k), k).toBe(v);
    expect(values(u, 'Service', 'SystemCallFilter')).toEqual(['@system-service @pkey', '~@privileged @resources']);
    expect(value(u, 'Service', 'MemoryMax')).toMatch(/^\d+[KMG]$/);
    // Documented exclusions: Node's JIT needs W+X pages; RemoveIPC would delete the bots' IPC objects.
    for (const k of ['MemoryDenyWriteExecute', 'RemoveIPC', 'PrivateNetwork', 'DynamicUser']) expect(value(u, 'Service', k), k).toBeUndefined();
    const text = readFileSync(UNIT, 'utf8');
    for (const why of ['MemoryDenyWriteExecute (V8', 'RemoveIPC (it deletes']) expect(text).toContain(why);
  });

  it('reaches public endpoints and the metadata server, never the private networks', () => {
    const u = parseUnit(`[Service]\n${hardening(readFileSync(UNIT, 'utf8')).join('\n')}`);
    // systemd: an address in IPAddressAllow= is allowed; else one in IPAddressDeny= is denied.
    const list = (key: string) => {
      const b = new BlockList();
      for (const entry of values(u, 'Service', key).join(' ').split(/\s+/).filter(Boolean)) {
        const [addr, bits] = entry.split('/') as [string, string | undefined];
        const type = isIPv6(addr) ? 'ipv6' : 'ipv4';
        b.addSubnet(addr, Number(bits ?? (type === 'ipv6' ? 128 : 32)), type);
      }
      return b;
    };
    const allow = list('IPAddressAllow');
    const deny = list('IPAddressDeny');
    const reachable = (ip: string) => {
      const type = isIPv6(ip) ? 'ipv6' : 'ipv4';
      return allow.check(ip, type) || !deny.check(ip, type);
    };
    for (const ip of ['8.8.8.8', '34.117.59.81', '142.250.72.10', '169.254.169.254', '127.0.0.53', '::1', 'fd20:ce::254', '2600:1900:4000::1']) {
      expect(reachable(ip), ip).toBe(true);
    }
    for (const ip of ['10.128.0.7', '172.20.1.1', '192.168.1.10', '100.64.1.1', '169.254.1.1', 'fd00::10', 'fe80::1']) {
      expect(reachable(ip), ip).toBe(false);
    }
  });

  it('starts before the bots through a drop-in listing their units', () => {
    const before = values(parseUnit(readFileSync(DROPIN, 'utf8')), 'Unit', 'Before').join(' ').split(/\s+/).filter(Boolean);
    expect(before.length).toBeGreaterThan(0);
    for (const u of before) expect(u).toMatch(/\.service$/);
  });

  describe.skipIf(!ANALYZE)(ANALYZE ? 'systemd-analyze' : 'systemd-analyze (SKIPPED: not installed)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-units-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it.each([['token-keeper.service', UNIT], ['token-keeper@sim.service', TEMPLATE]])(
      `security --offline=true rates %s at exposure <= ${MAX_EXPOSURE}`,
      (name, src) => {
        copyFileSync(src, join(dir, name));
        const r = spawnSync(ANALYZE!, ['security', '--offline=true', '--no-pager', join(dir, name)], { encoding: 'utf8' });
        const m = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout);
        expect(m, r.stdout + r.stderr).toBeTruthy();
        expect(Number(m![1])).toBeLessThanOrEqual(MAX_EXPOSURE);
        // docs/OPERATIONS.md states the measured number.
        expect(readFileSync(join(ROOT, 'docs', 'OPERATIONS.md'), 'utf8')).toContain(`${name.replace('@sim', '@<chain>')}: **${m![1]}**`);
      },
    );
  });
});

describe('infra/systemd/token-keeper.env.example', () => {
  const text = readFileSync(ENV_EXAMPLE, 'utf8');
  const set = text.split('\n').filter((l) => /^[A-Z]/.test(l)).map((l) => l.slice(0, l.indexOf('=')));
  const commented = [...text.matchAll(/^#([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!);

  it('sets only variables the code reads, plain KEY=value, and no secret', () => {
    const names = configEnvNames();
    expect(set).toEqual(expect.arrayContaining(['TOKEN_KEEPER_DATA_DIR', 'GOOGLE_CLOUD_PROJECT', 'TOKEN_SECRET_ID', 'TOKEN_SUBSCRIPTION_ID', 'TOKEN_KEEPER_PRIMARY']));
    expect(commented).toContain('TOKEN_KEEPER_CREATE_DATA_DIR');
    for (const k of [...set, ...commented]) expect(names.has(k), `${k} is not read by core/config.ts`).toBe(true);
    for (const l of text.split('\n').filter((x) => /^[A-Z]/.test(x))) expect(l, 'no quotes/export: systemd would keep them').toMatch(/^[A-Z][A-Z0-9_]*=[^"'\s]*$/);
    expect(text).not.toMatch(/^SAXO_APP_SECRET=/m);
  });

  it("points at the main unit's writable path and states the code's defaults", () => {
    expect(text).toMatch(new RegExp(`^TOKEN_KEEPER_DATA_DIR=${values(main, 'Service', 'ReadWritePaths')[0]!.replace(/^-/, '')}$`, 'm'));
    expect(text).toMatch(new RegExp(`^#SAXO_HTTP_TIMEOUT_SECONDS=${codeDefaultSeconds('SAXO_HTTP_TIMEOUT_SECONDS')}$`, 'm'));
    expect(text).toMatch(/^TOKEN_KEEPER_PRIMARY=true$/m);
  });
});
