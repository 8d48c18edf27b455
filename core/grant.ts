/**
 * The one reading of a 2xx from Saxo's token endpoint, shared by the agent and the function
 * (docs/DESIGN.md "Durable before interpreted"). The rule: any 2xx consumed the presented refresh
 * token. If it carries a refresh token, that is the successor and it is kept whatever else is odd
 * about the answer — lifetimes that are negative, zero, non-numeric or missing get a conservative
 * default and a WARNING naming the field; absurdly large ones are bounded (token.ts saneLifetimes).
 * Without a refresh token (or without a JSON body at all) the chain has ended: a login is needed.
 * Pure: no IO, no clock.
 */
import { SaxoError } from './errors.js';
import { sanitize, summarize, tryJson } from './saxo/classify.js';
import type { JournalEntry, RawAnswer } from './ports.js';
import { issueTime } from './server-time.js';
import { fromResponse, pairId, saneLifetimes, type TokenResponse, type TokenSet } from './token.js';

/**
 * Defaults for a lifetime Saxo did not state usably. Too short is safe, too long kills the chain:
 * - access: 600 s, half of Saxo's documented 1200 s — the pair is refreshed early (every tier's
 *   threshold is ≤ 600 s), never after the real access token died;
 * - refresh: 3600 s, Saxo's documented life. Shorter would be the dangerous side here: decide()
 *   never presents a refresh token it believes dead, so an underestimate declares a live chain
 *   dead after a pause; an overestimate costs at most one invalid_grant, and the access default
 *   brings the next refresh long before either.
 */
export const DEFAULT_ACCESS_LIFE_SEC = 600;
export const DEFAULT_REFRESH_LIFE_SEC = 3600;

export type Grant =
  /** The successor. Lifetimes are usable and bounded; `adjusted` names every field that was not (for a WARNING). */
  | { kind: 'pair'; response: TokenResponse; adjusted: string[] }
  /** A 2xx without a refresh token: the presented one is consumed and nothing follows it. */
  | { kind: 'no_refresh_token'; accessToken?: string | undefined; expiresIn?: number | undefined; why: string };

/** A positive finite number of seconds, or undefined (negative, zero, "1200 seconds", missing, …). */
function seconds(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) : NaN;
  return Number.isNaN(n) || n <= 0 ? undefined : n;
}

function shown(v: unknown): string {
  if (v === undefined) return 'missing';
  if (typeof v === 'number') return String(v);
  return JSON.stringify(sanitize(String(v), [], 24) ?? '');
}

/** Read one 2xx answer. Never throws. */
export function interpretGrant(raw: Pick<RawAnswer, 'status' | 'contentType' | 'text'>): Grant {
  const json = tryJson(raw.text);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { kind: 'no_refresh_token', why: `Saxo answered ${raw.status} with a ${summarize(raw)}` };
  }
  const body = json as Record<string, unknown>;
  const accessToken = typeof body.access_token === 'string' && body.access_token !== '' ? body.access_token : undefined;
  const adjusted: string[] = [];
  let expiresIn = seconds(body.expires_in);
  if (expiresIn === undefined) {
    adjusted.push(`expires_in=${shown(body.expires_in)} → ${DEFAULT_ACCESS_LIFE_SEC} (default)`);
    expiresIn = DEFAULT_ACCESS_LIFE_SEC;
  }
  if (typeof body.refresh_token !== 'string' || body.refresh_token === '') {
    return { kind: 'no_refresh_token', accessToken, expiresIn, why: `Saxo answered ${raw.status} without a refresh_token` };
  }
  let refreshExpiresIn = seconds(body.refresh_token_expires_in);
  if (refreshExpiresIn === undefined) {
    adjusted.push(`refresh_token_expires_in=${shown(body.refresh_token_expires_in)} → ${DEFAULT_REFRESH_LIFE_SEC} (default)`);
    refreshExpiresIn = DEFAULT_REFRESH_LIFE_SEC;
  }
  const life = saneLifetimes({ expiresIn, refreshExpiresIn });
  return {
    kind: 'pair',
    response: {
      // A successor without an access token still continues the chain: stored as already expired
      // (the bots' format needs some text), so the next refresh is due at once.
      accessToken: accessToken ?? 'none',
      refreshToken: body.refresh_token,
      tokenType: typeof body.token_type === 'string' && body.token_type ? body.token_type : 'Bearer',
      expiresIn: accessToken ? life.expiresIn : 0,
      refreshExpiresIn: life.refreshExpiresIn,
    },
    adjusted: [...adjusted, ...life.clamped, ...(accessToken ? [] : ['access_token=missing → due now'])],
  };
}

export type Successor =
  | { kind: 'pair'; next: TokenSet; adjusted: string[]; lifetimeSec: number }
  /** `kept`: the presented pair with the new access token (its refresh token is consumed), when the answer had one. */
  | { kind: 'ended'; why: string; kept?: TokenSet | undefined };

/**
 * What a journaled answer leaves behind: the successor of the presented pair, or the end of the
 * chain. `presented` is the pair that was presented when this process still holds it (it lends
 * credentials and unknown keys); after a restart it may be gone, and the entry's own record of it
 * (its tag, generation and chain start) keeps the successor ordered above it.
 */
export function successorFrom(entry: JournalEntry, presented: TokenSet | undefined, source: string, marginMs: number): Successor {
  const g = interpretGrant(entry.raw);
  if (g.kind === 'no_refresh_token') {
    // Keep the access token for the bots until a login: same pair otherwise (nothing follows it).
    const life = g.accessToken && presented ? fromResponse({ accessToken: g.accessToken, refreshToken: presented.refreshToken, tokenType: 'Bearer', expiresIn: g.expiresIn ?? 0 }, issuedAtOf(entry), presented, source, marginMs) : undefined;
    const kept = life && presented ? { ...presented, accessToken: life.accessToken, accessExpiresAt: life.accessExpiresAt } : undefined;
    return { kind: 'ended', why: g.why, kept };
  }
  const parent = presented && pairId(presented.refreshToken) === entry.presented.pairId ? presented : undefined;
  // Expiries count from Saxo's clock (docs/DESIGN.md "Server time"), fixed when the answer arrived.
  let next = fromResponse(g.response, issuedAtOf(entry), parent, source, marginMs);
  if (!parent) {
    const gen = entry.presented.generation;
    next = { ...next, generation: gen !== undefined ? gen + 1 : undefined, parentId: entry.presented.pairId, chainStartedAt: entry.presented.chainStartedAt };
  }
  return { kind: 'pair', next, adjusted: g.adjusted, lifetimeSec: g.response.expiresIn };
}

/**
 * The issue instant of a journaled answer: as fixed at receipt (server time), else the answer's own
 * Date header (an entry written without one), else the local arrival time.
 */
export function issuedAtOf(entry: JournalEntry): number {
  if (entry.issuedAt !== undefined && Number.isFinite(entry.issuedAt)) return entry.issuedAt;
  return issueTime({ sentAt: entry.at, receivedAt: entry.at, serverDate: entry.raw.date }).issuedAt;
}

/** The journal entry for an answer to presenting `presented`; `issuedAt` on Saxo's clock (server-time.ts). */
export function journalEntry(raw: RawAnswer, presented: TokenSet, at: number, issuedAt?: number): JournalEntry {
  return {
    v: 1,
    at,
    ...(issuedAt !== undefined ? { issuedAt } : {}),
    presented: { pairId: pairId(presented.refreshToken), generation: presented.generation, chainStartedAt: presented.chainStartedAt },
    raw,
  };
}

/**
 * The pair a 2xx carries, read by the one interpreter (core/grant.ts); a 2xx without a refresh
 * token is a SaxoError here. For callers that are not a chain (the login's code exchange, tools).
 */
export function pairOf(raw: RawAnswer): TokenResponse {
  const g = interpretGrant(raw);
  if (g.kind === 'pair') return g.response;
  throw new SaxoError('fatal', 'malformed_response', `Saxo ${raw.status}: ${g.why}`, raw.status);
}
