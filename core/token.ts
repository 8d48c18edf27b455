/**
 * The token model shared by the agent, the function and the tools.
 * All instants are epoch milliseconds; conversion to the bots' ISO strings happens in codec.ts.
 */
import { createHash } from 'node:crypto';
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
  /**
   * A bot saved this pair into the secret over one of ours and so copied our `generation`: that
   * number belongs to the pair the bot started from, not to this one. It orders nothing; it only
   * keeps the successor's number above it (codec.ts, docs/DESIGN.md "Bots writing the secret").
   */
  inheritedGeneration?: number | undefined;
  /**
   * pairId() of the pair this one was refreshed from (its parent in the chain). Generations are
   * assigned by several hosts that cannot always see each other's latest numbers (Secret Manager
   * down, a bot's save in between); the parent link orders a pair above its predecessor whatever
   * their numbers say.
   */
  parentId?: string | undefined;
  /**
   * When the chain this pair belongs to began: the browser login every later pair descends from,
   * carried only along our own parent links (a bot's pair may come from its own login, so a pair
   * a bot wrote starts an unknown one). Tells an operator how long the chain has lived; orders nothing.
   */
  chainStartedAt?: number | undefined;
  /** Who obtained the pair: "cloud", "agent:<host>", "bot", "login", … */
  source?: string | undefined;
  appKey?: string | undefined;
  appSecret?: string | undefined;
  /** Keys we do not know, preserved verbatim on every rewrite (docs/DESIGN.md "The bots' cache"). */
  extra: Record<string, unknown>;
}

/** What Saxo's /token endpoint answered, after validation. */
export interface TokenResponse {
  accessToken: string;
  refreshToken: string;
  tokenType: string;
  expiresIn: number; // seconds
  refreshExpiresIn?: number | undefined; // seconds
  /** Saxo's HTTP `Date` header, when the answer had one (docs/DESIGN.md "Server time"). */
  serverDate?: string | null | undefined;
}

export interface Credentials {
  appKey?: string | undefined;
  appSecret?: string | undefined;
}

/** A short one-way tag of a refresh token (not reversible, not usable as a token). */
export function pairId(refreshToken: string): string {
  return createHash('sha256').update(refreshToken).digest('hex').slice(0, 16);
}

/**
 * Freshness order (invariant I2). Positive when `a` is newer than `b`.
 * A pair refreshed from the other is newer (the parent link). Otherwise generations decide when
 * both carry one and they differ; otherwise (a bot wrote one of them, or both carry the same
 * generation) the later access expiry, then the later issue time, wins.
 * The same refresh token on both sides is the same pair: 0.
 */
export function compareFreshness(a: TokenSet, b: TokenSet): number {
  if (a.refreshToken === b.refreshToken) return 0;
  if (a.parentId !== undefined && a.parentId === pairId(b.refreshToken)) return 1;
  if (b.parentId !== undefined && b.parentId === pairId(a.refreshToken)) return -1;
  if (a.generation !== undefined && b.generation !== undefined && a.generation !== b.generation) {
    return a.generation - b.generation;
  }
  if (a.accessExpiresAt !== b.accessExpiresAt) return a.accessExpiresAt - b.accessExpiresAt;
  return (a.issuedAt ?? 0) - (b.issuedAt ?? 0);
}

/** Give `token` a generation above every other known one (bot-written pairs carry none). */
export function withNextGeneration(token: TokenSet, ...others: (TokenSet | undefined)[]): TokenSet {
  const numberOf = (o: TokenSet) => Math.max(o.generation ?? 0, o.inheritedGeneration ?? 0);
  const max = Math.max(0, ...others.map((o) => (o && o.refreshToken !== token.refreshToken ? numberOf(o) : 0)));
  if (token.generation !== undefined && token.generation > max) return token;
  return { ...token, generation: max + 1 };
}

// Saxo documents ~1200 s access / ~3600 s refresh lifetimes. A proxy or a misconfigured server can
// answer anything, and trusting an absurd value breaks the one promise: 1e9 s means never refreshing
// again (the real refresh token dies within its hour), 1e300 s is an instant no Date can hold (a
// RangeError after Saxo already consumed the old token). So:
// - the access token lives at most an hour: whatever the server claims, the tiers (≤ 600/300/120 s
//   before expiry) then refresh while a real one-hour refresh token still lives. Too short is safe
//   (an early refresh); too long kills the chain;
// - the refresh token lives at most a day: an overestimate only delays an early warning, and a
//   refresh token that dies before its access token is refreshed in time anyway (decide.ts).
const MAX_REFRESH_LIFE_SEC = 24 * 3600;
const MAX_ACCESS_LIFE_SEC = 3600;

export interface Lifetimes {
  expiresIn: number;
  refreshExpiresIn?: number | undefined;
  /** What was changed and why (for a WARNING); empty when the answer was plausible. */
  clamped: string[];
}

export function saneLifetimes(res: Pick<TokenResponse, 'expiresIn' | 'refreshExpiresIn'>): Lifetimes {
  const clamped: string[] = [];
  const clamp = (name: string, v: number, lo: number, hi: number): number => {
    const ok = Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : hi;
    if (ok !== v) clamped.push(`${name}=${v} → ${ok}`);
    return ok;
  };
  const expiresIn = clamp('expires_in', res.expiresIn, 0, MAX_ACCESS_LIFE_SEC);
  const refreshExpiresIn =
    res.refreshExpiresIn === undefined ? undefined : clamp('refresh_token_expires_in', res.refreshExpiresIn, 0, MAX_REFRESH_LIFE_SEC);
  return { expiresIn, refreshExpiresIn, clamped };
}

/**
 * Build the stored pair from a Saxo answer (lifetimes bounded by saneLifetimes). `prev` lends
 * app credentials and unknown keys. `timing` is when the pair was issued: core/server-time.ts
 * `issueTime` (the server's clock, docs/DESIGN.md "Server time"), or a bare local instant.
 */
export function fromResponse(
  res: TokenResponse,
  timing: number | { issuedAt: number },
  prev: TokenSet | undefined,
  source: string,
  marginMs = 60_000,
): TokenSet {
  const now = typeof timing === 'number' ? timing : timing.issuedAt;
  const life = saneLifetimes(res);
  // token_expiry is written as the bots do: issue time + expires_in − margin (60 s). The margin is
  // clamped to half the lifetime so that scaled-down test lifetimes stay meaningful.
  const lifeMs = life.expiresIn * 1000;
  return {
    accessToken: res.accessToken,
    refreshToken: res.refreshToken,
    accessExpiresAt: now + lifeMs - Math.min(marginMs, lifeMs / 2),
    refreshExpiresAt: life.refreshExpiresIn !== undefined ? now + life.refreshExpiresIn * 1000 : undefined,
    issuedAt: now,
    // A successor of a bot-written pair (no generation) stays unnumbered, so it is ordered by expiry
    // rather than as generation 1 below older keeper pairs; callers number it above everything they
    // have seen (withNextGeneration).
    generation: prev === undefined ? 1 : prev.generation !== undefined ? prev.generation + 1 : undefined,
    parentId: prev !== undefined ? pairId(prev.refreshToken) : undefined,
    chainStartedAt: prev === undefined ? now : prev.chainStartedAt,
    source,
    appKey: prev?.appKey,
    appSecret: prev?.appSecret,
    extra: { ...(prev?.extra ?? {}) },
  };
}

/**
 * The credentials a request uses: the configured ones win as a unit (an operator rotating the app
 * secret through the environment must see it used); otherwise those stored with the pair.
 */
export function requestCredentials(configured: Credentials, pair: TokenSet | undefined): Credentials {
  if (configured.appKey) return { appKey: configured.appKey, appSecret: configured.appSecret };
  return { appKey: pair?.appKey, appSecret: pair?.appSecret };
}

/** `t` with the given credentials stored alongside (a copy; undefined keeps the pair's own). */
export function withCredentials(t: TokenSet, c: Credentials | undefined): TokenSet {
  if (!c?.appKey) return t;
  return { ...t, appKey: c.appKey, appSecret: c.appSecret };
}

/**
 * `t` as a secret version: the app credentials stay what the secret already holds (the app secret
 * stays where the operator put it: a refresher never copies its own configuration into the secret).
 * Only a first version takes the pair's own.
 */
export function withPayloadCredentials(t: TokenSet, current: TokenSet | undefined): TokenSet {
  if (!current) return t;
  return { ...t, appKey: current.appKey, appSecret: current.appSecret };
}

/** Every string in a pair that must never be printed: hand to Logger.addSecret. */
export function secretsOf(t: TokenSet | undefined): string[] {
  return t ? [t.accessToken, t.refreshToken, t.appSecret ?? ''].filter(Boolean) : [];
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
