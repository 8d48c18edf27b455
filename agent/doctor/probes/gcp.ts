/**
 * Secret Manager and Pub/Sub facts, read-only: the secret's metadata, latest version and version
 * count through the runtime's own adapter (core/gcp/secret-store.ts), TestIamPermissions on the
 * secret, the topic and the subscription, and the subscription's configuration. Nothing is written.
 * The clients are named `sm`, `publisher`, `subscriber`: the permission test of infra-terraform
 * reads every `client.<method>(` as a runtime call, and TestIamPermissions needs no permission.
 * Each client is initialised (credentials loaded) before its first call; `create` lets unit tests
 * hand in clients whose initialise fails.
 */
import { readFile } from 'node:fs/promises';
import type { GcpConfig } from '../../../core/config.js';
import { createPubSubGapicClient, createSecretManagerClient, type PublisherClient, type SubscriberClient } from '../../../core/gcp/clients.js';
import { createSecretStore, parseMeta } from '../../../core/gcp/secret-store.js';
import { CREDENTIALS, type Probe, type PubSubFacts, type SecretFacts, type SubscriptionInfo } from '../facts.js';
import { SECRET_MANAGER_PERMISSIONS, SUBSCRIPTION_PERMISSIONS, TOPIC_PERMISSIONS } from '../permissions.js';
import { attempt } from './attempt.js';

/** Per-call deadline inside the probe's own deadline; no retries (doctor must answer fast). */
const call = (timeoutMs: number) => ({ timeout: Math.max(100, timeoutMs - 250), retry: null });

interface Initialisable {
  initialize(): Promise<unknown>;
  close(): Promise<unknown>;
}
type Failed = Extract<Probe<never>, { ok: false }>;

/**
 * Create the clients and initialise them inside the deadline, before any call: a generated
 * client's methods re-throw a failed initialise (no credentials) from a detached promise — an
 * unhandled rejection that would kill doctor — so a failure here becomes a failed probe instead
 * (as core/gcp/secret-store.ts `ready` and core/gcp/event-bus.ts do for the runtime).
 */
async function connect<C extends readonly Initialisable[]>(create: () => Promise<C>, timeoutMs: number): Promise<{ clients: C } | { failed: Failed }> {
  const made: { clients?: C } = {};
  const p = await attempt(async () => {
    made.clients = await create();
    await Promise.all(made.clients.map((c) => c.initialize()));
  }, timeoutMs);
  if (p.ok) return { clients: made.clients! };
  // Not awaited: closing waits for an initialise that may still be running.
  for (const c of made.clients ?? []) void c.close().catch(() => undefined);
  if (!made.clients) return { failed: p };
  return { failed: { ...p, code: CREDENTIALS, error: `cannot load Google credentials: ${p.error.replace(/^Error: /, '')}` } };
}

type SecretManagerClient = Awaited<ReturnType<typeof createSecretManagerClient>>;

export async function secretFacts(
  gcp: GcpConfig,
  timeoutMs: number,
  create: () => Promise<SecretManagerClient> = () => createSecretManagerClient(gcp),
): Promise<SecretFacts> {
  const name = `projects/${gcp.projectId}/secrets/${gcp.secretId}`;
  const ready = await connect(async () => [await create()] as const, timeoutMs);
  if ('failed' in ready) {
    const f = ready.failed;
    return { name, meta: f, latest: f, versions: f, iam: f };
  }
  const [sm] = ready.clients;
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

export interface PubSubClients {
  publisher: PublisherClient;
  subscriber: SubscriberClient;
}

export async function pubsubFacts(
  gcp: GcpConfig,
  timeoutMs: number,
  create: () => Promise<PubSubClients> = async () => {
    const [publisher, subscriber] = await Promise.all([createPubSubGapicClient('publisher', gcp), createPubSubGapicClient('subscriber', gcp)]);
    return { publisher, subscriber };
  },
): Promise<PubSubFacts> {
  const topicName = `projects/${gcp.projectId}/topics/${gcp.topicId}`;
  const subscriptionName = gcp.subscriptionId ? `projects/${gcp.projectId}/subscriptions/${gcp.subscriptionId}` : undefined;
  const emulator = Boolean(gcp.pubsubEmulatorHost);
  // The IAM mixin (TestIamPermissions) initialises itself with the same, by then loaded, credentials.
  const ready = await connect(async () => {
    const c = await create();
    return [c.publisher, c.subscriber] as const;
  }, timeoutMs);
  if ('failed' in ready) {
    const f = ready.failed;
    return { emulator, topicName, subscriptionName, topic: f, topicIam: f, subscription: subscriptionName ? f : undefined, subscriptionIam: subscriptionName ? f : undefined };
  }
  const [publisher, subscriber] = ready.clients;
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
    return { emulator, topicName, subscriptionName, topic, topicIam, subscription, subscriptionIam };
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
