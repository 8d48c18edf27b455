/**
 * `data-dir`, `data-dir.files`, `data-dir.tmp`, `data-dir.space`: the data dir and its files, judged for the bots' user — access
 * is reasoned from owner/group/mode for that user, never tried as whoever runs doctor (as root every access succeeds and proves
 * nothing). Read-only: files are lstat'ed, the dir listed and statfs'ed; nothing is opened for writing or created.
 */
import { promises as fsp } from 'node:fs';
import { basename } from 'node:path';
import type { Config } from '../../../core/config.js';
import { isTmpNameOf } from '../../atomic-write.js';
import { statNoFollow, type FileInfo } from '../../lock-holders.js';
import type { Facts } from '../doctor.js';
import type { BotsUser, UnitInfo } from '../system.js';
import { attempt, fold, human, result, sh, skip, type CheckResult, type Finding, type Probe } from '../types.js';

/** Tmp files of writers that died mid-write: the bots' `saxo_token_cache.tmp`, and atomic-write's own (its naming rule). */
export const isTmpName = (name: string, c: Pick<Config, 'cachePath' | 'statePath'>): boolean => name === 'saxo_token_cache.tmp' || isTmpNameOf(c.cachePath, name) || isTmpNameOf(c.statePath, name);

/** `space.files`: the filesystem's inode count; 0 where inodes are allocated on demand (btrfs): no inode limit. */
export type DataDirFacts = Awaited<ReturnType<typeof dataDirFacts>>;
export async function dataDirFacts(config: Config, now: number, t: number) {
  const [dir, cache, lock, state] = await Promise.all([config.dataDir, config.cachePath, config.lockPath, config.statePath].map((p) => attempt(() => statNoFollow(p), t)));
  const present = dir!.ok && dir!.value?.kind === 'dir';
  const [tmpFiles, space] = await Promise.all([
    attempt(async () => {
      const names = present ? (await fsp.readdir(config.dataDir)).filter((n) => isTmpName(n, config)).sort((a, b) => a.localeCompare(b)) : [];
      const stats = await Promise.all(names.map((name) => statNoFollow(`${config.dataDir}/${name}`).catch(() => undefined)));
      return names.flatMap((name, i) => (stats[i] ? [{ name, ageMs: now - stats[i].mtimeMs }] : []));
    }, t),
    attempt(async () => {
      if (!present) throw new Error('no data dir');
      const s = await fsp.statfs(config.dataDir);
      return { freeBytes: s.bavail * s.bsize, freeInodes: s.ffree, files: s.files };
    }, t),
  ]);
  return { dir: dir!, cache: cache!, lock: lock!, state: state!, tmpFiles, space };
}

/** Whether `u` may `want` ('r', 'w', 'x' letters) on `f`, by the owner/group/other class rule. */
export function can(f: Pick<FileInfo, 'uid' | 'gid' | 'mode' | 'kind'>, u: Pick<BotsUser, 'uid' | 'groups'>, want: string): boolean {
  if (u.uid === 0) return !want.includes('x') || f.kind === 'dir' || (f.mode & 0o111) !== 0;
  const bits = f.uid === u.uid ? (f.mode >> 6) & 7 : u.groups.includes(f.gid) ? (f.mode >> 3) & 7 : f.mode & 7;
  const need = (want.includes('r') ? 4 : 0) | (want.includes('w') ? 2 : 0) | (want.includes('x') ? 1 : 0);
  return (bits & need) === need;
}

const octal = (mode: number) => `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
type Names = Facts['names'];

/** "calypso(1000):calypso(1000)", or bare ids where no name is known. */
const owner = (f: Pick<FileInfo, 'uid' | 'gid'>, n: Names) =>
  `${n.users[f.uid] ? `${n.users[f.uid]}(${f.uid})` : f.uid}:${n.groups[f.gid] ? `${n.groups[f.gid]}(${f.gid})` : f.gid}`;
const groupName = (u: BotsUser, n: Names) => n.groups[u.gid] ?? String(u.gid);

/** `sudo chown U:G path && sudo chmod MODE path` */
export const chownFix = (path: string, u: BotsUser, n: Names, mode: string) => `sudo chown ${sh(u.name)}:${sh(groupName(u, n))} ${sh(path)} && sudo chmod ${mode} ${sh(path)}`;

/** A tmp file older than this is not a write in progress (writes take milliseconds). */
const STALE_TMP_MS = 60_000;
const MIB = 1024 * 1024;

/** What ProtectSystem= makes read-only for the service (systemd.exec(5)). */
const READ_ONLY: Record<UnitInfo['protectSystem'], string[]> = { no: [], yes: ['/usr', '/boot', '/efi'], full: ['/usr', '/boot', '/efi', '/etc'], strict: ['/'] };

const under = (path: string, root: string) => root === '/' || path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);

/** Why the data dir is unusable for the checks that look inside it, if it is. */
function dirMissing(f: Facts): string | undefined {
  const d = f.dataDir.dir;
  if (!d.ok) return `cannot stat the data dir: ${d.error}`;
  if (!d.value) return `data dir ${f.config.dataDir} does not exist`;
  return d.value.kind !== 'dir' ? `${f.config.dataDir} is not a directory` : undefined;
}

/** A check that looks inside the data dir: skipped (see data-dir) while the dir is unusable. */
export const insideDir = (id: string, check: (f: Facts) => CheckResult) => (f: Facts): CheckResult => {
  const missing = dirMissing(f);
  return missing ? skip(id, `${missing} (see data-dir)`) : check(f);
};

export function dataDirCheck(f: Facts): CheckResult {
  const [dir, cli, d] = [f.config.dataDir, f.deployment.cliFlags, f.dataDir.dir];
  if (!f.botsUser.ok) return result('data-dir', 'fail', `cannot tell who the bots run as: ${f.botsUser.error}`, `npx token-keeper doctor${cli} --bots-user <the bots' user>`);
  const u = f.botsUser.value;
  if (!d.ok && (d.code === 'EACCES' || d.code === 'EPERM')) {
    // The dir may well exist: a parent is closed to whoever runs doctor, which says nothing about the bots.
    const summary = `cannot stat ${dir} as this user (${d.code}): a parent directory is closed to it, so doctor cannot judge the data dir`;
    return result('data-dir', 'warn', summary, `run doctor as the bots' user or root: sudo -u ${sh(u.name)} npx token-keeper doctor${cli}  (or sudo npx token-keeper doctor${cli}); namei -l ${sh(dir)} shows which parent`);
  }
  const missing = dirMissing(f);
  const create = f.config.createDataDir ? '' : ' (or TOKEN_KEEPER_CREATE_DATA_DIR=true for the agent)';
  if (missing || !d.ok || !d.value) return result('data-dir', 'fail', missing!, `sudo install -d -o ${sh(u.name)} -g ${sh(groupName(u, f.names))} -m 0750 ${sh(dir)}${create}`);
  const info = d.value;
  const who = `owner ${owner(info, f.names)}, mode ${octal(info.mode)}`;
  const findings: Finding[] = [];
  if (!can(info, u, 'rwx')) findings.push({ status: 'fail', text: `the bots' user ${u.name} cannot create files in ${dir} (${who}): the bots' tmp-file + rename writes fail`, fix: chownFix(dir, u, f.names, '0750') });
  if ((info.mode & 0o002) !== 0 && (info.mode & 0o1000) === 0) findings.push({ status: 'warn', text: `${dir} is writable by every user (mode ${octal(info.mode)}): anyone can replace the cache`, fix: `sudo chmod o-w ${sh(dir)}` });
  const rw = [...(f.unit?.readWritePaths ?? []), ...(f.unit?.stateDirectories ?? [])];
  const protect = f.unit?.protectSystem ?? 'no';
  if (f.unit && READ_ONLY[protect].some((root) => under(dir, root)) && !rw.some((p) => under(dir, p))) {
    const text = `the unit's ReadWritePaths=/StateDirectory= (${rw.join(' ') || 'none'}) do not include ${dir}: under ProtectSystem=${protect} the agent cannot write there`;
    findings.push({ status: 'fail', text, fix: `sudo systemctl edit ${f.deployment.unit}  # [Service] ReadWritePaths=${dir}` });
  }
  const details = { path: dir, owner: owner(info, f.names), mode: octal(info.mode), botsUser: { name: u.name, uid: u.uid, gid: u.gid, basis: u.basis } };
  return fold('data-dir', `${dir} (${who}) fits the bots' user ${u.name}: ${u.basis}`, findings, details);
}

/** The files the bots and the agent share; `goodModes`: other group bits warn, other "other" bits fail (token material). */
function fileFindings(label: string, path: string, probe: Probe<FileInfo | undefined>, u: BotsUser, f: Facts, goodModes?: number[]): Finding[] {
  if (!probe.ok) return [{ status: 'fail', text: `cannot stat the ${label}: ${probe.error}` }];
  const info = probe.value;
  if (!info) return [];
  const fix = chownFix(path, u, f.names, '0600');
  if (info.kind === 'symlink' && goodModes) return [{ status: 'fail', text: `the ${label} is a symlink (the agent never follows one)`, fix: `sudo rm ${sh(path)} (the agent rewrites it)` }];
  if (info.kind !== 'file' && info.kind !== 'symlink') return [{ status: 'fail', text: `the ${label} is not a regular file`, fix: `sudo rm -r ${sh(path)}` }];
  const out: Finding[] = [];
  if (!can(info, u, 'rw')) out.push({ status: 'fail', text: `the bots' user ${u.name} cannot read and write the ${label} (owner ${owner(info, f.names)}, mode ${octal(info.mode)})`, fix });
  else if (info.uid !== u.uid) out.push({ status: 'warn', text: `the ${label} belongs to ${owner(info, f.names)}, not the bots' user ${u.name}: another user writes it`, fix });
  if (goodModes && !goodModes.includes(info.mode)) {
    const open = (info.mode & 0o007) !== 0;
    const text = `the ${label} has mode ${octal(info.mode)}${open ? ': every user on this host can read the token' : ''} (want ${goodModes.map(octal).join(' or ')})`;
    out.push({ status: open ? 'fail' : 'warn', text, fix: `sudo chmod 0600 ${sh(path)}` });
  }
  return out;
}

export const filesCheck = insideDir('data-dir.files', (f) => {
  if (!f.botsUser.ok) return skip('data-dir.files', "the bots' user is unknown (see data-dir)");
  const [c, u] = [f.config, f.botsUser.value];
  const files = [['cache', c.cachePath, f.dataDir.cache, [0o600, 0o640]], ['lock file', c.lockPath, f.dataDir.lock], ['agent state file', c.statePath, f.dataDir.state, [0o600]]] as const;
  const findings = files.flatMap(([label, path, probe, modes]) => fileFindings(label, path, probe, u, f, modes && [...modes]));
  const present = files.flatMap(([, path, p]) => (p.ok && p.value ? [`${basename(path)} ${owner(p.value, f.names)} ${octal(p.value.mode)}`] : []));
  const absent = files.flatMap(([, path, p]) => (p.ok && !p.value ? [basename(path)] : []));
  return fold('data-dir.files', `${present.join(', ') || 'no files yet'}${absent.length ? `; not yet created: ${absent.join(', ')}` : ''}`, findings);
});

export const tmpCheck = insideDir('data-dir.tmp', (f) => {
  const p = f.dataDir.tmpFiles;
  if (!p.ok) return result('data-dir.tmp', 'warn', `cannot list ${f.config.dataDir}: ${p.error}`);
  const stale = p.value.filter((t) => t.ageMs > STALE_TMP_MS);
  const live = p.value.length - stale.length;
  if (!stale.length) return result('data-dir.tmp', 'ok', live ? `${live} tmp file(s) of a write in progress` : 'no leftover tmp files');
  const summary = `${stale.length} stale tmp file(s) left by a writer that died mid-write: ${stale.map((t) => `${t.name} (${human(t.ageMs)} old)`).join(', ')}`;
  return result('data-dir.tmp', 'warn', summary, `rm -f ${stale.map((t) => sh(`${f.config.dataDir}/${t.name}`)).join(' ')}`, { stale: stale.map((t) => t.name) });
});

export const spaceCheck = insideDir('data-dir.space', (f) => {
  const p = f.dataDir.space;
  if (!p.ok) return result('data-dir.space', 'warn', `cannot read free space: ${p.error}`);
  const { freeBytes, freeInodes, files } = p.value;
  // A filesystem that allocates inodes on demand (btrfs) reports 0 total and 0 free: no inode limit.
  const inodes = files > 0;
  const free = `${Math.floor(freeBytes / MIB)} MiB ${inodes ? `and ${freeInodes} inodes free` : 'free (inodes allocated on demand)'}`;
  const status = freeBytes < MIB || (inodes && freeInodes === 0) ? 'fail' : freeBytes < 50 * MIB ? 'warn' : 'ok';
  const summary = { fail: `${free}: the next cache write fails`, warn: `only ${free}`, ok: free }[status];
  return result('data-dir.space', status, summary, status === 'ok' ? undefined : `df -h ${sh(f.config.dataDir)}; free space on that filesystem`, { ...p.value });
});
