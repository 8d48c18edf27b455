/**
 * The real Saxo client against the real stand-in over HTTP on 127.0.0.1 (no nock).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../core/clock.js';
import { SaxoError } from '../../core/errors.js';
import { createPkce, buildAuthorizationUrl, randomState } from '../../core/saxo/authorize.js';
import { createSaxoClient } from '../../core/saxo/client.js';
import type { TokenEndpoint } from '../../core/ports.js';
import { startSaxoStandin, type SaxoStandin, type SaxoStandinOptions } from '../../standins/saxo/server.js';
import { tokenEndpointContract } from '../helpers/token-endpoint-contract.js';
import { pairOf } from '../../core/grant.js';

const APP_KEY = 'demo-app';
const APP_SECRET = 'demo-app-secret-0123456789';
const PKCE_APP = 'pkce-app';
const REDIRECT = 'http://localhost:8765/callback';

/** Real time, but backoff sleeps are skipped so fault tests stay fast. */
const quickClock: Clock = { now: () => Date.now(), sleep: async () => {} };

let standin: SaxoStandin | undefined;
afterEach(async () => {
  await standin?.close();
  standin = undefined;
});

async function setup(o: SaxoStandinOptions = {}, httpTimeoutMs = 2000): Promise<{ s: SaxoStandin; client: TokenEndpoint }> {
  standin = await startSaxoStandin({ clients: { [APP_KEY]: APP_SECRET, [PKCE_APP]: null }, ...o });
  const client = createSaxoClient({ authBaseUrl: standin.url, httpTimeoutMs, clock: quickClock });
  return { s: standin, client };
}

const ro = (extra: object = {}) => ({ deadline: Date.now() + 30_000, appKey: APP_KEY, appSecret: APP_SECRET, ...extra });

async function failure(p: Promise<unknown>): Promise<SaxoError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(SaxoError);
  return e as SaxoError;
}

describe('saxo stand-in with the real client', () => {
  it('answers 201 by default, and the client accepts it; lifetimes come from the stand-in', async () => {
    const { s, client } = await setup({ accessLifetimeSec: 20, refreshLifetimeSec: 60 });
    const seed = s.issue(APP_KEY);
    expect(seed.refresh_token.length).toBeGreaterThanOrEqual(32);
    expect(seed.access_token.length).toBeGreaterThanOrEqual(32);
    const raw = await fetch(`${s.url}/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: seed.refresh_token, client_id: APP_KEY, client_secret: APP_SECRET }),
    });
    expect(raw.status).toBe(201);
    const body = (await raw.json()) as { refresh_token: string };
    const res = pairOf(await client.refresh(body.refresh_token, ro()));
    expect(res).toMatchObject({ expiresIn: 20, refreshExpiresIn: 60, tokenType: 'Bearer' });
    expect(s.isValidAccessToken(res.accessToken)).toBe(true);
    expect(s.stats()).toMatchObject({ refreshes: 2, presentations: 2, reusedPresentations: 0 });
  });

  it('can answer 200 instead', async () => {
    const { s, client } = await setup({ successStatus: 200 });
    const res = pairOf(await client.refresh(s.issue().refresh_token, ro()));
    expect(s.isValidAccessToken(res.accessToken)).toBe(true);
  });

  it('rotates single-use refresh tokens; reuse is invalid_grant and counted', async () => {
    const { s, client } = await setup();
    const first = s.issue(APP_KEY).refresh_token;
    const a = pairOf(await client.refresh(first, ro()));
    const b = pairOf(await client.refresh(a.refreshToken, ro()));
    expect(new Set([first, a.refreshToken, b.refreshToken]).size).toBe(3);
    expect(s.stats()).toMatchObject({ refreshes: 2, reusedPresentations: 0, invalidGrants: 0 });

    const err = await failure(client.refresh(first, ro()));
    expect(err).toMatchObject({ kind: 'fatal', code: 'invalid_grant', status: 400 });
    const st = s.stats();
    expect(st).toMatchObject({ refreshes: 2, presentations: 3, reusedPresentations: 1, invalidGrants: 1 });
    expect(st.reusedTokens).toHaveLength(1);
    expect(st.reusedTokens[0]).not.toContain(first);
    expect(first).not.toContain(st.reusedTokens[0]);
    expect(JSON.stringify(st)).not.toContain(first);
    // An unknown token is invalid_grant but not a reuse.
    await failure(client.refresh('never-issued-token-0123456789abcdef', ro()));
    expect(s.stats()).toMatchObject({ reusedPresentations: 1, invalidGrants: 2 });
  });

  it('expires refresh and access tokens on the injected clock', async () => {
    let now = Date.now();
    const { s, client } = await setup({ now: () => now, accessLifetimeSec: 20, refreshLifetimeSec: 60 });
    const pair = s.issue(APP_KEY);
    now += 20_000;
    expect(s.isValidAccessToken(pair.access_token)).toBe(false);
    now += 40_000;
    const err = await failure(client.refresh(pair.refresh_token, ro()));
    expect(err.code).toBe('invalid_grant');
    s.setLifetimes({ accessLifetimeSec: 5, refreshLifetimeSec: 7 });
    expect(s.issue()).toMatchObject({ expires_in: 5, refresh_token_expires_in: 7 });
  });

  it('checks client authentication: wrong secret → invalid_client; Basic auth accepted', async () => {
    const { s, client } = await setup();
    const rt = s.issue(APP_KEY).refresh_token;
    const err = await failure(client.refresh(rt, ro({ appSecret: 'wrong-secret-value' })));
    expect(err).toMatchObject({ kind: 'fatal', code: 'invalid_client', status: 401 });
    expect(err.message).not.toContain('wrong-secret-value');
    const basic = await fetch(`${s.url}/token`, {
      method: 'POST',
      headers: { authorization: 'Basic ' + Buffer.from(`${APP_KEY}:${APP_SECRET}`).toString('base64') },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt }),
    });
    expect(basic.status).toBe(201);
  });

  it('authorization code + PKCE: right verifier succeeds, wrong one fails, codes are single-use', async () => {
    const { s, client } = await setup();
    const authorize = async (challenge: string) => {
      const state = randomState();
      const url = buildAuthorizationUrl({ authBaseUrl: s.url, appKey: PKCE_APP, redirectUri: REDIRECT, state, codeChallenge: challenge });
      const r = await fetch(url, { redirect: 'manual' });
      expect(r.status).toBe(302);
      const loc = new URL(r.headers.get('location') ?? '');
      expect(loc.origin + loc.pathname).toBe(REDIRECT);
      expect(loc.searchParams.get('state')).toBe(state);
      return loc.searchParams.get('code') ?? '';
    };
    const pkce = createPkce();
    const wrongCode = await authorize(pkce.challenge);
    const bad = await failure(client.exchangeCode(wrongCode, createPkce().verifier, { deadline: Date.now() + 10_000, appKey: PKCE_APP, redirectUri: REDIRECT }));
    expect(bad.code).toBe('invalid_grant');

    const code = await authorize(pkce.challenge);
    const wrongRedirect = await failure(client.exchangeCode(code, pkce.verifier, { deadline: Date.now() + 10_000, appKey: PKCE_APP, redirectUri: 'http://localhost:1/other' }));
    expect(wrongRedirect.code).toBe('invalid_grant');

    const good = await authorize(pkce.challenge);
    const res = await client.exchangeCode(good, pkce.verifier, { deadline: Date.now() + 10_000, appKey: PKCE_APP, redirectUri: REDIRECT });
    expect(s.isValidAccessToken(res.accessToken)).toBe(true);
    const again = await failure(client.exchangeCode(good, pkce.verifier, { deadline: Date.now() + 10_000, appKey: PKCE_APP, redirectUri: REDIRECT }));
    expect(again.code).toBe('invalid_grant');
    expect(s.stats()).toMatchObject({ codeExchanges: 1, authorizations: 3 });
    // The PKCE client's refresh needs no secret.
    const next = pairOf(await client.refresh(res.refreshToken, { deadline: Date.now() + 10_000, appKey: PKCE_APP }));
    expect(s.isValidAccessToken(next.accessToken)).toBe(true);
  });

  it('rejects bad /authorize input with 400', async () => {
    const { s } = await setup();
    const { challenge } = createPkce();
    const base = { response_type: 'code', client_id: PKCE_APP, redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256' };
    for (const bad of [{ response_type: 'token' }, { client_id: 'nobody' }, { redirect_uri: 'not a url' }, { code_challenge: 'short' }, { code_challenge_method: 'plain' }]) {
      const r = await fetch(`${s.url}/authorize?${new URLSearchParams({ ...base, ...bad })}`, { redirect: 'manual' });
      expect(r.status, JSON.stringify(bad)).toBe(400);
    }
  });

  it('bearer check: valid access token → 200, otherwise 401', async () => {
    const { s } = await setup();
    const pair = s.issue();
    const me = (auth?: string) => fetch(`${s.url}/openapi/port/v1/users/me`, { headers: auth ? { authorization: auth } : {} });
    expect((await me(`Bearer ${pair.access_token}`)).status).toBe(200);
    expect((await me(`Bearer ${pair.refresh_token}`)).status).toBe(401);
    expect((await me()).status).toBe(401);
  });
});

describe('fault injection, classified by the real client', () => {
  it.each([
    { kind: 'html503' as const, code: 'http_503', msg: /non-JSON 503 body \(text\/html/ },
    { kind: 'bare429' as const, code: 'http_429', msg: /non-JSON 429 body \(text\/plain/ },
    { kind: 'json500' as const, code: 'server_error', msg: /500/ },
    { kind: 'reset' as const, code: 'network', msg: /Network error/ },
  ])('$kind → retryable $code, token not consumed, retry succeeds', async ({ kind, code, msg }) => {
    const { s, client } = await setup();
    const rt = s.issue(APP_KEY).refresh_token;
    s.inject({ kind });
    const err = await failure(client.refresh(rt, ro()));
    expect(err).toMatchObject({ kind: 'retryable', code });
    expect(err.message).toMatch(msg);
    expect(err.message).not.toContain(rt);
    // The fault did not consume the token: the next attempt (the protocol's retry) goes through.
    s.inject({ kind, times: 1 });
    await expect(client.refresh(rt, ro())).rejects.toMatchObject({ kind: 'retryable', code });
    const res = pairOf(await client.refresh(rt, ro()));
    expect(s.isValidAccessToken(res.accessToken)).toBe(true);
    expect(s.stats()).toMatchObject({ refreshes: 1, reusedPresentations: 0, faultsServed: 2 });
  });

  it('invalid_grant fault → fatal, one attempt', async () => {
    const { s, client } = await setup();
    const rt = s.issue(APP_KEY).refresh_token;
    s.inject({ kind: 'invalid_grant', times: 2 });
    const err = await failure(client.refresh(rt, ro()));
    expect(err).toMatchObject({ kind: 'fatal', code: 'invalid_grant' });
    expect(s.stats().faultsServed).toBe(1);
  });

  it('delay shorter than the timeout → success; longer → timeout, and the stand-in still consumed the token', async () => {
    const { s, client } = await setup({}, 400);
    s.inject({ kind: 'delay', delayMs: 50 });
    const ok = pairOf(await client.refresh(s.issue(APP_KEY).refresh_token, ro()));
    expect(s.isValidAccessToken(ok.accessToken)).toBe(true);

    const rt = s.issue(APP_KEY).refresh_token;
    s.inject({ kind: 'delay', delayMs: 800 });
    const err = await failure(client.refresh(rt, ro()));
    expect(err).toMatchObject({ kind: 'retryable', code: 'timeout' });
    await expect.poll(() => s.stats().refreshes, { timeout: 5000 }).toBe(2);
  });

  it('admin HTTP API: faults, lifetimes, issue, stats', async () => {
    const { s, client } = await setup();
    const post = (path: string, body: unknown) => fetch(`${s.url}${path}`, { method: 'POST', body: JSON.stringify(body) });
    expect((await post('/_admin/faults', [{ kind: 'json500', times: 2 }, { kind: 'html503' }])).status).toBe(200);
    expect((await post('/_admin/faults', { kind: 'nonsense' })).status).toBe(400);
    expect((await post('/_admin/lifetimes', { accessLifetimeSec: 9 })).status).toBe(200);
    const pair = (await (await post('/_admin/issue', { client_id: APP_KEY })).json()) as { refresh_token: string; expires_in: number };
    expect(pair.expires_in).toBe(9);
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) codes.push((await failure(client.refresh(pair.refresh_token, ro()))).code);
    expect(codes).toEqual(['server_error', 'server_error', 'http_503']);
    await client.refresh(pair.refresh_token, ro());
    const stats = (await (await fetch(`${s.url}/_admin/stats`)).json()) as Record<string, unknown>;
    expect(stats).toMatchObject({ refreshes: 1, faultsServed: 3, reusedPresentations: 0 });
  });
});

describe('stand-in process (main.ts)', () => {
  it('prints its URL as one JSON line, serves, and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'standins/saxo/main.ts', '--port', '0', '--access-lifetime', '20', '--refresh-lifetime', '60', '--client', `${APP_KEY}:${APP_SECRET}`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const lines = createInterface({ input: child.stdout });
      const first = await new Promise<string>((resolve, reject) => {
        lines.once('line', resolve);
        child.once('exit', () => reject(new Error('stand-in exited before listening')));
      });
      const msg = JSON.parse(first) as { event: string; url: string };
      expect(msg.event).toBe('saxo_standin_listening');
      expect(msg.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const pair = (await (await fetch(`${msg.url}/_admin/issue`, { method: 'POST', body: JSON.stringify({ client_id: APP_KEY }) })).json()) as { refresh_token: string };
      const client = createSaxoClient({ authBaseUrl: msg.url, httpTimeoutMs: 2000 });
      const res = pairOf(await client.refresh(pair.refresh_token, ro()));
      expect(res).toMatchObject({ expiresIn: 20, refreshExpiresIn: 60 });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

tokenEndpointContract('the real client over HTTP to the stand-in', async (o) => {
  let offset = 0;
  const s = await startSaxoStandin({ ...o, now: () => Date.now() + offset });
  return {
    endpoint: createSaxoClient({ authBaseUrl: s.url, httpTimeoutMs: 2000 }),
    issue: (clientId) => s.issue(clientId),
    state: s,
    advance: (ms) => void (offset += ms),
    odd: (a) => s.inject({ kind: 'odd2xx', ...a }),
    close: () => s.close(),
  };
});
