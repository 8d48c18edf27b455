/**
 * The high-level Pub/Sub EventBus (@google-cloud/pubsub) against Google's real Pub/Sub emulator
 * on 127.0.0.1: the shared EventBus contract, plus what only this adapter and its helpers do.
 */
import { expect, it } from 'vitest';
import { connect } from 'node:net';
import { createPubSub, parseHostPort } from '../../core/gcp/clients.js';
import { startPubSubEmulator } from '../../standins/pubsub-emulator.js';
import { createEventBus, parseTokenRotated } from '../../core/gcp/event-bus.js';
import { eventBusContract, rotatedEvent } from '../helpers/event-bus-contract.js';
import { describeWithPubSub, waitFor } from '../helpers/gcp.js';

const PROJECT = 'bus-project';
const event = (generation: number) => rotatedEvent(PROJECT, generation);

eventBusContract(
  'EventBus on the Pub/Sub emulator',
  async ({ fx, topicId, subscriptionId, logger }) => ({
    bus: createEventBus({ pubsub: fx.pubsub, topicId, subscriptionId, logger }),
    close: async () => undefined, // the fixture owns the PubSub client
  }),
  {
    projectId: PROJECT,
    more: (env) => {
      it('works through createPubSub with the emulator host from config', async () => {
        const ps = await createPubSub({ projectId: PROJECT, pubsubEmulatorHost: env.fx.emulator.host });
        try {
          const b = createEventBus({ pubsub: ps, topicId: env.topicId, subscriptionId: env.subscriptionId, logger: env.logger });
          const { got, close } = await env.collect(b);
          try {
            await b.publish(event(9));
            await waitFor(() => got.length >= 1, 10_000, 'delivery');
            expect(got.map((g) => g.event.generation)).toEqual([9]);
          } finally {
            await close(); // before its client goes away
          }
        } finally {
          await ps.close();
        }
      });
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
