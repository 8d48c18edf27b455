/**
 * Create-if-missing helpers for tests and the demo. Kept apart from the adapters on purpose: the
 * runtime's IAM permissions are derived from the adapters' source, and these need create rights
 * the function and the agent must not have.
 */
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import type { PubSub } from '@google-cloud/pubsub';
import { grpcCode, toStoreError } from './grpc-errors.js';

const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;

/** CreateSecret (automatic replication) unless it exists. Returns the secret's full name. */
export async function ensureSecret(
  client: SecretManagerServiceClient,
  projectId: string,
  secretId: string,
  labels: Record<string, string> = {},
): Promise<string> {
  const name = `projects/${projectId}/secrets/${secretId}`;
  try {
    await client.getSecret({ name });
    return name;
  } catch (e) {
    if (grpcCode(e) !== NOT_FOUND) throw toStoreError(e, 'GetSecret');
  }
  try {
    await client.createSecret({
      parent: `projects/${projectId}`,
      secretId,
      secret: { replication: { automatic: {} }, labels },
    });
  } catch (e) {
    if (grpcCode(e) !== ALREADY_EXISTS) throw toStoreError(e, 'CreateSecret');
  }
  return name;
}

/** Create the topic and (when given) a subscription on it, tolerating either existing already. */
export async function ensureTopicAndSubscription(
  pubsub: PubSub,
  topicId: string,
  subscriptionId?: string,
  opts: { ackDeadlineSeconds?: number } = {},
): Promise<void> {
  const topic = pubsub.topic(topicId);
  const [topicExists] = await topic.exists();
  if (!topicExists) {
    try {
      await topic.create();
    } catch (e) {
      if (grpcCode(e) !== ALREADY_EXISTS) throw e;
    }
  }
  if (!subscriptionId) return;
  const sub = pubsub.subscription(subscriptionId);
  const [subExists] = await sub.exists();
  if (subExists) return;
  try {
    await topic.createSubscription(subscriptionId, { ackDeadlineSeconds: opts.ackDeadlineSeconds ?? 30 });
  } catch (e) {
    if (grpcCode(e) !== ALREADY_EXISTS) throw e;
  }
}
