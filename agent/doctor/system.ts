/**
 * What the system says about the deployment, for `data-dir`: the unit's settings from `systemctl show` (systemd's own merge of
 * the unit, its drop-ins and specifiers), or — where systemd does not run (containers, CI) or has another file loaded than the
 * one judged — the unit file and its drop-ins parsed here; who the bots run as and every name from `getent` (NSS: LDAP too).
 */
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';
import type { Deployment } from '../deployment.js';

const run = async (cmd: string, args: string[]) => (await promisify(execFile)(cmd, args, { timeout: 2000 })).stdout;

/**
 * What doctor knows of the installed unit (with its drop-ins). `stateDirectories`: StateDirectory= entries as absolute
 * paths (writable for the service, like ReadWritePaths=); `protectSystem`: ProtectSystem=, `no` when unset.
 */
export interface UnitInfo {
  path: string;
  user?: string | undefined;
  group?: string | undefined;
  readWritePaths: string[];
  stateDirectories: string[];
  protectSystem: 'no' | 'yes' | 'full' | 'strict';
}

/**
 * The [Service] keys doctor reasons about, as systemd reads them: later files win, an empty assignment resets, `ReadWritePaths=`/
 * `StateDirectory=` accumulate; `%i` is the instance, `StateDirectory=` lives under `stateRoot`. Reads `systemctl show` lines too.
 */
export function parseUnit(path: string, texts: string[], instance?: string, stateRoot = '/var/lib'): UnitInfo {
  const unit: UnitInfo = { path, readWritePaths: [], stateDirectories: [], protectSystem: 'no' };
  const paths = (value: string) => value.replace(/%i/g, instance ?? '%i').split(/\s+/).map((p) => p.replace(/^[-+]/, ''));
  for (const text of texts) {
    let section = '';
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      section = /^\[(.+)\]$/.exec(line)?.[1] ?? section;
      const kv = section === 'Service' ? /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line) : null;
      if (!kv) continue;
      const [, key, value] = kv as unknown as [string, string, string];
      const v = value.toLowerCase();
      if (key === 'User') unit.user = value || undefined;
      else if (key === 'Group') unit.group = value || undefined;
      else if (key === 'ProtectSystem') unit.protectSystem = v === 'full' || v === 'strict' ? v : ['yes', 'true', 'on', '1'].includes(v) ? 'yes' : 'no';
      else if (key === 'ReadWritePaths') unit.readWritePaths = value ? [...unit.readWritePaths, ...paths(value)] : [];
      else if (key === 'StateDirectory') unit.stateDirectories = value ? [...unit.stateDirectories, ...paths(value).map((d) => `${stateRoot}/${d.split(':')[0]!}`)] : [];
    }
  }
  return unit;
}

/** The deployment's unit: systemd's view when it has this very file loaded, else the files; undefined when not installed. */
export async function readUnit(d: Deployment): Promise<UnitInfo | undefined> {
  const shown = await run('systemctl', ['show', '-p', 'LoadState,FragmentPath,User,Group,ReadWritePaths,StateDirectory,ProtectSystem', `${d.unit}.service`]).catch(() => '');
  const lines = shown.split('\n');
  if (lines.includes('LoadState=loaded') && lines.includes(`FragmentPath=${d.unitPath}`)) return parseUnit(d.unitPath, [`[Service]\n${shown}`], d.instance, d.stateDir);
  const main = await readFile(d.unitPath, 'utf8').catch(() => undefined);
  if (main === undefined) return undefined;
  const confs = await Promise.all(d.dropInDirs.map(async (dir) => (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.conf')).sort().map((f) => `${dir}/${f}`)));
  const drops = await Promise.all(confs.flat().map((path) => readFile(path, 'utf8').catch(() => '')));
  return parseUnit(d.unitPath, [main, ...drops], d.instance, d.stateDir);
}

/** `getent passwd|group [key]`: name:x:id:… lines. */
async function getent(db: 'passwd' | 'group', key?: string): Promise<[string, number, number][]> {
  const text = await run('getent', key === undefined ? [db] : [db, key]).catch(() => '');
  return text.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 3 && /^\d+$/.test(f[2]!)).map((f) => [f[0]!, Number(f[2]), Number(f[3])]);
}

/** The user the bots (and the agent's unit) run as, and how doctor knows (`basis`); `groups`: primary and supplementary ids. */
export type BotsUser = Awaited<ReturnType<typeof resolveUser>>;

/** Resolve a user name or numeric uid (and an optional group override). */
async function resolveUser(user: string, group: string | undefined, basis: string, groupIds: Record<string, number>) {
  const [pw] = await getent('passwd', user);
  if (!pw) throw new Error(`no such user "${user}" (${basis})`);
  const gid = group === undefined ? pw[2] : /^\d+$/.test(group) ? Number(group) : groupIds[group];
  if (gid === undefined) throw new Error(`no such group "${group}" (${basis})`);
  // `getent initgroups NAME`: the name, then the supplementary group ids.
  const extra = (await run('getent', ['initgroups', pw[0]]).catch(() => '')).trim().split(/\s+/).slice(1).map(Number);
  return { name: pw[0], uid: pw[1], gid, groups: [...new Set([gid, pw[2], ...extra])].filter(Number.isFinite), basis };
}

/** `--bots-user`, else the unit's `User=`/`Group=`, else the user running doctor. */
export async function botsUser(src: { flag?: string | undefined; unit?: UnitInfo | undefined; unitPath: string }, groupIds: Record<string, number>) {
  if (src.flag) return resolveUser(src.flag, undefined, '--bots-user', groupIds);
  if (src.unit?.user) return resolveUser(src.unit.user, src.unit.group, `User= in ${src.unit.path}`, groupIds);
  const why = src.unit ? `${src.unit.path} sets no User=` : `no unit at ${src.unitPath}`;
  return resolveUser(String(userInfo().uid), undefined, `the current user (${why}; pass --bots-user)`, groupIds);
}

/** uid → user name and gid → group name (display only), and group name → gid. */
export async function nameMaps() {
  const [pw, gr] = await Promise.all([getent('passwd'), getent('group')]);
  return { users: Object.fromEntries(pw.map(([n, id]) => [id, n])), groups: Object.fromEntries(gr.map(([n, id]) => [id, n])), groupIds: Object.fromEntries(gr.map(([n, id]) => [n, id])) };
}
