/**
 * The relogin service as a process (Cloud Run v2 service, `node dist/functions/relogin/main.js`):
 * one chain — the one this configuration names (SAXO_ENVIRONMENT, TOKEN_SECRET_ID, TOKEN_TOPIC_ID);
 * a second chain deploys a second service. Listens on $PORT (Cloud Run) on all interfaces.
 */
import { loadConfig } from '../../core/config.js';
import { createSecretManagerClient } from '../../core/gcp/clients.js';
import { createEventBus } from '../../core/gcp/event-bus.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { createLogger } from '../../core/log.js';
import { createSaxoClient } from '../../core/saxo/client.js';
import { openapiBaseUrl } from '../../core/saxo/users-me.js';
import { ConfigError } from '../../core/errors.js';
import { createReloginServer } from './server.js';
import { linkStore, reloginSettings } from './settings.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ format: config.logFormat, component: 'relogin' });
  logger.addSecret(config.appSecret);
  const s = reloginSettings(config);
  if (!s || !config.gcp) throw new ConfigError('RELOGIN_BASE_URL, GOOGLE_CLOUD_PROJECT and TOKEN_SECRET_ID must be set');
  if (!config.appKey) throw new ConfigError('SAXO_APP_KEY must be set for the relogin service (SAXO_APP_SECRET too for a confidential app)');
  const client = await createSecretManagerClient(config.gcp);
  const store = createSecretStore({ client, projectId: config.gcp.projectId, secretId: config.gcp.secretId, logger });
  const server = await createReloginServer(
    {
      baseUrl: s.baseUrl,
      chains: {
        [config.environment]: {
          environment: config.environment,
          authBaseUrl: config.authBaseUrl,
          openapiBaseUrl: openapiBaseUrl(config.environment, config.relogin.openapiBaseUrl, config.authBaseUrl),
          appKey: config.appKey,
          appSecret: config.appSecret,
          saxo: createSaxoClient({ authBaseUrl: config.authBaseUrl, httpTimeoutMs: config.httpTimeoutMs, logger }),
          store,
          bus: createEventBus({ gcp: config.gcp, logger }),
          expiryMarginMs: config.expiryMarginMs,
        },
      },
      links: linkStore(client, s),
      logger,
      trustForwarded: process.env.K_SERVICE !== undefined,
    },
    { port: Number(process.env.PORT ?? 8080), host: process.env.K_SERVICE !== undefined ? '0.0.0.0' : '127.0.0.1' },
  );
  logger.info('relogin_listening', `Relogin service listening for ${config.environment}`, { environment: config.environment, url: s.baseUrl });
  const stop = () => void server.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(JSON.stringify({ severity: 'ERROR', event: 'relogin_start_failed', message: err instanceof Error ? err.message : String(err) }) + '\n');
  process.exit(1);
});
