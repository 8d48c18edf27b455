/**
 * Cloud Function entry (gen2, Node 22; also runs on Node 20): registers the HTTP function
 * `refreshToken`. Clients are created on the first invocation and reused; only what a run needs is
 * loaded (the Pub/Sub publisher on the first announcement, openid-client on the first refresh), so
 * a cold start for a run with nothing to do stays light (docs/BENCHMARKS.md).
 */
import { http } from '@google-cloud/functions-framework';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../core/config.js';
import { systemClock } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { cloudSettings } from '../core/settings.js';
import { configuredTiers, tierProblems } from '../core/tiers.js';
import { createRefreshHandler } from './handler.js';
import type { CloudDeps } from './refresher.js';

/** Logs failures to even build the dependencies (a configuration error); runs log through `deps.logger`. */
const fallbackLogger: Logger = createLogger({ component: 'function' });
let deps: Promise<CloudDeps> | undefined;

async function build(): Promise<CloudDeps> {
  const config = loadConfig();
  const logger = createLogger({ format: config.logFormat, component: 'function' });
  if (!config.gcp) throw new ConfigError('GOOGLE_CLOUD_PROJECT and TOKEN_SECRET_ID must be set for the function');
  logger.addSecret(config.appSecret);
  for (const p of tierProblems(configuredTiers(config))) logger.warn('tiers_out_of_order', `Refresh tiers out of order: ${p.message} (fix: ${p.fix})`);
  const [{ createSecretManagerClient }, { createSecretStore }, { createEventBus }, { createSaxoClient }] = await Promise.all([
    import('../core/gcp/clients.js'),
    import('../core/gcp/secret-store.js'),
    import('../core/gcp/event-bus.js'),
    import('../core/saxo/client.js'),
  ]);
  const client = await createSecretManagerClient(config.gcp);
  return {
    clock: systemClock,
    store: createSecretStore({ client, projectId: config.gcp.projectId, secretId: config.gcp.secretId, logger }),
    bus: createEventBus({ gcp: config.gcp, logger }),
    saxo: createSaxoClient({ authBaseUrl: config.authBaseUrl, httpTimeoutMs: config.httpTimeoutMs, logger }),
    logger,
    settings: cloudSettings(config, { holderId: `cloud:${process.env.K_REVISION ?? 'local'}:${randomBytes(3).toString('hex')}` }),
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
  }, fallbackLogger),
);
