/**
 * The refresh tiers (docs/DESIGN.md "Tiers"): the cloud refreshes first (≤ 600 s left), the VM
 * agent only when the cloud has failed (≤ 300 s), the bots' own fallback last (≤ 120 s). Each tier
 * must sit strictly inside the one above it and all of them inside the token's usable life, or the
 * lower tiers race the upper ones for the same single-use refresh token.
 */

export interface Tiers {
  /** Absent when there is no cloud tier (standalone). */
  cloudThresholdMs?: number | undefined;
  agentThresholdMs: number;
  botThresholdMs: number;
}

/** The tiers a configuration sets up; standalone has no cloud tier. */
export function configuredTiers(c: { gcp?: unknown; cloudRefreshThresholdMs: number; refreshThresholdMs: number; botThresholdMs: number }): Tiers {
  return {
    cloudThresholdMs: c.gcp ? c.cloudRefreshThresholdMs : undefined,
    agentThresholdMs: c.refreshThresholdMs,
    botThresholdMs: c.botThresholdMs,
  };
}

/** Saxo's access token lives ~1200 s; the bots write token_expiry 60 s early: 1140 s usable. */
export const DEFAULT_ACCESS_LIFE_MS = 1_140_000;

export interface TierProblem {
  message: string;
  /** What to change, as an environment assignment an operator can paste. */
  fix: string;
}

const s = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/**
 * Everything wrong with the tier order; empty when it is sound. `accessLifeMs`: the usable life of
 * the token actually in use (token_expiry − issue time) when known, else Saxo's documented one.
 */
export function tierProblems(t: Tiers, accessLifeMs = DEFAULT_ACCESS_LIFE_MS): TierProblem[] {
  const out: TierProblem[] = [];
  // Every fix comes from one consistent set of tiers, so that applying one never breaks another rule
  // (the bots' buffer is theirs and stays; doctor and the agent print the same values).
  const fixed = consistentTiers(t, accessLifeMs);
  const secs = (ms: number) => Math.round(ms / 1000);
  const fix = [
    fixed.agentThresholdMs !== t.agentThresholdMs ? `REFRESH_THRESHOLD_SECONDS=${secs(fixed.agentThresholdMs)}` : '',
    fixed.cloudThresholdMs !== t.cloudThresholdMs ? `CLOUD_REFRESH_THRESHOLD_SECONDS=${secs(fixed.cloudThresholdMs!)}` : '',
  ].filter(Boolean).join(' ');
  if (t.cloudThresholdMs !== undefined && !(t.cloudThresholdMs > t.agentThresholdMs)) {
    out.push({
      message: `CLOUD_REFRESH_THRESHOLD_SECONDS (${s(t.cloudThresholdMs)}) must be above REFRESH_THRESHOLD_SECONDS (${s(t.agentThresholdMs)}): the agent would refresh before the cloud`,
      fix,
    });
  }
  if (!(t.agentThresholdMs > t.botThresholdMs)) {
    out.push({
      message: `REFRESH_THRESHOLD_SECONDS (${s(t.agentThresholdMs)}) must be above the bots' buffer BOT_REFRESH_THRESHOLD_SECONDS (${s(t.botThresholdMs)}): the bots would refresh before the agent`,
      fix,
    });
  }
  const top = t.cloudThresholdMs ?? t.agentThresholdMs;
  const name = t.cloudThresholdMs !== undefined ? 'CLOUD_REFRESH_THRESHOLD_SECONDS' : 'REFRESH_THRESHOLD_SECONDS';
  if (!(top < accessLifeMs)) {
    out.push({
      message: `${name} (${s(top)}) must be below the token's usable life (${s(accessLifeMs)}): it would refresh on every check`,
      fix,
    });
  }
  return out;
}

/**
 * Tiers in order inside `lifeMs`, changing as little as possible: a tier already in place stays;
 * the agent's goes to 2.5 × the bots' buffer (or halfway to half the life when that is too high),
 * the cloud's to twice the agent's (or halfway between the agent's and the life).
 */
export function consistentTiers(t: Tiers, lifeMs: number): Tiers {
  const bot = t.botThresholdMs;
  const agentOk = t.agentThresholdMs > bot && t.agentThresholdMs < lifeMs;
  const agent = agentOk ? t.agentThresholdMs : bot * 2.5 < lifeMs / 2 ? bot * 2.5 : Math.floor((bot + lifeMs / 2) / 2);
  if (t.cloudThresholdMs === undefined) return { agentThresholdMs: agent, botThresholdMs: bot };
  const cloudOk = t.cloudThresholdMs > agent && t.cloudThresholdMs < lifeMs;
  const cloud = cloudOk ? t.cloudThresholdMs : Math.min(agent * 2, Math.floor((agent + lifeMs) / 2));
  return { cloudThresholdMs: cloud, agentThresholdMs: agent, botThresholdMs: bot };
}

/** How often the agent retries a pair (or an announcement) the secret has not seen yet. */
export const PUSH_RETRY_MS = 5_000;

/** What the function's patience with the lower tiers is derived from (all from the configuration). */
export interface Patience {
  /** The agent's tier: a pair found inside it means the cloud missed its own window. */
  agentThresholdMs: number;
  /** How long past the access expiry the function keeps leaving the refresh to the VM. */
  expiredGraceMs: number;
  /** Cloud Scheduler's period: the function acts again only this much later. */
  schedulePeriodMs: number;
  leaseTtlMs: number;
  /** The agent's upstream retry period (min(PUSH_RETRY_MS, its check interval)). */
  pushRetryMs: number;
}

/** Refresh-token life beyond the access token's when the pair does not say (bot pairs): Saxo's 3600 − 1140 s, rounded down. */
const UNKNOWN_REFRESH_TAIL_MS = 40 * 60_000;

/**
 * How long before the refresh token dies the function stops waiting: it then still has this run
 * and one more a Scheduler period later (a failed attempt gets a second chance), each with two
 * lease lengths for the exchange and its retries, plus the grace it waits for a pending push.
 * Derived from the configuration, so scaled-down lifetimes (tests, the demo) keep the same shape.
 */
export function lastChanceMs(p: Patience): number {
  return 2 * p.schedulePeriodMs + 2 * p.leaseTtlMs + pushGraceMs(p);
}

/**
 * How long a pair the primary agent holds may take to reach the secret once Secret Manager answers
 * again: two of its push retries, plus the adapter's longest backoff between read retries (2 s) and
 * a round trip. The function waits this long before a last-chance presentation; a non-primary agent
 * waits this long after an outage before it presents anything.
 */
export function pushGraceMs(p: Pick<Patience, 'pushRetryMs'>): number {
  return 2 * p.pushRetryMs + 3_000;
}

/** The agent retries pending upstream work this often: every 5 s, or every check if checks are faster. */
export function pushRetryMs(checkIntervalMs: number): number {
  return Math.min(PUSH_RETRY_MS, checkIntervalMs);
}

export type CloudMove = 'refresh' | 'await_lower_tiers' | 'last_chance';

/**
 * The function found the newest pair due. If it is already inside the agent's window (or expired),
 * the cloud missed its own window (it or Secret Manager was down) and the agent or a bot has
 * probably refreshed and will push that pair the moment Secret Manager answers: presenting now
 * would likely present a consumed refresh token. So it waits — re-checked at every scheduled run —
 * while a later run can still save the chain and for at most `expiredGraceMs` past the expiry; its
 * last chance comes with a grace for the agent's pending push to land first.
 */
export function cloudMove(accessLeftMs: number, refreshLeftMs: number | undefined, p: Patience): CloudMove {
  if (accessLeftMs > p.agentThresholdMs) return 'refresh';
  const refreshLeft = refreshLeftMs ?? accessLeftMs + UNKNOWN_REFRESH_TAIL_MS;
  if (-accessLeftMs < p.expiredGraceMs && refreshLeft > lastChanceMs(p)) return 'await_lower_tiers';
  return 'last_chance';
}
