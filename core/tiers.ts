/**
 * The refresh tiers (docs/DESIGN.md "Tiers"): the cloud refreshes first (≤ 600 s left), the VM
 * agent only when the cloud has failed (≤ 300 s), the bots' own fallback last (≤ 120 s). Each tier
 * must sit strictly inside the one above it and all of them inside the token's usable life, or the
 * lower tiers race the upper ones for the same single-use refresh token.
 */

export interface Tiers {
  cloudThresholdMs: number;
  agentThresholdMs: number;
  botThresholdMs: number;
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
  if (!(t.cloudThresholdMs > t.agentThresholdMs)) {
    out.push({
      message: `CLOUD_REFRESH_THRESHOLD_SECONDS (${s(t.cloudThresholdMs)}) must be above REFRESH_THRESHOLD_SECONDS (${s(t.agentThresholdMs)}): the agent would refresh before the cloud`,
      fix: `CLOUD_REFRESH_THRESHOLD_SECONDS=${Math.round((t.agentThresholdMs * 2) / 1000)}`,
    });
  }
  if (!(t.agentThresholdMs > t.botThresholdMs)) {
    out.push({
      message: `REFRESH_THRESHOLD_SECONDS (${s(t.agentThresholdMs)}) must be above the bots' buffer BOT_REFRESH_THRESHOLD_SECONDS (${s(t.botThresholdMs)}): the bots would refresh before the agent`,
      fix: `REFRESH_THRESHOLD_SECONDS=${Math.round((t.botThresholdMs * 2.5) / 1000)}`,
    });
  }
  if (!(t.cloudThresholdMs < accessLifeMs)) {
    out.push({
      message: `CLOUD_REFRESH_THRESHOLD_SECONDS (${s(t.cloudThresholdMs)}) must be below the token's usable life (${s(accessLifeMs)}): the cloud would refresh on every run`,
      fix: `CLOUD_REFRESH_THRESHOLD_SECONDS=${Math.floor((accessLifeMs * 0.5) / 1000)}`,
    });
  }
  return out;
}
