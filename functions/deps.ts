/**
 * The function's dependencies from a Config — the production wiring, also used by the demo.
 * Secret Manager is reached over REST (core/gcp/secret-manager-rest.ts): a cold start then loads
 * no gRPC stack for a run that reads one version; the Pub/Sub publisher is created on the first
 * announcement and openid-client on the first refresh.
 */
import { systemClock } from '../core/clock.js';
import type { Config } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import type { ClosableEventBus } from '../core/gcp/event-bus.js';
import type { Logger } from '../core/log.js';
import { cloudSettings } from '../core/settings.js';
import type { CloudDeps } from './refresher.js';

export async function functionDeps(config: Config, logger: Logger, holderId: string): Promise<CloudDeps & { bus: ClosableEventBus }> {
  const gcp = config.gcp;
  if (!gcp) throw new ConfigError('GOOGLE_CLOUD_PROJECT and TOKEN_SECRET_ID must be set for the function');
  const [{ createRestSecretManagerClient, googleAccessToken }, { createSecretStore }, { createEventBus }, { createSaxoClient }] = await Promise.all([
    import('../core/gcp/secret-manager-rest.js'),
    import('../core/gcp/secret-store.js'),
    import('../core/gcp/event-bus.js'),
    import('../core/saxo/client.js'),
  ]);
  const client = gcp.secretManagerEmulatorRestHost
    ? createRestSecretManagerClient({ baseUrl: `http://${gcp.secretManagerEmulatorRestHost}` })
    : createRestSecretManagerClient({ baseUrl: 'https://secretmanager.googleapis.com', token: googleAccessToken() });
  // Phone re-login (functions/relogin/): when configured, a dead chain issues a one-time link.
  const { reloginSettings, linkStore, cloudLinkIssuer } = await import('./relogin/settings.js');
  const relogin = reloginSettings(config);
  return {
    relogin: relogin && cloudLinkIssuer(config, logger, linkStore(client, relogin), relogin),
    clock: systemClock,
    store: createSecretStore({ client, projectId: gcp.projectId, secretId: gcp.secretId, logger }),
    bus: createEventBus({ gcp, logger }),
    saxo: createSaxoClient({ authBaseUrl: config.authBaseUrl, httpTimeoutMs: config.httpTimeoutMs, logger }),
    logger,
    settings: cloudSettings(config, { holderId }),
  };
}
