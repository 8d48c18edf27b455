/**
 * Is an agent running on this data dir? Its instance lock says so (agent/instance-lock.ts): the
 * kernel releases a flock the moment its holder dies, so a held lock is a live agent and a free one
 * is none — unlike the state file's "last seen" stamp, which stays fresh for a few check intervals
 * after a crash. Looked up (lslocks -J, else /proc/locks) as doctor does (agent/lock-holders.ts): taking the lock,
 * even for a moment, could turn away an agent starting right then.
 */
import { join } from 'node:path';
import { INSTANCE_LOCK_FILE } from './instance-lock.js';
import { probeHeld, statNoFollow } from './lock-holders.js';

export type AgentLiveness =
  | { state: 'running'; pids: number[] }
  | { state: 'not_running'; why: string }
  | { state: 'unknown'; why: string };

export async function agentLiveness(dataDir: string, procLocks?: string): Promise<AgentLiveness> {
  const path = join(dataDir, INSTANCE_LOCK_FILE);
  let info;
  try {
    info = await statNoFollow(path);
  } catch (e) {
    return { state: 'unknown', why: `cannot stat ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})` };
  }
  const probe = await probeHeld(info, procLocks);
  switch (probe.state) {
    case 'held':
      return { state: 'running', pids: probe.holders.map((h) => h.pid) };
    case 'missing':
      return { state: 'not_running', why: `no agent has run on ${dataDir} (${INSTANCE_LOCK_FILE} is missing)` };
    case 'free':
      return { state: 'not_running', why: `no process holds ${path}` };
    case 'unknown':
      return { state: 'unknown', why: probe.reason };
  }
}
