/**
 * The behaviour every EventBus adapter shares (ports.ts: resolve → ack, reject → delayed nack,
 * malformed → logged and acked), run against Google's real Pub/Sub emulator on 127.0.0.1.
 * Each adapter's test file calls `eventBusContract` with a factory and keeps only what is
 * specific to it.
 */
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { ConfigError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { EventBus, TokenRotatedEvent } from '../../core/ports.js';
import { describeWithPubSub, ensureTopicAndSubscription, startPubSubFixture, waitFor, type PubSubFixture } from './gcp.js';
import { rotatedEvent } from './event-bus-core-contract.js';

export { rotatedEvent };

/** What a factory gets: the shared emulator and this test's topic, subscription and logger. */
export interface BusContext {
  projectId: string;
  fx: PubSubFixture;
  topicId: string;
  /** Undefined asks for a publish-only bus. */
  subscriptionId: string | undefined;
  logger: Logger;
}

export interface BusUnderTest {
  bus: EventBus;
  /** Releases what the bus owns (clients); a no-op for buses on a shared client. */
  close(): Promise<void>;
}

export type MakeBus = (ctx: BusContext) => Promise<BusUnderTest>;

type Handler = Parameters<EventBus['subscribe']>[0];
type Delivery = { event: TokenRotatedEvent; id: string };

/** Per-test state, refreshed before each test; for the implementation-specific tests of a file. */
export interface ContractEnv {
  readonly projectId: string;
  fx: PubSubFixture;
  seq: number;
  topicId: string;
  subscriptionId: string;
  lines: string[];
  logger: Logger;
  /** Another bus on this test's topic and subscription (closed after the test). */
  make(over?: Partial<BusContext>): Promise<EventBus>;
  /** Subscribe, with the subscription closed after the test. */
  subscribe(bus: EventBus, handler: Handler): Promise<() => Promise<void>>;
  /** Subscribe with a handler that records every delivery. */
  collect(bus: EventBus): Promise<{ got: Delivery[]; close: () => Promise<void> }>;
}

export interface ContractOptions {
  /** Unique per test file, so that a shared emulator does not mix topics. */
  projectId: string;
  /** Registers implementation-specific tests inside the same suite (same emulator, hooks and log checks). */
  more?: (env: ContractEnv) => void;
}

/** Log lines carrying `"event":"<ev>"`. */
export function eventLines(lines: string[], ev: string): Record<string, unknown>[] {
  return lines.filter((l) => l.includes(`"event":"${ev}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

export function eventBusContract(label: string, make: MakeBus, opts: ContractOptions): void {
  const { projectId } = opts;
  const event = (generation: number) => rotatedEvent(projectId, generation);
  const count = (ev: string) => eventLines(env.lines, ev).length;
  const subClosers: (() => Promise<void>)[] = [];
  const busClosers: (() => Promise<void>)[] = [];

  const env: ContractEnv = {
    projectId,
    fx: undefined as unknown as PubSubFixture, // set in beforeAll
    seq: 0,
    topicId: '',
    subscriptionId: '',
    lines: [],
    logger: createLogger({ write: () => undefined }),
    async make(over = {}) {
      const made = await make({ projectId, fx: env.fx, topicId: env.topicId, subscriptionId: env.subscriptionId, logger: env.logger, ...over });
      busClosers.push(() => made.close());
      return made.bus;
    },
    async subscribe(bus, handler) {
      const close = await bus.subscribe(handler);
      subClosers.push(close);
      return close;
    },
    async collect(bus) {
      const got: Delivery[] = [];
      const close = await env.subscribe(bus, async (e, meta) => {
        got.push({ event: e, id: meta.id });
      });
      return { got, close };
    },
  };

  describeWithPubSub(label, () => {
    let bus: EventBus;

    beforeAll(async () => {
      env.fx = await startPubSubFixture(projectId);
    });
    afterAll(async () => {
      await env.fx?.close();
    });

    beforeEach(async () => {
      env.seq++;
      env.topicId = `rotated-${env.seq}`;
      env.subscriptionId = `agent-${env.seq}`;
      const lines: string[] = [];
      env.lines = lines;
      env.logger = createLogger({ write: (l) => lines.push(l), minSeverity: 'DEBUG' });
      // Short ack deadline so nothing in these tests waits long for a redelivery.
      await ensureTopicAndSubscription(env.fx.pubsub, env.topicId, env.subscriptionId, { ackDeadlineSeconds: 10 });
      bus = await env.make();
    });
    afterEach(async () => {
      // Closing is idempotent in both adapters, so closing a subscription twice is fine.
      while (subClosers.length) await subClosers.pop()!();
      while (busClosers.length) await busClosers.pop()!();
      // I5: nothing these tests put in a message body may surface in a log line.
      expect(env.lines.join('\n')).not.toMatch(/secret-leak/);
    });

    it('delivers a published event with exact fields and TOKEN_ROTATED attributes', async () => {
      const { got } = await env.collect(bus);
      const id = await bus.publish(event(7));
      expect(id).toMatch(/\S/);
      await waitFor(() => got.length === 1, 10_000, 'delivery');
      expect(got).toEqual([{ event: event(7), id }]);

      // Attributes let subscribers filter without parsing; read them with a raw subscription.
      const [rawSub] = await env.fx.pubsub.topic(env.topicId).createSubscription(`raw-${env.seq}`);
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

    it('acks malformed messages without calling the handler, logging event_malformed; not redelivered', async () => {
      const first = await env.collect(bus);
      const topic = env.fx.pubsub.topic(env.topicId);
      await topic.publishMessage({ data: Buffer.from('not json {"refresh_token":"REFRESH-secret-leak"') });
      await topic.publishMessage({ json: { type: 'TOKEN_ROTATED', generation: 'x', access_token: 'ACCESS-secret-leak' } });
      await bus.publish(event(3));
      await waitFor(() => first.got.length === 1 && count('event_malformed') === 2, 10_000, 'valid event + two warnings');
      expect(first.got.map((g) => g.event.generation)).toEqual([3]);
      expect(eventLines(env.lines, 'event_malformed').every((w) => w.severity === 'WARNING')).toBe(true);
      expect(env.lines.join('\n')).not.toMatch(/secret-leak/);
      await first.close();

      // Acked → gone: a new subscription on the same bus sees only a new event.
      const again = await env.collect(bus);
      await bus.publish(event(4));
      await waitFor(() => again.got.length >= 1, 10_000, 'fresh event');
      expect(again.got.map((g) => g.event.generation)).toEqual([4]);
      expect(count('event_malformed')).toBe(2);
    });

    it('redelivers a rejected message only after the nack delay (no hot loop)', async () => {
      const attempts: { id: string; at: number }[] = [];
      await env.subscribe(bus, async (_e, meta) => {
        attempts.push({ id: meta.id, at: Date.now() });
        if (attempts.length === 1) throw new Error('Secret Manager unavailable');
      });
      const id = await bus.publish(event(5));
      await waitFor(() => attempts.length >= 2, 20_000, 'redelivery');
      expect(attempts.map((a) => a.id)).toEqual([id, id]);
      // Immediate nack would come back within milliseconds; the 5 s delay leaves a clear gap.
      expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(3_000);
      const failed = eventLines(env.lines, 'event_handler_failed');
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ severity: 'WARNING', messageId: id, version: event(5).version });
    });

    it('delivers duplicate publishes twice (idempotency is the handler’s job)', async () => {
      const { got } = await env.collect(bus);
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
      const close = await env.subscribe(bus, async (e) => {
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
      // The same bus still publishes after a subscription closed.
      await bus.publish(event(2));
      // A fresh bus on the same subscription sees only event 2: event 1 was acked before close.
      const later = await env.collect(await env.make());
      await waitFor(() => later.got.length >= 1, 10_000, 'event after reopen');
      expect(later.got.map((g) => g.event.generation)).toEqual([2]);
      expect(seen).toEqual([1]);
    });

    it('refuses to subscribe without a subscription id and validates what it publishes', async () => {
      const pubOnly = await env.make({ subscriptionId: undefined });
      const refused = pubOnly.subscribe(async () => {});
      await expect(refused).rejects.toBeInstanceOf(ConfigError);
      await expect(refused).rejects.toThrow(/subscription/);
      await expect(pubOnly.publish({ ...event(1), generation: -1 })).rejects.toThrow();
      await expect(pubOnly.publish({ ...event(1), version: 'REFRESH-secret-leak' })).rejects.toThrow();
    });

    opts.more?.(env);
  });
}
