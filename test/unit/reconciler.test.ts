/**
 * The agent's Reconciler over in-memory ports and a fake clock: every trigger, standalone and
 * cloud-connected. Observables only: Saxo's presentation counts, the cache, secret versions,
 * published events and log lines.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { runCloudRefresh } from '../../functions/refresher.js';
import { serializeFlat } from '../../core/codec.js';
import type { TokenRotatedEvent } from '../../core/ports.js';
import type { TokenSet } from '../../core/token.js';
import { flush } from '../../standins/memory.js';
import { agentRig, cloudRig, MIN, SEC, settleWithClock, type AgentRig, type AgentRigOptions } from '../helpers/memory-rig.js';
import { saxoIssued } from '../helpers/saxo-time.js';

const rigs: { leaks(): string[] }[] = [];
function mk(o: AgentRigOptions = {}): AgentRig {
  const r = agentRig(o);
  rigs.push(r);
  return r;
}
afterEach(() => {
  // I5 across every test: no token or app secret in any log line or event.
  for (const r of rigs.splice(0)) expect(r.leaks()).toEqual([]);
});

/** A rig whose cache and state both hold a fresh generation-1 pair (the steady state). */
async function steady(o: AgentRigOptions = {}): Promise<{ r: AgentRig; t: TokenSet }> {
  const r = mk(o);
  const t = r.login();
  r.plantCache(t);
  await r.state.write({ token: t, failures: 0 });
  if (r.store) await r.store.add(t);
  await r.reconciler.load();
  return { r, t };
}

/** Move the clock so that `t` has `leftMs` of access life left. */
async function until(r: AgentRig, t: TokenSet, leftMs: number): Promise<void> {
  await r.clock.advance(t.accessExpiresAt - leftMs - r.clock.now());
}

const tick = (r: AgentRig) => r.reconciler.run({ kind: 'tick' });

describe('Reconciler, standalone', () => {
  it('fresh token: idle, no presentation, no writes', async () => {
    const { r } = await steady();
    await r.clock.advance(5 * MIN);
    expect(await tick(r)).toBe('idle');
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.cache.writes).toBe(0);
    expect(r.log.messages()).toContain('Token status: valid, 14 minutes until expiry');
  });

  it('due token: exactly one presentation, cache holds generation+1, python-shaped log line', async () => {
    const { r, t } = await steady();
    await until(r, t, 300 * SEC);
    expect(await tick(r)).toBe('refreshed');
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0, refreshes: 1 });
    expect(r.saxo.presented).toEqual([t.refreshToken]);
    const c = await r.cached();
    expect(c?.generation).toBe(2);
    expect(c?.refreshToken).not.toBe(t.refreshToken);
    expect(c?.accessExpiresAt).toBe(saxoIssued(r.clock.now()) + 1140 * SEC); // issued on Saxo's clock
    expect(c?.appKey).toBe(t.appKey);
    expect(r.reconciler.newestKnown?.refreshToken).toBe(c?.refreshToken);
    const done = r.log.events('token_refreshed');
    expect(done.map((x) => x.message)).toEqual(['Token refreshed successfully (expires in 20 min)']);
    expect(done[0]?.severity).toBe('NOTICE');
    expect(r.log.messages()).toContain('Token needs refresh: threshold reached');
    // A second tick right after finds a fresh token.
    expect(await tick(r)).toBe('idle');
    expect(r.saxo.stats.presentations).toBe(1);
  });

  it.each([
    ['older generation', (stale: TokenSet) => stale],
    ['bot-shaped with an earlier expiry', (stale: TokenSet) => ({ ...stale, generation: undefined, issuedAt: undefined })],
  ])('stale pair planted in the cache (%s): rewritten with the newer, never presented', async (_name, shape) => {
    const r = mk();
    const g1 = r.login();
    await r.clock.advance(15 * MIN);
    const g2 = { ...(await r.successor(g1)), generation: 2 };
    r.saxo.resetStats();
    await r.state.write({ token: g2, failures: 0 });
    await r.reconciler.load();
    r.plantCache(shape(g1));
    expect(await r.reconciler.run({ kind: 'cache-changed' })).toBe('repaired');
    expect((await r.cached())?.refreshToken).toBe(g2.refreshToken);
    expect(r.log.events('input_problem').map((x) => x.message)).toEqual([
      'cache holds an older pair than the newest known (stale writer undone)',
    ]);
    // Stale again, and due this time: the refresh must use the newest pair.
    r.plantCache(shape(g1));
    await until(r, g2, 200 * SEC);
    expect(await tick(r)).toBe('refreshed');
    expect(r.saxo.presented).toEqual([g2.refreshToken]);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0, invalidGrants: 0 });
    expect((await r.cached())?.generation).toBe(3);
  });

  it('corrupt cache is repaired from the known pair', async () => {
    const { r, t } = await steady();
    r.cache.raw = '{"access_token": "trunc';
    expect(await tick(r)).toBe('repaired');
    expect((await r.cached())?.refreshToken).toBe(t.refreshToken);
    expect(r.log.events('input_problem')[0]?.message).toMatch(/^cache corrupt: not valid JSON/);
    expect(r.saxo.stats.presentations).toBe(0);
  });

  it('a newer bot-written pair (five keys, no generation) is adopted without refreshing', async () => {
    const { r, t } = await steady();
    await r.clock.advance(17 * MIN); // the bot refreshes at its 120 s buffer
    const bot = r.asBotPair(await r.successor(t));
    r.saxo.resetStats();
    r.cache.raw = JSON.stringify({
      access_token: bot.accessToken,
      refresh_token: bot.refreshToken,
      token_expiry: new Date(bot.accessExpiresAt).toISOString(),
      app_key: bot.appKey,
      app_secret: bot.appSecret,
    });
    const writes = r.cache.writes;
    expect(await r.reconciler.run({ kind: 'cache-changed' })).toBe('adopted');
    expect(r.reconciler.newestKnown).toMatchObject({ refreshToken: bot.refreshToken, generation: 2 });
    expect(r.cache.writes).toBe(writes);
    expect(r.saxo.stats.presentations).toBe(0);
    // And the adopted pair is what the next refresh presents.
    await until(r, bot, 250 * SEC);
    expect(await tick(r)).toBe('refreshed');
    expect(r.saxo.presented).toEqual([bot.refreshToken]);
    expect((await r.cached())?.generation).toBe(3);
  });

  it('invalid_grant with a newer pair appearing in the cache: adopted, no failure counted (I4)', async () => {
    const { r, t } = await steady();
    await until(r, t, 250 * SEC);
    const other = r.login(); // e.g. someone logged in again meanwhile
    const newer = r.asBotPair({ ...other, accessExpiresAt: r.clock.now() + 1140 * SEC });
    r.saxo.faults = ['invalid_grant'];
    r.saxo.onPresent = () => r.plantCache(newer);
    expect(await tick(r)).toBe('adopted');
    r.saxo.onPresent = undefined;
    expect(r.reconciler.consecutiveFailures).toBe(0);
    expect(r.reconciler.newestKnown?.refreshToken).toBe(newer.refreshToken);
    expect(r.log.events('recovered_newer_token')).toHaveLength(1);
    expect(r.log.events('refresh_failed')).toHaveLength(0);
    expect(r.log.events('login_required')).toHaveLength(0);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('invalid_grant with nothing newer: login_required, and the rejected token is not presented again', async () => {
    const { r, t } = await steady();
    await until(r, t, 250 * SEC);
    r.saxo.faults = ['invalid_grant'];
    // The second look comes INVALID_GRANT_RECHECK_SECONDS (5) later; nothing newer appears.
    expect(await settleWithClock(tick(r), r.clock)).toBe('login_required');
    expect(r.log.events('invalid_grant_recheck')).toHaveLength(1);
    expect(r.log.events('login_required')).toHaveLength(1);
    expect(r.log.events('login_required')[0]).toMatchObject({ severity: 'ALERT' });
    expect(r.log.events('refresh_api_failed')[0]?.message).toBe('Token refresh API failed: 400 - invalid_grant');
    await r.clock.advance(1 * MIN);
    expect(await tick(r)).toBe('login_required');
    expect(r.saxo.stats.presentations).toBe(1);
    // A new login (a newer pair in the cache) clears the condition.
    const fresh = r.login();
    r.plantCache({ ...fresh, generation: undefined });
    expect(await r.reconciler.run({ kind: 'cache-changed' })).toBe('adopted');
    expect(r.reconciler.consecutiveFailures).toBe(0);
  });

  it('retryable failures: each check retries with backoff (4 attempts), and alerts exactly at the 5th and 10th failed check; success resets', async () => {
    const { r, t } = await steady();
    await until(r, t, 290 * SEC);
    r.saxo.faults = Array<'retryable'>(40).fill('retryable');
    const alertsAt: number[] = [];
    for (let i = 1; i <= 10; i++) {
      expect(await settleWithClock(tick(r), r.clock)).toBe('failed');
      expect(r.saxo.faults).toHaveLength(40 - 4 * i);
      expect(r.reconciler.consecutiveFailures).toBe(i);
      if (r.log.events('refresh_alert').length > alertsAt.length) alertsAt.push(i);
      await r.clock.advance(20 * SEC);
    }
    expect(alertsAt).toEqual([5, 10]);
    const alerts = r.log.events('refresh_alert');
    expect(alerts.map((a) => a.severity)).toEqual(['ALERT', 'ALERT']);
    expect(alerts[0]?.message.startsWith('ALERT: Token refresh failed 5 consecutive times!')).toBe(true);
    expect(alerts[1]?.message.startsWith('ALERT: Token refresh failed 10 consecutive times!')).toBe(true);
    expect(r.log.events('refresh_failed')[0]?.message).toBe('Token refresh failed (attempt 1/5)');
    expect(r.saxo.stats.presentations).toBe(0); // a 503 never reached the token check
    expect(await tick(r)).toBe('refreshed');
    expect(r.reconciler.consecutiveFailures).toBe(0);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
    expect(r.state.value?.failures).toBe(0);
  });

  it('a refresh token close to death alerts once, not on every tick', async () => {
    const r = mk();
    r.saxo.refreshLifetimeSec = 600; // dies before the access token is due
    const t = r.login();
    r.plantCache(t);
    await r.state.write({ token: t, failures: 0 });
    await r.reconciler.load();
    for (let i = 0; i < 4; i++) {
      expect(await tick(r)).toBe('idle');
      await r.clock.advance(1 * MIN);
    }
    const alerts = r.log.events('chain_deadline');
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ severity: 'ALERT', refreshLeftSeconds: 600 });
    expect(r.saxo.stats.presentations).toBe(0);
  });

  it('a dead refresh token: login_required logged once, never presented', async () => {
    const { r, t } = await steady();
    await r.clock.advance(t.refreshExpiresAt! - r.clock.now() + 1 * MIN);
    for (let i = 0; i < 3; i++) {
      expect(await tick(r)).toBe('login_required');
      await r.clock.advance(1 * MIN);
    }
    expect(r.log.events('login_required')).toHaveLength(1);
    expect(r.state.value?.loginRequired).toBe(true);
    expect(r.saxo.stats.presentations).toBe(0);
  });

  it('flock held by someone else past the timeout: failed and counted (a bot holding it that long is a problem), then refreshes once it is free', async () => {
    const { r, t } = await steady({ lockTimeoutMs: 30 * SEC });
    await until(r, t, 250 * SEC);
    const other = await r.lock.acquire();
    const out = await settleWithClock(tick(r), r.clock);
    expect(out).toBe('failed');
    expect(r.reconciler.consecutiveFailures).toBe(1);
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.log.events('lock_timeout')).toHaveLength(1);
    await other.release();
    expect(await tick(r)).toBe('refreshed');
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('state persists across a restart: the new process knows the newest pair and undoes a stale cache', async () => {
    const { r, t } = await steady();
    await until(r, t, 250 * SEC);
    expect(await tick(r)).toBe('refreshed');
    const g2 = await r.cached();
    r.plantCache(t); // a stale writer puts the consumed pair back while the agent is down
    const again = await r.restart();
    expect(again.newestKnown?.refreshToken).toBe(g2?.refreshToken);
    expect(await again.run({ kind: 'startup' })).toBe('repaired');
    expect((await r.cached())?.refreshToken).toBe(g2?.refreshToken);
    await until(r, g2!, 250 * SEC);
    expect(await again.run({ kind: 'tick' })).toBe('refreshed');
    expect(r.saxo.presented).toEqual([t.refreshToken, g2!.refreshToken]);
    expect(r.saxo.stats.reusedPresentations).toBe(0);
  });
});

describe('Reconciler, cloud-connected', () => {
  const noTokenText = (r: AgentRig, e: TokenRotatedEvent) => {
    expect(Object.keys(e).sort()).toEqual(['accessExpiresAt', 'generation', 'publishedAt', 'source', 'type', 'version']);
    expect(r.leaks()).toEqual([]);
  };

  it('startup: a newer secret is written to the cache', async () => {
    const r = mk({ cloud: true });
    const g1 = r.login();
    await r.clock.advance(10 * MIN);
    const g2 = { ...(await r.successor(g1)), generation: 2, source: 'cloud' };
    r.plantCache(g1);
    await r.store!.add(g1);
    await r.store!.add(g2);
    await r.reconciler.load();
    expect(await r.reconciler.run({ kind: 'startup' })).toBe('adopted');
    expect(await r.cached()).toMatchObject({ refreshToken: g2.refreshToken, generation: 2 });
    expect(r.store!.versions()).toHaveLength(2);
    expect(r.bus!.published).toHaveLength(0);
  });

  it('startup: a newer cache (bot pair) is pushed as a new version with a higher generation and announced', async () => {
    const r = mk({ cloud: true });
    const g1 = r.login();
    await r.store!.add(g1);
    await r.clock.advance(18 * MIN);
    const bot = r.asBotPair(await r.successor(g1));
    r.plantCache(bot);
    await r.reconciler.load();
    expect(await r.reconciler.run({ kind: 'startup' })).toBe('adopted');
    const latest = await r.store!.latest();
    expect(latest?.version).toBe(2);
    expect(latest?.token).toMatchObject({ refreshToken: bot.refreshToken, generation: 2 });
    expect(r.bus!.published).toHaveLength(1);
    const ev = r.bus!.published[0]!;
    expect(ev).toMatchObject({ type: 'TOKEN_ROTATED', version: latest?.name, generation: 2 });
    expect(ev.accessExpiresAt).toBe(new Date(bot.accessExpiresAt).toISOString());
    noTokenText(r, ev);
  });

  it('an agent subscribed to its own topic does not deadlock when it publishes', async () => {
    const r = mk({ cloud: true });
    const g1 = r.login();
    await r.store!.add(g1);
    await r.clock.advance(18 * MIN);
    r.plantCache(r.asBotPair(await r.successor(g1)));
    const outcomes: string[] = [];
    await r.bus!.subscribe(async (event) => {
      outcomes.push(await r.reconciler.run({ kind: 'event', event }));
    });
    await r.reconciler.load();
    expect(await r.reconciler.run({ kind: 'startup' })).toBe('adopted');
    await flush();
    expect(outcomes).toEqual(['ignored']); // its own announcement is not newer than what it holds
  });

  it('events: newer → cache written; duplicate and older → ignored without writes', async () => {
    const { r, t } = await steady({ cloud: true });
    // The cloud function (same secret, same Saxo) refreshes at its 600 s threshold.
    const c = cloudRig({ clock: r.clock });
    const deps = { ...c.deps, store: r.store!, bus: r.bus!, saxo: r.saxo, logger: r.log.logger };
    await until(r, t, 590 * SEC);
    expect((await runCloudRefresh(deps)).outcome).toBe('refreshed');
    const ev = r.bus!.published.at(-1)!;
    expect(ev.generation).toBe(2);
    expect(await r.reconciler.run({ kind: 'event', event: ev })).toBe('adopted');
    const cached = await r.cached();
    expect(cached).toMatchObject({ generation: 2, source: 'cloud' });
    expect(cached?.refreshToken).toBe((await r.store!.latest())?.token?.refreshToken);

    const writes = r.cache.writes;
    const calls = r.store!.calls.length;
    expect(await r.reconciler.run({ kind: 'event', event: ev })).toBe('ignored');
    expect(await r.reconciler.run({ kind: 'event', event: { ...ev, generation: 1, version: `${r.store!.name}/versions/1` } })).toBe('ignored');
    expect(r.cache.writes).toBe(writes);
    expect(r.store!.calls.length).toBe(calls);
    expect(r.store!.versions()).toHaveLength(2);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('due while another holder has the lease: deferred, zero presentations', async () => {
    const { r, t } = await steady({ cloud: true });
    await until(r, t, 250 * SEC);
    expect(await r.store!.acquireLease('cloud:other', 60 * SEC, r.clock.now())).toBe(true);
    expect(await tick(r)).toBe('deferred');
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.reconciler.consecutiveFailures).toBe(0);
    expect(r.log.events('lease_busy')).toHaveLength(1);
    expect(r.lock.held).toBe(false);
  });

  it('Secret Manager down while due: refreshes locally, pushes once it is back', async () => {
    const { r, t } = await steady({ cloud: true });
    await until(r, t, 250 * SEC);
    r.store!.unavailable = true;
    expect(await tick(r)).toBe('refreshed');
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
    const local = await r.cached();
    expect(local?.generation).toBe(2);
    expect(local!.accessExpiresAt - r.clock.now()).toBeGreaterThan(r.settings.thresholdMs);
    expect(r.store!.versions()).toHaveLength(1);

    r.store!.unavailable = false;
    await r.clock.advance(1 * MIN);
    await tick(r);
    const latest = await r.store!.latest();
    expect(latest?.token?.refreshToken).toBe(local?.refreshToken);
    expect(latest?.token?.accessToken).toBe(local?.accessToken);
    expect(r.bus!.published.map((e) => e.generation)).toEqual([2]);
    // Nothing further to push.
    await r.clock.advance(1 * MIN);
    await tick(r);
    expect(r.store!.versions()).toHaveLength(2);
    expect(r.saxo.stats.presentations).toBe(1);
  });

  it('after many refreshes, non-destroyed versions stay within keepSecretVersions', async () => {
    const { r } = await steady({ cloud: true });
    for (let i = 0; i < 8; i++) {
      const cur = r.reconciler.newestKnown!;
      await until(r, cur, 250 * SEC);
      expect(await tick(r)).toBe('refreshed');
      expect(await r.store!.countVersions()).toBeLessThanOrEqual(r.settings.keepSecretVersions);
    }
    expect(r.saxo.stats).toMatchObject({ presentations: 8, reusedPresentations: 0 });
    expect((await r.store!.latest())?.token?.generation).toBe(9);
    expect(r.bus!.published.map((e) => e.generation)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(serializeFlat((await r.store!.latest())!.token!)).toBe(r.cache.raw);
  });
});

describe('Reconciler, announcements it cannot fetch and failing disks', () => {
  it('an event whose version cannot be read is nacked, and the consumed pair it supersedes is never presented', async () => {
    const { r, t } = await steady({ cloud: true });
    // The cloud refreshes t (consuming its refresh token) and announces generation 2 …
    const next = await r.successor(t);
    const presentedByCloud = r.saxo.stats.presentations;
    const v = await r.store!.add(next);
    const ev: TokenRotatedEvent = {
      type: 'TOKEN_ROTATED', version: v.name, generation: 2,
      accessExpiresAt: new Date(next.accessExpiresAt).toISOString(), source: 'cloud', publishedAt: new Date(r.clock.now()).toISOString(),
    };
    // … but Secret Manager is down when the event arrives: nack for redelivery.
    r.store!.unavailable = true;
    await expect(r.reconciler.run({ kind: 'event', event: ev })).rejects.toThrow(/announced version/);
    // At the agent threshold it must not present t (Saxo consumed it): deferred, zero presentations.
    await until(r, t, 200 * SEC);
    expect(await tick(r)).toBe('deferred');
    expect(r.saxo.stats.presentations).toBe(presentedByCloud);
    expect(r.log.events('superseded_token').length).toBeGreaterThanOrEqual(1);
    // Secret Manager answers again: the next check adopts the announced pair (and, as it is due
    // too, refreshes it: the one legitimate presentation).
    r.store!.unavailable = false;
    expect(await tick(r)).toBe('refreshed');
    expect(r.saxo.presented.at(-1)).toBe(next.refreshToken);
    expect(r.saxo.stats.presentations).toBe(presentedByCloud + 1);
    expect(r.saxo.stats.reusedPresentations).toBe(0);
  });

  it('a failing cache write after Saxo answered keeps the new pair in the state and the secret; the next check rewrites the cache', async () => {
    const { r, t } = await steady({ cloud: true });
    await until(r, t, 300 * SEC);
    const write = r.cache.write.bind(r.cache);
    r.cache.write = async () => {
      throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    };
    expect(await tick(r)).toBe('refreshed');
    const stored = r.state.value?.token;
    expect(stored?.refreshToken).not.toBe(t.refreshToken);
    expect((await r.store!.latest())?.token?.refreshToken).toBe(stored?.refreshToken);
    expect(r.log.events('cache_write_failed').length).toBe(1);
    r.cache.write = write;
    await r.clock.advance(60 * SEC);
    await tick(r);
    expect((await r.cached())?.refreshToken).toBe(stored?.refreshToken);
    expect(r.saxo.stats.presentations).toBe(1);
  });
});

describe('Reconciler, pushes that outlive an outage and a restart', () => {
  it('a pair refreshed while Secret Manager was down is pushed after a restart, by the push retry, once it answers', async () => {
    const { r, t } = await steady({ cloud: true });
    r.store!.unavailable = true;
    await until(r, t, 200 * SEC);
    expect(await tick(r)).toBe('refreshed'); // locally: the VM must stay fresh
    const local = await r.cached();
    expect(r.store!.versions().length).toBe(1);
    // The agent restarts while Secret Manager is still down: its startup read fails.
    const again = await r.restart();
    expect(await again.run({ kind: 'startup' })).not.toBe('failed');
    expect(again.hasPendingPush).toBe(true);
    // Secret Manager answers; the 5-second push retry (a 'push' trigger) brings the secret up to date.
    r.store!.unavailable = false;
    await again.run({ kind: 'push' });
    expect(again.hasPendingPush).toBe(false);
    expect((await r.store!.latest())?.token?.refreshToken).toBe(local?.refreshToken);
    expect(r.bus!.published.at(-1)?.generation).toBe(local?.generation);
    expect(r.saxo.stats.reusedPresentations).toBe(0);
  });
});
