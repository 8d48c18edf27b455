/**
 * Issue 9, item 1 — stopping, on the virtual clock: the scenarios of
 * test/integration/reliability-stop.test.ts in simulated time (the real Reconciler over the in-memory
 * doubles, Saxo answering after 4 s). The stop is the Reconciler's (`agent.ts` calls it on
 * SIGTERM); what only a real process shows — the signal, the exit code, the event order around it,
 * a second signal — stays in that file's one real-time smoke test.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { TokenSet } from '../../core/token.js';
import { agentRig, SEC, settleWithClock, type AgentRig, type AgentRigOptions } from '../helpers/memory-rig.js';

const LIFE = 8; // s; token_expiry = issue + 8 − 1 (margin)
const THRESHOLD = 4; // s: a successor is due 3 s after it was issued
const SAXO_DELAY_MS = 4000;
const ENV = {
  CHECK_INTERVAL_SECONDS: '0.5',
  REFRESH_THRESHOLD_SECONDS: String(THRESHOLD),
  BOT_REFRESH_THRESHOLD_SECONDS: '1',
  TOKEN_EXPIRY_MARGIN_SECONDS: '1',
  REFRESH_TOKEN_ALERT_SECONDS: '0',
  SAXO_HTTP_TIMEOUT_SECONDS: '6',
  TOKEN_KEEPER_HOLDER_ID: 'agent:rel-stop',
};

const rigs: AgentRig[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const r of rigs.splice(0)) expect(r.leaks()).toEqual([]);
});

/** A rig whose cache (and, cloud-connected, secret) holds a live pair with `leftSec` of access left, issued 5 s ago. */
async function seeded(leftSec: number, o: AgentRigOptions = {}): Promise<{ r: AgentRig; token: TokenSet }> {
  const r = agentRig({ ...o, env: { ...ENV, ...o.env } });
  rigs.push(r);
  r.saxo.accessLifetimeSec = LIFE;
  r.saxo.refreshLifetimeSec = 120;
  const now = r.clock.now();
  const token: TokenSet = { ...r.login(7), issuedAt: now - 5 * SEC, accessExpiresAt: now + leftSec * SEC, refreshExpiresAt: now + 120 * SEC, source: 'agent:before' };
  r.plantCache(token);
  if (r.store) await r.store.add(token);
  await r.reconciler.load();
  return { r, token };
}

/** Ticks every CHECK_INTERVAL until `until()` holds (the agent's periodic check). */
async function tickUntil(r: AgentRig, until: () => boolean, maxMs = 30 * SEC): Promise<void> {
  for (let waited = 0; !until() && waited < maxMs; waited += 500) {
    await r.clock.advance(500);
    await settleWithClock(r.reconciler.run({ kind: 'tick' }), r.clock);
  }
  expect(until(), 'the condition was met within the virtual wait').toBe(true);
}

/** Stop with the exchange in flight; resolves with the virtual ms the stop took. */
async function stopTimed(r: AgentRig): Promise<number> {
  const t0 = r.clock.now();
  await settleWithClock(r.reconciler.stop(), r.clock, 50);
  return r.clock.now() - t0;
}

const count = (r: AgentRig, event: string) => r.log.events(event).length;

describe('stopping the agent (item 1), virtual clock', () => {
  it('a stop while Saxo is answering waits for the answer, stores the successor; a restart presents only the successor, when due', async () => {
    const { r, token: old } = await seeded(2); // due at once
    r.saxo.delayMs = SAXO_DELAY_MS;
    const before = { ...r.saxo.stats };
    const run = r.reconciler.run({ kind: 'startup' });
    await r.clock.advance(100);
    expect(r.reconciler.phase).toBe('presenting');
    expect(count(r, 'refresh_started')).toBe(1);
    const ms = await stopTimed(r);
    expect(await run).toBe('refreshed');
    // It waited for the slow answer, and not much longer.
    expect(ms).toBeGreaterThan(SAXO_DELAY_MS - 1500);
    expect(ms).toBeLessThan(SAXO_DELAY_MS + 5000);
    expect(count(r, 'token_refreshed')).toBe(1);

    // The successor is durable in both places; the old token was presented exactly once.
    const cached = (await r.cached())!;
    expect(cached.refreshToken).not.toBe(old.refreshToken);
    expect(r.state.value?.token?.refreshToken).toBe(cached.refreshToken);
    expect(cached.generation).toBe(8);
    expect(r.saxo.isValidAccess(cached.accessToken)).toBe(true);
    const afterStop = { ...r.saxo.stats };
    expect(afterStop.presentations - before.presentations).toBe(1);
    expect(afterStop.reusedPresentations).toBe(0);

    // Restart: nothing is presented until the successor is due; then the successor, once.
    r.saxo.delayMs = 0;
    const dueAt = cached.accessExpiresAt - THRESHOLD * SEC;
    const startedAt: number[] = [];
    r.saxo.onPresent = () => void startedAt.push(r.clock.now());
    const b = await r.restart();
    await settleWithClock(b.run({ kind: 'startup' }), r.clock);
    const fromRestart = count(r, 'token_refreshed');
    await tickUntil(r, () => count(r, 'token_refreshed') > fromRestart);
    expect(count(r, 'refresh_started')).toBe(2); // the restart's only refresh
    expect(startedAt).toHaveLength(1);
    expect(startedAt[0]).toBeGreaterThanOrEqual(dueAt - 100);
    const final = r.saxo.stats;
    expect(final.presentations - afterStop.presentations).toBe(1);
    expect(final.reusedPresentations).toBe(0);
    expect(final.invalidGrants).toBe(before.invalidGrants);
    expect((await r.cached())?.generation).toBe(9);
    expect([...r.log.events('login_required'), ...r.log.events('refresh_failed')]).toEqual([]);
    await settleWithClock(b.stop(), r.clock);
  });

  it('a stop while idle resolves at once and leaves the pair as it was', async () => {
    const { r, token } = await seeded(LIFE * 100);
    expect(await r.reconciler.run({ kind: 'startup' })).not.toBe('refreshed');
    const t0 = r.clock.now();
    await r.reconciler.stop(); // nothing in flight: resolves without the clock moving
    expect(r.clock.now() - t0).toBe(0);
    expect((await r.cached())?.refreshToken).toBe(token.refreshToken);
    expect(r.saxo.stats.presentations).toBe(0);
  });
});

describe('stopping a cloud-connected agent (item 1), virtual clock', () => {
  const CLOUD = { LEASE_TTL_SECONDS: '20', CLOUD_REFRESH_THRESHOLD_SECONDS: '5' };

  it('a stop during a timer check\'s exchange: the successor reaches the secret, the announcement is left in the state and the next start publishes it', async () => {
    const { r, token: old } = await seeded(THRESHOLD + 3, { cloud: true, env: CLOUD }); // due 3 s after the start: a timer check refreshes
    r.saxo.delayMs = SAXO_DELAY_MS;
    await settleWithClock(r.reconciler.run({ kind: 'startup' }), r.clock);
    expect(count(r, 'refresh_started'), 'refreshed by a timer check, not the startup run').toBe(0);
    let tick: Promise<unknown> = Promise.resolve();
    for (let i = 0; i < 60 && r.reconciler.phase !== 'presenting'; i++) {
      await r.clock.advance(500);
      tick = r.reconciler.run({ kind: 'tick' });
      await r.clock.advance(50);
    }
    expect(r.reconciler.phase).toBe('presenting');
    const ms = await stopTimed(r);
    await tick;
    expect(ms).toBeLessThan(SAXO_DELAY_MS + 5_000 + 2_000);
    const refreshed = r.log.events('token_refreshed')[0];
    const version = String(refreshed?.version);
    expect(version).toMatch(/\/versions\/\d+$/);
    expect(r.state.value?.announce?.version).toBe(version);
    const latest = await r.store!.latest();
    expect(latest?.name).toBe(version);
    expect(latest?.token?.refreshToken).toBe((await r.cached())?.refreshToken);
    expect(latest?.token?.refreshToken).not.toBe(old.refreshToken);
    expect(r.log.events('publish_failed')).toEqual([]);
    expect(r.bus!.published).toEqual([]);

    // The next start publishes the announcement and clears it.
    const b = await r.restart();
    await settleWithClock(b.run({ kind: 'startup' }), r.clock);
    // agent.ts retries what waits upstream every few seconds (`push`) while `hasPendingPush`.
    for (let i = 0; i < 5 && b.hasPendingPush; i++) {
      await r.clock.advance(r.settings.pushRetryMs);
      await settleWithClock(b.run({ kind: 'push' }), r.clock);
    }
    const ev = r.bus!.published.find((e) => e.version === version);
    expect(ev?.generation).toBe(latest?.token?.generation);
    expect(r.state.value?.announce).toBeUndefined();
    expect(r.saxo.stats.reusedPresentations).toBe(0);
    expect(await stopTimed(r)).toBeLessThan(5_000);
  });

  it('a stop during the startup run\'s exchange with Secret Manager hanging: the secret is tried for at most 5 s, the successor stays in the cache and the state', async () => {
    const { r, token: old } = await seeded(2, { cloud: true, env: CLOUD });
    r.saxo.delayMs = SAXO_DELAY_MS;
    const run = r.reconciler.run({ kind: 'startup' });
    await r.clock.advance(100);
    expect(r.reconciler.phase).toBe('presenting'); // the lease and the secret read are behind it
    // Secret Manager answers after 8 s from now on (the adapter's stop deadline is a host timer: fake it).
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const store = r.store!;
    for (const m of ['latest', 'add', 'meta', 'acquireLease', 'releaseLease', 'record'] as const) {
      const real = store[m] as (...a: unknown[]) => Promise<unknown>;
      (store as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => new Promise((res) => setTimeout(res, 8_000)).then(() => real(...a));
    }
    const t0 = r.clock.now();
    const stopped = r.reconciler.stop();
    await r.clock.advance(SAXO_DELAY_MS); // Saxo answers
    let hostMs = 0;
    for (; hostMs < 20_000 && r.log.events('secret_push_failed').length === 0; hostMs += 100) await vi.advanceTimersByTimeAsync(100);
    // The secret write was given up on ≤ 5 s after Saxo answered, the successor already stored and
    // the session out of 'persisting': from here the CLI's stop watchdog may exit (the real-time
    // smoke test in test/integration/reliability-stop.test.ts measures that exit).
    const ms = r.clock.now() - t0 + hostMs;
    expect(ms).toBeLessThan(SAXO_DELAY_MS + 5_000 + 2_000);
    expect(r.reconciler.phase).not.toBe('persisting');
    expect(r.state.value?.token?.refreshToken).toBe((await r.cached())?.refreshToken);
    // The lease release still waits on the slow Secret Manager; then the stop is over.
    for (let i = 0; i < 300 && !(await Promise.race([stopped.then(() => true), Promise.resolve(false)])); i++) await vi.advanceTimersByTimeAsync(100);
    await stopped;
    await run;
    vi.useRealTimers();
    const failed = r.log.events('secret_push_failed')[0];
    expect(String(failed?.error)).toMatch(/no answer within 5000 ms while stopping/);
    expect(count(r, 'token_refreshed')).toBe(1);
    expect(r.state.value?.token?.refreshToken).toBe((await r.cached())?.refreshToken);
    expect(r.state.value?.token?.refreshToken).not.toBe(old.refreshToken);
    expect(r.saxo.stats.reusedPresentations).toBe(0);
  });
});
