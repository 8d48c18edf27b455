/**
 * The configuration is validated as a whole: what cannot work is refused with one clear line
 * (the CLI turns a ConfigError into exit 2), and the tiers' order is checked in one place.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig, MAX_TIMER_MS } from '../../core/config.js';
import { ConfigError } from '../../core/errors.js';
import { cloudMove, lastChanceMs, tierProblems, type Patience, type Tiers } from '../../core/tiers.js';

const load = (env: Record<string, string>) => loadConfig({ TOKEN_KEEPER_DATA_DIR: '/tmp/x', ...env });
const refused = (env: Record<string, string>): string => {
  try {
    load(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(env)}`);
};

describe('loadConfig refuses what cannot work', () => {
  it.each(['CHECK_INTERVAL_SECONDS', 'LOCK_TIMEOUT_SECONDS', 'LEASE_TTL_SECONDS', 'SAXO_HTTP_TIMEOUT_SECONDS', 'CLOUD_SCHEDULE_SECONDS'])(
    '%s=0 (an interval or timeout of nothing)',
    (key) => expect(refused({ [key]: '0' })).toMatch(new RegExp(`^${key} must be a positive number`)),
  );

  it.each(['CHECK_INTERVAL_SECONDS', 'REFRESH_THRESHOLD_SECONDS', 'LOCK_TIMEOUT_SECONDS'])('%s beyond Node\'s timer limit', (key) => {
    expect(refused({ [key]: String(MAX_TIMER_MS / 1000 + 1) })).toMatch(/timer limit/);
  });

  it.each(['-1', 'abc', '', ' ', 'Infinity', '1e400'])('a non-number %j', (v) => {
    if (v === '') return expect(load({ CHECK_INTERVAL_SECONDS: v }).checkIntervalMs).toBe(60_000); // empty = default
    expect(refused({ CHECK_INTERVAL_SECONDS: v })).toMatch(/CHECK_INTERVAL_SECONDS/);
  });

  it('a lease no longer than one Saxo exchange', () => {
    expect(refused({ LEASE_TTL_SECONDS: '10', SAXO_HTTP_TIMEOUT_SECONDS: '10' })).toMatch(/LEASE_TTL_SECONDS \(10\) must be longer than SAXO_HTTP_TIMEOUT_SECONDS \(10\)/);
    expect(load({ LEASE_TTL_SECONDS: '11', SAXO_HTTP_TIMEOUT_SECONDS: '10' }).leaseTtlMs).toBe(11_000);
  });

  it('credentials inside SAXO_AUTH_BASE_URL, without repeating them', () => {
    const msg = refused({ SAXO_AUTH_BASE_URL: 'https://key:hunter2-secret@sim.logonvalidation.net' });
    expect(msg).toMatch(/must not contain credentials/);
    expect(msg).not.toContain('hunter2');
  });

  it('a URL that is not one, or not http(s)', () => {
    expect(refused({ SAXO_AUTH_BASE_URL: 'not a url' })).toMatch(/not a URL/);
    expect(refused({ SAXO_AUTH_BASE_URL: 'ftp://x' })).toMatch(/https/);
  });

  it('booleans are true/false (and 1/0, yes/no)', () => {
    expect(load({ TOKEN_KEEPER_CREATE_DATA_DIR: 'yes' }).createDataDir).toBe(true);
    expect(refused({ TOKEN_KEEPER_CREATE_DATA_DIR: 'maybe' })).toMatch(/true or false/);
    // Standalone is always primary; cloud-connected defaults to primary (a one-VM deployment).
    expect(load({ TOKEN_KEEPER_PRIMARY: 'false' }).primary).toBe(true);
    expect(load({ TOKEN_KEEPER_PRIMARY: 'false', GOOGLE_CLOUD_PROJECT: 'p', TOKEN_SECRET_ID: 's' }).primary).toBe(false);
    expect(load({ GOOGLE_CLOUD_PROJECT: 'p', TOKEN_SECRET_ID: 's' }).primary).toBe(true);
  });
});

describe('tiers', () => {
  const ok = { cloudThresholdMs: 600_000, agentThresholdMs: 300_000, botThresholdMs: 120_000 };
  it('the defaults are in order', () => expect(tierProblems(ok)).toEqual([]));
  it.each([
    ['cloud ≤ agent', { ...ok, cloudThresholdMs: 300_000 }, /CLOUD_REFRESH_THRESHOLD_SECONDS .* must be above REFRESH_THRESHOLD_SECONDS/],
    ['agent ≤ bots', { ...ok, agentThresholdMs: 100_000 }, /REFRESH_THRESHOLD_SECONDS .* must be above the bots' buffer/],
    ['cloud ≥ the token life', { ...ok, cloudThresholdMs: 1_200_000 }, /below the token's usable life/],
  ])('%s is reported with a fix', (_l, t, re) => {
    const p = tierProblems(t);
    expect(p.map((x) => x.message).join('\n')).toMatch(re);
    expect(p.every((x) => /^[A-Z_]+=\d+$/.test(x.fix))).toBe(true);
  });
  it('the fixes are consistent: applying every suggested value leaves no problem (doctor and the agent print the same)', () => {
    const apply = (t: Tiers, fixes: string[]): Tiers => {
      const out = { ...t };
      for (const f of fixes.join(' ').split(' ')) {
        const [k, v] = f.split('=');
        if (k === 'REFRESH_THRESHOLD_SECONDS') out.agentThresholdMs = Number(v) * 1000;
        if (k === 'CLOUD_REFRESH_THRESHOLD_SECONDS') out.cloudThresholdMs = Number(v) * 1000;
      }
      return out;
    };
    const cases: [Tiers, number][] = [
      [{ cloudThresholdMs: 600_000, agentThresholdMs: 700_000, botThresholdMs: 120_000 }, 1_140_000],
      [{ cloudThresholdMs: 600_000, agentThresholdMs: 300_000, botThresholdMs: 120_000 }, 500_000],
      [{ cloudThresholdMs: 600_000, agentThresholdMs: 100_000, botThresholdMs: 120_000 }, 1_140_000],
      [{ cloudThresholdMs: 2_000_000, agentThresholdMs: 1_500_000, botThresholdMs: 120_000 }, 1_140_000],
      [{ cloudThresholdMs: 60_000, agentThresholdMs: 30_000, botThresholdMs: 120_000 }, 300_000],
      [{ agentThresholdMs: 900_000, botThresholdMs: 120_000 }, 600_000],
    ];
    for (const [t, life] of cases) {
      const p = tierProblems(t, life);
      expect(p.length, JSON.stringify(t)).toBeGreaterThan(0);
      const fixed = apply(t, p.map((x) => x.fix));
      expect(tierProblems(fixed, life), `${JSON.stringify(t)} → ${JSON.stringify(fixed)}`).toEqual([]);
    }
    // The case: REFRESH_THRESHOLD_SECONDS=700 no longer suggests a cloud tier above the usable life.
    expect(tierProblems(cases[0]![0])[0]!.fix).toBe('CLOUD_REFRESH_THRESHOLD_SECONDS=920');
  });
  it('standalone has no cloud tier: only agent > bots and agent < life', () => {
    expect(tierProblems({ agentThresholdMs: 300_000, botThresholdMs: 120_000 })).toEqual([]);
    expect(tierProblems({ agentThresholdMs: 300_000, botThresholdMs: 120_000 }, 200_000)[0]?.message).toMatch(/^REFRESH_THRESHOLD_SECONDS/);
  });
});

describe('the cloud\'s patience is derived from the configuration', () => {
  const p: Patience = { agentThresholdMs: 300_000, expiredGraceMs: 2_700_000, schedulePeriodMs: 300_000, leaseTtlMs: 60_000, pushRetryMs: 5_000 };
  it('defaults: last chance at 12 min 13 s of refresh-token life (two Scheduler periods, two leases, a 13 s push grace)', () => {
    expect(lastChanceMs(p)).toBe(733_000);
  });
  it.each([
    ['outside the agent window', 400_000, 3_000_000, 'refresh'],
    ['inside it, plenty of refresh life', 200_000, 3_000_000, 'await_lower_tiers'],
    ['inside it, refresh life at the margin', 200_000, 733_000, 'last_chance'],
    ['expired beyond the grace', -2_700_000, 3_000_000, 'last_chance'],
    ['a bot pair (refresh expiry unknown), just expired', -60_000, undefined, 'await_lower_tiers'],
  ] as const)('%s → %s', (_l, accessLeft, refreshLeft, move) => {
    expect(cloudMove(accessLeft, refreshLeft, p)).toBe(move);
  });
  it('scales with short tokens and a fast Scheduler (40 s / 160 s tokens, every 10 s): it still waits first', () => {
    const short: Patience = { agentThresholdMs: 8_000, expiredGraceMs: 90_000, schedulePeriodMs: 10_000, leaseTtlMs: 5_000, pushRetryMs: 2_000 };
    expect(lastChanceMs(short)).toBe(37_000);
    expect(cloudMove(5_000, 120_000, short)).toBe('await_lower_tiers');
  });
});
