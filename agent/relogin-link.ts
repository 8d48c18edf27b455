/**
 * `token-keeper login --link`: a one-time phone re-login link on demand, from any machine with
 * gcloud credentials (the link-state secret: get, update, access, add version). The link is logged
 * once, in its ALERT line (`relogin_link`, the notification's delivery path when this runs where
 * logs reach Cloud Logging), and printed to the terminal of the person who asked for it — nowhere else.
 */
import { loadConfig } from '../core/config.js';
import { errorText } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { issueLink } from '../functions/relogin/issue.js';
import { linkStore, reloginSettings } from '../functions/relogin/settings.js';

export async function runLoginLink(): Promise<number> {
  const config = loadConfig();
  const logger = createLogger({ format: config.logFormat, component: 'login' });
  const s = reloginSettings(config);
  if (!s || !config.gcp) {
    process.stderr.write('token-keeper login --link: set RELOGIN_BASE_URL (the relogin service), GOOGLE_CLOUD_PROJECT and TOKEN_SECRET_ID\n');
    return 2;
  }
  const { createSecretManagerClient } = await import('../core/gcp/clients.js');
  const client = await createSecretManagerClient(config.gcp);
  try {
    const issued = await issueLink({ links: linkStore(client, s), environment: config.environment, baseUrl: s.baseUrl, logger, now: Date.now(), reason: 'requested with `token-keeper login --link`' });
    if (!issued) return 1;
    process.stderr.write(`\nOne-time ${config.environment} re-login link (valid until ${issued.deadline.slice(11, 16)} UTC, works once):\n\n  ${issued.link}\n\nOpen it on your phone and sign in with the chain's own Saxo account.\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`token-keeper login --link: ${errorText(err)}\n`);
    return 1;
  } finally {
    await client.close();
  }
}
