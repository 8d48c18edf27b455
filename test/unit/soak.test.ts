/**
 * The seeded virtual-time soak (tools/soak): clean seeds stay clean, a seed replays exactly, and
 * deliberately broken builds are caught.
 */
import { describe, expect, it } from 'vitest';
import { runSoak } from '../../tools/soak/sim.js';
import { main } from '../../tools/soak/main.js';

describe('soak simulator', () => {
  it.each([1, 2, 3])('seed %i × 1 day: 0 violations, token always valid, real refreshes happened', async (seed) => {
    const r = await runSoak({ seed, days: 1 });
    expect(r.violations).toEqual([]);
    expect(r.downtimeSec).toBe(0);
    expect(r.refreshes).toBeGreaterThan(100);
    expect(r.lines.at(-1)).toBe(`soak: 1 days, ${r.refreshes} refreshes, 0 violations`);
  });

  it('the same seed twice gives identical output (verbose, via the CLI entry)', async () => {
    const run = async () => {
      const out: string[] = [];
      const code = await main(['--seed', '7', '--days', '1', '--verbose'], (l) => out.push(l));
      return { code, out };
    };
    const a = await run();
    const b = await run();
    expect(a.out[0]).toBe('soak: seed 7');
    expect(a.out.length).toBeGreaterThan(10);
    expect(b).toEqual(a);
  });

  it.each(['lease', 'generation', 'recovery'] as const)('--break %s is detected (violations > 0)', async (breakMode) => {
    const r = await runSoak({ seed: 1, days: 1, breakMode });
    expect(r.violations.length).toBeGreaterThan(0);
    expect(r.lines.at(-1)).toMatch(/^soak: 1 days, \d+ refreshes, [1-9]\d* violations$/);
  });

  it('--seeds prints one line per seed and an aggregate last line; exit code follows violations', async () => {
    const out: string[] = [];
    const code = await main(['--seed', '1', '--seeds', '2', '--days', '1'], (l) => out.push(l));
    expect(code).toBe(0);
    expect(out.filter((l) => l.startsWith('seed '))).toHaveLength(2);
    expect(out.at(-1)).toMatch(/^soak: 2 seeds × 1 days, \d+ refreshes, 0 violations$/);
    expect(await main(['--seed', '1', '--days', '1', '--break', 'lease'], () => undefined)).toBe(1);
    expect(await main(['--bogus'], () => undefined)).toBe(2);
  });
});
