/**
 * Client construction for Secret Manager and Pub/Sub. Imports are dynamic so a process that never
 * talks to GCP (standalone agent, CLI status without GCP) does not load the gRPC stacks (memory).
 */
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import type { PubSub } from '@google-cloud/pubsub';
import type { PublisherClient, SubscriberClient } from '@google-cloud/pubsub/build/src/v1/index.js';
import type { GcpConfig } from '../config.js';
import { ConfigError } from '../errors.js';

/** "host:port" → parts; only used for the local emulator / stand-in settings. */
export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`${what} must be host:port, got "${value}"`);
  }
  return { host: m[1]!, port };
}

/**
 * Secret Manager client. With `secretManagerEmulatorHost` it speaks plaintext gRPC to that address
 * (the stand-in, test/helpers/gcp.ts), otherwise the real service with Application Default Credentials.
 */
export async function createSecretManagerClient(
  gcp: Pick<GcpConfig, 'projectId' | 'secretManagerEmulatorHost'>,
): Promise<SecretManagerServiceClient> {
  // The v1 client only: the package's index also loads v1beta2 and its static protobuf code
  // (protos.js, 770 KB of JS), ≈ 1.1 MB resident the client never uses (the client reads protos.json).
  // Deep import: the package has no "exports" map.
  const { SecretManagerServiceClient } = await import('@google-cloud/secret-manager/build/src/v1/index.js');
  if (gcp.secretManagerEmulatorHost) {
    const { host, port } = parseHostPort(gcp.secretManagerEmulatorHost, 'SECRET_MANAGER_EMULATOR_HOST');
    const grpc = await import('@grpc/grpc-js');
    return new SecretManagerServiceClient({
      projectId: gcp.projectId,
      apiEndpoint: host,
      port,
      sslCreds: grpc.credentials.createInsecure(),
      universeDomain: 'googleapis.com',
    });
  }
  return new SecretManagerServiceClient({ projectId: gcp.projectId });
}

/**
 * The client libraries the agent's cloud side uses, imported without creating a client. doctor loads
 * them before its deadlines start: loading blocks the event loop (seconds on a busy machine), and a
 * probe's timer would count that as the probe's own time.
 */
export async function loadClientModules(): Promise<void> {
  await Promise.all([
    import('@google-cloud/secret-manager/build/src/v1/index.js'),
    import('@grpc/grpc-js'),
    import('@google-cloud/pubsub/build/src/v1/publisher_client.js'),
    import('@google-cloud/pubsub/build/src/v1/subscriber_client.js'),
  ]);
}

/** Pub/Sub client; `pubsubEmulatorHost` selects the local emulator (no credentials). */
export async function createPubSub(gcp: Pick<GcpConfig, 'projectId' | 'pubsubEmulatorHost'>): Promise<PubSub> {
  const { PubSub } = await import('@google-cloud/pubsub');
  if (gcp.pubsubEmulatorHost) {
    parseHostPort(gcp.pubsubEmulatorHost, 'PUBSUB_EMULATOR_HOST');
    return new PubSub({ projectId: gcp.projectId, apiEndpoint: gcp.pubsubEmulatorHost, emulatorMode: true });
  }
  return new PubSub({ projectId: gcp.projectId });
}

export type { PublisherClient, SubscriberClient };

type GapicOptions = NonNullable<ConstructorParameters<typeof PublisherClient>[0]>;

/**
 * Constructor options for the generated Pub/Sub clients. google-gax takes `servicePath` + `port`
 * (`apiEndpoint` is an alias of servicePath); `sslCreds` skips credentials entirely (emulator).
 */
async function gapicOptions(gcp: Pick<GcpConfig, 'projectId' | 'pubsubEmulatorHost'>): Promise<GapicOptions> {
  // Keepalive pings notice a silently dropped connection under an idle streaming pull.
  const base = { projectId: gcp.projectId, 'grpc.keepalive_time_ms': 300_000, 'grpc.keepalive_timeout_ms': 20_000 };
  if (!gcp.pubsubEmulatorHost) return base;
  const { host, port } = parseHostPort(gcp.pubsubEmulatorHost, 'PUBSUB_EMULATOR_HOST');
  const grpc = await import('@grpc/grpc-js');
  return { ...base, servicePath: host, port, sslCreds: grpc.credentials.createInsecure(), universeDomain: 'googleapis.com' };
}

/**
 * The generated (gapic) Pub/Sub clients only, without the high-level `PubSub` class, its lease
 * manager and OpenTelemetry (~10 MB less RSS in the agent). Deep imports: the package has no
 * "exports" map. Loaded on first call.
 */
export async function createPubSubGapicClient(
  kind: 'publisher',
  gcp: Pick<GcpConfig, 'projectId' | 'pubsubEmulatorHost'>,
): Promise<PublisherClient>;
export async function createPubSubGapicClient(
  kind: 'subscriber',
  gcp: Pick<GcpConfig, 'projectId' | 'pubsubEmulatorHost'>,
): Promise<SubscriberClient>;
export async function createPubSubGapicClient(
  kind: 'publisher' | 'subscriber',
  gcp: Pick<GcpConfig, 'projectId' | 'pubsubEmulatorHost'>,
): Promise<PublisherClient | SubscriberClient> {
  const opts = await gapicOptions(gcp);
  // Each client's own module, not v1/index.js (which loads the publisher, the subscriber and the
  // schema client): the agent subscribes and rarely publishes (≈ 0.3 MB).
  if (kind === 'publisher') return new (await import('@google-cloud/pubsub/build/src/v1/publisher_client.js')).PublisherClient(opts);
  return new (await import('@google-cloud/pubsub/build/src/v1/subscriber_client.js')).SubscriberClient(opts);
}
