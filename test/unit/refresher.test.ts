/**
 * The cloud function's logic (runCloudRefresh) over an in-memory Secret Manager, event bus and
 * Saxo model, with a fake clock: decisions, the lease, failure accounting, pruning, I1/I4/I5.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { runCloudRefresh } from '../../functions/refresher.js';
import type { TokenSet } from '../../core/token.js';
import { cloudRig, MIN, SEC, type CloudRig } from '../helpers/memory-rig.js';

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
    expect(out).toMatchObject({ action: 'none', status: 200, generation: 1, accessLeftSeconds: 840 });
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.store.versions).toHaveLength(1);
    expect(r.bus.published).toHaveLength(0);
    expect(r.log.events('token_status')[0]?.message).toBe('Token status: valid, 14 minutes until expiry');
  });

  it('due token: refreshed, new version, event without token material, python-shaped log line', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    const out = await runCloudRefresh(r.deps);
    const latest = await r.store.latest();
    expect(out).toMatchObject({ action: 'refreshed', status: 200, version: latest?.name, generation: 2 });
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
    expect(r.saxo.presented).toEqual([t.refreshToken]);
    expect(latest?.token).toMatchObject({ generation: 2, source: 'cloud', appKey: t.appKey, appSecret: t.appSecret });
    expect(latest?.token?.accessExpiresAt).toBe(r.clock.now() + 1140 * SEC);
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
    const actions = outs.map((o) => o.action).sort();
    expect(actions).toContain('refreshed');
    expect(['deferred', 'none']).toContain(actions.find((a) => a !== 'refreshed'));
    expect(outs.every((o) => o.status === 200)).toBe(true);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
    expect(r.store.versions).toHaveLength(2);
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
    expect(out).toMatchObject({ action: 'recovered', status: 200, version: `${r.store.name}/versions/2` });
    expect((await r.store.meta()).failures).toBe(0);
    expect(r.log.events('refresh_failed')).toHaveLength(0);
    expect(r.log.events('recovered_newer_token')).toHaveLength(1);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('invalid_grant with nothing newer: login_required 500', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    r.saxo.faults = ['invalid_grant'];
    expect(await runCloudRefresh(r.deps)).toMatchObject({ action: 'login_required', status: 500, reason: 'invalid_grant' });
    expect(r.log.events('login_required')).toHaveLength(1);
    expect(r.store.versions).toHaveLength(1);
  });

  it('retryable failures: 503, the count persists in annotations across calls, ALERT at the 5th', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    r.saxo.faults = Array<'retryable'>(6).fill('retryable');
    const alertsAt: number[] = [];
    for (let i = 1; i <= 6; i++) {
      expect(await runCloudRefresh(r.deps)).toMatchObject({ action: 'failed', status: 503, reason: 'http_503' });
      expect(r.store.annotations['tk-failures']).toBe(String(i));
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
    expect((await runCloudRefresh(r.deps)).action).toBe('refreshed');
    expect((await r.store.meta()).failures).toBe(0);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('empty secret: login_required 500', async () => {
    const r = cloudRig();
    rigs.push(r);
    expect(await runCloudRefresh(r.deps)).toMatchObject({ action: 'login_required', status: 500 });
    expect(r.saxo.stats.presentations).toBe(0);
  });

  it('corrupt latest version: login_required 500, no crash, payload not logged', async () => {
    const { r } = await seeded();
    r.store.addRaw('{"access_token":"half-written');
    expect(await runCloudRefresh(r.deps)).toMatchObject({ action: 'login_required', status: 500 });
    expect(r.log.events('input_problem')[0]?.message).toMatch(/^secret version 2 unusable: not valid JSON/);
    expect(r.log.lines.some((l) => l.includes('half-written'))).toBe(false);
    expect(r.saxo.stats.presentations).toBe(0);
  });

  it('a dead refresh token is reported as login_required, not as a valid token', async () => {
    const { r, t } = await seeded();
    await r.clock.advance(t.refreshExpiresAt! - r.clock.now() + 1 * MIN);
    expect(await runCloudRefresh(r.deps)).toMatchObject({ action: 'login_required', status: 500 });
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.log.events('login_required')).toHaveLength(1);
  });

  it('an already-expired token is left to the VM agent for the grace period, then refreshed by the cloud alone', async () => {
    const { r, t } = await seeded();
    // The cloud path was down for its whole window; the token expired 5 min ago.
    await until(r, t, -5 * MIN);
    const out = await runCloudRefresh(r.deps);
    expect(out).toMatchObject({ action: 'deferred', status: 200, reason: 'awaiting_agent' });
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.log.events('awaiting_agent')).toHaveLength(1);
    // The agent pushed nothing and the refresh token (60 min) is down to 14 min: the cloud saves
    // the chain itself.
    await until(r, t, -27 * MIN);
    expect(await runCloudRefresh(r.deps)).toMatchObject({ action: 'refreshed', status: 200 });
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('does not wait for the agent when the refresh token would get too close to dying', async () => {
    const r = cloudRig({ settings: { expiredGraceMs: 40 * MIN } });
    rigs.push(r);
    const t = r.login();
    await r.store.add(t);
    // Expired 27 min ago (< 40 min grace), but the refresh token (60 min) has only 14 min left.
    await r.clock.advance(t.refreshExpiresAt! - 14 * MIN - r.clock.now());
    expect(await runCloudRefresh(r.deps)).toMatchObject({ action: 'refreshed' });
  });

  it('retries end before the bots\' own window: the deadline is at least 120 s before the access expiry', async () => {
    // A long lease, so that the bots' window, not the lease, is what bounds the retries.
    const r = cloudRig({ settings: { leaseTtlMs: 20 * MIN } });
    rigs.push(r);
    const t = r.login();
    await r.store.add(t);
    await until(r, t, 590 * SEC); // inside the cloud window
    expect(await runCloudRefresh(r.deps)).toMatchObject({ action: 'refreshed' });
    expect(r.saxo.options).toHaveLength(1);
    expect(r.saxo.options[0]!.deadline).toBeLessThanOrEqual(t.accessExpiresAt - 120 * SEC);
    expect(r.saxo.options[0]!.deadline).toBeGreaterThan(r.clock.now());
  });

  it('Secret Manager unavailable: 503, nothing presented', async () => {
    const { r, t } = await seeded();
    await until(r, t, 590 * SEC);
    r.store.unavailable = true;
    expect(await runCloudRefresh(r.deps)).toMatchObject({ action: 'failed', status: 503, reason: 'secret_unavailable' });
    expect(r.saxo.stats.presentations).toBe(0);
  });

  it('100 consecutive refreshes: at most keepSecretVersions live versions, no reused presentation', async () => {
    const { r } = await seeded();
    const keep = r.deps.settings.keepSecretVersions;
    for (let i = 0; i < 100; i++) {
      await r.clock.advance(600 * SEC);
      const out = await runCloudRefresh(r.deps);
      expect(out.action).toBe('refreshed');
      expect(await r.store.countVersions()).toBeLessThanOrEqual(keep);
    }
    expect(r.saxo.stats).toMatchObject({ presentations: 100, reusedPresentations: 0, invalidGrants: 0 });
    expect((await r.store.latest())?.token?.generation).toBe(101);
    expect(r.store.versions.filter((v) => v.state !== 'DESTROYED')).toHaveLength(keep);
    expect(r.bus.published.map((e) => e.generation)).toEqual(Array.from({ length: 100 }, (_, i) => i + 2));
  });
});
