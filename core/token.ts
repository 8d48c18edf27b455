/**
 * The token model shared by the agent, the function and the tools.
 * All instants are epoch milliseconds; conversion to the bots' ISO strings happens in codec.ts.
 */
export interface TokenSet {
  accessToken: string;
  refreshToken: string;
  /** When the access token stops working (the bots' `token_expiry`). */
  accessExpiresAt: number;
  /** When the refresh token dies if unused; unknown for pairs written by bots. */
  refreshExpiresAt?: number | undefined;
  /** When Saxo issued the pair; unknown for pairs written by bots. */
  issuedAt?: number | undefined;
  /** Monotonic counter assigned by token-keeper; absent for pairs written by bots. */
  generation?: number | undefined;
  /** Who obtained the pair: "cloud", "agent:<host>", "bot", "login", … */
  source?: string | undefined;
  appKey?: string | undefined;
  appSecret?: string | undefined;
  /** Keys we do not know, preserved verbatim on every rewrite (DESIGN §3). */
  extra: Record<string, unknown>;
}

/** What Saxo's /token endpoint answered, after validation. */
export interface TokenResponse {
  accessToken: string;
  refreshToken: string;
  tokenType: string;
  expiresIn: number; // seconds
  refreshExpiresIn?: number | undefined; // seconds
}

/**
 * Freshness order (invariant I2). Positive when `a` is newer than `b`.
 * Generations decide when both carry one and they differ; otherwise (a bot wrote one of them,
 * or both carry the same generation) the later access expiry, then the later issue time, wins.
 * The same refresh token on both sides is the same pair: 0.
 */
export function compareFreshness(a: TokenSet, b: TokenSet): number {
  if (a.refreshToken === b.refreshToken) return 0;
  if (a.generation !== undefined && b.generation !== undefined && a.generation !== b.generation) {
    return a.generation - b.generation;
  }
  if (a.accessExpiresAt !== b.accessExpiresAt) return a.accessExpiresAt - b.accessExpiresAt;
  return (a.issuedAt ?? 0) - (b.issuedAt ?? 0);
}

export function isNewer(a: TokenSet | undefined, than: TokenSet | undefined): boolean {
  if (!a) return false;
  if (!than) return true;
  return compareFreshness(a, than) > 0;
}

/** The newest of several candidates (undefined entries ignored). */
export function newest(...candidates: (TokenSet | undefined)[]): TokenSet | undefined {
  let best: TokenSet | undefined;
  for (const c of candidates) if (c && isNewer(c, best)) best = c;
  return best;
}

/** Build the stored pair from a Saxo answer. `prev` lends app credentials and unknown keys. */
export function fromResponse(
  res: TokenResponse,
  now: number,
  prev: TokenSet | undefined,
  source: string,
  marginMs = 60_000,
): TokenSet {
  // token_expiry is written as the bots do: issue time + expires_in − margin (60 s). The margin is
  // clamped to half the lifetime so that scaled-down test lifetimes stay meaningful.
  const lifeMs = res.expiresIn * 1000;
  return {
    accessToken: res.accessToken,
    refreshToken: res.refreshToken,
    accessExpiresAt: now + lifeMs - Math.min(marginMs, lifeMs / 2),
    refreshExpiresAt: res.refreshExpiresIn !== undefined ? now + res.refreshExpiresIn * 1000 : undefined,
    issuedAt: now,
    // A successor of a bot-written pair (no generation) stays unnumbered, so it is ordered by expiry
    // rather than as generation 1 below older keeper pairs; callers number it above everything they
    // have seen (withNextGeneration in core/push.ts).
    generation: prev === undefined ? 1 : prev.generation !== undefined ? prev.generation + 1 : undefined,
    source,
    appKey: prev?.appKey,
    appSecret: prev?.appSecret,
    extra: { ...(prev?.extra ?? {}) },
  };
}

/** A short, non-secret fingerprint for logs: never the token itself. */
export function fingerprint(t: TokenSet | undefined): string {
  if (!t) return 'none';
  return `gen=${t.generation ?? '?'} exp=${new Date(t.accessExpiresAt).toISOString()}`;
}
