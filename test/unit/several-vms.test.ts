/**
 * Several VMs with Secret Manager unreachable: one presenter (docs/DESIGN.md "Several VMs"), on the
 * virtual clock — the scenarios of test/integration/several-vms.test.ts in simulated time: two real
 * Reconcilers (the primary and one with TOKEN_KEEPER_PRIMARY=false) and the function's
 * runCloudRefresh over one Saxo model, one Secret Manager (the real adapter over the stand-in's
 * model) and one clock, ticking as agent.ts does. What only real processes show (two agents on their
 * own data dirs, `status` exiting 1 on the waiting VM) stays in that file's real-time smoke test.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SecretStoreError } from '../../core/errors.js';
import type { TokenSet } from '../../core/token.js';
import { runCloudRefresh } from '../../functions/refresher.js';
import { MemoryEventBus, MemorySecretStore, VirtualClock } from '../../standins/memory.js';
import { agentRig, cloudRig, RecordingSaxo, SEC, settleWithClock, type AgentRig } from '../helpers/memory-rig.js';

const rigs: { leaks(): string[] }[] = [];
afterEach(() => {
  for (const r of rigs.splice(0)) expect(r.leaks()).toEqual([]);
});

/** Refresh tokens presented more than once. */
const duplicates = (xs: string[]) => xs.length - new Set(xs).size;

/** One world: a clock, Saxo (`accessSec`/`refreshSec` lifetimes), Secret Manager, Pub/Sub. */
function world(accessSec: number, refreshSec: number) {
  const clock = new VirtualClock();
  const saxo = new RecordingSaxo(clock);
  saxo.accessLifetimeSec = accessSec;
  saxo.refreshLifetimeSec = refreshSec;
  const store = new MemorySecretStore();
  const bus = new MemoryEventBus();
  /** A pair as the rig's seedSecret stores it: `leftSec` of access left, generation 1. */
  const seed = async (leftSec: number): Promise<TokenSet> => {
    const r = saxo.issue();
    const now = clock.now();
    const t: TokenSet = {
      accessToken: r.accessToken,
      refreshToken: r.refreshToken,
      accessExpiresAt: now + leftSec * SEC,
      refreshExpiresAt: now + refreshSec * SEC,
      issuedAt: now,
      generation: 1,
      source: 'seed',
      appKey: 'rig-app-key',
      appSecret: 'rig-app-secret-5bQ8zLx2',
      extra: {},
    };
    await store.add(t);
    return t;
  };
  return { clock, saxo, store, bus, seed };
}

/** A VM's agent in the world: its own cache, lock and state; `env` as the process would get it. */
async function vm(w: ReturnType<typeof world>, env: Record<string, string>): Promise<AgentRig> {
  const r = agentRig({ clock: w.clock, saxo: w.saxo, store: w.store, bus: w.bus, cloud: true, env: { TOKEN_EXPIRY_MARGIN_SECONDS: '1', REFRESH_TOKEN_ALERT_SECONDS: '0', ...env } });
  rigs.push(r);
  await r.reconciler.load();
  await settleWithClock(r.reconciler.run({ kind: 'startup' }), w.clock);
  return r;
}

/** What agent.ts does each CHECK_INTERVAL: a tick, and the push retry while something waits upstream. */
async function check(r: AgentRig): Promise<void> {
  await settleWithClock(r.reconciler.run({ kind: 'tick' }), r.clock);
  if (r.reconciler.hasPendingPush) await settleWithClock(r.reconciler.run({ kind: 'push' }), r.clock);
}

/** Advance `stepMs` at a time, checking every VM, until `done()` (or `maxMs` of virtual time). */
async function until(w: ReturnType<typeof world>, vms: AgentRig[], stepMs: number, done: () => boolean, what: string, maxMs = 120 * SEC): Promise<void> {
  for (let waited = 0; !done() && waited < maxMs; waited += stepMs) {
    await w.clock.advance(stepMs);
    for (const r of vms) await check(r);
  }
  expect(done(), `${what} within ${maxMs / SEC} s of virtual time`).toBe(true);
}

describe('several VMs, Secret Manager down: only the primary presents (virtual clock)', () => {
  it('the primary refreshes without the lease; the other waits (says why, its state shows it), then adopts the pushed pair', async () => {
    const w = world(60, 300);
    const seed = await w.seed(35);
    const tiers = { CHECK_INTERVAL_SECONDS: '0.5', REFRESH_THRESHOLD_SECONDS: '30', CLOUD_REFRESH_THRESHOLD_SECONDS: '45', BOT_REFRESH_THRESHOLD_SECONDS: '10', SAXO_HTTP_TIMEOUT_SECONDS: '1', LEASE_TTL_SECONDS: '10' };
    const a = await vm(w, { ...tiers, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-a' });
    const b = await vm(w, { ...tiers, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-b', TOKEN_KEEPER_PRIMARY: 'false' });
    expect((await a.cached())?.refreshToken).toBe(seed.refreshToken);
    expect((await b.cached())?.refreshToken).toBe(seed.refreshToken);

    w.store.unavailable = true;
    await until(w, [a, b], 500, () => a.log.events('token_refreshed').length > 0 && b.log.events('awaiting_primary').length > 0, 'the primary to refresh and the other to wait');
    const refreshed = a.log.events('token_refreshed')[0]!;
    const waiting = b.log.events('awaiting_primary')[0]!;
    expect(waiting.severity).toBe('WARNING');
    // One presentation of the seed's refresh token, by the primary; none by the other VM.
    expect(w.saxo.presented.filter((t) => t === seed.refreshToken)).toHaveLength(1);
    expect(b.log.events('refresh_started')).toEqual([]);
    expect(refreshed.by).toBe('agent:vm-a');
    // What `status` on the waiting VM reads (the smoke test runs `status` itself: exit 1, the reason).
    expect(b.state.value?.awaiting?.reason).toMatch(/not the primary/);

    // Secret Manager answers again: the primary pushes its pair, the other VM adopts it.
    const bFrom = b.log.records().length;
    w.store.unavailable = false;
    const since = (r: AgentRig, event: string) => r.log.records().slice(bFrom).filter((l) => l.event === event);
    await until(w, [a, b], 500, () => a.log.events('secret_version_added').length > 0, 'the primary to push');
    await until(w, [a, b], 500, () => since(b, 'token_adopted').length > 0 && since(b, 'cache_written').length > 0, 'the other VM to adopt the pushed pair and write its cache');
    expect((await b.cached())?.refreshToken).toBe((await a.cached())?.refreshToken);
    expect(w.saxo.stats.reusedPresentations).toBe(0);
    expect(duplicates(w.saxo.presented)).toBe(0);
  });

  it('after the outage, the function waits for the agent\'s pending push instead of presenting the pair the agent consumed (40 s / 160 s tokens)', async () => {
    const w = world(40, 160);
    const seed = await w.seed(25);
    // Agent tier 10 s; the function: cloud 20 s, Scheduler every 10 s, lease 5 s (last chance at
    // 2×10 + 2×5 + 2×1 = 32 s of refresh-token life).
    const tiers = { REFRESH_THRESHOLD_SECONDS: '10', CLOUD_REFRESH_THRESHOLD_SECONDS: '20', BOT_REFRESH_THRESHOLD_SECONDS: '4', CLOUD_SCHEDULE_SECONDS: '10', LEASE_TTL_SECONDS: '5', CHECK_INTERVAL_SECONDS: '1', SAXO_HTTP_TIMEOUT_SECONDS: '1' };
    const agent = await vm(w, { ...tiers, TOKEN_KEEPER_HOLDER_ID: 'agent:patience' });
    w.store.unavailable = true;
    await until(w, [agent], 1000, () => agent.log.events('token_refreshed').length > 0, 'the agent to refresh locally'); // the seed's refresh token is now spent
    const fn = cloudRig({ clock: w.clock, saxo: w.saxo, store: w.store, env: { ...tiers, TOKEN_EXPIRY_MARGIN_SECONDS: '1', REFRESH_TOKEN_ALERT_SECONDS: '0' } });
    rigs.push(fn);
    // Secret Manager answers again, and the Scheduler's run comes before the agent's push has
    // landed (held back here by refusing AddSecretVersion, so the order is certain).
    const add = w.store.add;
    w.store.add = () => Promise.reject(new SecretStoreError('unavailable', 'AddSecretVersion: injected UNAVAILABLE'));
    w.store.unavailable = false;
    const first = await settleWithClock(runCloudRefresh(fn.deps), w.clock);
    w.store.add = add;
    expect(first).toMatchObject({ outcome: 'deferred', reason: 'awaiting_lower_tiers' });
    expect(w.saxo.presented.filter((t) => t === seed.refreshToken)).toHaveLength(1); // the agent's, only
    // The agent's push lands; the next run finds the agent's pair and presents nothing spent.
    await until(w, [agent], 1000, () => agent.log.events('secret_version_added').length > 0, "the agent's push", 15 * SEC);
    const second = await settleWithClock(runCloudRefresh(fn.deps), w.clock);
    expect(['fresh', 'refreshed']).toContain(second.outcome);
    expect(w.saxo.stats.reusedPresentations).toBe(0);
    expect(duplicates(w.saxo.presented)).toBe(0);
  });
});
