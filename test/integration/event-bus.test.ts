/**
 * The EventBus adapter (generated Pub/Sub clients, own streaming-pull loop) against Google's real
 * Pub/Sub emulator on 127.0.0.1: the shared EventBus contract, reconnecting after an outage, a
 * publish that gives up within its deadline when Pub/Sub does not answer, and the helpers.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createPubSub, parseHostPort } from '../../core/gcp/clients.js';
import { createEventBus } from '../../core/gcp/event-bus.js';
import { parseTokenRotated } from '../../core/gcp/event-schema.js';
import { findPubSubEmulatorJar, startPubSubEmulator } from '../../standins/pubsub-emulator.js';
import { eventBusContract, eventLines, rotatedEvent } from '../helpers/event-bus-contract.js';
import { describeWithPubSub, ensureTopicAndSubscription, startPubSubFixture, waitFor } from '../helpers/gcp.js';
import { eventBusCoreContract } from '../helpers/event-bus-core-contract.js';

// Unique per run: a long-lived emulator (a developer's, or CI's shared one) keeps topics between runs.
const PROJECT = `bus-project-${process.pid}`;
const event = (generation: number) => rotatedEvent(PROJECT, generation);

eventBusContract(
  'EventBus on the Pub/Sub emulator',
  async ({ projectId, fx, topicId, subscriptionId, logger }) => {
    const bus = createEventBus({ gcp: { projectId, topicId, subscriptionId, pubsubEmulatorHost: fx.emulator.host }, logger });
    return { bus, close: () => bus.close() };
  },
  {
    projectId: PROJECT,
    more: (env) => {
      it.skipIf(!findPubSubEmulatorJar())(
        'reconnects after the emulator restarts on the same port and delivery resumes (skipped only without the emulator jar)',
        async () => {
          const { topicId, subscriptionId, lines, logger } = env;
          // A private emulator: restarting a shared one would break other files.
          const emu = await startPubSubEmulator();
          let emu2: Awaited<ReturnType<typeof startPubSubEmulator>> | undefined;
          const ps = await createPubSub({ projectId: PROJECT, pubsubEmulatorHost: emu.host });
          const b = createEventBus({
            gcp: { projectId: PROJECT, topicId, subscriptionId, pubsubEmulatorHost: emu.host },
            logger,
            backoff: { initialMs: 200, maxMs: 1_000 },
            // The restarted emulator answers NOT_FOUND until the subscription is re-created: a slow retry, scaled down.
            brokenRetryMs: 1_000,
          });
          try {
            await ensureTopicAndSubscription(ps, topicId, subscriptionId, { ackDeadlineSeconds: 10 });
            const { got } = await env.collect(b);
            await b.publish(event(1));
            await waitFor(() => got.length === 1, 10_000, 'delivery before restart');

            await emu.stop();
            await waitFor(() => eventLines(lines, 'event_subscription_error').length >= 1, 10_000, 'stream error logged');
            emu2 = await startPubSubEmulator({ port: emu.port });
            // The emulator keeps no state: the topic and subscription come back as new.
            const ps2 = await createPubSub({ projectId: PROJECT, pubsubEmulatorHost: emu2.host });
            try {
              await ensureTopicAndSubscription(ps2, topicId, subscriptionId, { ackDeadlineSeconds: 10 });
            } finally {
              await ps2.close();
            }
            // The publisher's channel may still be in gRPC's reconnect backoff from the outage (a slow
            // restart on a busy machine lengthens it): a publish that fails is retried, as the agent
            // retries an announcement that did not go out (core/announce.ts).
            const publishedAt = Date.now();
            for (;;) {
              try {
                await b.publish(event(2));
                break;
              } catch (err) {
                if (Date.now() - publishedAt > 20_000) throw err;
              }
            }
            // The subscription retains it until the subscriber's stream is back (on its own backoff).
            await waitFor(() => got.length === 2, 20_000, 'delivery after restart');
            expect(got[0]!.event).toEqual(event(1));
            expect(got[1]!.event).toEqual(event(2));
            const errors = eventLines(lines, 'event_subscription_error');
            expect(errors.every((e) => e.severity === 'WARNING')).toBe(true);
            // Backoff, not a spin: a handful of attempts over the outage, not hundreds.
            expect(errors.length).toBeLessThan(30);
          } finally {
            await b.close(); // ends the collecting subscription before its emulator goes away
            await ps.close();
            await emu2?.stop();
            await emu.stop();
          }
        },
        45_000,
      );

      it('a deleted subscription ends the fast reconnect loop: one ALERT naming it and the fix, slow retries, events again once it is re-created', async () => {
        const { fx, topicId, subscriptionId, lines, logger } = env;
        const subscription = `projects/${PROJECT}/subscriptions/${subscriptionId}`;
        const SLOW_MS = 1_500; // production: minutes
        const b = createEventBus({
          gcp: { projectId: PROJECT, topicId, subscriptionId, pubsubEmulatorHost: fx.emulator.host },
          logger,
          backoff: { initialMs: 20, maxMs: 100 }, // a fast loop would show dozens of attempts below
          brokenRetryMs: SLOW_MS,
        });
        try {
          const { got } = await env.collect(b);
          await b.publish(event(1));
          await waitFor(() => got.length === 1, 10_000, 'delivery before the deletion');
          expect(b.subscriptionProblem()).toBeUndefined();

          await fx.pubsub.subscription(subscriptionId).delete();
          const alert = await waitFor(() => eventLines(lines, 'event_subscription_broken')[0], 15_000, 'the ALERT');
          expect(alert).toMatchObject({ severity: 'ALERT', subscription, code: 'NOT_FOUND' });
          expect(alert.message).toContain(subscription);
          expect(alert.message).toContain('terraform apply');
          expect(b.subscriptionProblem()).toMatchObject({ subscription, code: 'NOT_FOUND', problem: expect.stringContaining('recreate it') as unknown });

          // Two further attempts, each after the slow pause (jittered: at least half of it), and no second ALERT.
          const retries = await waitFor(() => {
            const r = eventLines(lines, 'event_subscription_error').filter((l) => l.code === 'NOT_FOUND');
            return r.length >= 2 ? r : undefined;
          }, 15_000, 'two slow retries');
          const times = [alert, ...retries.slice(0, 2)].map((l) => Date.parse(l.time as string));
          for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(SLOW_MS / 2 - 50);
          const fastErrors = eventLines(lines, 'event_subscription_error').filter((l) => l.code !== 'NOT_FOUND');
          expect(fastErrors).toEqual([]);
          expect(eventLines(lines, 'event_subscription_broken')).toHaveLength(1);

          // Restored (terraform apply): the next slow attempt finds it, and events flow again.
          await ensureTopicAndSubscription(fx.pubsub, topicId, subscriptionId, { ackDeadlineSeconds: 10 });
          await b.publish(event(2));
          await waitFor(() => got.length === 2, 15_000, 'delivery after the subscription was re-created');
          expect(got[1]!.event).toEqual(event(2));
          expect(eventLines(lines, 'event_subscription_restored')).toHaveLength(1);
          expect(b.subscriptionProblem()).toBeUndefined();
          expect(eventLines(lines, 'event_subscription_broken')).toHaveLength(1);
        } finally {
          await b.close();
        }
      }, 60_000);
    },
  },
);

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

it('publish gives up within its deadline when Pub/Sub accepts the connection but never answers (nothing may wait on it)', async () => {
  // A TCP server that accepts and stays silent: the worst case (no RST, no answer).
  const sockets = new Set<import('node:net').Socket>();
  const black = createServer((s) => void sockets.add(s));
  await new Promise<void>((r) => black.listen(0, '127.0.0.1', () => r()));
  const host = `127.0.0.1:${(black.address() as AddressInfo).port}`;
  const bus = createEventBus({ gcp: { projectId: PROJECT, topicId: 'nowhere', pubsubEmulatorHost: host }, publishTimeoutMs: 1_500 });
  const t0 = Date.now();
  try {
    await expect(bus.publish(event(1))).rejects.toThrow();
    const took = Date.now() - t0;
    // Bounded by the deadline it was given, not by gax's 60 s default plus retries.
    expect(took).toBeLessThan(10_000);
  } finally {
    await bus.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => black.close(() => r()));
  }
});

describeWithPubSub('EventBus core contract on the emulator', () => {
  let fx: Awaited<ReturnType<typeof startPubSubFixture>>;
  let seq = 0;
  beforeAll(async () => {
    fx = await startPubSubFixture(`${PROJECT}-core`);
  });
  afterAll(async () => {
    await fx.close();
  });
  eventBusCoreContract('the Pub/Sub adapter', async () => {
    const topicId = `core-${++seq}`;
    await ensureTopicAndSubscription(fx.pubsub, topicId, `${topicId}-sub`, { ackDeadlineSeconds: 10 });
    const bus = createEventBus({ gcp: { projectId: `${PROJECT}-core`, topicId, subscriptionId: `${topicId}-sub`, pubsubEmulatorHost: fx.emulator.host } });
    return { bus, projectId: `${PROJECT}-core`, close: () => bus.close() };
  });
});
