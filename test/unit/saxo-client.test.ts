import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../core/clock.js';
import { SaxoError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { createSaxoClient } from '../../core/saxo/client.js';
import { buildAuthorizationUrl, createPkce, pkceChallenge, randomState } from '../../core/saxo/authorize.js';

const BASE = 'https://sim.logonvalidation.test';
const REFRESH = 'rt-SECRET-0123456789abcdefghijklmnopqrstuvwxyz';
const ACCESS = 'at-SECRET-zyxwvutsrqponmlkjihgfedcba9876543210';
const NEW_REFRESH = 'rt-NEW-SECRET-abcdefghijklmnopqrstuvwxyz012345';
const APP_SECRET = 'app-SECRET-s3cr3t-value-9f8e7d6c';
const APP_KEY = 'app-key-123';
const SECRETS = [REFRESH, ACCESS, NEW_REFRESH, APP_SECRET];

const okBody = { access_token: ACCESS, token_type: 'Bearer', expires_in: 1200, refresh_token: NEW_REFRESH, refresh_token_expires_in: 3600 };

/** Sleeps complete instantly but advance time, so backoff is observable without waiting. */
function fakeClock(start = 1_700_000_000_000): Clock & { sleeps: number[] } {
  let now = start;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    sleep: async (ms, signal) => {
      if (signal?.aborted) throw signal.reason;
      sleeps.push(ms);
      now += ms;
    },
  };
}

function client(extra: Partial<Parameters<typeof createSaxoClient>[0]> = {}) {
  const clock = fakeClock();
  const c = createSaxoClient({ authBaseUrl: BASE, httpTimeoutMs: 300, clock, random: () => 0.5, maxAttempts: 1, ...extra });
  return { c, clock };
}

const opts = (clock: Clock, extra: object = {}) => ({ deadline: clock.now() + 60_000, appKey: APP_KEY, appSecret: APP_SECRET, ...extra });

async function refreshError(setup: (scope: nock.Interceptor) => void, maxAttempts = 1): Promise<SaxoError> {
  setup(nock(BASE).post('/token'));
  const { c, clock } = client({ maxAttempts });
  const err = await c.refresh(REFRESH, opts(clock)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SaxoError);
  return err as SaxoError;
}

beforeAll(() => nock.disableNetConnect());
afterEach(() => nock.cleanAll());
afterAll(() => nock.enableNetConnect());

describe('saxo client: success', () => {
  it.each([200, 201])('accepts %i and returns the validated pair, sending credentials in the form body', async (status) => {
    let form: URLSearchParams | undefined;
    nock(BASE)
      .post('/token', (b: string | Record<string, string>) => {
        form = new URLSearchParams(b as Record<string, string>);
        return true;
      })
      .reply(status, okBody);
    const { c, clock } = client();
    const res = await c.refresh(REFRESH, opts(clock));
    expect(res).toEqual({ accessToken: ACCESS, refreshToken: NEW_REFRESH, tokenType: 'Bearer', expiresIn: 1200, refreshExpiresIn: 3600 });
    expect(form?.get('grant_type')).toBe('refresh_token');
    expect(form?.get('refresh_token')).toBe(REFRESH);
    expect(form?.get('client_id')).toBe(APP_KEY);
    expect(form?.get('client_secret')).toBe(APP_SECRET);
  });

  it('accepts numeric-string expires_in and defaults token_type; PKCE apps send no secret', async () => {
    let form: URLSearchParams | undefined;
    nock(BASE)
      .post('/token', (b: Record<string, string>) => ((form = new URLSearchParams(b)), true))
      .reply(201, { access_token: ACCESS, refresh_token: NEW_REFRESH, expires_in: '1070' });
    const { c, clock } = client();
    const res = await c.refresh(REFRESH, { deadline: clock.now() + 60_000, appKey: APP_KEY });
    expect(res.expiresIn).toBe(1070);
    expect(res.tokenType).toBe('Bearer');
    expect(res.refreshExpiresIn).toBeUndefined();
    expect(form?.has('client_secret')).toBe(false);
    expect(form?.get('client_id')).toBe(APP_KEY);
  });

  it('exchangeCode sends code, redirect_uri and code_verifier', async () => {
    let form: URLSearchParams | undefined;
    nock(BASE)
      .post('/token', (b: Record<string, string>) => ((form = new URLSearchParams(b)), true))
      .reply(201, okBody);
    const { c, clock } = client();
    const res = await c.exchangeCode('the-code', 'the-verifier-abcdefghijklmnopqrstuvwxyz0123456', opts(clock, { redirectUri: 'http://localhost:8080/callback' }));
    expect(res.refreshToken).toBe(NEW_REFRESH);
    expect(form?.get('grant_type')).toBe('authorization_code');
    expect(form?.get('code')).toBe('the-code');
    expect(form?.get('redirect_uri')).toBe('http://localhost:8080/callback');
    expect(form?.get('code_verifier')).toBe('the-verifier-abcdefghijklmnopqrstuvwxyz0123456');
  });

  it('exchangeCode without redirectUri is a fatal config error and sends nothing', async () => {
    const { c, clock } = client();
    await expect(c.exchangeCode('code', 'verifier', opts(clock))).rejects.toMatchObject({ kind: 'fatal', code: 'config' });
  });

  it('refuses plain http except on loopback', () => {
    expect(() => createSaxoClient({ authBaseUrl: 'http://sim.example.com', httpTimeoutMs: 1000 })).toThrow(SaxoError);
    expect(() => createSaxoClient({ authBaseUrl: 'http://127.0.0.1:1234/', httpTimeoutMs: 1000 })).not.toThrow();
    expect(() => createSaxoClient({ authBaseUrl: 'http://localhost:1234', httpTimeoutMs: 1000 })).not.toThrow();
  });
});

const html = '<html><body><h1>503 Service Unavailable</h1>' + 'x'.repeat(1000) + '</body></html>';

type Case = { name: string; setup: (i: nock.Interceptor) => void; kind: 'retryable' | 'fatal'; code: string; status?: number; retryAfter?: number; msg?: RegExp };
const matrix: Case[] = [
  { name: 'invalid_grant 400', setup: (i) => i.reply(400, { error: 'invalid_grant', error_description: `token ${REFRESH} already used` }), kind: 'fatal', code: 'invalid_grant', status: 400 },
  { name: 'invalid_grant 401 (as Saxo sometimes does)', setup: (i) => i.reply(401, { error: 'invalid_grant' }), kind: 'fatal', code: 'invalid_grant', status: 401 },
  { name: 'invalid_client 401', setup: (i) => i.reply(401, { error: 'invalid_client', error_description: `bad secret ${APP_SECRET}` }), kind: 'fatal', code: 'invalid_client', status: 401 },
  { name: 'unauthorized_client 400', setup: (i) => i.reply(400, { error: 'unauthorized_client' }), kind: 'fatal', code: 'unauthorized_client', status: 400 },
  { name: 'other OAuth 4xx', setup: (i) => i.reply(400, { error: 'invalid_request', error_description: 'missing grant' }), kind: 'fatal', code: 'invalid_request', status: 400, msg: /missing grant/ },
  { name: 'JSON 500', setup: (i) => i.reply(500, { error: 'server_error' }), kind: 'retryable', code: 'server_error', status: 500 },
  { name: 'JSON 502 without error', setup: (i) => i.reply(502, { message: 'bad gateway' }), kind: 'retryable', code: 'http_502', status: 502 },
  { name: 'JSON 503', setup: (i) => i.reply(503, { error: 'temporarily_unavailable' }), kind: 'retryable', code: 'temporarily_unavailable', status: 503 },
  { name: 'HTML 500', setup: (i) => i.reply(500, html, { 'content-type': 'text/html' }), kind: 'retryable', code: 'http_500', status: 500, msg: /non-JSON 500 body \(text\/html, \d+ bytes\)/ },
  { name: 'HTML 502', setup: (i) => i.reply(502, html, { 'content-type': 'text/html' }), kind: 'retryable', code: 'http_502', status: 502, msg: /non-JSON 502 body/ },
  { name: 'HTML 503', setup: (i) => i.reply(503, html, { 'content-type': 'text/html; charset=utf-8' }), kind: 'retryable', code: 'http_503', status: 503, msg: /non-JSON 503 body \(text\/html, 10\d\d bytes\)/ },
  { name: '429 with Retry-After', setup: (i) => i.reply(429, { error: 'rate_limited' }, { 'Retry-After': '7' }), kind: 'retryable', code: 'http_429', status: 429, retryAfter: 7 },
  { name: 'bare-text 429 without Retry-After', setup: (i) => i.reply(429, 'Too Many Requests', { 'content-type': 'text/plain' }), kind: 'retryable', code: 'http_429', status: 429, msg: /non-JSON 429 body \(text\/plain/ },
  { name: 'bare text 400 from a proxy', setup: (i) => i.reply(400, 'Bad Request'), kind: 'retryable', code: 'http_400', status: 400 },
  { name: 'connection refused', setup: (i) => i.replyWithError({ code: 'ECONNREFUSED', message: `connect ECONNREFUSED ${REFRESH}` }), kind: 'retryable', code: 'network', msg: /ECONNREFUSED/ },
  { name: 'connection reset', setup: (i) => i.replyWithError({ code: 'ECONNRESET', message: 'socket hang up' }), kind: 'retryable', code: 'network', msg: /ECONNRESET/ },
  { name: 'timeout (delayed reply)', setup: (i) => i.delay(2000).reply(200, okBody), kind: 'retryable', code: 'timeout', msg: /within 300 ms/ },
  { name: 'malformed success: missing access_token', setup: (i) => i.reply(201, { refresh_token: NEW_REFRESH, expires_in: 1200 }), kind: 'fatal', code: 'malformed_response', status: 201 },
  { name: 'malformed success: missing refresh_token', setup: (i) => i.reply(200, { access_token: ACCESS, expires_in: 1200 }), kind: 'fatal', code: 'malformed_response', status: 200 },
  { name: 'malformed success: non-numeric expires_in', setup: (i) => i.reply(201, { ...okBody, expires_in: 'soon' }), kind: 'fatal', code: 'malformed_response' },
  { name: 'malformed success: negative expires_in', setup: (i) => i.reply(200, { ...okBody, expires_in: -5 }), kind: 'fatal', code: 'malformed_response' },
  { name: 'malformed success: HTML 200', setup: (i) => i.reply(200, html, { 'content-type': 'text/html' }), kind: 'fatal', code: 'malformed_response', msg: /non-JSON 200 body/ },
];

describe('saxo client: classification matrix', () => {
  const messages: string[] = [];
  afterAll(() => {
    // The whole matrix ran and no message leaked a secret (I5).
    expect(messages).toHaveLength(matrix.length);
    for (const m of messages) for (const s of SECRETS) expect(m).not.toContain(s);
  });

  it.each(matrix)('$name → $kind/$code', async (c) => {
    const err = await refreshError(c.setup);
    messages.push([err.message, String(err), JSON.stringify(err), err.stack ?? ''].join('\n'));
    expect(err.kind).toBe(c.kind);
    expect(err.code).toBe(c.code);
    if (c.status !== undefined) expect(err.status).toBe(c.status);
    if (c.retryAfter !== undefined) expect(err.retryAfter).toBe(c.retryAfter);
    if (c.msg) expect(err.message).toMatch(c.msg);
    for (const s of SECRETS) expect(err.message).not.toContain(s);
  });
});

describe('saxo client: retries', () => {
  it('retries retryable errors with backoff, then succeeds', async () => {
    const scope = nock(BASE)
      .post('/token').reply(503, html, { 'content-type': 'text/html' })
      .post('/token').replyWithError({ code: 'ECONNRESET', message: 'reset' })
      .post('/token').reply(201, okBody);
    const { c, clock } = client({ maxAttempts: 4 });
    const res = await c.refresh(REFRESH, opts(clock));
    expect(res.refreshToken).toBe(NEW_REFRESH);
    expect(scope.isDone()).toBe(true);
    // random 0.5: half of 500, half of 1000.
    expect(clock.sleeps).toEqual([250, 500]);
  });

  it('gives up after maxAttempts and rethrows the last error', async () => {
    const scope = nock(BASE).post('/token').times(3).reply(500, { error: 'server_error' });
    const { c, clock } = client({ maxAttempts: 3 });
    await expect(c.refresh(REFRESH, opts(clock))).rejects.toMatchObject({ kind: 'retryable', code: 'server_error' });
    expect(scope.isDone()).toBe(true);
    expect(clock.sleeps).toHaveLength(2);
  });

  it.each(['invalid_grant', 'invalid_client'])('does not retry fatal %s', async (error) => {
    nock(BASE).post('/token').reply(400, { error }).post('/token').reply(201, okBody);
    const { c, clock } = client({ maxAttempts: 4 });
    await expect(c.refresh(REFRESH, opts(clock))).rejects.toMatchObject({ kind: 'fatal', code: error });
    expect(nock.pendingMocks()).toHaveLength(1); // the success was never asked for
    expect(clock.sleeps).toEqual([]);
  });

  it('does not retry a malformed success body', async () => {
    nock(BASE).post('/token').reply(201, { access_token: ACCESS }).post('/token').reply(201, okBody);
    const { c, clock } = client({ maxAttempts: 4 });
    await expect(c.refresh(REFRESH, opts(clock))).rejects.toMatchObject({ code: 'malformed_response' });
    expect(nock.pendingMocks()).toHaveLength(1);
  });

  it('honours Retry-After when longer than the backoff', async () => {
    nock(BASE).post('/token').reply(429, 'slow down', { 'Retry-After': '12' }).post('/token').reply(201, okBody);
    const { c, clock } = client({ maxAttempts: 4 });
    await c.refresh(REFRESH, opts(clock));
    expect(clock.sleeps).toEqual([12_000]);
  });

  it('never sleeps or starts an attempt that would end after the deadline', async () => {
    nock(BASE).post('/token').reply(429, 'slow down', { 'Retry-After': '30' }).post('/token').reply(201, okBody);
    const { c, clock } = client({ maxAttempts: 4 });
    await expect(c.refresh(REFRESH, opts(clock, { deadline: clock.now() + 20_000 }))).rejects.toMatchObject({ code: 'http_429' });
    expect(clock.sleeps).toEqual([]);
    expect(nock.pendingMocks()).toHaveLength(1);
  });

  it('starts no attempt when the deadline has passed', async () => {
    const scope = nock(BASE).post('/token').reply(201, okBody);
    const { c, clock } = client({ maxAttempts: 4 });
    await expect(c.refresh(REFRESH, opts(clock, { deadline: clock.now() - 1 }))).rejects.toMatchObject({ kind: 'retryable', code: 'deadline' });
    expect(scope.isDone()).toBe(false);
  });

  it('stops when the caller aborts', async () => {
    nock(BASE).post('/token').reply(503, 'down').post('/token').reply(201, okBody);
    const ctl = new AbortController();
    const clock = fakeClock();
    const sleep = clock.sleep;
    clock.sleep = (ms, signal) => {
      ctl.abort(new Error('shutdown'));
      return sleep(ms, signal);
    };
    const c = createSaxoClient({ authBaseUrl: BASE, httpTimeoutMs: 300, clock, random: () => 0.5 });
    await expect(c.refresh(REFRESH, opts(clock, { signal: ctl.signal }))).rejects.toMatchObject({ code: 'aborted' });
    expect(nock.pendingMocks()).toHaveLength(1);
  });

  it('logs retries without secrets', async () => {
    const lines: string[] = [];
    const logger = createLogger({ write: (l) => lines.push(l), minSeverity: 'DEBUG' });
    nock(BASE)
      .post('/token').reply(400, 'proxy says ' + REFRESH)
      .post('/token').reply(401, { error: 'invalid_client', error_description: APP_SECRET });
    const { c, clock } = client({ maxAttempts: 4, logger });
    await expect(c.refresh(REFRESH, opts(clock))).rejects.toMatchObject({ code: 'invalid_client' });
    expect(lines.some((l) => l.includes('saxo_attempt_failed'))).toBe(true);
    for (const l of lines) for (const s of SECRETS) expect(l).not.toContain(s);
  });
});

describe('saxo authorize helpers', () => {
  it('builds the authorize URL with PKCE S256 and state', () => {
    const { verifier, challenge } = createPkce();
    expect(verifier.length).toBeGreaterThanOrEqual(43);
    expect(challenge).toBe(pkceChallenge(verifier));
    // RFC 7636 appendix B test vector.
    expect(pkceChallenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')).toBe('E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
    const state = randomState();
    expect(state).not.toBe(randomState());
    const url = new URL(buildAuthorizationUrl({ authBaseUrl: BASE + '/', appKey: APP_KEY, redirectUri: 'http://localhost:8080/callback', state, codeChallenge: challenge }));
    expect(url.origin + url.pathname).toBe(BASE + '/authorize');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      client_id: APP_KEY,
      response_type: 'code',
      redirect_uri: 'http://localhost:8080/callback',
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    // Plain http only on loopback.
    expect(buildAuthorizationUrl({ authBaseUrl: 'http://127.0.0.1:9/', appKey: APP_KEY, redirectUri: 'http://localhost/cb', state, codeChallenge: challenge })).toMatch(/^http:\/\/127\.0\.0\.1:9\/authorize\?/);
    expect(() => buildAuthorizationUrl({ authBaseUrl: 'http://saxo.example.com', appKey: APP_KEY, redirectUri: 'http://localhost/cb', state, codeChallenge: challenge })).toThrow(/HTTPS/);
  });
});
