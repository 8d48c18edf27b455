/**
 * Secret Manager and Pub/Sub facts, read-only: the secret's metadata, latest version and version
 * count through the runtime's own adapter (core/gcp/secret-store.ts), TestIamPermissions on the
 * secret, the topic and the subscription, and the subscription's configuration. Nothing is written.
 * The clients are named `sm`, `publisher`, `subscriber`: the permission test of infra-terraform
 * reads every `client.<method>(` as a runtime call, and TestIamPermissions needs no permission.
 */
import { readFile } from 'node:fs/promises';
import type { GcpConfig } from '../../../core/config.js';
import { createPubSubGapicClient, createSecretManagerClient, type PublisherClient, type SubscriberClient } from '../../../core/gcp/clients.js';
import { createSecretStore, parseMeta } from '../../../core/gcp/secret-store.js';
import type { PubSubFacts, SecretFacts, SubscriptionInfo } from '../facts.js';
import { SECRET_MANAGER_PERMISSIONS, SUBSCRIPTION_PERMISSIONS, TOPIC_PERMISSIONS } from '../permissions.js';
import { attempt } from './attempt.js';

/** Per-call deadline inside the probe's own deadline; no retries (doctor must answer fast). */
const call = (timeoutMs: number) => ({ timeout: Math.max(100, timeoutMs - 250), retry: null });

export async function secretFacts(gcp: GcpConfig, timeoutMs: number): Promise<SecretFacts> {
  const name = `projects/${gcp.projectId}/secrets/${gcp.secretId}`;
  let sm: Awaited<ReturnType<typeof createSecretManagerClient>>;
  try {
    sm = await createSecretManagerClient(gcp);
  } catch (e) {
    const failed = await attempt<never>(() => Promise.reject(e), timeoutMs);
    return { name, meta: failed, latest: failed, versions: failed, iam: failed };
  }
  try {
    // GetSecret first, once and without retries: when Secret Manager is down, say so at once
    // instead of letting the adapter's read retries use up every deadline.
    const meta = await attempt(async () => parseMeta((await sm.getSecret({ name }, call(timeoutMs)))[0]), timeoutMs);
    if (!meta.ok && ['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'UNAUTHENTICATED'].includes(meta.code ?? '')) {
      return { name, meta, latest: meta, versions: meta, iam: meta };
    }
    const store = createSecretStore({ client: sm, projectId: gcp.projectId, secretId: gcp.secretId, timeoutMs: Math.max(100, timeoutMs - 250) });
    const [latest, versions, iam] = await Promise.all([
      attempt(() => store.latest(), timeoutMs),
      attempt(() => store.countVersions(), timeoutMs),
      attempt(async () => {
        const [res] = await sm.testIamPermissions({ resource: name, permissions: [...SECRET_MANAGER_PERMISSIONS] }, call(timeoutMs));
        return (res.permissions ?? []).map(String);
      }, timeoutMs),
    ]);
    return { name, meta, latest, versions, iam };
  } finally {
    await sm.close().catch(() => undefined);
  }
}

const seconds = (d: { seconds?: unknown; nanos?: unknown } | null | undefined): number | undefined =>
  d && d.seconds !== undefined && d.seconds !== null ? Number(d.seconds) + Number(d.nanos ?? 0) / 1e9 : undefined;

export async function pubsubFacts(gcp: GcpConfig, timeoutMs: number): Promise<PubSubFacts> {
  const topicName = `projects/${gcp.projectId}/topics/${gcp.topicId}`;
  const subscriptionName = gcp.subscriptionId ? `projects/${gcp.projectId}/subscriptions/${gcp.subscriptionId}` : undefined;
  let publisher: PublisherClient;
  let subscriber: SubscriberClient;
  try {
    [publisher, subscriber] = await Promise.all([createPubSubGapicClient('publisher', gcp), createPubSubGapicClient('subscriber', gcp)]);
  } catch (e) {
    const f = await attempt<never>(() => Promise.reject(e), timeoutMs);
    return { emulator: Boolean(gcp.pubsubEmulatorHost), topicName, subscriptionName, topic: f, topicIam: f, subscription: subscriptionName ? f : undefined, subscriptionIam: subscriptionName ? f : undefined };
  }
  try {
    const granted = async (p: Promise<[{ permissions?: string[] | null }, ...unknown[]]>) => ((await p)[0].permissions ?? []).map(String);
    // The IAM mixin is typed with the protobuf classes; a plain request object is what it sends.
    type IamRequest = Parameters<typeof publisher.testIamPermissions>[0];
    const iamRequest = (resource: string, permissions: readonly string[]) => ({ resource, permissions: [...permissions] }) as unknown as IamRequest;
    const [topic, topicIam, subscription, subscriptionIam] = await Promise.all([
      attempt(async () => (await publisher.getTopic({ topic: topicName }, call(timeoutMs)), true as const), timeoutMs),
      attempt(() => granted(publisher.testIamPermissions(iamRequest(topicName, TOPIC_PERMISSIONS), call(timeoutMs))), timeoutMs),
      subscriptionName
        ? attempt(async (): Promise<SubscriptionInfo> => {
            const [s] = await subscriber.getSubscription({ subscription: subscriptionName }, call(timeoutMs));
            return {
              topic: s.topic ?? '',
              ackDeadlineSeconds: s.ackDeadlineSeconds ?? 0,
              retentionSeconds: seconds(s.messageRetentionDuration),
              expirationTtlSeconds: seconds(s.expirationPolicy?.ttl),
              filter: s.filter ?? '',
              detached: s.detached === true,
            };
          }, timeoutMs)
        : undefined,
      subscriptionName
        ? attempt(() => granted(subscriber.testIamPermissions(iamRequest(subscriptionName, SUBSCRIPTION_PERMISSIONS), call(timeoutMs))), timeoutMs)
        : undefined,
    ]);
    return { emulator: Boolean(gcp.pubsubEmulatorHost), topicName, subscriptionName, topic, topicIam, subscription, subscriptionIam };
  } finally {
    await Promise.allSettled([publisher.close(), subscriber.close()]);
  }
}

/**
 * The service account doctor runs as, for the `--member=` of a fix: a key file's client_email, or
 * the metadata server's default account (on GCE). Never asked with emulators or when metadata
 * detection is off (tests), so doctor touches no address but the configured ones there.
 */
export async function identity(gcp: GcpConfig, env: Record<string, string | undefined>, timeoutMs: number): Promise<string | undefined> {
  const keyFile = env.GOOGLE_APPLICATION_CREDENTIALS;
  if (keyFile) {
    const key = JSON.parse(await readFile(keyFile, 'utf8').catch(() => '{}')) as { client_email?: unknown };
    return typeof key.client_email === 'string' ? key.client_email : undefined;
  }
  if (gcp.secretManagerEmulatorHost || gcp.pubsubEmulatorHost || env.METADATA_SERVER_DETECTION === 'none') return undefined;
  const res = await fetch('http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/email', {
    headers: { 'Metadata-Flavor': 'Google' },
    signal: AbortSignal.timeout(timeoutMs),
  });
  return res.ok ? (await res.text()).trim() : undefined;
}
