/**
 * The relogin settings from the environment, and the wiring both issuers share: the service
 * (main.ts), the refresher (on login_required) and `token-keeper login --link`.
 *   RELOGIN_BASE_URL         https://<service>.run.app — every URL the service builds (never the Host header)
 *   RELOGIN_LINK_SECRET_ID   the link-state secret (default: TOKEN_SECRET_ID + "-relogin")
 *   SAXO_OPENAPI_BASE_URL    the OpenAPI gateway for users/me (default per SAXO_ENVIRONMENT)
 */
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import type { Config } from '../../core/config.js';
import { ConfigError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { issueLink } from './issue.js';
import { AUTO_LINK_INTERVAL_MS } from './link-rules.js';
import { createLinkStateStore, type LinkStateStore } from './link-store.js';

export interface ReloginSettings {
  baseUrl: string;
  projectId: string;
  linkSecretId: string;
}

/** undefined when RELOGIN_BASE_URL is not set (phone re-login not deployed). */
export function reloginSettings(config: Config): ReloginSettings | undefined {
  const raw = config.relogin.baseUrl?.trim();
  if (!raw) return undefined;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError('RELOGIN_BASE_URL must be an absolute URL');
  }
  const loopback = ['localhost', '127.0.0.1'].includes(u.hostname);
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) throw new ConfigError('RELOGIN_BASE_URL must be https:// (http only on localhost)');
  if (u.search || u.hash || u.username || u.password || (u.pathname !== '/' && u.pathname !== '')) {
    throw new ConfigError('RELOGIN_BASE_URL must be an origin only (no path, query or credentials)');
  }
  if (!config.gcp) throw new ConfigError('RELOGIN_BASE_URL needs GOOGLE_CLOUD_PROJECT and TOKEN_SECRET_ID');
  return { baseUrl: u.origin, projectId: config.gcp.projectId, linkSecretId: config.relogin.linkSecretId?.trim() || `${config.gcp.secretId}-relogin` };
}

export function linkStore(client: SecretManagerServiceClient, s: ReloginSettings): LinkStateStore {
  return createLinkStateStore({ client, projectId: s.projectId, secretId: s.linkSecretId });
}

/**
 * The refresher's hook: the chain needs a login → one link, at most once an hour per environment
 * (every Scheduler run finds it dead). Never throws: a failure to issue is logged, the run goes on.
 */
export function cloudLinkIssuer(config: Config, logger: Logger, links: LinkStateStore, s: ReloginSettings): (reason: string) => Promise<void> {
  return async (reason) => {
    try {
      await issueLink({ links, environment: config.environment, baseUrl: s.baseUrl, logger, now: Date.now(), reason, quietMs: AUTO_LINK_INTERVAL_MS });
    } catch (err) {
      logger.warn('relogin_link_failed', `Could not issue a re-login link: ${err instanceof Error ? err.message : 'error'}`);
    }
  };
}
