/**
 * Issuing a one-time link: 256 random bits (base64url), only its hash stored, and the link itself
 * written to exactly ONE log entry — the ALERT `relogin_link` that the login-required alert policy
 * turns into the notification (its delivery path). Used by the refresher (chain needs a login),
 * `token-keeper login --link` and the page's "send a new link".
 */
import { randomBytes } from 'node:crypto';
import type { SaxoEnvironment } from '../../core/identity.js';
import type { Logger } from '../../core/log.js';
import { addLink, LINK_TTL_MS, mayResend } from './link-rules.js';
import type { LinkStateStore } from './link-store.js';

export interface IssuedLink {
  link: string;
  deadline: string;
}

export function linkUrl(baseUrl: string, id: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/l/${id}`;
}

/**
 * `quietMs`: refuse (undefined) when a link for `env` went out within that long — the page's "send
 * a new link" (5 min) and the refresher's repeated login_required runs (1 h) are limited by it.
 */
export async function issueLink(o: {
  links: LinkStateStore;
  environment: SaxoEnvironment;
  baseUrl: string;
  logger: Logger;
  now: number;
  reason: string;
  quietMs?: number | undefined;
}): Promise<IssuedLink | undefined> {
  const id = randomBytes(32).toString('base64url');
  const issued = await o.links.transact((doc) =>
    o.quietMs !== undefined && !mayResend(doc, o.environment, o.now, o.quietMs) ? { result: false } : { doc: addLink(doc, o.environment, id, o.now), result: true },
  );
  if (!issued) return undefined;
  const link = linkUrl(o.baseUrl, id);
  const deadline = new Date(o.now + LINK_TTL_MS).toISOString();
  o.logger.alert(
    'relogin_link',
    `Saxo ${o.environment} needs a new login (${o.reason}). Open the one-time link on your phone before ${deadline.slice(11, 16)} UTC and sign in with the chain's own account.`,
    { link, environment: o.environment, deadline, reason: o.reason },
  );
  return { link, deadline };
}
