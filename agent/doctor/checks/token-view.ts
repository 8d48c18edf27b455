/**
 * The one decision over the sources doctor read (core/decide.ts, as the agent and `status` use
 * it), made once per report (Facts.view) and read by the token, tiers, subscription and cloud-path checks.
 */
import { decide, type Plan, type SecretView } from '../../../core/decide.js';
import type { TokenSet } from '../../../core/token.js';
import type { Facts } from '../facts.js';

export interface TokenView {
  plan: Plan;
  /** Each source's pair (undefined: none there, or unreadable). */
  sources: { cache?: TokenSet | undefined; state?: TokenSet | undefined; secret?: TokenSet | undefined };
  /** The newest pair's usable life (token_expiry − issue time), when both are known. */
  accessLifeMs?: number | undefined;
  /** The newest pair's refresh-token life (refresh expiry − issue time), when known. */
  refreshLifeMs?: number | undefined;
}

/** The facts the view is computed from. */
type Sources = Pick<Facts, 'now' | 'config' | 'cache' | 'state' | 'secret'>;

function secretView(f: Sources): SecretView {
  if (!f.secret) return { kind: 'absent' };
  return f.secret.latest.ok ? { kind: 'read', read: f.secret.latest.value } : { kind: 'unavailable' };
}

/** Computed once, by gather (Facts.view); checks read `f.view`. */
export function tokenView(f: Sources): TokenView {
  const cache = f.cache.ok ? f.cache.value : ({ kind: 'unreadable', code: f.cache.code ?? 'error', reason: f.cache.error } as const);
  const state = f.state.ok ? f.state.value : undefined;
  const secret = secretView(f);
  const plan = decide(
    { now: f.now, cache, known: state?.token, secret },
    { refreshThresholdMs: f.config.refreshThresholdMs, refreshTokenAlertMs: f.config.refreshTokenAlertMs },
  );
  const b = plan.best;
  const life = (end: number | undefined) => (b?.issuedAt !== undefined && end !== undefined && end > b.issuedAt ? end - b.issuedAt : undefined);
  return {
    plan,
    sources: {
      cache: cache.kind === 'ok' ? cache.token : undefined,
      state: state?.token,
      secret: secret.kind === 'read' ? secret.read?.token : undefined,
    },
    accessLifeMs: life(b?.accessExpiresAt),
    refreshLifeMs: life(b?.refreshExpiresAt),
  };
}
