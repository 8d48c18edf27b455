/**
 * Who the bots run as: `--bots-user`, else the installed unit's `User=`/`Group=`, else the current
 * user. Resolved with id(1) (so NSS/LDAP users work too); /etc/passwd and /etc/group give names.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';
import type { Deployment } from '../../deployment.js';
import type { BotsUser, UnitInfo } from '../facts.js';

const run = promisify(execFile);

/** ProtectSystem= as systemd reads it: a boolean, `full` or `strict`; empty resets it to `no`. */
function protectSystem(value: string): UnitInfo['protectSystem'] {
  const v = value.toLowerCase();
  if (v === 'full' || v === 'strict') return v;
  return ['yes', 'true', 'on', '1'].includes(v) ? 'yes' : 'no';
}

/**
 * Parse a unit file and its drop-ins (later files win; `ReadWritePaths=` and `StateDirectory=`
 * accumulate and an empty assignment resets them, as systemd does). Only the keys doctor reasons
 * about. A template's `%i` becomes the instance; `StateDirectory=` entries live under `stateRoot`.
 */
export function parseUnit(path: string, texts: string[], instance?: string, stateRoot = '/var/lib'): UnitInfo {
  const unit: UnitInfo = { path, readWritePaths: [], stateDirectories: [], protectSystem: 'no' };
  const paths = (value: string) => value.replace(/%i/g, instance ?? '%i').split(/\s+/).map((p) => p.replace(/^[-+]/, ''));
  for (const text of texts) {
    let section = '';
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#') || line.startsWith(';')) continue;
      const sec = /^\[(.+)\]$/.exec(line);
      if (sec) {
        section = sec[1]!;
        continue;
      }
      if (section !== 'Service') continue;
      const kv = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
      if (!kv) continue;
      const [, key, value] = kv as unknown as [string, string, string];
      if (key === 'User') unit.user = value || undefined;
      else if (key === 'Group') unit.group = value || undefined;
      else if (key === 'ProtectSystem') unit.protectSystem = protectSystem(value);
      else if (key === 'ReadWritePaths') {
        if (!value) unit.readWritePaths = [];
        else unit.readWritePaths.push(...paths(value));
      } else if (key === 'StateDirectory') {
        // systemd creates these, owned by User=, and makes them writable under ProtectSystem=strict.
        if (!value) unit.stateDirectories = [];
        else unit.stateDirectories.push(...paths(value).map((d) => `${stateRoot}/${d.split(':')[0]!}`));
      }
    }
  }
  return unit;
}

/** The deployment's unit and its drop-ins (`*.conf` in each dir, in order); undefined when not installed. */
export async function readUnit(d: Deployment): Promise<UnitInfo | undefined> {
  let main: string;
  try {
    main = await readFile(d.unitPath, 'utf8');
  } catch {
    return undefined;
  }
  const texts = [main];
  for (const dir of d.dropInDirs) {
    const drops = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.conf')).sort();
    texts.push(...(await Promise.all(drops.map((f) => readFile(`${dir}/${f}`, 'utf8').catch(() => '')))));
  }
  return parseUnit(d.unitPath, texts, d.instance, d.stateDir);
}

async function idNumbers(args: string[]): Promise<number[]> {
  const { stdout } = await run('id', args, { timeout: 2000 });
  return stdout.trim().split(/\s+/).map(Number);
}

/** Resolve a user name or numeric uid (and an optional group override) with id(1). */
async function resolveUser(user: string, group: string | undefined, basis: string, groupIds: Record<string, number>): Promise<BotsUser> {
  let uid: number, gid: number, groups: number[];
  try {
    uid = (await idNumbers(['-u', user]))[0] ?? NaN;
    gid = (await idNumbers(['-g', user]))[0] ?? NaN;
    groups = await idNumbers(['-G', user]);
  } catch {
    throw new Error(`no such user "${user}" (${basis})`);
  }
  if (group !== undefined) {
    const g = /^\d+$/.test(group) ? Number(group) : groupIds[group];
    if (g === undefined) throw new Error(`no such group "${group}" (${basis})`);
    gid = g;
    groups = [...new Set([g, ...groups])];
  }
  const name = /^\d+$/.test(user) ? ((await run('id', ['-nu', user], { timeout: 2000 }).catch(() => undefined))?.stdout.trim() ?? user) : user;
  return { name, uid, gid, groups, basis };
}

interface BotsUserSource {
  flag?: string | undefined;
  unit?: UnitInfo | undefined;
  unitPath: string;
}

export async function botsUser(src: BotsUserSource, groupIds: Record<string, number>): Promise<BotsUser> {
  if (src.flag) return resolveUser(src.flag, undefined, '--bots-user', groupIds);
  if (src.unit?.user) return resolveUser(src.unit.user, src.unit.group, `User= in ${src.unit.path}`, groupIds);
  const me = userInfo();
  const why = src.unit ? `${src.unit.path} sets no User=` : `no unit at ${src.unitPath}`;
  return resolveUser(String(me.uid), undefined, `the current user (${why}; pass --bots-user)`, groupIds);
}

/** uid → user name and gid → group name from /etc/passwd and /etc/group (display only). */
export async function nameMaps(): Promise<{ users: Record<number, string>; groups: Record<number, string>; groupIds: Record<string, number> }> {
  const parse = async (file: string) => {
    const out: [string, number][] = [];
    for (const line of (await readFile(file, 'utf8').catch(() => '')).split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && /^\d+$/.test(f[2]!)) out.push([f[0]!, Number(f[2])]);
    }
    return out;
  };
  const [pw, gr] = await Promise.all([parse('/etc/passwd'), parse('/etc/group')]);
  return {
    users: Object.fromEntries(pw.map(([n, id]) => [id, n])),
    groups: Object.fromEntries(gr.map(([n, id]) => [id, n])),
    groupIds: Object.fromEntries(gr),
  };
}
