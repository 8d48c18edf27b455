/**
 * Turns one non-2xx answer from Saxo's /token endpoint into a classified SaxoError. (A 2xx is not
 * judged here: it may carry the successor, so it is kept durably first and read by core/grant.ts.)
 * Error messages carry only the status, a short sanitised `error`/`error_description` and a summary
 * of non-JSON bodies — never the request or the body itself (I5).
 */
import { SaxoError } from '../errors.js';
import type { RawAnswer } from '../ports.js';

/** What the fetch layer saw; the body is read once, as text. */
export type RawResponse = RawAnswer;

/** Keep a server-provided string short and free of anything token-like. */
export function sanitize(s: unknown, secrets: readonly string[] = [], max = 120): string | undefined {
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

export function summarize(raw: Pick<RawResponse, 'status' | 'contentType' | 'text'>): string {
  const type = raw.contentType.split(';')[0]?.trim() || 'no content-type';
  return `non-JSON ${raw.status} body (${type}, ${Buffer.byteLength(raw.text)} bytes)`;
}

/** Is this answer a 2xx (it may carry a successor: never classified as a failure)? */
export function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

/** Classify one complete non-2xx HTTP answer. `secrets` are scrubbed from anything echoed. */
export function classifyFailure(raw: RawResponse, now: number, secrets: readonly string[] = []): SaxoError {
  const json = tryJson(raw.text);
  const isObject = typeof json === 'object' && json !== null && !Array.isArray(json);
  const retryAfter = parseRetryAfter(raw.retryAfter, now);

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
