/**
 * The lean EventBus (generated Pub/Sub clients, own streaming-pull loop) against Google's real
 * Pub/Sub emulator on 127.0.0.1: the shared EventBus contract, plus reconnecting after an outage.
 */
import { expect, it } from 'vitest';
import { createPubSub } from '../../core/gcp/clients.js';
import { createLeanEventBus } from '../../core/gcp/lean-event-bus.js';
import { findPubSubEmulatorJar, startPubSubEmulator } from '../../standins/pubsub-emulator.js';
import { eventBusContract, eventLines, rotatedEvent } from '../helpers/event-bus-contract.js';
import { ensureTopicAndSubscription, waitFor } from '../helpers/gcp.js';

const PROJECT = 'lean-bus-project';
const event = (generation: number) => rotatedEvent(PROJECT, generation);

eventBusContract(
  'lean EventBus on the Pub/Sub emulator',
  async ({ projectId, fx, topicId, subscriptionId, logger }) => {
    const bus = createLeanEventBus({ gcp: { projectId, topicId, subscriptionId, pubsubEmulatorHost: fx.emulator.host }, logger });
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
          const b = createLeanEventBus({
            gcp: { projectId: PROJECT, topicId, subscriptionId, pubsubEmulatorHost: emu.host },
            logger,
            backoff: { initialMs: 200, maxMs: 1_000 },
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
            // The subscription retains it until the subscriber's stream is back (on its own backoff).
            await b.publish(event(2));
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
    },
  },
);
