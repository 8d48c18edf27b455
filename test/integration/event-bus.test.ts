/**
 * The Pub/Sub EventBus against Google's real Pub/Sub emulator on 127.0.0.1.
 */
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { connect } from 'node:net';
import { createPubSub, parseHostPort } from '../../core/gcp/clients.js';
import { startPubSubEmulator } from '../../standins/pubsub-emulator.js';
import { createEventBus, ensureTopicAndSubscription, parseTokenRotated } from '../../core/gcp/event-bus.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { EventBus, TokenRotatedEvent } from '../../core/ports.js';
import { describeWithPubSub, startPubSubFixture, waitFor, type PubSubFixture } from '../helpers/gcp.js';

const PROJECT = 'bus-project';

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

describeWithPubSub('EventBus on the Pub/Sub emulator', () => {
  let fx: PubSubFixture;
  let seq = 0;
  let topicId: string;
  let subscriptionId: string;
  let lines: string[];
  let logger: Logger;
  let bus: EventBus;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    fx = await startPubSubFixture(PROJECT);
  });
  afterAll(async () => {
    await fx?.close();
  });

  beforeEach(async () => {
    seq++;
    topicId = `rotated-${seq}`;
    subscriptionId = `agent-${seq}`;
    lines = [];
    logger = createLogger({ write: (l) => lines.push(l), minSeverity: 'DEBUG' });
    // Short ack deadline so nothing in these tests waits long for a redelivery.
    await ensureTopicAndSubscription(fx.pubsub, topicId, subscriptionId, { ackDeadlineSeconds: 10 });
    bus = createEventBus({ pubsub: fx.pubsub, topicId, subscriptionId, logger });
  });
  afterEach(async () => {
    while (closers.length) await closers.pop()!();
  });

  const subscribe = async (handler: Parameters<EventBus['subscribe']>[0]) => {
    const close = await bus.subscribe(handler);
    closers.push(close);
    return close;
  };

  it('delivers a published event to the subscriber with TOKEN_ROTATED attributes', async () => {
    const got: { event: TokenRotatedEvent; id: string }[] = [];
    await subscribe(async (e, meta) => {
      got.push({ event: e, id: meta.id });
    });
    const id = await bus.publish(event(7));
    expect(id).toMatch(/\S/);
    await waitFor(() => got.length === 1, 10_000, 'delivery');
    expect(got[0]).toEqual({ event: event(7), id });

    // Attributes let subscribers filter without parsing; read them with a raw subscription.
    const raw = fx.pubsub.topic(topicId);
    const [rawSub] = await raw.createSubscription(`raw-${seq}`);
    const attrs = new Promise<Record<string, string>>((resolve) =>
      rawSub.once('message', (m: { attributes: Record<string, string>; ack(): void }) => {
        m.ack();
        resolve(m.attributes);
      }),
    );
    await bus.publish(event(8));
    expect(await attrs).toEqual({ type: 'TOKEN_ROTATED', generation: '8' });
    await rawSub.close();
  });

  it('acks malformed messages without calling the handler, logging event_malformed', async () => {
    const handled: number[] = [];
    await subscribe(async (e) => {
      handled.push(e.generation);
    });
    const topic = fx.pubsub.topic(topicId);
    await topic.publishMessage({ data: Buffer.from('not json {"refresh_token":"REFRESH-secret-leak"') });
    await topic.publishMessage({ json: { type: 'TOKEN_ROTATED', generation: 'x', access_token: 'ACCESS-secret-leak' } });
    await bus.publish(event(3));
    await waitFor(() => handled.length === 1, 10_000, 'valid event');
    await waitFor(() => lines.filter((l) => l.includes('"event":"event_malformed"')).length === 2, 10_000, 'two warnings');
    expect(handled).toEqual([3]);
    const warnings = lines.filter((l) => l.includes('event_malformed')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(warnings.every((w) => w.severity === 'WARNING')).toBe(true);
    expect(lines.join('\n')).not.toMatch(/secret-leak/);

    // Acked → not redelivered: after closing and resubscribing, nothing arrives but a new event.
    await closers.pop()!();
    const again: number[] = [];
    const malformedBefore = lines.filter((l) => l.includes('event_malformed')).length;
    await subscribe(async (e) => {
      again.push(e.generation);
    });
    await bus.publish(event(4));
    await waitFor(() => again.includes(4), 10_000, 'fresh event');
    expect(again).toEqual([4]);
    expect(lines.filter((l) => l.includes('event_malformed')).length).toBe(malformedBefore);
  });

  it('redelivers a message whose handler rejected (nack)', async () => {
    const attempts: string[] = [];
    await subscribe(async (_e, meta) => {
      attempts.push(meta.id);
      if (attempts.length === 1) throw new Error('cache busy');
    });
    const id = await bus.publish(event(5));
    await waitFor(() => attempts.length >= 2, 15_000, 'redelivery');
    expect(attempts.slice(0, 2)).toEqual([id, id]);
    expect(lines.some((l) => l.includes('"event":"event_handler_failed"'))).toBe(true);
  });

  it('stops delivering after close and lets a running handler settle first', async () => {
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
    release();
    await closing;
    expect(settled).toBe(true);
    await close(); // idempotent
    await bus.publish(event(2));
    // A fresh subscriber on the same subscription sees only event 2: event 1 was acked before close.
    const later: number[] = [];
    await subscribe(async (e) => {
      later.push(e.generation);
    });
    await waitFor(() => later.length >= 1, 10_000, 'event after reopen');
    expect(later).toEqual([2]);
    expect(seen).toEqual([1]);
  });

  it('refuses to subscribe without a subscription id and validates what it publishes', async () => {
    const pubOnly = createEventBus({ pubsub: fx.pubsub, topicId });
    await expect(pubOnly.subscribe(async () => {})).rejects.toThrow(/subscription/);
    await expect(pubOnly.publish({ ...event(1), generation: -1 })).rejects.toThrow();
  });

  it('works through createPubSub with the emulator host from config', async () => {
    const ps = await createPubSub({ projectId: PROJECT, pubsubEmulatorHost: fx.emulator.host });
    try {
      const b = createEventBus({ pubsub: ps, topicId, subscriptionId, logger });
      const got: number[] = [];
      const close = await b.subscribe(async (e) => {
        got.push(e.generation);
      });
      closers.push(close);
      await b.publish(event(9));
      await waitFor(() => got.includes(9), 10_000, 'delivery');
      expect(got).toEqual([9]);
    } finally {
      await closers.pop()!();
      await ps.close();
    }
  });
});

describeWithPubSub('Pub/Sub emulator harness', () => {
  it('starts on a free loopback port and stop() leaves nothing listening', async () => {
    const emu = await startPubSubEmulator();
    expect(emu.host).toBe(`127.0.0.1:${emu.port}`);
    const connects = () =>
      new Promise<boolean>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: emu.port });
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
    expect(await connects()).toBe(true);
    await emu.stop();
    expect(await connects()).toBe(false);
  });
});

it('parseHostPort accepts host:port and rejects anything else', () => {
  expect(parseHostPort('127.0.0.1:8085', 'X')).toEqual({ host: '127.0.0.1', port: 8085 });
  expect(parseHostPort('[::1]:9', 'X')).toEqual({ host: '::1', port: 9 });
  expect(() => parseHostPort('localhost', 'PUBSUB_EMULATOR_HOST')).toThrow(/PUBSUB_EMULATOR_HOST/);
  expect(() => parseHostPort('h:99999', 'X')).toThrow();
});

it('parseTokenRotated rejects bad bodies without echoing them', () => {
  const r = parseTokenRotated(Buffer.from('{"type":"TOKEN_ROTATED","version":"REFRESH-secret-leak"}'));
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.reason).toMatch(/version/);
    expect(r.reason).not.toMatch(/secret-leak/);
  }
  expect(parseTokenRotated(Buffer.from(JSON.stringify(event(2))))).toEqual({ ok: true, event: event(2) });
});
