/**
 * agent/clock-watch.ts on the virtual clock: the monotonic clock is the VirtualClock, the wall
 * clock is it plus a step the test sets (what an NTP step or a VM resume does).
 */
import { describe, expect, it } from 'vitest';
import { ClockWatch } from '../../agent/clock-watch.js';
import { createLogger } from '../../core/log.js';
import { VirtualClock } from '../../standins/virtual-clock.js';

const HOUR = 3600_000;

function rig(withProbe = false) {
  const mono = new VirtualClock();
  let step = 0;
  const lines: { severity: string; event: string; message: string; jumpSeconds?: number; skewSeconds?: number }[] = [];
  const logger = createLogger({ write: (l) => lines.push(JSON.parse(l)), minSeverity: 'DEBUG' });
  const jumps: number[] = [];
  const probes: number[] = [];
  const watch = new ClockWatch({
    logger,
    wallNow: () => mono.now() + step,
    monoNow: () => mono.now(),
    onJump: (j) => jumps.push(j),
    // The server's clock is the monotonic one (true time); the Date header has whole seconds.
    probe: withProbe
      ? () => {
          probes.push(mono.now());
          return Promise.resolve({ sentAt: mono.now() + step, receivedAt: mono.now() + step + 100, date: new Date(mono.now()).toUTCString() });
        }
      : undefined,
  });
  return { mono, watch, lines, jumps, probes, setStep: (ms: number) => (step = ms) };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe('ClockWatch: jumps of the wall clock against the monotonic clock', () => {
  it('a +2 h step is seen on the next reading: WARNING clock_jump with its size, re-evaluation, the agent\'s clock keeps true time', async () => {
    const r = rig();
    await r.mono.advance(60_000);
    expect(r.watch.check()).toBeUndefined();
    r.setStep(2 * HOUR);
    await r.mono.advance(1000);
    // Any reading of the agent's clock sees it (no timer tick needed).
    expect(r.watch.clock.now()).toBe(r.mono.now());
    const warn = r.lines.find((l) => l.event === 'clock_jump');
    expect(warn?.severity).toBe('WARNING');
    expect(warn?.jumpSeconds).toBe(7200);
    expect(warn?.message).toMatch(/jumped \+7200 s/);
    await settle();
    expect(r.jumps).toEqual([2 * HOUR]);
    expect(r.watch.skew).toMatchObject({ ms: 2 * HOUR, by: 'jump' });
    expect(r.watch.appliedSkewMs()).toBe(2 * HOUR);
    expect(r.watch.clock.localSkewMs?.()).toBe(2 * HOUR);
    // …and back: the skew returns to 0, true time throughout.
    r.setStep(0);
    await r.mono.advance(500);
    expect(r.watch.check()).toBe(-2 * HOUR);
    expect(r.watch.skew?.ms).toBe(0);
    expect(r.watch.clock.now()).toBe(r.mono.now());
  });

  it('a −2 h step after a measured skew of 0: the agent\'s clock stays on true time', async () => {
    const r = rig();
    r.watch.measured({ ms: 0, at: r.mono.now(), by: 'saxo' });
    await r.mono.advance(10_000);
    r.setStep(-2 * HOUR);
    await r.mono.advance(10_000);
    expect(r.watch.check()).toBe(-2 * HOUR);
    expect(r.watch.clock.now()).toBe(r.mono.now());
    expect(r.lines.filter((l) => l.event === 'clock_jump')).toHaveLength(1);
  });

  it('drift and small steps under the threshold are left to NTP: no jump, no correction', async () => {
    const r = rig();
    for (let i = 0; i < 20; i++) {
      r.setStep(i * 150); // 150 ms per reading: slewing, not a step
      await r.mono.advance(1000);
      expect(r.watch.check()).toBeUndefined();
    }
    expect(r.lines.filter((l) => l.event === 'clock_jump')).toEqual([]);
    expect(r.watch.appliedSkewMs()).toBe(0);
  });

  it('a skew of 30 s or less is recorded but not corrected for; beyond it, it is', () => {
    const r = rig();
    r.watch.measured({ ms: 29_000, at: 0, by: 'saxo' });
    expect(r.watch.appliedSkewMs()).toBe(0);
    expect(r.watch.clock.now()).toBe(r.mono.now() + 0);
    r.watch.measured({ ms: -45_000, at: 0, by: 'saxo' });
    expect(r.watch.appliedSkewMs()).toBe(-45_000);
  });

  it('after a jump Saxo\'s time is asked (no token): the measured skew replaces the guess, WARNING clock_skew', async () => {
    const r = rig(true);
    await r.mono.advance(5000);
    r.setStep(2 * HOUR + 3000); // a step of 2 h 3 s
    await r.mono.advance(1000);
    r.watch.check();
    await settle();
    await r.watch.probeNow();
    expect(r.probes.length).toBeGreaterThanOrEqual(1);
    expect(r.watch.skew?.by).toBe('saxo');
    expect(Math.abs(r.watch.skew!.ms - (2 * HOUR + 3000))).toBeLessThanOrEqual(1000);
    const skewWarn = r.lines.find((l) => l.event === 'clock_skew');
    expect(skewWarn?.severity).toBe('WARNING');
    expect(skewWarn?.message).toMatch(/720\d s ahead of Saxo/);
    expect(skewWarn?.message).toMatch(/bots .* may misjudge/);
    expect(Math.abs(r.watch.clock.now() - r.mono.now())).toBeLessThanOrEqual(1000);
  });

  it('a skew guessed from a jump is asked again until Saxo answers (a host suspend looks like a jump, and then the wall clock is right)', async () => {
    const mono = new VirtualClock();
    let step = 0;
    let answers = 0;
    const logger = createLogger({ write: () => undefined });
    const watch = new ClockWatch({
      logger,
      wallNow: () => mono.now() + step,
      monoNow: () => mono.now(),
      // Unreachable for the first two asks (the network is not back yet), then the true time.
      probe: () => (++answers <= 2 ? Promise.reject(new Error('ENETUNREACH')) : Promise.resolve({ sentAt: mono.now() + step, receivedAt: mono.now() + step, date: new Date(mono.now() + step).toUTCString() })),
    });
    step = HOUR; // suspended an hour: the wall clock moved, the monotonic one did not — and the wall clock is right
    watch.check();
    expect(watch.skew).toMatchObject({ ms: HOUR, by: 'jump' });
    const stop = watch.start(2, 2);
    try {
      await new Promise<void>((resolve, reject) => {
        const t0 = Date.now();
        const poll = setInterval(() => {
          if (watch.skew?.by === 'saxo') return clearInterval(poll), resolve();
          if (Date.now() - t0 > 5000) return clearInterval(poll), reject(new Error(`still ${JSON.stringify(watch.skew)} after ${answers} asks`));
        }, 5);
      });
    } finally {
      stop();
    }
    expect(answers).toBeGreaterThanOrEqual(3);
    expect(Math.abs(watch.skew!.ms)).toBeLessThanOrEqual(1000);
    expect(watch.appliedSkewMs()).toBe(0);
  });
});
