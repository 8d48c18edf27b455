/**
 * Saxo's /token endpoint as a TokenEndpoint, built on openid-client v6 without discovery. Each
 * call is one HTTP attempt; retries are the refresh protocol's (core/refresh.ts).
 *
 * openid-client builds and sends the request (client auth, form encoding); our customFetch sits
 * under it to (a) apply the per-attempt timeout, (b) record the raw answer, and (c) normalise
 * Saxo's 201 to the 200 openid-client insists on. Classification is ours (classify.ts), from the
 * raw answer, so every outcome maps to one SaxoError whatever openid-client thinks of it.
 * openid-client is loaded on the first request: a cloud-connected agent normally never refreshes,
 * and not loading it keeps ~6 MB out of its resident memory (docs/BENCHMARKS.md).
 */
import type * as Oidc from 'openid-client';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import { SaxoError } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { RefreshOptions, TokenEndpoint } from '../ports.js';
import type { TokenResponse } from '../token.js';
import { classifyResponse, parseTokenBody, tryJson, type RawResponse } from './classify.js';
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

type OidcModule = typeof Oidc;
let oidcModule: Promise<OidcModule> | undefined;
const loadOidc = (): Promise<OidcModule> => (oidcModule ??= import('openid-client'));

/** Plain HTTP is only acceptable towards this machine (stand-ins, the demo). */
export function isLoopbackHttp(base: URL): boolean {
  return base.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(base.hostname);
}

export function createSaxoClient(opts: SaxoClientOptions): TokenEndpoint {
  const base = new URL(opts.authBaseUrl.replace(/\/+$/, ''));
  if (base.protocol !== 'https:' && !isLoopbackHttp(base)) {
    throw new SaxoError('fatal', 'config', `Saxo auth base URL must be https (or http on loopback): ${base.origin}`);
  }
  const baseStr = base.href.replace(/\/+$/, '');
  const server: Oidc.ServerMetadata = {
    issuer: baseStr,
    token_endpoint: `${baseStr}/token`,
    authorization_endpoint: `${baseStr}/authorize`,
  };
  const clock = opts.clock ?? systemClock;
  const log = opts.logger ?? silentLogger;

  /** One HTTP attempt. Resolves to the validated response or throws a SaxoError. */
  async function attempt(
    grant: (oidc: OidcModule, config: Oidc.Configuration) => Promise<unknown>,
    ro: RefreshOptions,
    timeoutMs: number,
    secrets: string[],
  ): Promise<TokenResponse> {
    const oidc = await loadOidc();
    let raw: RawResponse | undefined;
    let timedOut = false;
    const config = new oidc.Configuration(
      server,
      ro.appKey,
      ro.appSecret ? { client_secret: ro.appSecret } : undefined,
      ro.appSecret ? oidc.ClientSecretPost(ro.appSecret) : oidc.None(),
    );
    if (isLoopbackHttp(base)) oidc.allowInsecureRequests(config);
    // openid-client's own timeout is seconds-granular; ours (below) is the one that matters.
    config.timeout = Math.ceil(timeoutMs / 1000) + 5;
    config[oidc.customFetch] = async (url, init) => {
      const ctl = new AbortController();
      const timer = setTimeout(() => {
        timedOut = true;
        ctl.abort(new Error('timeout'));
      }, timeoutMs);
      const signals = [ctl.signal, ...(ro.signal ? [ro.signal] : [])];
      try {
        const res = await fetch(url, { ...init, signal: AbortSignal.any(signals) } as RequestInit);
        const text = await res.text();
        raw = {
          status: res.status,
          contentType: res.headers.get('content-type') ?? '',
          retryAfter: res.headers.get('retry-after'),
          date: res.headers.get('date'),
          text,
        };
        const headers = new Headers(res.headers);
        headers.delete('content-length');
        headers.delete('content-encoding');
        if (res.status === 200 || res.status === 201) {
          // Hand openid-client a canonical body so its stricter checks (token_type, numeric
          // expires_in, content-type) agree with ours.
          const parsed = parseTokenBody(tryJson(text));
          if (parsed) {
            headers.set('content-type', 'application/json');
            return new Response(JSON.stringify({ ...(tryJson(text) as object), token_type: parsed.tokenType, expires_in: parsed.expiresIn }), { status: 200, headers });
          }
          return new Response(text, { status: 200, headers });
        }
        return new Response(text, { status: res.status, headers });
      } finally {
        clearTimeout(timer);
      }
    };

    try {
      await grant(oidc, config);
    } catch (err) {
      if (raw) {
        const r = classifyResponse(raw, clock.now(), secrets);
        if (r instanceof SaxoError) throw r;
        // openid-client refused a body we accept: ours is the contract.
        return r;
      }
      if (ro.signal?.aborted) throw new SaxoError('retryable', 'aborted', 'Saxo request aborted by caller');
      if (timedOut) throw new SaxoError('retryable', 'timeout', `Saxo token endpoint did not answer within ${timeoutMs} ms`);
      throw new SaxoError('retryable', 'network', `Network error talking to Saxo: ${networkReason(err)}`);
    }
    if (!raw) throw new SaxoError('fatal', 'internal', 'openid-client returned without a response');
    const r = classifyResponse(raw, clock.now(), secrets);
    if (r instanceof SaxoError) throw r;
    return r;
  }

  /** One attempt, its timeout clipped to the deadline; every failure is one secret-free SaxoError. */
  async function run(
    what: string,
    grant: (oidc: OidcModule, config: Oidc.Configuration) => Promise<unknown>,
    ro: RefreshOptions,
    secrets: string[],
  ): Promise<TokenResponse> {
    log.addSecret(...secrets);
    const timeoutMs = attemptTimeout(clock.now(), ro.deadline, opts.httpTimeoutMs);
    if (timeoutMs < Math.min(opts.httpTimeoutMs, MIN_ATTEMPT_MS)) {
      throw new SaxoError('retryable', 'deadline', `No time left before the deadline for a Saxo ${what} attempt`);
    }
    try {
      const res = await attempt(grant, ro, timeoutMs, secrets);
      log.addSecret(res.accessToken, res.refreshToken);
      return res;
    } catch (err) {
      if (err instanceof SaxoError) throw err;
      if (ro.signal?.aborted) throw new SaxoError('retryable', 'aborted', 'Saxo request aborted by caller');
      throw new SaxoError('retryable', 'internal', `Unexpected failure during Saxo ${what}`);
    }
  }

  return {
    refresh(refreshToken, ro) {
      const secrets = [refreshToken, ro.appSecret ?? ''].filter(Boolean);
      return run('refresh', (oidc, config) => oidc.refreshTokenGrant(config, refreshToken), ro, secrets);
    },
    exchangeCode(code, codeVerifier, ro) {
      if (!ro.redirectUri) {
        return Promise.reject(new SaxoError('fatal', 'config', 'exchangeCode needs redirectUri'));
      }
      const redirectUri = ro.redirectUri;
      const secrets = [code, codeVerifier, ro.appSecret ?? ''].filter(Boolean);
      return run(
        'code exchange',
        (oidc, config) =>
          oidc.genericGrantRequest(config, 'authorization_code', { code, redirect_uri: redirectUri, code_verifier: codeVerifier }),
        ro,
        secrets,
      );
    },
  };
}


/** A short, secret-free reason for a fetch failure (error codes only, never URLs with bodies). */
function networkReason(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z_]+$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return err instanceof Error ? err.name : 'unknown';
}
