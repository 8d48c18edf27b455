/**
 * EventBus on Pub/Sub: TOKEN_ROTATED announcements (no token material, I5). Delivery is
 * at-least-once and unordered, so handlers must be idempotent; this adapter only validates,
 * dispatches and acks/nacks.
 */
import type { Message, PubSub, Subscription } from '@google-cloud/pubsub';
import { z } from 'zod/v3';
import { ConfigError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { EventBus, TokenRotatedEvent } from '../ports.js';

export { ensureTopicAndSubscription } from './provision.js';

export interface EventBusOptions {
  pubsub: PubSub;
  topicId: string;
  subscriptionId?: string | undefined;
  logger?: Logger | undefined;
  /** Outstanding messages per subscriber (default 4; rotations are rare). */
  maxMessages?: number | undefined;
  /** A rejected message is nacked (→ redelivered) after this long, not at once (default 5 s). */
  nackDelayMs?: number | undefined;
}

const isoInstant = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'not an ISO 8601 instant');

export const tokenRotatedEventSchema = z.object({
  type: z.literal('TOKEN_ROTATED'),
  version: z.string().regex(/^projects\/[^/]+\/secrets\/[^/]+\/versions\/\d+$/),
  generation: z.number().int().nonnegative(),
  accessExpiresAt: isoInstant,
  source: z.string().max(200),
  publishedAt: isoInstant,
});

/** Parse a message body; the reason never echoes the body. */
export function parseTokenRotated(data: Buffer): { ok: true; event: TokenRotatedEvent } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(data.toString('utf8'));
  } catch {
    return { ok: false, reason: `not valid JSON (${data.length} bytes)` };
  }
  const r = tokenRotatedEventSchema.safeParse(value);
  if (!r.success) {
    const fields = [...new Set(r.error.issues.map((i) => i.path.join('.') || '(root)'))].join(', ');
    return { ok: false, reason: `invalid fields: ${fields}` };
  }
  return { ok: true, event: r.data };
}

export function createEventBus(opts: EventBusOptions): EventBus {
  const { pubsub, logger } = opts;
  const topic = pubsub.topic(opts.topicId);

  return {
    async publish(event) {
      const body = tokenRotatedEventSchema.parse(event);
      return topic.publishMessage({
        data: Buffer.from(JSON.stringify(body), 'utf8'),
        attributes: { type: 'TOKEN_ROTATED', generation: String(body.generation) },
      });
    },

    async subscribe(handler) {
      if (!opts.subscriptionId) throw new ConfigError('EventBus.subscribe needs a subscription id (TOKEN_SUBSCRIPTION_ID)');
      const subscription: Subscription = pubsub.subscription(opts.subscriptionId, {
        flowControl: { maxMessages: opts.maxMessages ?? 4, allowExcessMessages: false },
      });
      const inFlight = new Set<Promise<void>>();
      // Delayed nacks: an immediate one is redelivered at once, a hot loop while e.g. Secret Manager is down.
      const delayedNacks = new Map<NodeJS.Timeout, Message>();
      const nackDelayMs = opts.nackDelayMs ?? 5_000;
      let closing = false;

      const onMessage = (message: Message) => {
        if (closing) {
          // Arrived while shutting down: hand it back for prompt redelivery elsewhere.
          message.nack();
          return;
        }
        const parsed = parseTokenRotated(message.data);
        if (!parsed.ok) {
          // Redelivering a malformed message would never make it valid: log and drop it (I6).
          logger?.warn('event_malformed', 'Ignoring malformed Pub/Sub message', { messageId: message.id, reason: parsed.reason });
          message.ack();
          return;
        }
        const p = handler(parsed.event, { id: message.id }).then(
          () => message.ack(),
          (err: unknown) => {
            logger?.warn('event_handler_failed', `Event handler failed; message will be redelivered in ${nackDelayMs / 1000}s`, {
              messageId: message.id,
              version: parsed.event.version,
              error: errorText(err),
            });
            if (closing) {
              message.nack();
              return;
            }
            // Until then the lease manager keeps extending the message's deadline.
            const t = setTimeout(() => {
              delayedNacks.delete(t);
              message.nack();
            }, nackDelayMs);
            t.unref();
            delayedNacks.set(t, message);
          },
        );
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      };
      const onError = (err: Error) => {
        // The client reconnects streaming pull by itself; surface it for operators.
        logger?.warn('event_subscription_error', 'Pub/Sub subscription error', { error: err.message });
      };
      subscription.on('message', onMessage);
      subscription.on('error', onError);

      let closed: Promise<void> | undefined;
      return () =>
        (closed ??= (async () => {
          closing = true;
          // Let running handlers settle their ack/nack before the stream goes away. The 'message'
          // listener stays until then: removing the last one makes the client close (and nack) at once.
          await Promise.allSettled([...inFlight]);
          // Flush delayed nacks so the messages go back now rather than at their lease's end.
          for (const [t, message] of delayedNacks) {
            clearTimeout(t);
            message.nack();
          }
          delayedNacks.clear();
          await subscription.close();
          subscription.removeListener('message', onMessage);
          subscription.removeListener('error', onError);
        })());
    },
  };
}
