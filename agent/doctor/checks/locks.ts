/**
 * `lock` (the bots' flock can be taken now) and `agent` (instance lock, state file, failures). `saxo_token.lock`: a real
 * non-blocking flock, taken and released at once, only when the file exists (opened without O_CREAT: doctor creates nothing).
 * The agent's instance lock is only looked up, as `status` does (agent/lock-holders.ts: lslocks -J, else /proc/locks).
 */
import { constants as C, closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { holdersOf, type FileInfo, type LockHolder } from '../../lock-holders.js';
import { agentSeenRecently } from '../../status.js';
import { openRegularNoFollowSync, UnsafePathError } from '../../safe-open.js';
import type { Facts } from '../doctor.js';
import { fold, human, result, skip, type CheckResult, type Finding } from '../types.js';
import { insideDir } from './data-dir.js';

const fsExt = createRequire(import.meta.url)('fs-ext') as { flockSync(fd: number, flags: 'exnb' | 'un'): void };

export type LockProbe = { state: 'missing' } | { state: 'free'; ms: number } | { state: 'held'; holders: LockHolder[] } | { state: 'error'; error: string };

/** Try LOCK_EX|LOCK_NB on an existing lock file and release it at once. */
export async function probeFlock(path: string, info: FileInfo | undefined): Promise<LockProbe> {
  if (!info) return { state: 'missing' };
  const start = Date.now();
  let fd: number;
  try {
    fd = openRegularNoFollowSync(path, C.O_RDWR); // no O_CREAT: never create the bots' lock file; never through a link
  } catch (e) {
    return { state: 'error', error: e instanceof UnsafePathError ? `refused: ${e.detail}` : `cannot open: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
  }
  try {
    fsExt.flockSync(fd, 'exnb');
    fsExt.flockSync(fd, 'un');
    return { state: 'free', ms: Date.now() - start };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException | undefined)?.code ?? String(e);
    if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') return { state: 'error', error: `flock failed: ${code}` };
    return { state: 'held', holders: await holdersOf(info).catch(() => []) };
  } finally {
    closeSync(fd);
  }
}

const describeHolders = (holders: LockHolder[]) =>
  holders.map((h) => (h.pid > 0 ? `pid ${h.pid}${h.command ? ` (${h.command})` : ''}` : 'a process in another pid namespace')).join(', ') || 'a process this doctor cannot see (another pid namespace?)';

export const lockCheck = insideDir('lock', (f) => {
  const [l, path] = [f.lock, f.config.lockPath];
  if (l.state === 'missing') return skip('lock', `${path} does not exist yet: the first bot or agent to lock creates it (doctor does not)`);
  if (l.state === 'free') return result('lock', 'ok', `flock(LOCK_EX|LOCK_NB) on ${path} taken and released in ${l.ms} ms`, undefined, { state: 'free' });
  if (l.state === 'error') return result('lock', 'warn', `cannot try the lock on ${path}: ${l.error}`, `run doctor as the bots' user or root: sudo -u <bots user> npx token-keeper doctor${f.deployment.cliFlags}`);
  const pids = l.holders.filter((h) => h.pid > 0).map((h) => h.pid);
  const summary = `${path} is held by ${describeHolders(l.holders)}: a refresh or cache write in progress, or a stuck holder every bot now waits on (30 s, then they fail)`;
  return result('lock', 'warn', summary, pids.length ? `ps -o pid,etime,args -p ${pids.join(',')}  # still there after a minute? stop that process` : `cat /proc/locks`, { state: 'held', holders: l.holders });
});

export function agentCheck(f: Facts): CheckResult {
  const [c, state] = [f.config, f.state.ok ? f.state.value : undefined];
  const findings: Finding[] = [];
  const seenAgo = state?.agentSeenAt !== undefined ? f.now - state.agentSeenAt : undefined;
  const seen = seenAgo !== undefined ? `last seen ${human(seenAgo)} ago` : 'never seen (no state file)';
  const fresh = agentSeenRecently(seenAgo, c.checkIntervalMs);
  const u = f.deployment.unit; // a validated name: safe to paste
  const start = `sudo systemctl enable --now ${u}; journalctl -u ${u} -n 50`;
  const i = f.instance;
  let running = '';
  if (i.state === 'held') {
    running = `running: ${describeHolders(i.holders)}`;
    if (!fresh) findings.push({ status: 'warn', text: `running but ${seen} (expected every ${human(c.checkIntervalMs)}): its check loop may be stuck`, fix: `journalctl -u ${u} -n 50; sudo systemctl restart ${u}` });
  } else if (i.state === 'unknown') {
    running = `cannot tell whether it runs (${i.reason})`;
    if (!fresh) findings.push({ status: 'warn', text: `${running}; ${seen}`, fix: start });
  } else findings.push({ status: 'fail', text: `not running, ${seen}: nothing copies new tokens into the bots' cache`, fix: start });
  if (!f.state.ok) findings.push({ status: 'warn', text: `agent state file unreadable: ${f.state.error}` });
  const failures = state?.failures ?? 0;
  const grep = `journalctl -u ${u} -n 100 -o cat | grep -E '"(refresh_api_failed|secret_unavailable|login_required)"'`;
  if (failures > 0) findings.push({ status: failures >= c.maxRefreshFailures ? 'fail' : 'warn', text: `${failures} consecutive refresh failure(s) (ALERT at ${c.maxRefreshFailures})`, fix: grep });
  // The agent's own view of its Pub/Sub pull (event-bus.ts): a code retrying cannot heal.
  if (state?.subscription) findings.push({ status: 'fail', text: `the agent cannot pull ${state.subscription.subscription} (${state.subscription.code}): no TOKEN_ROTATED pushes arrive`, fix: state.subscription.problem });
  const lastSeenSecondsAgo = seenAgo !== undefined ? Math.round(seenAgo / 1000) : undefined;
  const details = { instanceLock: i.state, holders: i.state === 'held' ? i.holders : undefined, lastSeenSecondsAgo, consecutiveFailures: failures };
  return fold('agent', `${running}; ${seen}; 0 consecutive failures`, findings, details);
}
