import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../core/clock.js';
import { SaxoError } from '../../core/errors.js';
import { createSaxoClient } from '../../core/saxo/client.js';
import { pairOf } from '../../core/grant.js';
import { buildAuthorizationUrl, createPkce, pkceChallenge, randomState } from '../../core/saxo/authorize.js';

const BASE = 'https://sim.logonvalidation.test';
const REFRESH = 'rt-SECRET-0123456789abcdefghijklmnopqrstuvwxyz';
const ACCESS = 'at-SECRET-zyxwvutsrqponmlkjihgfedcba9876543210';
const NEW_REFRESH = 'rt-NEW-SECRET-abcdefghijklmnopqrstuvwxyz012345';
const APP_SECRET = 'app-SECRET-s3cr3t-value-9f8e7d6c';
const APP_KEY = 'app-key-123';
const SECRETS = [REFRESH, ACCESS, NEW_REFRESH, APP_SECRET];

const html = '<html><body><h1>503 Service Unavailable</h1>' + 'x'.repeat(1000) + '</body></html>';
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
  const c = createSaxoClient({ authBaseUrl: BASE, httpTimeoutMs: 300, clock, ...extra });
  return { c, clock };
}

const opts = (clock: Clock, extra: object = {}) => ({ deadline: clock.now() + 60_000, appKey: APP_KEY, appSecret: APP_SECRET, ...extra });

async function refreshError(setup: (scope: nock.Interceptor) => void): Promise<SaxoError> {
  setup(nock(BASE).post('/token'));
  const { c, clock } = client();
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
  it.each([200, 201])('returns a %i as it arrived (status, headers, body untouched), sending credentials in the form body', async (status) => {
    let form: URLSearchParams | undefined;
    const text = JSON.stringify(okBody);
    nock(BASE)
      .post('/token', (b: string | Record<string, string>) => {
        form = new URLSearchParams(b as Record<string, string>);
        return true;
      })
      .reply(status, text, { 'content-type': 'application/json; charset=utf-8', date: 'Mon, 07 Dec 2026 10:00:00 GMT' });
    const { c, clock } = client();
    const raw = await c.refresh(REFRESH, opts(clock));
    expect(raw).toEqual({ status, contentType: 'application/json; charset=utf-8', retryAfter: null, date: 'Mon, 07 Dec 2026 10:00:00 GMT', text });
    expect(pairOf(raw)).toEqual({ accessToken: ACCESS, refreshToken: NEW_REFRESH, tokenType: 'Bearer', expiresIn: 1200, refreshExpiresIn: 3600 });
    expect(form?.get('grant_type')).toBe('refresh_token');
    expect(form?.get('refresh_token')).toBe(REFRESH);
    expect(form?.get('client_id')).toBe(APP_KEY);
    expect(form?.get('client_secret')).toBe(APP_SECRET);
  });

  it('any 2xx with any body is handed over, never judged (odd fields, no refresh token, HTML); PKCE apps send no secret', async () => {
    let form: URLSearchParams | undefined;
    const odd = [
      { access_token: ACCESS, refresh_token: NEW_REFRESH, expires_in: '1200 seconds' },
      { access_token: ACCESS, refresh_token: NEW_REFRESH, expires_in: -5, refresh_token_expires_in: -1 },
      { access_token: ACCESS, expires_in: 1200 },
    ];
    const scope = nock(BASE)
      .post('/token', (b: Record<string, string>) => ((form = new URLSearchParams(b)), true))
      .reply(201, odd[0])
      .post('/token').reply(200, odd[1])
      .post('/token').reply(201, odd[2])
      .post('/token').reply(200, html, { 'content-type': 'text/html' })
      .post('/token').reply(204, '');
    const { c, clock } = client();
    const ro = { deadline: clock.now() + 60_000, appKey: APP_KEY };
    for (const body of odd) expect(JSON.parse((await c.refresh(REFRESH, ro)).text)).toEqual(body);
    expect(await c.refresh(REFRESH, ro)).toMatchObject({ status: 200, contentType: 'text/html', text: html });
    expect(await c.refresh(REFRESH, ro)).toMatchObject({ status: 204, text: '' });
    expect(scope.isDone()).toBe(true);
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
  // As node:http reports them: an Error with a code (nock drops a plain object on node:http).
  { name: 'connection refused', setup: (i) => i.replyWithError(Object.assign(new Error(`connect ECONNREFUSED ${REFRESH}`), { code: 'ECONNREFUSED' })), kind: 'retryable', code: 'network', msg: /ECONNREFUSED/ },
  { name: 'connection reset', setup: (i) => i.replyWithError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), kind: 'retryable', code: 'network', msg: /ECONNRESET/ },
  { name: 'timeout (delayed reply)', setup: (i) => i.delay(2000).reply(200, okBody), kind: 'retryable', code: 'timeout', msg: /within 300 ms/ },
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

describe('saxo client: one attempt per call (retries are the protocol\'s, test/unit/refresh-protocol.test.ts)', () => {
  it('a retryable error is thrown after exactly one request, with nothing slept', async () => {
    nock(BASE).post('/token').reply(503, html, { 'content-type': 'text/html' }).post('/token').reply(201, okBody);
    const { c, clock } = client();
    await expect(c.refresh(REFRESH, opts(clock))).rejects.toMatchObject({ kind: 'retryable', code: 'http_503' });
    expect(nock.pendingMocks()).toHaveLength(1); // the success was never asked for
    expect(clock.sleeps).toEqual([]);
  });

  it.each(['invalid_grant', 'invalid_client'])('fatal %s is classified as such', async (error) => {
    nock(BASE).post('/token').reply(400, { error });
    const { c, clock } = client();
    await expect(c.refresh(REFRESH, opts(clock))).rejects.toMatchObject({ kind: 'fatal', code: error });
  });

  it('a code exchange reads its answer with the one interpreter: a 2xx without a refresh token is malformed_response', async () => {
    nock(BASE).post('/token').reply(201, { access_token: ACCESS });
    const { c, clock } = client();
    await expect(c.exchangeCode('code', 'verifier', opts(clock, { redirectUri: 'http://localhost:1/cb' }))).rejects.toMatchObject({ code: 'malformed_response' });
  });

  it('Retry-After reaches the caller on the error', async () => {
    nock(BASE).post('/token').reply(429, 'slow down', { 'Retry-After': '12' });
    const { c, clock } = client();
    await expect(c.refresh(REFRESH, opts(clock))).rejects.toMatchObject({ code: 'http_429', retryAfter: 12 });
  });

  it('starts no attempt when the deadline has passed (or leaves less than a useful attempt)', async () => {
    const scope = nock(BASE).post('/token').reply(201, okBody);
    const { c, clock } = client();
    await expect(c.refresh(REFRESH, opts(clock, { deadline: clock.now() - 1 }))).rejects.toMatchObject({ kind: 'retryable', code: 'deadline' });
    await expect(c.refresh(REFRESH, opts(clock, { deadline: clock.now() + 100 }))).rejects.toMatchObject({ code: 'deadline' });
    expect(scope.isDone()).toBe(false);
  });

  it('an attempt ends by the deadline: a slow answer is a timeout at the deadline, not at httpTimeoutMs', async () => {
    nock(BASE).post('/token').delay(2_000).reply(201, okBody);
    const c = createSaxoClient({ authBaseUrl: BASE, httpTimeoutMs: 10_000 });
    const t0 = Date.now();
    await expect(c.refresh(REFRESH, { deadline: Date.now() + 1_200, appKey: APP_KEY, appSecret: APP_SECRET })).rejects.toMatchObject({ code: 'timeout' });
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('stops when the caller aborts', async () => {
    nock(BASE).post('/token').delay(1_000).reply(201, okBody);
    const ctl = new AbortController();
    const c = createSaxoClient({ authBaseUrl: BASE, httpTimeoutMs: 5_000 });
    const p = c.refresh(REFRESH, { deadline: Date.now() + 5_000, appKey: APP_KEY, appSecret: APP_SECRET, signal: ctl.signal });
    setTimeout(() => ctl.abort(new Error('shutdown')), 50);
    await expect(p).rejects.toMatchObject({ code: 'aborted' });
  });

  it('errors carry no secrets, even when the server echoes them', async () => {
    nock(BASE)
      .post('/token').reply(400, 'proxy says ' + REFRESH)
      .post('/token').reply(401, { error: 'invalid_client', error_description: APP_SECRET });
    const { c, clock } = client();
    const e1 = (await c.refresh(REFRESH, opts(clock)).catch((e: unknown) => e)) as SaxoError;
    const e2 = (await c.refresh(REFRESH, opts(clock)).catch((e: unknown) => e)) as SaxoError;
    expect(e2).toMatchObject({ code: 'invalid_client' });
    for (const e of [e1, e2]) for (const s of SECRETS) expect(e.message).not.toContain(s);
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
