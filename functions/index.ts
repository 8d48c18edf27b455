/**
 * Cloud Function entry (gen2, Node 22; also runs on Node 20): registers the HTTP function
 * `refreshToken`. Clients are created once per instance and reused across invocations.
 */
import { http } from '@google-cloud/functions-framework';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../core/config.js';
import { systemClock } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { createSaxoClient } from '../core/saxo/client.js';
import { createSecretManagerClient, createPubSub } from '../core/gcp/clients.js';
import { createSecretStore } from '../core/gcp/secret-store.js';
import { createEventBus } from '../core/gcp/event-bus.js';
import { createRefreshHandler } from './handler.js';
import type { CloudDeps } from './refresher.js';

const logger = createLogger({ format: process.env.LOG_FORMAT === 'pretty' ? 'pretty' : 'json', component: 'function' });
let deps: Promise<CloudDeps> | undefined;

async function build(): Promise<CloudDeps> {
  const config = loadConfig();
  if (!config.gcp) throw new ConfigError('GOOGLE_CLOUD_PROJECT and TOKEN_SECRET_ID must be set for the function');
  logger.addSecret(config.appSecret);
  const client = await createSecretManagerClient(config.gcp);
  const pubsub = await createPubSub(config.gcp);
  return {
    clock: systemClock,
    store: createSecretStore({ client, projectId: config.gcp.projectId, secretId: config.gcp.secretId, logger }),
    bus: createEventBus({ pubsub, topicId: config.gcp.topicId, logger }),
    saxo: createSaxoClient({ authBaseUrl: config.authBaseUrl, httpTimeoutMs: config.httpTimeoutMs, logger }),
    logger,
    settings: {
      cloudRefreshThresholdMs: config.cloudRefreshThresholdMs,
      expiredGraceMs: config.cloudExpiredGraceMs,
      agentThresholdMs: config.refreshThresholdMs,
      botThresholdMs: config.botThresholdMs,
      maxRefreshFailures: config.maxRefreshFailures,
      keepSecretVersions: config.keepSecretVersions,
      leaseTtlMs: config.leaseTtlMs,
      expiryMarginMs: config.expiryMarginMs,
      holderId: `cloud:${process.env.K_REVISION ?? 'local'}:${randomBytes(3).toString('hex')}`,
      appKey: config.appKey,
      appSecret: config.appSecret,
    },
  };
}

http(
  'refreshToken',
  createRefreshHandler(() => {
    deps ??= build().catch((err) => {
      deps = undefined; // retry construction on the next invocation
      throw err;
    });
    return deps;
  }, logger),
);
