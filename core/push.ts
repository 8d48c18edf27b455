/** Upstream sink shared by the agent and the function: add a version, announce it, prune. */
import { errorText } from './errors.js';
import type { Logger } from './log.js';
import type { EventBus, SecretStore } from './ports.js';
import type { TokenSet } from './token.js';

/** Give `token` a generation above every other known one (bot-written pairs carry none). */
export function withNextGeneration(token: TokenSet, ...others: (TokenSet | undefined)[]): TokenSet {
  const max = Math.max(0, ...others.map((o) => (o && o.refreshToken !== token.refreshToken ? (o.generation ?? 0) : 0)));
  if (token.generation !== undefined && token.generation > max) return token;
  return { ...token, generation: max + 1 };
}

export function describeExpiry(t: TokenSet, now: number): string {
  return `expires in ${Math.max(0, Math.round((t.accessExpiresAt - now) / 60_000))} min`;
}

/**
 * Saxo's lifetime as the Python keeper logs it ("expires in 20 min" for expires_in=1200), not the
 * margin-reduced token_expiry that describeExpiry measures.
 */
export function describeLifetime(expiresInSec: number): string {
  return `expires in ${Math.max(0, Math.floor(expiresInSec / 60))} min`;
}

/** What every refresher (agent, function) is configured with, besides its own threshold. */
export interface RefresherSettings {
  maxRefreshFailures: number;
  keepSecretVersions: number;
  leaseTtlMs: number;
  expiryMarginMs: number;
  holderId: string;
  appKey?: string | undefined;
  appSecret?: string | undefined;
}

export interface PushArgs {
  store: SecretStore;
  bus?: EventBus | undefined;
  logger: Logger;
  token: TokenSet;
  keep: number;
  reason: 'refresh' | 'push' | 'login';
}

/** Returns the new version's name. Publishing and pruning failures are logged, not thrown. */
export async function pushToSecret(a: PushArgs): Promise<string> {
  const v = await a.store.add(a.token);
  a.logger.info('secret_version_added', `Stored token as secret version ${v.version}`, {
    version: v.name,
    generation: a.token.generation,
    reason: a.reason,
  });
  if (a.bus) {
    try {
      await a.bus.publish({
        type: 'TOKEN_ROTATED',
        version: v.name,
        generation: a.token.generation ?? 0,
        accessExpiresAt: new Date(a.token.accessExpiresAt).toISOString(),
        source: a.token.source ?? 'unknown',
        publishedAt: new Date().toISOString(),
      });
    } catch (err) {
      a.logger.warn('publish_failed', 'Could not publish TOKEN_ROTATED (agents will catch up on their next check)', {
        error: errorText(err),
      });
    }
  }
  try {
    const destroyed = await a.store.prune(a.keep);
    if (destroyed > 0) a.logger.info('versions_pruned', `Destroyed ${destroyed} old secret version(s)`, { destroyed, keep: a.keep });
  } catch (err) {
    a.logger.warn('prune_failed', 'Could not destroy old secret versions', { error: errorText(err) });
  }
  return v.name;
}
