/**
 * The agent's lifecycle: the real Reconciler over the simulated ports, its triggers (startup, the
 * 60 s tick, the 5 s upstream retry, events waiting for it), kill -9 from outside, and systemd
 * bringing it back — with I3 checked at each death.
 */
import { ClockWatch } from '../../../agent/clock-watch.js';
import { Reconciler } from '../../../agent/reconciler.js';
import { busPort, cachePort, journalPort, lockPort, Proc, saxoPort, statePort, storePort } from '../procs.js';
import type { World } from '../world.js';
import { deliver } from './pubsub.js';

const SEC = 1000;

export function startAgent(w: World): void {
  const proc = new Proc(`agent#${++w.agentN}`, 'agent');
  // The agent reads its VM's wall clock (stepped by clock-step faults) through the same ClockWatch as
  // agent/agent.ts: a jump against the monotonic clock is corrected, and Saxo's Date confirms it.
  const watch = new ClockWatch({
    logger: w.loggerFor(proc),
    wallNow: () => w.clock.now() + w.agentClockStepMs,
    monoNow: () => w.clock.now(),
    probe: () =>
      Promise.resolve(
        w.now() < w.saxoDownUntil ? undefined : { sentAt: w.clock.now() + w.agentClockStepMs, receivedAt: w.clock.now() + w.agentClockStepMs, date: new Date(w.clock.now()).toUTCString() },
      ),
    onJump: () => {
      if (!proc.dead) w.fire(rec.run({ kind: 'tick' }), proc.name);
    },
  });
  const clock = { now: watch.clock.now, sleep: (ms: number, signal?: AbortSignal) => w.clock.sleep(ms, signal), localSkewMs: watch.clock.localSkewMs };
  const rec = new Reconciler({
    clock,
    clockWatch: watch,
    cache: cachePort(w, proc),
    lock: lockPort(w, proc),
    state: statePort(w, proc),
    saxo: saxoPort(w, proc),
    store: storePort(w, proc),
    bus: busPort(w, proc),
    logger: w.loggerFor(proc),
    settings: w.agentSettings,
    journal: journalPort(w, proc),
  });
  proc.revertOnKill = w.breakMode === 'recovery';
  const a = { proc, rec, since: w.now() };
  w.agent = a;
  proc.onKill = () => agentDied(w, proc);
  const tick = () => {
    if (proc.dead) return;
    w.fire(rec.run({ kind: 'tick' }), proc.name);
    w.clock.at(w.now() + 60 * SEC, tick);
  };
  // As agent/agent.ts: retry a pending upstream push every 5 s.
  const pushRetry = () => {
    if (proc.dead) return;
    if (rec.hasPendingPush) w.fire(rec.run({ kind: 'push' }), proc.name);
    w.clock.at(w.now() + 5 * SEC, pushRetry);
  };
  w.clock.at(w.now() + 5 * SEC, pushRetry);
  w.fire(
    (async () => {
      await rec.load();
      await rec.run({ kind: 'startup' });
      for (const e of w.pendingEvents.splice(0)) deliver(w, e);
      w.clock.at(w.now() + 60 * SEC, tick);
    })(),
    proc.name,
  );
}

/** kill -9 from outside; systemd brings the agent back after `downMs` (unless the VM is down). */
export function killAgent(w: World, downMs: number): void {
  const a = w.agent;
  if (!a) return;
  w.restartAfter = downMs;
  a.proc.kill();
}

function agentDied(w: World, proc: Proc): void {
  if (w.agent?.proc !== proc) return;
  w.agent = undefined;
  w.crashes.push(proc.name);
  // I3: the newest pair this process received must be where startup looks (unless it moved on).
  const rt = proc.received;
  const e = rt ? w.ledger.byRefresh.get(rt) : undefined;
  if (e && !e.consumed) {
    const found = w.cacheToken()?.refreshToken === rt || w.state.value?.token?.refreshToken === rt || w.latestSecretToken() === rt;
    if (!found) w.violate('I3', `${proc.name} died holding pair #${e.seq}, which startup cannot find`);
  }
  const plan = proc.crashAt && proc.armed ? w.planDownMs : w.restartAfter;
  w.restartAfter = 10 * SEC;
  w.clock.at(w.now() + plan, () => {
    if (!w.vmDown && !w.agent) startAgent(w);
  });
}
