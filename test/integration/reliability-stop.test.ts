/**
 * Issue 9, item 1 — stopping, as a real process: the real-time smoke test of what only a process
 * shows (signals, exit codes, the stop watchdog). The agent (as nobody) against the Saxo stand-in
 * made slow, four processes at once: SIGTERM while an exchange is in flight waits for Saxo's answer,
 * stores the successor and exits 0; a second SIGTERM while presenting exits 1 at once; an idle agent
 * stops well inside 5 s; a cloud-connected agent whose Secret Manager hangs while it stops still
 * exits 0 inside Saxo's delay + 5 s (+ 2 s). The stop's own rules — what is presented, stored,
 * announced, and when a restart presents — run on the virtual clock in
 * test/unit/reliability-stop.test.ts.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { silentLogger } from '../../core/log.js';
import type { SecretStore } from '../../core/ports.js';
import type { TokenSet } from '../../core/token.js';
import type { CliProcess } from '../helpers/agent-process.js';
import { cloudEnv, describeWithPubSub, ensureTopicAndSubscription, startPubSubFixture, startSecretManagerFixture, type PubSubFixture, type SecretManagerFixture } from '../helpers/gcp.js';
import { dataDirFor, expectNoSecrets } from '../helpers/reliability-cli.js';
import { useStandinRig } from '../helpers/reliability-rig.js';

const APP_KEY = 'rel-stop-app';
const APP_SECRET = 'rel-stop-app-secret-0123456789abcdef';
const LIFE = 8; // s; token_expiry = issue + 8 − 1 (margin)
const THRESHOLD = 4; // s: a successor is due 3 s after it was issued
const SAXO_DELAY_MS = 4000;

const rig = useStandinRig({ appKey: APP_KEY, appSecret: APP_SECRET, accessLifetimeSec: LIFE, refreshLifetimeSec: 120 });
const { seen } = rig;

function agent(dir: string, extra: Record<string, string | undefined> = {}): CliProcess {
  return rig.start(['agent'], rig.env(dir, {
    CHECK_INTERVAL_SECONDS: '0.5',
    REFRESH_THRESHOLD_SECONDS: String(THRESHOLD),
    BOT_REFRESH_THRESHOLD_SECONDS: '1',
    TOKEN_EXPIRY_MARGIN_SECONDS: '1',
    REFRESH_TOKEN_ALERT_SECONDS: '0',
    SAXO_HTTP_TIMEOUT_SECONDS: '6',
    TOKEN_KEEPER_HOLDER_ID: 'agent:rel-stop',
    ...extra,
  }));
}

/** A data dir whose cache holds a live pair with `leftSec` of access left. */
async function seeded(leftSec: number): Promise<{ dir: string; token: TokenSet }> {
  const dir = dataDirFor(undefined, 'tk-rel-stop-');
  // Issued 5 s ago, whatever is left.
  const token = rig.pair({ leftSec, lifeSec: leftSec + 5, refreshLeftSec: 120, generation: 7, source: 'agent:before' });
  await createCacheFile(join(dir, 'saxo_token_cache.json')).write(token);
  return { dir, token };
}

function cacheOf(dir: string): TokenSet {
  const token = rig.cached(dir);
  if (!token) throw new Error(`cache missing or unusable in ${dir}`);
  return token;
}

const indexOf = (p: CliProcess, event: string) => p.logs.findIndex((l) => l.event === event);

describeWithPubSub('stopping the agent (item 1): real processes, real signals', () => {
  const PROJECT = 'tk-rel-stop';
  const topic = `rel-stop-${randomBytes(3).toString('hex')}`;
  let sm: SecretManagerFixture;
  let ps: PubSubFixture;
  let store: SecretStore;
  let cloud: Record<string, string | undefined>;
  beforeAll(async () => {
    sm = await startSecretManagerFixture(PROJECT, 'saxo-token');
    store = createSecretStore({ client: sm.client, projectId: PROJECT, secretId: 'saxo-token', logger: silentLogger });
    ps = await startPubSubFixture(PROJECT);
    await ensureTopicAndSubscription(ps.pubsub, topic, `${topic}-audit`);
    cloud = { ...cloudEnv(sm, { topic, pubsubHost: ps.emulator.host }), LEASE_TTL_SECONDS: '20', CLOUD_REFRESH_THRESHOLD_SECONDS: '5' };
  }, 30_000);
  afterAll(async () => {
    await ps?.close();
    await sm?.close();
  });
  afterEach(() => sm.server.setLatency(0));

  async function seededInSecret(leftSec: number): Promise<{ dir: string; token: TokenSet }> {
    const s = await seeded(leftSec);
    await store.add({ ...s.token, generation: ((await store.latest())?.token?.generation ?? 6) + 1 });
    await createCacheFile(join(s.dir, 'saxo_token_cache.json')).write({ ...s.token, generation: (await store.latest())!.token!.generation });
    return s;
  }

  it('SIGTERM mid-exchange exits 0 after storing the answer; a second SIGTERM exits 1 at once; idle exits 0 inside 5 s; Secret Manager hanging: exit 0 inside Saxo + 5 s', async () => {
    const [inFlight, twice, idle, hanging] = await Promise.all([seeded(2), seeded(2), seeded(LIFE * 100), seededInSecret(2)]);
    rig.saxo.inject({ kind: 'delay', delayMs: SAXO_DELAY_MS, times: 3 });
    const a = agent(inFlight.dir);
    const c = agent(twice.dir);
    const d = agent(idle.dir);
    const h = agent(hanging.dir, cloud);

    const stoppedInFlight = (async () => {
      await a.waitForEvent('refresh_started', 20_000);
      const stop = await a.stop('SIGTERM');
      expect(stop.code).toBe(0);
      // It waited for the slow answer (4 s after the request went out), and not much longer.
      expect(stop.ms).toBeGreaterThan(SAXO_DELAY_MS - 1500);
      expect(stop.ms).toBeLessThan(SAXO_DELAY_MS + 5000);
      console.log(`[measure] stop with an exchange in flight: ${stop.ms} ms (Saxo answered after ${SAXO_DELAY_MS} ms)`);
      const order = ['signal', 'token_refreshed', 'agent_stopping', 'agent_stopped'].map((e) => indexOf(a, e));
      expect(order.every((i) => i >= 0), `events seen: ${a.logs.map((l) => l.event).join(',')}`).toBe(true);
      expect([...order].sort((x, y) => x - y)).toEqual(order);
      expect(a.logs.filter((l) => l.event === 'forced_exit')).toEqual([]);
      const cached = cacheOf(inFlight.dir);
      const state = await createStateFile(join(inFlight.dir, '.token-keeper-state.json')).read();
      expect(cached.refreshToken).not.toBe(inFlight.token.refreshToken);
      expect(state?.token?.refreshToken).toBe(cached.refreshToken);
      expect(cached.generation).toBe(8);
      expect(rig.saxo.isValidAccessToken(cached.accessToken)).toBe(true);
    })();

    const stoppedTwice = (async () => {
      await c.waitForEvent('refresh_started', 20_000);
      c.proc.kill('SIGTERM');
      await c.waitForEvent('signal', 5_000);
      const t0 = Date.now();
      c.proc.kill('SIGTERM');
      const { code } = await c.exited;
      const ms = Date.now() - t0;
      expect(code).toBe(1);
      // Promptly: the exit polls every 50 ms; Saxo would have answered only after 4 s.
      expect(ms).toBeLessThan(2000);
      console.log(`[measure] second SIGTERM while presenting → exit 1 after ${ms} ms`);
      const second = c.logs.filter((l) => l.event === 'signal');
      expect(second.length).toBe(2);
      expect(second[1]!.phase).toBe('presenting');
      expect(c.logs.some((l) => l.event === 'forced_exit')).toBe(true);
      expect(c.logs.some((l) => l.event === 'token_refreshed')).toBe(false);
    })();

    const stoppedIdle = (async () => {
      await d.waitForEvent('agent_ready', 20_000);
      const stop = await d.stop('SIGTERM');
      expect(stop.code).toBe(0);
      expect(stop.ms).toBeLessThan(5000);
      console.log(`[measure] idle stop: ${stop.ms} ms`);
      expect(indexOf(d, 'agent_stopped')).toBeGreaterThan(indexOf(d, 'signal'));
      expect(cacheOf(idle.dir).refreshToken).toBe(idle.token.refreshToken);
    })();

    const stoppedHanging = (async () => {
      await h.waitForEvent('refresh_started', 30_000); // the lease and the secret read are behind it
      sm.server.setLatency(8_000);
      const stop = await h.stop('SIGTERM');
      expect(stop.code).toBe(0);
      console.log(`[measure] cloud-connected stop, Secret Manager hanging: ${stop.ms} ms (Saxo ${SAXO_DELAY_MS} ms + secret ≤ 5000 ms)`);
      expect(stop.ms).toBeLessThan(SAXO_DELAY_MS + 5_000 + 2_000);
      const failed = h.logs.find((l) => l.event === 'secret_push_failed');
      expect(String(failed?.error)).toMatch(/no answer within 5000 ms while stopping/);
      expect(h.logs.some((l) => l.event === 'token_refreshed')).toBe(true);
      const state = await createStateFile(join(hanging.dir, '.token-keeper-state.json')).read();
      expect(state?.token?.refreshToken).toBe(cacheOf(hanging.dir).refreshToken);
      expect(state?.token?.refreshToken).not.toBe(hanging.token.refreshToken);
    })();

    await Promise.all([stoppedInFlight, stoppedTwice, stoppedIdle, stoppedHanging]);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expectNoSecrets([a, c, d, h], seen);
  }, 60_000);
});
