/**
 * Turns one raw answer from Saxo's /token endpoint into a TokenResponse or a classified SaxoError.
 * Error messages carry only the status, a short sanitised `error`/`error_description` and a summary
 * of non-JSON bodies — never the request or the body itself (I5).
 */
import { z } from 'zod/v3';
import { SaxoError } from '../errors.js';
import type { TokenResponse } from '../token.js';

/** What the fetch layer saw; the body is read once, here, as text. */
export interface RawResponse {
  status: number;
  contentType: string;
  retryAfter: string | null;
  /** The HTTP `Date` header: the server's clock, for expiries (docs/DESIGN.md "Server time"). */
  date?: string | null | undefined;
  text: string;
}

const positiveNumber = z.union([
  z.number(),
  z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?$/)
    .transform(Number),
]).pipe(z.number().finite().positive());

const tokenBodySchema = z.object({
  access_token: z.string().min(1),
  refresh_token: z.string().min(1),
  expires_in: positiveNumber,
  refresh_token_expires_in: positiveNumber.optional(),
  token_type: z.string().min(1).default('Bearer'),
});

/** Parse a success body; undefined when it does not have the shape Saxo promises. */
export function parseTokenBody(body: unknown): TokenResponse | undefined {
  const r = tokenBodySchema.safeParse(body);
  if (!r.success) return undefined;
  return {
    accessToken: r.data.access_token,
    refreshToken: r.data.refresh_token,
    tokenType: r.data.token_type,
    expiresIn: r.data.expires_in,
    refreshExpiresIn: r.data.refresh_token_expires_in,
  };
}

/** Keep a server-provided string short and free of anything token-like. */
function sanitize(s: unknown, secrets: readonly string[] = [], max = 120): string | undefined {
  if (typeof s !== 'string' || s === '') return undefined;
  let out = s;
  for (const v of secrets) if (v && v.length >= 4) out = out.split(v).join('[REDACTED]');
  // Long opaque runs look like tokens whatever their origin.
  out = out.replace(/[A-Za-z0-9._~+/=-]{24,}/g, '[REDACTED]');
  out = out.replace(/[^\w .,:;'()[\]/-]/g, '');
  return out.length > max ? out.slice(0, max) + '…' : out;
}

/** Retry-After: delta-seconds or an HTTP date → seconds (≥ 0), undefined when absent/unparseable. */
function parseRetryAfter(v: string | null, now: number): number | undefined {
  if (v === null || v.trim() === '') return undefined;
  const t = v.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const at = Date.parse(t);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

const FATAL_OAUTH = new Set(['invalid_grant', 'invalid_client', 'unauthorized_client', 'invalid_request', 'unsupported_grant_type', 'invalid_scope', 'access_denied']);

/** JSON.parse that answers undefined instead of throwing. */
export function tryJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function summarize(raw: RawResponse): string {
  const type = raw.contentType.split(';')[0]?.trim() || 'no content-type';
  return `non-JSON ${raw.status} body (${type}, ${Buffer.byteLength(raw.text)} bytes)`;
}

/** Classify one complete HTTP answer. `secrets` are scrubbed from anything echoed. */
export function classifyResponse(raw: RawResponse, now: number, secrets: readonly string[] = []): TokenResponse | SaxoError {
  const json = tryJson(raw.text);
  const isObject = typeof json === 'object' && json !== null && !Array.isArray(json);
  const retryAfter = parseRetryAfter(raw.retryAfter, now);

  if (raw.status === 200 || raw.status === 201) {
    const ok = isObject ? parseTokenBody(json) : undefined;
    if (ok) return raw.date ? { ...ok, serverDate: raw.date } : ok;
    const what = isObject ? 'malformed token response (missing or invalid fields)' : `malformed token response: ${summarize(raw)}`;
    return new SaxoError('fatal', 'malformed_response', `Saxo ${raw.status}: ${what}`, raw.status);
  }

  const body = isObject ? (json as Record<string, unknown>) : undefined;
  const code = sanitize(body?.error, secrets, 40)?.replace(/[^\w-]/g, '');
  const desc = sanitize(body?.error_description, secrets);
  const detail = body ? `${code ?? 'no error code'}${desc ? `: ${desc}` : ''}` : summarize(raw);
  const msg = `Saxo token endpoint answered ${raw.status}: ${detail}`;

  if (raw.status === 429) return new SaxoError('retryable', 'http_429', msg, 429, retryAfter);
  if (raw.status >= 500) return new SaxoError('retryable', code || `http_${raw.status}`, msg, raw.status, retryAfter);
  // Non-JSON bodies come from proxies and load balancers, not from the OAuth server's decision.
  if (!body) return new SaxoError('retryable', `http_${raw.status}`, msg, raw.status, retryAfter);
  if (code && FATAL_OAUTH.has(code)) return new SaxoError('fatal', code, msg, raw.status);
  return new SaxoError('fatal', code || `http_${raw.status}`, msg, raw.status);
}
