/**
 * The agent's liveness check-in (agent/checkin.ts) and the human status line's rhythm: check-ins
 * every 2 min until the stop, and `token_status` on a change of health, else every 15 min — over
 * the real reconciler and Health with a virtual clock.
 */
import { describe, expect, it } from 'vitest';
import { CHECKIN_INTERVAL_MS, runCheckins, StatusLineGate } from '../../agent/checkin.js';
import { createLogger } from '../../core/log.js';
import { VirtualClock } from '../../standins/virtual-clock.js';
import { agentRig, MIN } from '../helpers/memory-rig.js';

describe('check-in', () => {
  it('logs at once and every 2 minutes, short and without a pid; stops with the signal', async () => {
    const clock = new VirtualClock();
    const lines: string[] = [];
    const ctl = new AbortController();
    const done = runCheckins({ logger: createLogger({ write: (l) => lines.push(l) }), signal: ctl.signal, clock, host: 'vm-a' });
    await clock.advance(CHECKIN_INTERVAL_MS * 3);
    expect(lines).toHaveLength(4);
    ctl.abort();
    await done;
    await clock.advance(CHECKIN_INTERVAL_MS * 3);
    expect(lines).toHaveLength(4);
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(rec).toMatchObject({ severity: 'INFO', event: 'agent_checkin', host: 'vm-a' });
    expect(lines[0]).not.toMatch(/pid|agent:vm-a:\d/);
  });
});

describe('status line gate', () => {
  it('passes a change at once, repeats a steady health every period, and every check with period 0', () => {
    const g = new StatusLineGate();
    const seen = [0, 1, 2, 14, 15, 16, 17].map((m) => g.due('fresh', m * MIN, 15 * MIN));
    expect(seen).toEqual([true, false, false, false, true, false, false]);
    expect(g.due('due', 18 * MIN, 15 * MIN)).toBe(true);
    expect(g.due('due', 19 * MIN, 15 * MIN)).toBe(false);
    const every = new StatusLineGate();
    expect([0, 1, 2].map((m) => every.due('fresh', m * MIN, 0))).toEqual([true, true, true]);
  });

  it('the agent logs token_status once in ten steady one-minute checks (not ten times)', async () => {
    const r = agentRig();
    const t = r.login();
    r.plantCache(t);
    await r.state.write({ token: t, failures: 0 });
    await r.reconciler.load();
    for (let i = 0; i < 10; i++) {
      expect(await r.reconciler.run({ kind: 'tick' })).toBe('idle');
      await r.clock.advance(1 * MIN);
    }
    expect(r.log.events('token_status')).toHaveLength(1);
    expect(r.settings.statusLogMs).toBe(15 * MIN);
  });
});
