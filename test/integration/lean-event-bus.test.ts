/**
 * The lean EventBus (generated Pub/Sub clients, own streaming-pull loop) against Google's real
 * Pub/Sub emulator on 127.0.0.1.
 */
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { createPubSub } from '../../core/gcp/clients.js';
import { createEventBus } from '../../core/gcp/event-bus.js';
import { createLeanEventBus, type LeanEventBus, type LeanEventBusOptions } from '../../core/gcp/lean-event-bus.js';
import { ConfigError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { EventBus, TokenRotatedEvent } from '../../core/ports.js';
import { findPubSubEmulatorJar, startPubSubEmulator } from '../../standins/pubsub-emulator.js';
import { describeWithPubSub, ensureTopicAndSubscription, startPubSubFixture, waitFor, type PubSubFixture } from '../helpers/gcp.js';

const PROJECT = 'lean-bus-project';

function event(generation: number): TokenRotatedEvent {
  return {
    type: 'TOKEN_ROTATED',
    version: `projects/${PROJECT}/secrets/saxo-token/versions/${generation}`,
    generation,
    accessExpiresAt: new Date(Date.UTC(2025, 0, 1, 12, generation)).toISOString(),
    source: 'cloud',
    publishedAt: new Date(Date.UTC(2025, 0, 1, 11, 59)).toISOString(),
  };
}

const count = (lines: string[], ev: string) => lines.filter((l) => l.includes(`"event":"${ev}"`)).length;

describeWithPubSub('lean EventBus on the Pub/Sub emulator', () => {
  let fx: PubSubFixture;
  let seq = 0;
  let topicId: string;
  let subscriptionId: string;
  let lines: string[];
  let logger: Logger;
  let bus: LeanEventBus;
  const buses: LeanEventBus[] = [];

  beforeAll(async () => {
    fx = await startPubSubFixture(PROJECT);
  });
  afterAll(async () => {
    await fx?.close();
  });

  const makeBus = (extra: Partial<LeanEventBusOptions> = {}, host = fx.emulator.host): LeanEventBus => {
    const b = createLeanEventBus({ gcp: { projectId: PROJECT, topicId, subscriptionId, pubsubEmulatorHost: host }, logger, ...extra });
    buses.push(b);
    return b;
  };

  beforeEach(async () => {
    seq++;
    topicId = `lean-rotated-${seq}`;
    subscriptionId = `lean-agent-${seq}`;
    lines = [];
    logger = createLogger({ write: (l) => lines.push(l), minSeverity: 'DEBUG' });
    await ensureTopicAndSubscription(fx.pubsub, topicId, subscriptionId, { ackDeadlineSeconds: 10 });
    bus = makeBus();
  });
  afterEach(async () => {
    while (buses.length) await buses.pop()!.close();
    // I5: nothing these tests put in a message body may surface in a log line.
    expect(lines.join('\n')).not.toMatch(/secret-leak/);
  });

  const collect = async (b: EventBus = bus) => {
    const got: { event: TokenRotatedEvent; id: string }[] = [];
    const close = await b.subscribe(async (e, meta) => {
      got.push({ event: e, id: meta.id });
    });
    return { got, close };
  };

  it('delivers a published event with exact fields and TOKEN_ROTATED attributes', async () => {
    const { got } = await collect();
    const id = await bus.publish(event(7));
    expect(id).toMatch(/\S/);
    await waitFor(() => got.length === 1, 10_000, 'delivery');
    expect(got).toEqual([{ event: event(7), id }]);

    const [rawSub] = await fx.pubsub.topic(topicId).createSubscription(`lean-raw-${seq}`);
    const attrs = new Promise<Record<string, string>>((resolve) =>
      rawSub.once('message', (m: { attributes: Record<string, string>; ack(): void }) => {
        m.ack();
        resolve(m.attributes);
      }),
    );
    await bus.publish(event(8));
    expect(await attrs).toEqual({ type: 'TOKEN_ROTATED', generation: '8' });
    await rawSub.close();
    await waitFor(() => got.length === 2, 10_000, 'second delivery');
    expect(got.map((g) => g.event.generation)).toEqual([7, 8]);
  });

  it('acks malformed messages without calling the handler, and they are not redelivered', async () => {
    const first = await collect();
    const topic = fx.pubsub.topic(topicId);
    await topic.publishMessage({ data: Buffer.from('not json {"refresh_token":"REFRESH-secret-leak"') });
    await topic.publishMessage({ json: { type: 'TOKEN_ROTATED', generation: 'x', access_token: 'ACCESS-secret-leak' } });
    await bus.publish(event(3));
    await waitFor(() => first.got.length === 1 && count(lines, 'event_malformed') === 2, 10_000, 'valid event + two warnings');
    expect(first.got.map((g) => g.event.generation)).toEqual([3]);
    const warnings = lines.filter((l) => l.includes('event_malformed')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(warnings.every((w) => w.severity === 'WARNING')).toBe(true);
    await first.close();

    // Acked → gone: a new subscriber (after the 10 s ack deadline would have expired) sees only a new event.
    const again = await collect(makeBus());
    await bus.publish(event(4));
    await waitFor(() => again.got.length >= 1, 10_000, 'fresh event');
    expect(again.got.map((g) => g.event.generation)).toEqual([4]);
    expect(count(lines, 'event_malformed')).toBe(2);
  });

  it('redelivers a rejected message only after the nack delay (no hot loop)', async () => {
    const attempts: { id: string; at: number }[] = [];
    await bus.subscribe(async (_e, meta) => {
      attempts.push({ id: meta.id, at: Date.now() });
      if (attempts.length === 1) throw new Error('Secret Manager unavailable');
    });
    const id = await bus.publish(event(5));
    await waitFor(() => attempts.length >= 2, 20_000, 'redelivery');
    expect(attempts.map((a) => a.id)).toEqual([id, id]);
    // Immediate nack would come back within milliseconds; the 5 s delay leaves a clear gap.
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(3_000);
    const failed = lines.filter((l) => l.includes('"event":"event_handler_failed"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ severity: 'WARNING', messageId: id, version: event(5).version });
  });

  it('delivers duplicate publishes twice (idempotency is the handler’s job)', async () => {
    const { got } = await collect();
    const id1 = await bus.publish(event(6));
    const id2 = await bus.publish(event(6));
    expect(id1).not.toBe(id2);
    await waitFor(() => got.length === 2, 10_000, 'both copies');
    expect(got.map((g) => g.id).sort()).toEqual([id1, id2].sort());
    expect(got.every((g) => g.event.generation === 6)).toBe(true);
  });

  it('close waits for a running handler to settle, then stops delivery; idempotent', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const seen: number[] = [];
    let settled = false;
    const close = await bus.subscribe(async (e) => {
      seen.push(e.generation);
      await gate;
      settled = true;
    });
    await bus.publish(event(1));
    await waitFor(() => seen.length === 1, 10_000, 'first event');
    const closing = close();
    let closedEarly = false;
    void closing.then(() => (closedEarly = !settled));
    release();
    await closing;
    expect(settled).toBe(true);
    expect(closedEarly).toBe(false);
    await close();
    // The same bus still publishes after a subscription closed (its publisher is recreated lazily).
    await bus.publish(event(2));
    const later = await collect(makeBus());
    await waitFor(() => later.got.length >= 1, 10_000, 'event after reopen');
    expect(later.got.map((g) => g.event.generation)).toEqual([2]);
    expect(seen).toEqual([1]);
  });

  it('refuses to subscribe without a subscription id and validates what it publishes', async () => {
    const pubOnly = createLeanEventBus({ gcp: { projectId: PROJECT, topicId, pubsubEmulatorHost: fx.emulator.host }, logger });
    buses.push(pubOnly);
    await expect(pubOnly.subscribe(async () => {})).rejects.toBeInstanceOf(ConfigError);
    await expect(pubOnly.publish({ ...event(1), generation: -1 })).rejects.toThrow();
    await expect(pubOnly.publish({ ...event(1), version: 'REFRESH-secret-leak' })).rejects.toThrow();
  });

  it('the high-level EventBus also delays its nack (same no-hot-loop fix)', async () => {
    const hl = createEventBus({ pubsub: fx.pubsub, topicId, subscriptionId, logger });
    const attempts: { id: string; at: number }[] = [];
    const close = await hl.subscribe(async (_e, meta) => {
      attempts.push({ id: meta.id, at: Date.now() });
      if (attempts.length === 1) throw new Error('Secret Manager unavailable');
    });
    try {
      const id = await hl.publish(event(9));
      await waitFor(() => attempts.length >= 2, 20_000, 'redelivery');
      expect(attempts.map((a) => a.id)).toEqual([id, id]);
      expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(3_000);
    } finally {
      await close();
    }
  });

  it.skipIf(!findPubSubEmulatorJar())(
    'reconnects after the emulator restarts on the same port and delivery resumes (skipped only without the emulator jar)',
    async () => {
      // A private emulator: restarting a shared one would break other files.
      const emu = await startPubSubEmulator();
      let emu2: Awaited<ReturnType<typeof startPubSubEmulator>> | undefined;
      const ps = await createPubSub({ projectId: PROJECT, pubsubEmulatorHost: emu.host });
      try {
        await ensureTopicAndSubscription(ps, topicId, subscriptionId, { ackDeadlineSeconds: 10 });
        const b = makeBus({ backoff: { initialMs: 200, maxMs: 1_000 } }, emu.host);
        const { got } = await collect(b);
        await b.publish(event(1));
        await waitFor(() => got.length === 1, 10_000, 'delivery before restart');

        await emu.stop();
        await waitFor(() => count(lines, 'event_subscription_error') >= 1, 10_000, 'stream error logged');
        emu2 = await startPubSubEmulator({ port: emu.port });
        // The emulator keeps no state: the topic and subscription come back as new.
        const ps2 = await createPubSub({ projectId: PROJECT, pubsubEmulatorHost: emu2.host });
        try {
          await ensureTopicAndSubscription(ps2, topicId, subscriptionId, { ackDeadlineSeconds: 10 });
        } finally {
          await ps2.close();
        }
        // The subscription retains it until the subscriber's stream is back (on its own backoff).
        await b.publish(event(2));
        await waitFor(() => got.length === 2, 20_000, 'delivery after restart');
        expect(got[0]!.event).toEqual(event(1));
        expect(got[1]!.event).toEqual(event(2));
        const errors = lines.filter((l) => l.includes('"event":"event_subscription_error"')).map((l) => JSON.parse(l) as Record<string, unknown>);
        expect(errors.every((e) => e.severity === 'WARNING')).toBe(true);
        // Backoff, not a spin: a handful of attempts over the outage, not hundreds.
        expect(errors.length).toBeLessThan(30);
      } finally {
        while (buses.length) await buses.pop()!.close();
        await ps.close();
        await emu2?.stop();
        await emu.stop();
      }
    },
    45_000,
  );
});
