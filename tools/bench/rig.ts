/**
 * The benchmark's world: the real Pub/Sub emulator (or PUBSUB_EMULATOR_HOST), the local Secret
 * Manager gRPC server, the Saxo stand-in, real adapters over them, and a seeded secret.
 */
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import type { PubSub } from '@google-cloud/pubsub';
import { createLogger, type Logger } from '../../core/log.js';
import type { EventBus, SecretStore } from '../../core/ports.js';
import type { TokenSet } from '../../core/token.js';
import { createPubSub, createSecretManagerClient } from '../../core/gcp/clients.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { createEventBus } from '../../core/gcp/event-bus.js';
import { loadConfig, type Config } from '../../core/config.js';
import { ensureSecret, ensureTopicAndSubscription } from '../../core/gcp/provision.js';
import { startSecretManagerServer, type SecretManagerServer } from '../../standins/secret-manager/server.js';
import { startPubSubEmulator, type PubSubEmulator } from '../../standins/pubsub-emulator.js';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';

export const APP_KEY = 'bench-app-key';
export const APP_SECRET = 'bench-app-secret-9f3kQ2';

export interface Channel {
  secretId: string;
  topicId: string;
  subscriptionId: string;
  store: SecretStore;
  bus: EventBus;
}

export interface Rig {
  projectId: string;
  sm: SecretManagerServer;
  smClient: SecretManagerServiceClient;
  pubsub: PubSub;
  emulatorHost: string;
  saxo: SaxoStandin;
  /** A quiet logger (errors only) for the in-process adapters. */
  logger: Logger;
  /** A secret + topic + subscription, seeded with a fresh login pair (generation 1). */
  channel(name: string): Promise<Channel>;
  /** A fresh pair from the stand-in, as `login` would store it. */
  loginPair(generation?: number): TokenSet;
  close(): Promise<void>;
}

/** The production settings builders' input, at default settings, for a channel of this rig. */
export function benchConfig(projectId: string, secretId = 'tok-bench'): Config {
  return loadConfig({
    TOKEN_KEEPER_DATA_DIR: '/nonexistent/bench',
    GOOGLE_CLOUD_PROJECT: projectId,
    TOKEN_SECRET_ID: secretId,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
  });
}

export async function startRig(projectId = `bench-${process.pid}`): Promise<Rig> {
  const shared = process.env.PUBSUB_EMULATOR_HOST;
  const emulator: PubSubEmulator = shared
    ? { host: shared, port: Number(shared.split(':').pop()), stop: async () => undefined }
    : await startPubSubEmulator();
  const sm = await startSecretManagerServer();
  // Default Saxo lifetimes, so nothing is due during the measurements unless forced.
  const saxo = await startSaxoStandin({ accessLifetimeSec: 1200, refreshLifetimeSec: 3600, clients: { [APP_KEY]: APP_SECRET } });
  const smClient = await createSecretManagerClient({ projectId, secretManagerEmulatorHost: sm.host });
  const pubsub = await createPubSub({ projectId, pubsubEmulatorHost: emulator.host });
  const logger = createLogger({ write: (l) => process.stderr.write(l + '\n'), component: 'bench', minSeverity: 'ERROR' });

  const loginPair = (generation = 1): TokenSet => {
    const p = saxo.issue(APP_KEY);
    const now = Date.now();
    return {
      accessToken: p.access_token,
      refreshToken: p.refresh_token,
      accessExpiresAt: now + (p.expires_in - 60) * 1000,
      refreshExpiresAt: now + p.refresh_token_expires_in * 1000,
      issuedAt: now,
      generation,
      source: 'login',
      appKey: APP_KEY,
      appSecret: APP_SECRET,
      extra: {},
    };
  };

  return {
    projectId,
    sm,
    smClient,
    pubsub,
    emulatorHost: emulator.host,
    saxo,
    logger,
    loginPair,
    async channel(name) {
      const secretId = `tok-${name}`;
      const topicId = `rot-${name}`;
      const subscriptionId = `agent-${name}`;
      await ensureSecret(smClient, projectId, secretId);
      await ensureTopicAndSubscription(pubsub, topicId, subscriptionId);
      const store = createSecretStore({ client: smClient, projectId, secretId, logger });
      const bus = createEventBus({ gcp: { projectId, topicId, pubsubEmulatorHost: emulator.host }, logger });
      await store.add(loginPair(1));
      return { secretId, topicId, subscriptionId, store, bus };
    },
    async close() {
      await Promise.allSettled([smClient.close(), pubsub.close()]);
      await Promise.allSettled([sm.close(), saxo.close()]);
      await emulator.stop();
    },
  };
}
