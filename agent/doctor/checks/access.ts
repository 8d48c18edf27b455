/**
 * Unix permission reasoning for a given user (not for whoever runs doctor: as root, every
 * access(2) succeeds and says nothing about the bots).
 */
import type { BotsUser, FileInfo } from '../facts.js';
import { sh } from '../types.js';

/** Whether `u` may `want` ('r', 'w', 'x' letters) on `f`, by the owner/group/other class rule. */
export function can(f: Pick<FileInfo, 'uid' | 'gid' | 'mode' | 'kind'>, u: Pick<BotsUser, 'uid' | 'groups'>, want: string): boolean {
  if (u.uid === 0) return !want.includes('x') || f.kind === 'dir' || (f.mode & 0o111) !== 0;
  const bits = f.uid === u.uid ? (f.mode >> 6) & 7 : u.groups.includes(f.gid) ? (f.mode >> 3) & 7 : f.mode & 7;
  const need = (want.includes('r') ? 4 : 0) | (want.includes('w') ? 2 : 0) | (want.includes('x') ? 1 : 0);
  return (bits & need) === need;
}

export const octal = (mode: number) => `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;

interface Names {
  users: Record<number, string>;
  groups: Record<number, string>;
}

/** "calypso:calypso" / "nobody(65534):nogroup(65534)". */
export function owner(f: Pick<FileInfo, 'uid' | 'gid'>, n: Names): string {
  const u = n.users[f.uid];
  const g = n.groups[f.gid];
  return `${u ? `${u}(${f.uid})` : f.uid}:${g ? `${g}(${f.gid})` : f.gid}`;
}

export function userName(u: BotsUser, n: Names): { user: string; group: string } {
  return { user: u.name, group: n.groups[u.gid] ?? String(u.gid) };
}

/** `sudo chown U:G path && sudo chmod MODE path` */
export function chownFix(path: string, u: BotsUser, n: Names, mode: string): string {
  const { user, group } = userName(u, n);
  return `sudo chown ${sh(user)}:${sh(group)} ${sh(path)} && sudo chmod ${mode} ${sh(path)}`;
}
