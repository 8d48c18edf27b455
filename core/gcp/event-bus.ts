/**
 * EventBus on Pub/Sub: TOKEN_ROTATED announcements (no token material, I5). Delivery is
 * at-least-once and unordered, so handlers must be idempotent; this adapter validates, dispatches,
 * acks on resolve and nacks (delayed) on reject.
 *
 * Built on the generated clients only (no high-level `PubSub`: its lease manager, OpenTelemetry
 * and stream pool cost the agent ~10 MB RSS and the function's cold start). Publishing lives in
 * event-publish.ts (its client is created on the first publish); this file subscribes. One
 * streaming pull, reconnected with jittered backoff; acks and nacks go through the unary RPCs,
 * which survive a stream swap. A code that retrying cannot heal (subscription deleted, role
 * removed) stops the fast loop: one ALERT, a slow retry (pull-retry.ts).
 */
import { randomUUID } from 'node:crypto';
import type { ClientDuplexStream, ServiceError, StatusObject } from '@grpc/grpc-js';
import type { GcpConfig } from '../config.js';
import { ConfigError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { EventBus } from '../ports.js';
import { createPubSubGapicClient } from './clients.js';
import { createEventPublisher } from './event-publish.js';
import { parseTokenEvent } from './event-schema.js';
import { BROKEN_RETRY_MS, jittered, nonRetryableCode, SubscriptionHealth, type SubscriptionProblem } from './pull-retry.js';

export { ensureTopicAndSubscription } from './provision.js';

export interface EventBusOptions {
  gcp: Pick<GcpConfig, 'projectId' | 'topicId' | 'subscriptionId' | 'pubsubEmulatorHost'>;
  logger?: Logger | undefined;
  /** Outstanding messages on the stream (default 4; rotations are rare). */
  maxMessages?: number | undefined;
  /** A rejected message comes back after this long, not at once (default 5 s; whole seconds). */
  nackDelayMs?: number | undefined;
  /** Reconnect backoff bounds (default 1 s → 30 s, jittered). */
  backoff?: { initialMs: number; maxMs: number } | undefined;
  /** Total deadline of one publish, retries included (default 5 s: nothing may wait on Pub/Sub). */
  publishTimeoutMs?: number | undefined;
  /** Pause between attempts while the subscription cannot be pulled (default 5 min; jittered). */
  brokenRetryMs?: number | undefined;
}

/** An EventBus that also owns its clients: `close()` ends every subscription and the publisher. */
export interface ClosableEventBus extends EventBus {
  close(): Promise<void>;
  /** Why the subscription cannot be pulled now, if it cannot (for the state file and `status`). */
  subscriptionProblem(): SubscriptionProblem | undefined;
}

interface ReceivedMessage {
  ackId?: string | null;
  message?: { data?: Uint8Array | string | null; messageId?: string | null } | null;
}
interface StreamingPullResponse {
  receivedMessages?: ReceivedMessage[] | null;
}
type PullStream = ClientDuplexStream<object, StreamingPullResponse>;

const STREAM_ACK_DEADLINE_S = 60;
/** The deadline the official client puts on a streaming pull; the stream is then reopened. */
const STREAM_DEADLINE_MS = 30 * 60_000;
/** Empty writes keep an idle stream open; in-flight leases are extended on the same beat. */
const KEEPALIVE_MS = 30_000;
/** A stream that lived this long (or delivered) was healthy: the next reconnect starts from the bottom. */
const HEALTHY_STREAM_MS = 30_000;
/** Per-call deadline of ack/modAck, so close() cannot hang on a dead server. */
const ACK_TIMEOUT_MS = 3_000;
/** After a non-retryable failure, a stream that stays open this long (or delivers) means it was restored. */
const RESTORED_AFTER_MS = 5_000;

export function createEventBus(opts: EventBusOptions): ClosableEventBus {
  const { gcp, logger } = opts;
  const topic = `projects/${gcp.projectId}/topics/${gcp.topicId}`;
  const nackDelayS = Math.max(1, Math.round((opts.nackDelayMs ?? 5_000) / 1000));
  const backoff = opts.backoff ?? { initialMs: 1_000, maxMs: 30_000 };
  const publishTimeoutMs = opts.publishTimeoutMs ?? 5_000;
  const brokenRetryMs = opts.brokenRetryMs ?? BROKEN_RETRY_MS;
  const subscriptions = new Set<() => Promise<void>>();
  const publisher = createEventPublisher(gcp, publishTimeoutMs);
  const closePublisher = () => publisher.close();
  const healths = new Set<SubscriptionHealth>();

  return {
    publish: (event) => publisher.publish(event),
    publishConsumed: (event) => publisher.publishConsumed(event),

    async subscribe(handler, onConsumed) {
      if (!gcp.subscriptionId) throw new ConfigError('EventBus.subscribe needs a subscription id (TOKEN_SUBSCRIPTION_ID)');
      const subscription = `projects/${gcp.projectId}/subscriptions/${gcp.subscriptionId}`;
      const client = await createPubSubGapicClient('subscriber', gcp);
      let stub: { streamingPull(opts: { deadline: number }): PullStream };
      try {
        // The raw stub, like the official client: gax's duplexify wrapper would double the buffering.
        await client.initialize();
        stub = (await client.subscriberStub) as unknown as typeof stub;
      } catch (err) {
        await client.close().catch(() => undefined);
        throw err;
      }
      const clientId = randomUUID();
      const handling = new Set<string>(); // ackIds whose handler is running (lease extension)
      const pending = new Set<Promise<void>>(); // handlers and their ack/nack calls
      let closing = false;
      let current: PullStream | undefined;
      let reconnect: NodeJS.Timeout | undefined;
      let restoredTimer: NodeJS.Timeout | undefined;
      let attempt = 0;

      const health = new SubscriptionHealth({ subscription, topic, logger, brokenRetryMs });
      healths.add(health);
      const restored = () => {
        clearTimeout(restoredTimer);
        health.restored();
      };

      const track = (p: Promise<void>) => {
        pending.add(p);
        void p.finally(() => pending.delete(p));
      };
      const ack = (ackIds: string[]) =>
        client.acknowledge({ subscription, ackIds }, { timeout: ACK_TIMEOUT_MS }).then(
          () => undefined,
          (err: unknown) => logger?.warn('event_ack_failed', 'Pub/Sub acknowledge failed; the message will be redelivered', { error: errorText(err) }),
        );
      const modAck = (ackIds: string[], seconds: number) =>
        client.modifyAckDeadline({ subscription, ackIds, ackDeadlineSeconds: seconds }, { timeout: ACK_TIMEOUT_MS }).then(
          () => undefined,
          (err: unknown) => logger?.warn('event_ack_failed', 'Pub/Sub modifyAckDeadline failed', { error: errorText(err) }),
        );

      const onMessage = (rm: ReceivedMessage) => {
        const ackId = rm.ackId;
        if (!ackId) return;
        const id = rm.message?.messageId ?? '';
        if (closing) {
          // Arrived while shutting down: hand it back for prompt redelivery.
          track(modAck([ackId], 0));
          return;
        }
        const raw = rm.message?.data;
        const parsed = parseTokenEvent(typeof raw === 'string' ? Buffer.from(raw, 'base64') : Buffer.from(raw ?? []));
        if (!parsed.ok) {
          // Redelivering a malformed message would never make it valid: log and drop it (I6).
          logger?.warn('event_malformed', 'Ignoring malformed Pub/Sub message', { messageId: id, reason: parsed.reason });
          track(ack([ackId]));
          return;
        }
        if ('consumed' in parsed && !onConsumed) {
          track(ack([ackId])); // a subscriber that does not act on TOKEN_CONSUMED (a test's, a tool's)
          return;
        }
        handling.add(ackId);
        const version = 'event' in parsed ? parsed.event.version : undefined;
        track(
          (async () => {
            try {
              if ('consumed' in parsed) await onConsumed!(parsed.consumed, { id });
              else await handler(parsed.event, { id });
            } catch (err) {
              // Not an immediate nack: while e.g. Secret Manager is down that would be a hot redelivery loop.
              logger?.warn('event_handler_failed', `Event handler failed; message will be redelivered in ${nackDelayS}s`, {
                messageId: id,
                version,
                error: errorText(err),
              });
              handling.delete(ackId);
              await modAck([ackId], nackDelayS);
              return;
            }
            handling.delete(ackId);
            await ack([ackId]);
          })(),
        );
      };

      const open = () => {
        reconnect = undefined;
        if (closing) return;
        const started = Date.now();
        let delivered = false;
        let lastError: ServiceError | undefined;
        const call = stub.streamingPull({ deadline: Date.now() + STREAM_DEADLINE_MS });
        current = call;
        call.on('data', (res: StreamingPullResponse) => {
          delivered = true;
          restored();
          for (const rm of res.receivedMessages ?? []) onMessage(rm);
        });
        if (health.problem) {
          restoredTimer = setTimeout(() => current === call && restored(), Math.min(RESTORED_AFTER_MS, HEALTHY_STREAM_MS));
          restoredTimer.unref();
        }
        call.on('error', (err: ServiceError) => {
          lastError = err;
        });
        // 'status' fires exactly once per call, after 'error' when there is one.
        call.on('status', (status: StatusObject) => {
          if (current === call) current = undefined;
          clearTimeout(restoredTimer);
          if (closing) return;
          const hopeless = nonRetryableCode(status.code);
          if (hopeless) {
            reconnect = setTimeout(open, health.broken(hopeless, lastError?.details ?? status.details));
            return;
          }
          if (delivered || Date.now() - started >= HEALTHY_STREAM_MS) attempt = 0;
          const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** attempt);
          const delay = jittered(base);
          attempt = Math.min(attempt + 1, 30);
          logger?.warn('event_subscription_error', 'Pub/Sub stream ended; reconnecting', {
            code: status.code,
            error: lastError?.details ?? status.details,
            retryInMs: delay,
          });
          reconnect = setTimeout(open, delay);
        });
        call.write({ subscription, streamAckDeadlineSeconds: STREAM_ACK_DEADLINE_S, maxOutstandingMessages: opts.maxMessages ?? 4, clientId });
      };

      const keepAlive = setInterval(() => {
        if (current?.writable) current.write({});
        // A slow handler (waiting for the flock, say) keeps its message instead of seeing it redelivered.
        if (handling.size) track(modAck([...handling], STREAM_ACK_DEADLINE_S));
      }, KEEPALIVE_MS);
      keepAlive.unref();
      open();

      let closed: Promise<void> | undefined;
      const close = () =>
        (closed ??= (async () => {
          closing = true;
          clearTimeout(reconnect);
          clearTimeout(restoredTimer);
          clearInterval(keepAlive);
          // Let running handlers settle their ack/nack before the stream and the client go away.
          while (pending.size) await Promise.allSettled([...pending]);
          const call = current;
          current = undefined;
          if (call) {
            call.end();
            call.cancel();
          }
          while (pending.size) await Promise.allSettled([...pending]);
          await client.close().catch(() => undefined);
          await closePublisher();
          subscriptions.delete(close);
          healths.delete(health);
        })());
      subscriptions.add(close);
      return close;
    },

    async close() {
      await Promise.allSettled([...subscriptions].map((c) => c()));
      await closePublisher();
    },

    subscriptionProblem: () => [...healths].find((h) => h.problem)?.problem,
  };
}
