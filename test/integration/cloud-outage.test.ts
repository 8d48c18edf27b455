/**
 * Outages: Secret Manager down for longer than a token lifetime (the VM stays fresh, the secret
 * catches up), the VM agent down (the function keeps the secret fresh, the agent catches up on
 * start), and a bot's own fallback refresh reaching the secret as a new generation with an event.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createCacheFile } from '../../agent/cache-file.js';
import { startCli } from '../helpers/agent-process.js';
import { describeWithPubSub, waitFor } from '../helpers/gcp.js';
import { startCloudRig, duplicates, tempDir, type CloudRig } from '../helpers/cloud-rig.js';

const PROJECT = 'tk-cloud-outage';
const LIFE = 5; // seconds; token_expiry = 5 − 0.5 margin
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeWithPubSub('cloud path outages', () => {
  let rig: CloudRig;
  beforeAll(async () => {
    rig = await startCloudRig({ projectId: PROJECT, accessLifetimeSec: LIFE, refreshLifetimeSec: 120, marginSec: 0.5 });
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('Secret Manager UNAVAILABLE for longer than a token lifetime: the VM stays fresh, the secret catches up', async () => {
    await rig.seedSecret(LIFE - 0.5, 1);
    const dir = tempDir('tk-outage-sm-');
    // Short Secret Manager deadlines so an outage costs the agent little time per round.
    const agent = await rig.inProcessAgent(dir, { REFRESH_THRESHOLD_SECONDS: '2', LEASE_TTL_SECONDS: '3', TOKEN_KEEPER_HOLDER_ID: 'agent:outage' }, undefined, 400);
    const cache = createCacheFile(agent.config.cachePath);
    expect(await agent.reconciler.run({ kind: 'startup' })).toBe('adopted');

    rig.sm.server.setUnavailable(true);
    const outageStart = Date.now();
    let refreshedDuringOutage = 0;
    let minLeft = Infinity;
    while (Date.now() - outageStart < (LIFE + 2) * 1000) {
      if ((await agent.reconciler.run({ kind: 'tick' })) === 'refreshed') refreshedDuringOutage++;
      const c = await cache.read();
      expect(c.kind).toBe('ok');
      if (c.kind === 'ok') minLeft = Math.min(minLeft, c.token.accessExpiresAt - Date.now());
      await pause(200);
    }
    rig.sm.server.setUnavailable(false);
    expect(refreshedDuringOutage).toBeGreaterThanOrEqual(1);
    expect(minLeft, 'the cache never held an expired token during the outage').toBeGreaterThan(0);

    // Back up: the next rounds push the pair the VM holds.
    const synced = await waitFor(async () => {
      await agent.reconciler.run({ kind: 'tick' });
      const c = await cache.read();
      const s = await rig.latest();
      return c.kind === 'ok' && s && s.refreshToken === c.token.refreshToken ? s : undefined;
    }, 10_000, 'the secret to catch up with the cache');
    expect(synced.generation).toBeGreaterThan(1);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect(duplicates(rig.presented)).toBe(0);
  });

  it('VM agent down: the function keeps the secret fresh and the agent catches up on start', async () => {
    const dir = tempDir('tk-outage-vm-');
    const first = await rig.seedSecret(LIFE - 0.5, ((await rig.latest())?.generation ?? 0) + 1);
    // The agent's last cache before it went down: the seeded pair, soon consumed by the function.
    await createCacheFile(`${dir}/saxo_token_cache.json`).write(first);
    const fn = await rig.startFunction(() =>
      Promise.resolve(rig.cloudDeps({ CLOUD_REFRESH_THRESHOLD_SECONDS: '2.5', LEASE_TTL_SECONDS: '3', TOKEN_KEEPER_HOLDER_ID: 'cloud:outage' })),
    );
    const results: string[] = [];
    const end = Date.now() + (LIFE + 2) * 1000;
    while (Date.now() < end) {
      // The Scheduler, scaled down.
      results.push((await fn.post({})).body.outcome as string);
      await pause(250);
    }
    expect(results.filter((r) => r === 'refreshed').length).toBeGreaterThanOrEqual(2);
    expect(results).not.toContain('failed');
    const secretNow = (await rig.latest())!;
    expect(secretNow.generation! - first.generation!).toBeGreaterThanOrEqual(2);

    const sub = await rig.createSubscription(`agent-vm-${Date.now()}`);
    const p = startCli(['agent'], rig.agentEnv(dir, {
      TOKEN_SUBSCRIPTION_ID: sub,
      REFRESH_THRESHOLD_SECONDS: '1',
      CHECK_INTERVAL_SECONDS: '0.5',
      LEASE_TTL_SECONDS: '3',
      TOKEN_KEEPER_HOLDER_ID: 'agent:late',
    }));
    try {
      await p.waitForEvent('agent_ready', 30_000);
      const adopted = p.logs.find((l) => l.event === 'token_adopted');
      expect(adopted?.from).toBe('secret');
      const c = await createCacheFile(`${dir}/saxo_token_cache.json`).read();
      const s = await rig.latest();
      // The function may have rotated again meanwhile; the cache is the secret's pair or about to be.
      expect(c.kind === 'ok' && c.token.generation! >= secretNow.generation!).toBe(true);
      expect(s!.generation!).toBeGreaterThanOrEqual(secretNow.generation!);
      expect(rig.saxo.stats().reusedPresentations).toBe(0);
      expect(duplicates(rig.presented)).toBe(0);
    } finally {
      expect((await p.stop()).code).toBe(0);
    }
    rig.assertNoSecrets([...p.raw, p.stderr()]);
  });

  it("a bot's fallback refresh reaches the secret as a higher generation with an event", async () => {
    const dir = tempDir('tk-outage-bot-');
    const base = await rig.seedSecret(30, ((await rig.latest())?.generation ?? 0) + 1);
    const sub = await rig.createSubscription(`agent-bot-${Date.now()}`);
    const p = startCli(['agent'], rig.agentEnv(dir, {
      TOKEN_SUBSCRIPTION_ID: sub,
      REFRESH_THRESHOLD_SECONDS: '1',
      CHECK_INTERVAL_SECONDS: '5',
      TOKEN_KEEPER_HOLDER_ID: 'agent:bot-host',
    }));
    try {
      await p.waitForEvent('agent_ready', 30_000);
      await waitFor(async () => {
        const c = await createCacheFile(`${dir}/saxo_token_cache.json`).read();
        return c.kind === 'ok' && c.token.refreshToken === base.refreshToken;
      }, 10_000, 'agent cache to hold the seeded pair');
      // What a Python bot writes after refreshing on its own: the five flat keys, no generation,
      // a later token_expiry (naive local time is what Python writes; ours carries an offset).
      const botPair = rig.issue(60);
      await createCacheFile(`${dir}/saxo_token_cache.json`).write({ ...botPair, generation: undefined, issuedAt: undefined, refreshExpiresAt: undefined, source: undefined });
      const stored = await waitFor(async () => {
        const s = await rig.latest();
        return s?.refreshToken === botPair.refreshToken ? s : undefined;
      }, 15_000, "the bot's pair in the secret");
      expect(stored.generation!).toBeGreaterThan(base.generation!);
      const ev = await waitFor(() => rig.events.find((e) => e.generation === stored.generation), 10_000, 'TOKEN_ROTATED for the bot pair');
      expect(ev.version).toMatch(/\/versions\/\d+$/);
      expect(rig.saxo.stats().reusedPresentations).toBe(0);
    } finally {
      expect((await p.stop()).code).toBe(0);
    }
    rig.assertNoSecrets([...p.raw, p.stderr()]);
  });

  it('no token or app secret in any log line, event or error message of the whole run', () => {
    rig.assertNoSecrets();
  });
});
