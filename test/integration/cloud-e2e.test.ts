/**
 * The cloud path end to end over the real Pub/Sub emulator and the Secret Manager gRPC stand-in:
 * the function (the real functions/index.ts entry, served by functions-framework) refreshes, the
 * real agent process hears TOKEN_ROTATED and writes the cache. Also: pruning over 100 refreshes.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseFlat } from '../../core/codec.js';
import { startCli, type CliProcess } from '../helpers/agent-process.js';
import { describeWithPubSub, waitFor } from '../helpers/gcp.js';
import { startCloudRig, percentile, duplicates, tempDir, type CloudRig } from '../helpers/cloud-rig.js';
import { cachedByPush } from '../helpers/push-path.js';

const PROJECT = 'tk-cloud-e2e';
const SAMPLES = 22;

describeWithPubSub('cloud path end to end (function → Pub/Sub → agent process)', () => {
  let rig: CloudRig;
  beforeAll(async () => {
    rig = await startCloudRig({ projectId: PROJECT, accessLifetimeSec: 40, refreshLifetimeSec: 300, keepVersions: 3 });
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('functions/index.ts refreshes, the agent process adopts each rotation; publish→cache latency', async () => {
    const dir = tempDir('tk-e2e-agent-');
    // 20 s left: inside the cloud threshold (30 s), far above the agent's (2 s), so only the cloud acts.
    await rig.seedSecret(20, 1);
    const functionEnv: Record<string, string> = {
      ...rig.agentEnv(dir),
      CLOUD_REFRESH_THRESHOLD_SECONDS: '30',
      LEASE_TTL_SECONDS: '10',
    };
    const saved = { ...process.env };
    Object.assign(process.env, functionEnv);
    // functions/index.ts logs to stdout: capture its JSON lines for the secrets check.
    const origWrite = process.stdout.write.bind(process.stdout);
    const fnLines: string[] = [];
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const s = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      if (s.startsWith('{') && s.includes('"severity"')) {
        fnLines.push(s);
        return true;
      }
      return (origWrite as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stdout.write;

    let agent: CliProcess | undefined;
    try {
      await import('../../functions/index.js');
      const fn = await rig.serve('refreshToken');
      const sub = await rig.createSubscription(`agent-${rig.secretId}`);
      agent = startCli(['agent'], rig.agentEnv(dir, {
        TOKEN_SUBSCRIPTION_ID: sub,
        CHECK_INTERVAL_SECONDS: '5',
        REFRESH_THRESHOLD_SECONDS: '2',
        TOKEN_KEEPER_HOLDER_ID: 'agent:e2e',
      }));
      await agent.waitForEvent('agent_ready', 30_000);
      const a = agent;
      const number = rig.sm.server.projectNumber(PROJECT);
      await a.waitFor((l) => l.event === 'cache_written' && l.generation === 1, 15_000, 'cache_written gen 1'); // startup adopted the seeded secret
      // Every later pair comes by the push path: the announcement (named by project number) is read.
      const cacheGen = (g: number) => cachedByPush(a, g, number);

      // A Scheduler tick inside the threshold refreshes; the next one finds a fresh token.
      const first = await fn.post({});
      expect(first.status).toBe(200);
      expect(first.body).toMatchObject({ outcome: 'refreshed', generation: 2 });
      await cacheGen(2);
      const second = await fn.post({});
      expect(second.body).toMatchObject({ outcome: 'fresh', generation: 2 });

      const latencies: number[] = [];
      for (let i = 0; i < SAMPLES; i++) {
        const r = await fn.post({ force: true });
        expect(r.body.outcome).toBe('refreshed');
        const g = r.body.generation as number;
        const written = await cacheGen(g);
        const ev = await waitFor(() => rig.events.find((e) => e.generation === g), 10_000, `audit event gen ${g}`);
        latencies.push(Date.parse(written.time as string) - Date.parse(ev.publishedAt));
      }
      const p50 = percentile(latencies, 50);
      const p99 = percentile(latencies, 99);
      console.log(`cloud-e2e propagation (push path): p50=${p50}ms p99=${p99}ms n=${latencies.length} (publish → agent cache renamed)`);
      expect(latencies.length).toBeGreaterThanOrEqual(20);
      expect(p99).toBeLessThan(5000);

      // The cache holds exactly what the secret holds, and Saxo never saw a token twice.
      const latest = await rig.latest();
      const cache = parseFlat(readFileSync(join(dir, 'saxo_token_cache.json'), 'utf8'));
      expect(cache.ok && cache.token.refreshToken === latest?.refreshToken).toBe(true);
      expect(latest?.generation).toBe(SAMPLES + 2);
      expect(rig.saxo.stats().reusedPresentations).toBe(0);
      expect(duplicates(rig.presented)).toBe(0);
      expect(rig.saxo.isValidAccessToken(latest!.accessToken)).toBe(true);
      expect(await rig.store.countVersions()).toBeLessThanOrEqual(rig.keep);

      const stop = await agent.stop();
      expect(stop.code).toBe(0);
      expect(fnLines.some((l) => l.includes('"token_refreshed"'))).toBe(true);
      rig.assertNoSecrets([...fnLines, ...agent.raw, agent.stderr()]);
    } finally {
      process.stdout.write = origWrite;
      for (const k of Object.keys(functionEnv)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
      if (agent && agent.proc.exitCode === null) agent.proc.kill('SIGKILL');
    }
  });

  it('100 refreshes through the real gRPC server leave at most KEEP_SECRET_VERSIONS versions', async () => {
    const r2 = await startCloudRig({ projectId: PROJECT, accessLifetimeSec: 40, keepVersions: 3 });
    try {
      await r2.seedSecret(30, 1);
      const fn = await r2.startFunction(() => Promise.resolve(r2.cloudDeps()));
      for (let i = 0; i < 100; i++) {
        const r = await fn.post({ force: true });
        expect(r.body.outcome).toBe('refreshed');
      }
      const live = r2.sm.server.versionStates(r2.secretId, PROJECT).filter((v) => v.state !== 'DESTROYED');
      expect(live.length).toBeLessThanOrEqual(3);
      expect(live.length).toBeGreaterThan(0);
      expect(r2.sm.server.versionStates(r2.secretId, PROJECT).length).toBe(101);
      expect(await r2.store.countVersions()).toBeLessThanOrEqual(3);
      expect((await r2.latest())?.generation).toBe(101);
      expect(r2.saxo.stats()).toMatchObject({ refreshes: 100, reusedPresentations: 0 });
      await waitFor(() => r2.events.length >= 100, 15_000, '100 audit events');
      r2.assertNoSecrets();
    } finally {
      await r2.close();
    }
  });
});
