/** Check 3 (the bots' flock) and check 9 (the agent: instance lock, state file, failures). */
import type { Facts, LockHolder } from '../facts.js';
import { agentSeenRecently } from '../../status.js';
import { fold, human, skip, type CheckResult, type Finding } from '../types.js';
import { dirMissing } from './data-dir.js';

function describeHolders(holders: LockHolder[]): string {
  if (!holders.length) return 'a process this doctor cannot see (another pid namespace?)';
  return holders.map((h) => (h.pid > 0 ? `pid ${h.pid}${h.command ? ` (${h.command})` : ''}` : 'a process in another pid namespace')).join(', ');
}

export function lockCheck(f: Facts): CheckResult {
  const l = f.lock;
  const path = f.config.lockPath;
  const missing = dirMissing(f);
  if (missing) return skip('lock', `${missing} (see data-dir)`);
  switch (l.state) {
    case 'missing':
      return skip('lock', `${path} does not exist yet: the first bot or agent to lock creates it (doctor does not)`);
    case 'free':
      return { id: 'lock', status: 'ok', summary: `flock(LOCK_EX|LOCK_NB) on ${path} taken and released in ${l.ms} ms`, details: { state: 'free' } };
    case 'held': {
      const pids = l.holders.filter((h) => h.pid > 0).map((h) => h.pid);
      return {
        id: 'lock',
        status: 'warn',
        summary: `${path} is held by ${describeHolders(l.holders)}: a refresh or cache write in progress, or a stuck holder every bot now waits on (30 s, then they fail)`,
        fix: pids.length ? `ps -o pid,etime,args -p ${pids.join(',')}  # still there after a minute? stop that process` : `cat /proc/locks`,
        details: { state: 'held', holders: l.holders },
      };
    }
    case 'error':
      return {
        id: 'lock',
        status: 'warn',
        summary: `cannot try the lock on ${path}: ${l.error}`,
        fix: `run doctor as the bots' user or root: sudo -u <bots user> npx token-keeper doctor${f.deployment.cliFlags}`,
      };
  }
}

export function agentCheck(f: Facts): CheckResult {
  const c = f.config;
  const findings: Finding[] = [];
  const state = f.state.ok ? f.state.value : undefined;
  const seenAgo = state?.agentSeenAt !== undefined ? f.now - state.agentSeenAt : undefined;
  const seen = seenAgo !== undefined ? `last seen ${human(seenAgo)} ago` : 'never seen (no state file)';
  const fresh = agentSeenRecently(seenAgo, c.checkIntervalMs);
  const u = f.deployment.unit; // a validated name: safe to paste
  const start = `sudo systemctl enable --now ${u}; journalctl -u ${u} -n 50`;
  const i = f.instance;
  let running = '';
  if (i.state === 'held') {
    running = `running: ${describeHolders(i.holders)}`;
    if (!fresh) {
      findings.push({
        status: 'warn',
        text: `running but ${seen} (expected every ${human(c.checkIntervalMs)}): its check loop may be stuck`,
        fix: `journalctl -u ${u} -n 50; sudo systemctl restart ${u}`,
      });
    }
  } else if (i.state === 'unknown') {
    running = `cannot tell whether it runs (${i.reason})`;
    if (!fresh) findings.push({ status: 'warn', text: `${running}; ${seen}`, fix: start });
  } else {
    findings.push({ status: 'fail', text: `not running, ${seen}: nothing copies new tokens into the bots' cache`, fix: start });
  }
  if (!f.state.ok) findings.push({ status: 'warn', text: `agent state file unreadable: ${f.state.error}` });
  const failures = state?.failures ?? 0;
  if (failures > 0) {
    findings.push({
      status: failures >= c.maxRefreshFailures ? 'fail' : 'warn',
      text: `${failures} consecutive refresh failure(s) (ALERT at ${c.maxRefreshFailures})`,
      fix: `journalctl -u ${u} -n 100 -o cat | grep -E '"(refresh_api_failed|secret_unavailable|login_required)"'`,
    });
  }
  // The agent's own view of its Pub/Sub pull (event-bus.ts): a code retrying cannot heal.
  if (state?.subscription) findings.push({ status: 'fail', text: `the agent cannot pull ${state.subscription.subscription} (${state.subscription.code}): no TOKEN_ROTATED pushes arrive`, fix: state.subscription.problem });
  return fold('agent', `${running}; ${seen}; 0 consecutive failures`, findings, {
    instanceLock: i.state,
    holders: i.state === 'held' ? i.holders : undefined,
    lastSeenSecondsAgo: seenAgo !== undefined ? Math.round(seenAgo / 1000) : undefined,
    consecutiveFailures: failures,
  });
}
