/**
 * The publishing half of the Pub/Sub EventBus (core/gcp/event-bus.ts): TOKEN_ROTATED and
 * TOKEN_CONSUMED, validated against their schemas (no token material, I5). The generated publisher
 * client is created on the first publish, so a function run with nothing to announce never loads it.
 */
import type { GcpConfig } from '../config.js';
import type { TokenConsumedEvent, TokenRotatedEvent } from '../ports.js';
import { createPubSubGapicClient, type PublisherClient } from './clients.js';
import { tokenConsumedEventSchema, tokenRotatedEventSchema } from './event-schema.js';

export interface EventPublisher {
  publish(event: TokenRotatedEvent): Promise<string>;
  publishConsumed(event: TokenConsumedEvent): Promise<string>;
  close(): Promise<void>;
}

/** `timeoutMs`: total deadline of one publish, retries included. */
export function createEventPublisher(gcp: Pick<GcpConfig, 'projectId' | 'topicId' | 'pubsubEmulatorHost'>, timeoutMs: number): EventPublisher {
  const topic = `projects/${gcp.projectId}/topics/${gcp.topicId}`;
  let publisher: Promise<PublisherClient> | undefined;

  const getPublisher = () => {
    // Initialise before the first call: a generated client's methods re-throw a failed initialise
    // (no credentials, say) from a detached promise — an unhandled rejection that kills the agent.
    publisher ??= createPubSubGapicClient('publisher', gcp)
      .then(async (c) => {
        try {
          await c.initialize();
          return c;
        } catch (err) {
          await c.close().catch(() => undefined);
          throw err;
        }
      })
      .catch((err: unknown) => {
        publisher = undefined;
        throw err;
      });
    return publisher;
  };

  const send = async (type: 'TOKEN_ROTATED' | 'TOKEN_CONSUMED', body: { generation: number }) => {
    const client = await getPublisher();
    const [res] = await client.publish(
      { topic, messages: [{ data: Buffer.from(JSON.stringify(body), 'utf8'), attributes: { type, generation: String(body.generation) } }] },
      { timeout: timeoutMs },
    );
    const id = res.messageIds?.[0];
    if (!id) throw new Error('Pub/Sub Publish returned no message id');
    return id;
  };

  return {
    // Async: a schema refusal is a rejected promise, as every other failure to publish.
    publish: async (event) => send('TOKEN_ROTATED', tokenRotatedEventSchema.parse(event)),
    publishConsumed: async (event) => send('TOKEN_CONSUMED', tokenConsumedEventSchema.parse(event)),
    async close() {
      const p = publisher;
      publisher = undefined;
      if (p) await p.then((c) => c.close()).catch(() => undefined);
    },
  };
}
