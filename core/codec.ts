/**
 * The flat JSON format shared by the bots' cache file and the Secret Manager payload
 * (docs/DESIGN.md "The bots' cache").
 * Bots' keys: access_token, refresh_token, token_expiry, app_key, app_secret (all strings).
 * Ours: refresh_token_expiry, issued_at, chain_started (ISO), generation (decimal string), source, pair_id, parent_id.
 * Unknown keys travel in TokenSet.extra and are written back verbatim.
 * Failure reasons name keys and problems only, never values (I5).
 *
 * pair_id binds our keys to the pair they describe: a bot that saves its own refresh into the
 * secret replaces only access_token, refresh_token and token_expiry and carries every other key of
 * the version it read, so our keys there describe the *previous* pair. A pair_id that does not
 * match the refresh token marks them as copied: they are dropped (a stale refresh_token_expiry
 * would say "login required" while the real refresh token lives; a copied generation would let an
 * older pair win), and the copied generation survives only as a floor for the next number.
 */
import { z } from 'zod/v3';
import { pairId, type TokenSet } from './token.js';

export type DecodeResult = { ok: true; token: TokenSet } | { ok: false; reason: string };

/** The encoded object: the three required keys are strings; everything else as written. */
export type FlatToken = { access_token: string; refresh_token: string; token_expiry: string } & Record<string, unknown>;

const KNOWN_KEYS = [
  'access_token',
  'refresh_token',
  'token_expiry',
  'app_key',
  'app_secret',
  'refresh_token_expiry',
  'issued_at',
  'generation',
  'source',
  'pair_id',
  'parent_id',
  'chain_started',
] as const;

export { pairId };

const optString = z.string().optional();
// zod/v3 (shipped inside zod 4): the same validation at ~1.5 MB of agent RSS instead of ~10 MB for
// the v4 API (docs/BENCHMARKS.md). Unknown keys pass through: they are preserved (docs/DESIGN.md "The bots' cache").
const flatSchema = z
  .object({
    access_token: z.string().min(1),
    refresh_token: z.string().min(1),
    token_expiry: z.string(),
    app_key: optString,
    app_secret: optString,
    refresh_token_expiry: optString,
    issued_at: optString,
    generation: z.union([z.number().int().nonnegative(), z.string().regex(/^\d{1,15}$/)]).optional(),
    source: optString,
    pair_id: optString,
    parent_id: optString,
    chain_started: optString,
  })
  .passthrough();

// Python's isoformat(): `YYYY-MM-DDTHH:MM:SS[.ffffff][±HH:MM]`; also `Z`, a space separator, no seconds.
const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:(Z|z)|([+-])(\d{2}):?(\d{2})(?::?(\d{2}))?)?$/;

/**
 * Parse an ISO 8601 instant into epoch ms. A naive value (no offset) is the process's LOCAL time,
 * because that is how the bots write `token_expiry`. Undefined for anything malformed or out of range.
 */
export function parseTimestamp(s: string): number | undefined {
  const m = ISO_RE.exec(s.trim());
  if (!m) return undefined;
  const [, ys, mos, ds, hs, mis, ss, frac, zulu, sign, ohs, oms, oss] = m;
  const y = Number(ys), mo = Number(mos), d = Number(ds), h = Number(hs), mi = Number(mis);
  const sec = ss === undefined ? 0 : Number(ss);
  const ms = frac === undefined ? 0 : Math.floor(Number(`0.${frac}`) * 1000);
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59) return undefined;
  // Day overflow (Feb 30) is caught by comparing against the UTC calendar.
  const utc = Date.UTC(y, mo - 1, d, h, mi, sec, ms);
  const check = new Date(utc);
  if (check.getUTCDate() !== d || check.getUTCMonth() !== mo - 1) return undefined;
  if (zulu) return utc;
  if (sign) {
    const oh = Number(ohs), om = Number(oms), os = oss === undefined ? 0 : Number(oss);
    if (oh > 23 || om > 59 || os > 59) return undefined;
    const off = (oh * 3600 + om * 60 + os) * 1000;
    return sign === '+' ? utc - off : utc + off;
  }
  const local = new Date(y, mo - 1, d, h, mi, sec, ms);
  if (y < 100) local.setFullYear(y); // Date() maps 0–99 to 19xx
  const t = local.getTime();
  return Number.isFinite(t) ? t : undefined;
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/**
 * UTC with an explicit `+00:00` offset, in the shape Python's isoformat() writes (microseconds only
 * when non-zero), so `datetime.fromisoformat` reads it on every Python 3.7+.
 */
export function formatTimestamp(ms: number): string {
  const d = new Date(ms);
  if (!Number.isFinite(d.getTime())) throw new RangeError('formatTimestamp: invalid instant');
  const base =
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  const milli = d.getUTCMilliseconds();
  return `${base}${milli ? '.' + pad(milli * 1000, 6) : ''}+00:00`;
}

/** A zod error as paths and issue codes only, never input values (I5). */
export function describeIssues(err: z.ZodError): string {
  // Paths and issue codes only: zod messages may echo input in future versions.
  return err.issues
    .slice(0, 5)
    .map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.code}`)
    .join('; ');
}

export function decodeFlat(input: unknown): DecodeResult {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { ok: false, reason: `expected a JSON object, got ${input === null ? 'null' : Array.isArray(input) ? 'array' : typeof input}` };
  }
  const parsed = flatSchema.safeParse(input);
  if (!parsed.success) return { ok: false, reason: `invalid token record (${describeIssues(parsed.error)})` };
  const v = parsed.data;

  const accessExpiresAt = parseTimestamp(v.token_expiry);
  if (accessExpiresAt === undefined) return { ok: false, reason: 'token_expiry is not an ISO 8601 timestamp' };
  const optTime = (key: 'refresh_token_expiry' | 'issued_at' | 'chain_started'): number | undefined | null => {
    const raw = v[key];
    if (raw === undefined) return undefined;
    return parseTimestamp(raw) ?? null;
  };
  const refreshExpiresAt = optTime('refresh_token_expiry');
  if (refreshExpiresAt === null) return { ok: false, reason: 'refresh_token_expiry is not an ISO 8601 timestamp' };
  const issuedAt = optTime('issued_at');
  if (issuedAt === null) return { ok: false, reason: 'issued_at is not an ISO 8601 timestamp' };
  // An unreadable chain start is only lost information, never a reason to refuse the pair.
  const chainStartedAt = optTime('chain_started') ?? undefined;

  const extra: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(input as Record<string, unknown>)) {
    if (!(KNOWN_KEYS as readonly string[]).includes(k)) extra[k] = val;
  }
  const generation = v.generation === undefined ? undefined : Number(v.generation);
  const copied = v.pair_id !== undefined && v.pair_id !== pairId(v.refresh_token);
  return {
    ok: true,
    token: {
      accessToken: v.access_token,
      refreshToken: v.refresh_token,
      accessExpiresAt,
      refreshExpiresAt: copied ? undefined : refreshExpiresAt,
      issuedAt: copied ? undefined : issuedAt,
      generation: copied ? undefined : generation,
      inheritedGeneration: copied ? generation : undefined,
      parentId: copied ? undefined : v.parent_id,
      chainStartedAt: copied ? undefined : chainStartedAt,
      source: copied ? undefined : v.source,
      appKey: v.app_key,
      appSecret: v.app_secret,
      extra,
    },
  };
}

/** JSON.parse + decodeFlat. The reason never quotes the text (it may hold a token). */
export function parseFlat(text: string): DecodeResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: `not valid JSON (${text.length} bytes)` };
  }
  return decodeFlat(value);
}

/**
 * Known fields first (ours win over a colliding `extra` key), then unknown keys verbatim.
 * app_key/app_secret and our optional fields are written only when known.
 */
export function encodeFlat(token: TokenSet): FlatToken {
  const out: FlatToken = {
    access_token: token.accessToken,
    refresh_token: token.refreshToken,
    token_expiry: formatTimestamp(token.accessExpiresAt),
  };
  if (token.appKey !== undefined) out.app_key = token.appKey;
  if (token.appSecret !== undefined) out.app_secret = token.appSecret;
  if (token.refreshExpiresAt !== undefined) out.refresh_token_expiry = formatTimestamp(token.refreshExpiresAt);
  if (token.issuedAt !== undefined) out.issued_at = formatTimestamp(token.issuedAt);
  if (token.generation !== undefined) out.generation = String(token.generation);
  if (token.source !== undefined) out.source = token.source;
  if (token.parentId !== undefined) out.parent_id = token.parentId;
  if (token.chainStartedAt !== undefined) out.chain_started = formatTimestamp(token.chainStartedAt);
  if (out.generation !== undefined || out.refresh_token_expiry !== undefined || out.issued_at !== undefined || out.source !== undefined || out.parent_id !== undefined) {
    out.pair_id = pairId(token.refreshToken);
  }
  for (const [k, v] of Object.entries(token.extra ?? {})) {
    if (!(k in out) && !(KNOWN_KEYS as readonly string[]).includes(k)) out[k] = v;
  }
  return out;
}

export function serializeFlat(token: TokenSet): string {
  return JSON.stringify(encodeFlat(token), null, 2);
}
