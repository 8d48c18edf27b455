/**
 * Saxo's /token endpoint as a TokenEndpoint, on plain node:http(s) (http.ts: `fetch` would cost the
 * agent ~10 MB of resident memory). Each call is one HTTP attempt;
 * retries are the refresh protocol's (core/refresh.ts).
 *
 * The request is the form POST Saxo documents (grant_type, the grant's fields, client_id and
 * client_secret in the body). The answer is handed back as it arrived: a 2xx — Saxo answers 201 —
 * is returned raw (status, content type, Retry-After, Date, body text) for the caller to make
 * durable before anything parses it (core/grant.ts); anything else becomes one classified
 * SaxoError (classify.ts). Nothing is rewritten: OAuth client libraries insist on a 200 with a
 * canonical body and would refuse the very answer that carries the successor. (openid-client stays
 * for the browser half of the login, core/saxo/authorize.ts.)
 */
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import { SaxoError } from '../errors.js';
import { pairOf } from '../grant.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { RawAnswer, RefreshOptions, TokenEndpoint } from '../ports.js';
import { classifyFailure, isSuccess } from './classify.js';
import { httpRequest } from './http.js';
import { attemptTimeout } from './retry.js';

/** Shortest attempt worth starting. */
const MIN_ATTEMPT_MS = 1000;

export interface SaxoClientOptions {
  authBaseUrl: string;
  /** Per-attempt timeout (SAXO_HTTP_TIMEOUT_SECONDS); clipped to each call's deadline. */
  httpTimeoutMs: number;
  clock?: Clock;
  logger?: Logger;
}

/** Plain HTTP is only acceptable towards this machine (stand-ins, the demo). */
export function isLoopbackHttp(base: URL): boolean {
  return base.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(base.hostname);
}

export function createSaxoClient(opts: SaxoClientOptions): TokenEndpoint {
  const base = new URL(opts.authBaseUrl.replace(/\/+$/, ''));
  if (base.protocol !== 'https:' && !isLoopbackHttp(base)) {
    throw new SaxoError('fatal', 'config', `Saxo auth base URL must be https (or http on loopback): ${base.origin}`);
  }
  const tokenUrl = `${base.href.replace(/\/+$/, '')}/token`;
  const clock = opts.clock ?? systemClock;
  const log = opts.logger ?? silentLogger;

  /** One POST; resolves with a 2xx as it arrived, throws one secret-free SaxoError otherwise. */
  async function post(what: string, form: Record<string, string>, ro: RefreshOptions, secrets: string[]): Promise<RawAnswer> {
    log.addSecret(...secrets);
    const timeoutMs = attemptTimeout(clock.now(), ro.deadline, opts.httpTimeoutMs);
    if (timeoutMs < Math.min(opts.httpTimeoutMs, MIN_ATTEMPT_MS)) {
      throw new SaxoError('retryable', 'deadline', `No time left before the deadline for a Saxo ${what} attempt`);
    }
    const body = new URLSearchParams({ ...form, client_id: ro.appKey, ...(ro.appSecret ? { client_secret: ro.appSecret } : {}) });
    const ctl = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctl.abort(new Error('timeout'));
    }, timeoutMs);
    let raw: RawAnswer;
    try {
      const res = await httpRequest(tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: body.toString(),
        signal: AbortSignal.any([ctl.signal, ...(ro.signal ? [ro.signal] : [])]),
      });
      raw = {
        status: res.status,
        contentType: res.header('content-type') ?? '',
        retryAfter: res.header('retry-after'),
        date: res.header('date'),
        text: res.text,
      };
    } catch (err) {
      if (ro.signal?.aborted) throw new SaxoError('retryable', 'aborted', 'Saxo request aborted by caller');
      if (timedOut) throw new SaxoError('retryable', 'timeout', `Saxo token endpoint did not answer within ${timeoutMs} ms`);
      throw new SaxoError('retryable', 'network', `Network error talking to Saxo: ${networkReason(err)}`);
    } finally {
      clearTimeout(timer);
    }
    if (!isSuccess(raw.status)) throw classifyFailure(raw, clock.now(), secrets);
    return raw;
  }

  return {
    async refresh(refreshToken, ro) {
      const secrets = [refreshToken, ro.appSecret ?? ''].filter(Boolean);
      const raw = await post('refresh', { grant_type: 'refresh_token', refresh_token: refreshToken }, ro, secrets);
      // Whatever the caller makes of it, nothing in it may reach a log.
      const t = /"(?:access|refresh)_token"\s*:\s*"([^"]+)"/g;
      for (const m of raw.text.matchAll(t)) if (m[1]) log.addSecret(m[1]);
      return raw;
    },
    async exchangeCode(code, codeVerifier, ro) {
      if (!ro.redirectUri) throw new SaxoError('fatal', 'config', 'exchangeCode needs redirectUri');
      const secrets = [code, codeVerifier, ro.appSecret ?? ''].filter(Boolean);
      const raw = await post('code exchange', { grant_type: 'authorization_code', code, redirect_uri: ro.redirectUri, code_verifier: codeVerifier }, ro, secrets);
      const res = pairOf(raw);
      log.addSecret(res.accessToken, res.refreshToken);
      return res;
    },
  };
}

/** A short, secret-free reason for a transport failure (error codes only, never URLs with bodies). */
function networkReason(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z_]+$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return err instanceof Error ? err.name : 'unknown';
}
