/**
 * The cloud function's logic (runCloudRefresh) over an in-memory Secret Manager, event bus and
 * Saxo model, with a fake clock: decisions, the lease, failure accounting, pruning, I1/I4/I5.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { runCloudRefresh as runOutcome, type CloudDeps } from '../../functions/refresher.js';
import { httpStatus } from '../../functions/handler.js';
import type { TokenSet } from '../../core/token.js';
import { cloudRig, MIN, SEC, settleWithClock, type CloudRig } from '../helpers/memory-rig.js';
import { saxoIssued } from '../helpers/saxo-time.js';

/** One run, with the HTTP status functions/handler.ts would answer the Scheduler with. */
async function runCloudRefresh(deps: CloudDeps, opts?: { force?: boolean }) {
  const r = await runOutcome(deps, opts);
  return { ...r, status: httpStatus(r) };
}

const rigs: CloudRig[] = [];
afterEach(() => {
  // I5 across every test: no token or app secret in any log line or published event.
  for (const r of rigs.splice(0)) expect(r.leaks()).toEqual([]);
});

/** A rig whose secret holds one fresh generation-1 pair. */
async function seeded(): Promise<{ r: CloudRig; t: TokenSet }> {
  const r = cloudRig();
  rigs.push(r);
  const t = r.login();
  await r.store.add(t);
  return { r, t };
}

/** Move the clock so that `t` has `leftMs` of access life left. */
async function until(r: CloudRig, t: TokenSet, leftMs: number): Promise<void> {
  await r.clock.advance(t.accessExpiresAt - leftMs - r.clock.now());
}

describe('runCloudRefresh', () => {
  it('fresh token: action none, 200, zero presentations, no writes', async () => {
    const { r } = await seeded();
    await r.clock.advance(5 * MIN);
    const out = await runCloudRefresh(r.deps);
    expect(out).toMatchObject({ outcome: 'fresh', status: 200, generation: 1, accessLeftSeconds: 840 });
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.store.versions()).toHaveLength(1);
    expect(r.bus.published).toHaveLength(0);
    expect(r.log.events('token_status')[0]?.message).toBe('Token status: valid, 14 minutes until expiry');
  });

  it('due token: refreshed, new version, event without token material, python-shaped log line', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    const out = await runCloudRefresh(r.deps);
    const latest = await r.store.latest();
    expect(out).toMatchObject({ outcome: 'refreshed', status: 200, version: latest?.name, generation: 2 });
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
    expect(r.saxo.presented).toEqual([t.refreshToken]);
    expect(latest?.token).toMatchObject({ generation: 2, source: 'cloud', appKey: t.appKey, appSecret: t.appSecret });
    expect(latest?.token?.accessExpiresAt).toBe(saxoIssued(r.clock.now()) + 1140 * SEC);
    expect(r.bus.published).toHaveLength(1);
    const ev = r.bus.published[0]!;
    expect(ev).toMatchObject({
      type: 'TOKEN_ROTATED',
      version: latest?.name,
      generation: 2,
      accessExpiresAt: new Date(latest!.token!.accessExpiresAt).toISOString(),
      source: 'cloud',
    });
    expect(out.expiresAt).toBe(ev.accessExpiresAt);
    expect(Object.keys(ev).sort()).toEqual(['accessExpiresAt', 'generation', 'publishedAt', 'source', 'type', 'version']);
    expect(r.log.events('token_refreshed').map((x) => x.message)).toEqual(['Token refreshed successfully (expires in 20 min)']);
    const meta = await r.store.meta();
    expect(meta.lease).toBeUndefined();
    expect(meta.failures).toBe(0);
    expect(meta.lastRefresh).toMatchObject({ by: 'cloud:test-fn', version: latest?.name });
  });

  it('two concurrent calls present the refresh token once', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    const outs = await Promise.all([runCloudRefresh(r.deps), runCloudRefresh(r.deps)]);
    const actions = outs.map((o) => o.outcome).sort();
    expect(actions).toContain('refreshed');
    expect(['deferred', 'fresh']).toContain(actions.find((a) => a !== 'refreshed'));
    expect(outs.every((o) => o.status === 200)).toBe(true);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
    expect(r.store.versions()).toHaveLength(2);
  });

  it('invalid_grant while the secret meanwhile holds a newer pair: recovered (I4)', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    const newer = { ...r.login(3), source: 'agent:vm' };
    r.saxo.faults = ['invalid_grant'];
    r.saxo.onPresent = async () => {
      await r.store.add(newer); // the agent pushed a pair it got elsewhere
    };
    const out = await runCloudRefresh(r.deps);
    expect(out).toMatchObject({ outcome: 'superseded', status: 200, generation: 3 });
    expect((await r.store.meta()).failures).toBe(0);
    expect(r.log.events('refresh_failed')).toHaveLength(0);
    expect(r.log.events('recovered_newer_token')).toHaveLength(1);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('invalid_grant with nothing newer: login_required 500', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    r.saxo.faults = ['invalid_grant'];
    // The second look comes INVALID_GRANT_RECHECK_SECONDS (5) later; nothing newer appears.
    expect(await settleWithClock(runCloudRefresh(r.deps), r.clock)).toMatchObject({ outcome: 'rejected', status: 500, reason: 'invalid_grant' });
    expect(r.log.events('login_required')).toHaveLength(1);
    expect(r.log.events('login_required')[0]).toMatchObject({ severity: 'ALERT' });
    expect(r.store.versions()).toHaveLength(1);
    // The next Scheduler run remembers the rejection (a secret annotation): it pages again and
    // presents nothing — the rejected refresh token is never presented twice.
    await r.clock.advance(5 * MIN);
    expect(await runCloudRefresh(r.deps)).toMatchObject({ outcome: 'rejected', reason: 'invalid_grant' });
    expect(r.log.events('login_required')).toHaveLength(2);
    expect(r.saxo.stats.presentations).toBe(1);
  });

  it('retryable failures: each run retries with backoff (4 attempts), then 503; the count persists in annotations across calls, ALERT at the 5th', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    r.saxo.faults = Array<'retryable'>(24).fill('retryable');
    const alertsAt: number[] = [];
    for (let i = 1; i <= 6; i++) {
      expect(await settleWithClock(runCloudRefresh(r.deps), r.clock)).toMatchObject({ outcome: 'failed', status: 503, reason: 'http_503' });
      expect(r.saxo.faults).toHaveLength(24 - 4 * i);
      expect(r.store.annotations()['tk-failures']).toBe(String(i));
      expect((await r.store.meta()).lease).toBeUndefined();
      if (r.log.events('refresh_alert').length > alertsAt.length) alertsAt.push(i);
      await r.clock.advance(5 * SEC);
    }
    expect(alertsAt).toEqual([5]);
    const alert = r.log.events('refresh_alert')[0]!;
    expect(alert.severity).toBe('ALERT');
    expect(alert.message.startsWith('ALERT: Token refresh failed 5 consecutive times!')).toBe(true);
    expect(r.log.events('refresh_failed').map((x) => x.message)[0]).toBe('Token refresh failed (attempt 1/5)');
    // Success resets the persisted count.
    expect((await runCloudRefresh(r.deps)).outcome).toBe('refreshed');
    expect((await r.store.meta()).failures).toBe(0);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('empty secret: login_required 500', async () => {
    const r = cloudRig();
    rigs.push(r);
    expect(await runCloudRefresh(r.deps)).toMatchObject({ outcome: 'rejected', status: 500 });
    expect(r.saxo.stats.presentations).toBe(0);
  });

  it('corrupt latest version: login_required 500, no crash, payload not logged', async () => {
    const { r } = await seeded();
    r.store.addRaw('{"access_token":"half-written');
    expect(await runCloudRefresh(r.deps)).toMatchObject({ outcome: 'rejected', status: 500 });
    expect(r.log.events('input_problem')[0]?.message).toMatch(/^secret version 2 unusable: payload unusable: not valid JSON/);
    expect(r.log.lines.some((l) => l.includes('half-written'))).toBe(false);
    expect(r.saxo.stats.presentations).toBe(0);
  });

  it('a dead refresh token is reported as login_required, not as a valid token', async () => {
    const { r, t } = await seeded();
    await r.clock.advance(t.refreshExpiresAt! - r.clock.now() + 1 * MIN);
    expect(await runCloudRefresh(r.deps)).toMatchObject({ outcome: 'rejected', status: 500 });
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.log.events('login_required')).toHaveLength(1);
  });

  it('an already-expired token is left to the VM agent for the grace period, then refreshed by the cloud alone', async () => {
    const { r, t } = await seeded();
    // The cloud path was down for its whole window; the token expired 5 min ago.
    await until(r, t, -5 * MIN);
    const out = await runCloudRefresh(r.deps);
    expect(out).toMatchObject({ outcome: 'deferred', status: 200, reason: 'awaiting_lower_tiers' });
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.log.events('awaiting_agent')).toHaveLength(1);
    // 14 min of refresh token left: more than two Scheduler periods + two leases + the push grace
    // (12 min 13 s at the defaults): still waiting.
    await until(r, t, -27 * MIN);
    expect(await runCloudRefresh(r.deps)).toMatchObject({ outcome: 'deferred', reason: 'awaiting_lower_tiers' });
    // The agent pushed nothing and the refresh token (60 min) is down to 11 min: the cloud gives a
    // pending push its grace (13 s), looks again, and saves the chain itself.
    await until(r, t, -30 * MIN);
    expect(await settleWithClock(runCloudRefresh(r.deps), r.clock)).toMatchObject({ outcome: 'refreshed', status: 200 });
    expect(r.log.events('last_chance')).toHaveLength(1);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('does not wait for the agent when the refresh token would get too close to dying (margin derived from the configuration)', async () => {
    const r = cloudRig({ env: { CLOUD_EXPIRED_GRACE_SECONDS: String(40 * 60) } });
    rigs.push(r);
    const t = r.login();
    await r.store.add(t);
    // Expired 30 min ago (< 40 min grace), but the refresh token (60 min) has only 11 min left.
    await r.clock.advance(t.refreshExpiresAt! - 11 * MIN - r.clock.now());
    expect(await settleWithClock(runCloudRefresh(r.deps), r.clock)).toMatchObject({ outcome: 'refreshed' });
  });

  it('with short-lived tokens and a fast Scheduler the patience scales: it waits, then a pending push lands in the grace and nothing is presented', async () => {
    // 40 s access / 160 s refresh tokens, tiers and schedule scaled to match (issue: the absolute
    // 15 minutes never waited at all here).
    const env = { CLOUD_REFRESH_THRESHOLD_SECONDS: '16', REFRESH_THRESHOLD_SECONDS: '8', BOT_REFRESH_THRESHOLD_SECONDS: '3',
      CLOUD_SCHEDULE_SECONDS: '10', LEASE_TTL_SECONDS: '5', SAXO_HTTP_TIMEOUT_SECONDS: '2', CHECK_INTERVAL_SECONDS: '2', CLOUD_EXPIRED_GRACE_SECONDS: '90' };
    const r = cloudRig({ env });
    rigs.push(r);
    r.saxo.accessLifetimeSec = 40;
    r.saxo.refreshLifetimeSec = 160;
    const t = r.login(); // usable for 20 s (the 60 s margin is clamped to half the life)
    await r.store.add(t);
    // The cloud missed its window (Secret Manager was down for it); the agent refreshes locally.
    await until(r, t, 5 * SEC); // inside the agent's 8 s window
    expect(await runCloudRefresh(r.deps)).toMatchObject({ outcome: 'deferred', reason: 'awaiting_lower_tiers' });
    // Much later the refresh token the secret holds is inside the last-chance margin (2×10 + 2×5 + 2×2 + 3 = 37 s).
    await r.clock.advance(t.refreshExpiresAt! - 30 * SEC - r.clock.now());
    // The agent's chain moved on long ago (t is consumed); its pending push lands during the
    // grace (its push retry runs every 2 s), so the function finds a fresh pair and presents nothing.
    r.saxo.accessLifetimeSec = 60; // its newest pair: 30 s usable, well above the cloud's 16 s
    const agentPair = { ...(await r.successor(t)), generation: 2, source: 'agent:vm' };
    r.saxo.resetStats();
    const run = runCloudRefresh(r.deps);
    await r.clock.advance(2 * SEC);
    await r.store.add(agentPair);
    const out = await settleWithClock(run, r.clock);
    expect(out.outcome).toBe('fresh');
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.log.events('last_chance')).toHaveLength(1);
  });

  it('retries end before the bots\' own window: the deadline is at least 120 s before the access expiry', async () => {
    // A long lease, so that the bots' window, not the lease, is what bounds the retries.
    const r = cloudRig({ settings: { leaseTtlMs: 20 * MIN } });
    rigs.push(r);
    const t = r.login();
    await r.store.add(t);
    await until(r, t, 590 * SEC); // inside the cloud window
    expect(await runCloudRefresh(r.deps)).toMatchObject({ outcome: 'refreshed' });
    expect(r.saxo.options).toHaveLength(1);
    expect(r.saxo.options[0]!.deadline).toBeLessThanOrEqual(t.accessExpiresAt - 120 * SEC);
    expect(r.saxo.options[0]!.deadline).toBeGreaterThan(r.clock.now());
  });

  it('Secret Manager unavailable: 503, nothing presented', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    r.store.unavailable = true;
    expect(await runCloudRefresh(r.deps)).toMatchObject({ outcome: 'failed', status: 503, reason: 'secret_unavailable' });
    expect(r.saxo.stats.presentations).toBe(0);
  });

  it('100 consecutive refreshes: at most keepSecretVersions live versions, no reused presentation', async () => {
    const { r } = await seeded();
    const keep = r.deps.settings.keepSecretVersions;
    for (let i = 0; i < 100; i++) {
      await r.clock.advance(600 * SEC);
      const out = await runCloudRefresh(r.deps);
      expect(out.outcome).toBe('refreshed');
      expect(await r.store.countVersions()).toBeLessThanOrEqual(keep);
    }
    expect(r.saxo.stats).toMatchObject({ presentations: 100, reusedPresentations: 0, invalidGrants: 0 });
    expect((await r.store.latest())?.token?.generation).toBe(101);
    expect(r.store.versions().filter((v) => v.state !== 'DESTROYED')).toHaveLength(keep);
    expect(r.bus.published.map((e) => e.generation)).toEqual(Array.from({ length: 100 }, (_, i) => i + 2));
  });
});

describe('runCloudRefresh reads a 2xx with the one interpreter (core/grant.ts)', () => {
  it.each([
    { name: 'expires_in −5', odd: { set: { expires_in: -5 } }, accessSec: 600 - 60, note: /expires_in=-5 → 600 \(default\)/ },
    { name: 'expires_in "1200 seconds"', odd: { set: { expires_in: '1200 seconds' } }, accessSec: 600 - 60, note: /expires_in="1200 seconds" → 600/ },
    { name: 'refresh_token_expires_in −1', odd: { set: { refresh_token_expires_in: -1 } }, accessSec: 1200 - 60, note: /refresh_token_expires_in=-1 → 3600 \(default\)/ },
  ])('odd field ($name): the successor is stored in the secret with a default and a WARNING; the next run presents the successor', async ({ odd, accessSec, note }) => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    r.saxo.odd.push(odd);
    const out = await runCloudRefresh(r.deps);
    expect(out).toMatchObject({ outcome: 'refreshed', generation: 2 });
    const latest = (await r.store.latest())!.token!;
    expect(latest.accessExpiresAt).toBe(saxoIssued(r.clock.now()) + accessSec * SEC);
    expect(r.log.events('lifetime_clamped').map((l) => l.message).join()).toMatch(note);
    await until(r, latest, 590 * SEC);
    expect(await runCloudRefresh(r.deps)).toMatchObject({ outcome: 'refreshed', generation: 3 });
    expect(r.saxo.stats).toMatchObject({ presentations: 2, reusedPresentations: 0, refreshes: 2 });
  });

  it.each([
    { name: 'no refresh_token', odd: { omit: ['refresh_token'] } as const },
    { name: 'an HTML body', odd: 'html' as const },
  ])('a 2xx with $name: ALERT refresh_token_missing, rejected (login), no new version, failure counted', async ({ odd }) => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    r.saxo.odd.push(odd === 'html' ? { html: true } : { omit: [...odd.omit] });
    const out = await runCloudRefresh(r.deps);
    expect(out).toMatchObject({ outcome: 'rejected', reason: 'no_successor' });
    expect(r.log.events('refresh_token_missing')[0]).toMatchObject({ severity: 'ALERT' });
    expect(r.store.versions()).toHaveLength(1);
    expect((await r.store.meta()).failures).toBe(1);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
    // The secret remembers it: the next runs (and a forced one) never present the consumed token.
    for (const force of [false, true]) {
      await r.clock.advance(60 * SEC);
      expect(await runCloudRefresh(r.deps, { force })).toMatchObject({ outcome: 'rejected' });
    }
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });
});
