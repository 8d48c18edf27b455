/**
 * Issue 9, item 5 (first half) — events are checked against the configured secret. A running agent
 * subscribed through the real Pub/Sub emulator receives valid TOKEN_ROTATED events whose `version`
 * names another project's and another secret's version: it logs event_foreign, never asks Secret
 * Manager for them (the stand-in sees no AccessSecretVersion at all), and acks them — no second
 * event_foreign after the 5 s nack delay, and nothing left on the subscription.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createCacheFile } from '../../agent/cache-file.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { createEventBus } from '../../core/gcp/event-bus.js';
import { createPubSubGapicClient } from '../../core/gcp/clients.js';
import { silentLogger } from '../../core/log.js';
import { cloudEnv, describeWithPubSub, ensureTopicAndSubscription, startPubSubFixture, startSecretManagerFixture, type PubSubFixture, type SecretManagerFixture } from '../helpers/gcp.js';
import { dataDirFor, expectNoSecrets, issuedPair, startCliAs } from '../helpers/reliability-cli.js';
import { useStandinRig } from '../helpers/reliability-rig.js';

const PROJECT = 'tk-rel-events';
const SECRET_ID = 'saxo-token';
const APP_KEY = 'rel-events-app';
const APP_SECRET = 'rel-events-app-secret-0123456789abcdef';
const NACK_DELAY_MS = 5_000; // the event bus's default

let sm: SecretManagerFixture;
let ps: PubSubFixture;
const n = randomBytes(3).toString('hex');
const topic = `rel-events-${n}`;
const sub = `rel-events-agent-${n}`;

describeWithPubSub('events for another secret (item 5)', () => {
  const rig = useStandinRig({ appKey: APP_KEY, appSecret: APP_SECRET, accessLifetimeSec: 600, refreshLifetimeSec: 3600 });
  const { procs } = rig;
  beforeAll(async () => {
    sm = await startSecretManagerFixture(PROJECT, SECRET_ID);
    ps = await startPubSubFixture(PROJECT);
    await ensureTopicAndSubscription(ps.pubsub, topic, sub);
  }, 30_000);
  afterAll(async () => {
    await ps?.pubsub.topic(topic).delete().catch(() => undefined);
    await ps?.close();
    await sm?.close();
  });

  it('a valid TOKEN_ROTATED naming another project\'s or secret\'s version: event_foreign, never read, acked (not redelivered)', async () => {
    const t = issuedPair(rig.saxo, { key: APP_KEY, secret: APP_SECRET }, { leftSec: 590, refreshLeftSec: 3590, generation: 3 });
    const now = Date.now();
    await createSecretStore({ client: sm.client, projectId: PROJECT, secretId: SECRET_ID, logger: silentLogger }).add(t);
    const dir = dataDirFor(undefined, 'tk-rel-events-');
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(t);

    const a = startCliAs(['agent'], {
      ...rig.env(dir),
      ...cloudEnv(sm, { topic, sub, pubsubHost: ps.emulator.host }),
      CHECK_INTERVAL_SECONDS: '1',
      TOKEN_KEEPER_HOLDER_ID: 'agent:rel-events',
    });
    procs.push(a);
    await a.waitForEvent('agent_ready', 30_000);
    expect(a.logs.some((l) => l.event === 'subscribed')).toBe(true);
    const accessBefore = sm.server.calls.filter((c) => c === 'AccessSecretVersion').length;
    const from = a.logs.length;

    const foreign = [`projects/other-project/secrets/${SECRET_ID}/versions/9`, `projects/${PROJECT}/secrets/other-secret/versions/9`];
    const bus = createEventBus({ gcp: { projectId: PROJECT, topicId: topic, pubsubEmulatorHost: ps.emulator.host } });
    try {
      for (const version of foreign) {
        await bus.publish({ type: 'TOKEN_ROTATED', version, generation: 99, accessExpiresAt: new Date(now + 3_000_000).toISOString(), source: 'cloud', publishedAt: new Date().toISOString() });
      }
    } finally {
      await bus.close();
    }
    const seen = await Promise.all(foreign.map((v) => a.waitFor((l) => l.event === 'event_foreign' && l.version === v, 20_000, `event_foreign ${v}`)));
    expect(seen.every((l) => l.severity === 'WARNING')).toBe(true);
    // A later event than a redelivery after the nack delay could be: a periodic check well past it.
    const last = Math.max(...seen.map((l) => Date.parse(String(l.time))));
    await a.waitFor((l) => l.event === 'token_status' && Date.parse(String(l.time)) > last + NACK_DELAY_MS + 2_000, 20_000, 'a check past the nack delay');
    for (const v of foreign) expect(a.logs.filter((l) => l.event === 'event_foreign' && l.version === v), v).toHaveLength(1);
    expect(a.logs.slice(from).filter((l) => l.event === 'event_handler_failed' || l.event === 'token_adopted')).toEqual([]);
    expect(sm.server.calls.filter((c) => c === 'AccessSecretVersion').length - accessBefore, 'AccessSecretVersion calls after the foreign events').toBe(0);

    expect((await a.stop()).code).toBe(0);
    // Acked: nothing waits on the subscription once the agent is gone.
    const client = await createPubSubGapicClient('subscriber', { projectId: PROJECT, pubsubEmulatorHost: ps.emulator.host });
    try {
      const [res] = await client.pull({ subscription: `projects/${PROJECT}/subscriptions/${sub}`, maxMessages: 10, returnImmediately: true });
      expect(res.receivedMessages ?? []).toEqual([]);
    } finally {
      await client.close();
    }
    expect(rig.saxo.stats().presentations).toBe(0);
    expectNoSecrets([a], [t.accessToken, t.refreshToken, APP_SECRET]);
  }, 60_000);
});
