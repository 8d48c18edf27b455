/**
 * Unit tests of the phone re-login's rules: the identity pin (core/identity.ts), the link and state
 * transitions (functions/relogin/link-rules.ts), the link-state store's compare-and-set over the
 * Secret Manager stand-in's model (the real adapter over the in-process transport), and the
 * service's edges: headers on every answer, URLs from configuration never from Host, rate limits.
 */
import { describe, expect, it } from 'vitest';
import { checkPin, checkUsersMe, decodeClaims, maskUser, pinFromAnnotations, pinFromClaims, pinToAnnotations, type IdentityPin } from '../../core/identity.js';
import { createLogger } from '../../core/log.js';
import { addLink, checkState, consumeLink, emptyDoc, hashOf, LINK_TTL_MS, lookupLink, MAX_LINK_VIEWS, mayResend, STATE_TTL_MS, useState, viewLink } from '../../functions/relogin/link-rules.js';
import { createLinkStateStore, LINK_DOC_ANNOTATION } from '../../functions/relogin/link-store.js';
import { createReloginServer } from '../../functions/relogin/server.js';
import { issueLink } from '../../functions/relogin/issue.js';
import { MemorySecretStore } from '../../standins/memory.js';
import { PinGuard } from '../../agent/pin.js';
import type { TokenSet } from '../../core/token.js';
import { inProcessSecretManager } from '../../standins/secret-manager/in-process.js';
import { SecretManagerState } from '../../standins/secret-manager/state.js';

const jwt = (claims: Record<string, unknown>) => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
const PIN: IdentityPin = { userKey: 'uk-1', clientKey: 'ck-1', appKey: 'app-1', environment: 'SIM' };
const ID = 'A'.repeat(43);
const ID2 = 'B'.repeat(43);

describe('identity pin', () => {
  it('decodes claims without verifying; a non-JWT has none', () => {
    expect(decodeClaims(jwt({ uid: 'u', cid: 'c', aid: 'a', exp: 5 }))).toEqual({ uid: 'u', cid: 'c', aid: 'a', exp: 5 });
    expect(decodeClaims('sa_opaque_token_without_dots')).toBeUndefined();
    expect(decodeClaims('a.!!!.c')).toBeUndefined();
  });

  it('pins from claims; refuses a token lacking them', () => {
    expect(pinFromClaims(jwt({ uid: 'uk-1', cid: 'ck-1', aid: 'app-1' }), 'SIM')).toEqual({ pin: PIN });
    expect(pinFromClaims(jwt({ uid: 'uk-1' }), 'SIM')).toMatchObject({ reason: expect.stringContaining('lacks') });
  });

  it('checkPin: same account ok; another user, client, app or environment refused with which part differs', () => {
    expect(checkPin(PIN, jwt({ uid: 'uk-1', cid: 'ck-1', aid: 'app-1' }), 'SIM')).toEqual({ ok: true });
    expect(checkPin(PIN, jwt({ uid: 'uk-2', cid: 'ck-1', aid: 'app-1' }), 'SIM')).toMatchObject({ ok: false, reason: expect.stringContaining('uid') });
    expect(checkPin(PIN, jwt({ uid: 'uk-1', cid: 'ck-2', aid: 'app-1' }), 'SIM')).toMatchObject({ ok: false, reason: expect.stringContaining('cid') });
    expect(checkPin(PIN, jwt({ uid: 'uk-1', cid: 'ck-1', aid: 'live-app' }), 'SIM')).toMatchObject({ ok: false, reason: expect.stringContaining('aid') });
    expect(checkPin(PIN, jwt({ uid: 'uk-1', cid: 'ck-1', aid: 'app-1' }), 'LIVE')).toMatchObject({ ok: false, reason: expect.stringContaining('environment') });
    expect(checkPin(PIN, 'opaque', 'SIM').ok).toBe(false);
  });

  it('users/me must name the pinned user and client', () => {
    expect(checkUsersMe(PIN, { UserKey: 'uk-1', ClientKey: 'ck-1' }).ok).toBe(true);
    expect(checkUsersMe(PIN, { UserKey: 'uk-9', ClientKey: 'ck-1' }).ok).toBe(false);
    expect(checkUsersMe(PIN, { UserKey: 'uk-1' }).ok).toBe(false);
  });

  it('round-trips through annotations; an incomplete or foreign set is no pin', () => {
    expect(pinFromAnnotations(pinToAnnotations(PIN))).toEqual(PIN);
    expect(pinFromAnnotations({ ...pinToAnnotations(PIN), 'tk-pin-environment': 'PROD' })).toBeUndefined();
    expect(pinFromAnnotations({})).toBeUndefined();
  });

  it('masks a user name', () => {
    expect(maskUser('Olivia Owner')).toBe('Ol••••••er');
    expect(maskUser('abc')).toBe('•••');
  });
});

describe('link and state rules', () => {
  const t0 = 1_700_000_000_000;
  it('a link is stored only as its hash, valid 15 minutes, bound to its environment', () => {
    const doc = addLink(emptyDoc(), 'SIM', ID, t0);
    expect(JSON.stringify(doc)).not.toContain(ID);
    expect(doc.links[0]).toMatchObject({ h: hashOf(ID), env: 'SIM', exp: t0 + LINK_TTL_MS });
    expect(lookupLink(doc, ID, t0 + LINK_TTL_MS - 1).kind).toBe('valid');
    expect(lookupLink(doc, ID, t0 + LINK_TTL_MS).kind).toBe('expired');
    expect(lookupLink(doc, ID2, t0).kind).toBe('unknown');
    expect(lookupLink(doc, 'short', t0).kind).toBe('unknown');
  });

  it('viewing consumes nothing (up to a bound); confirming spends the link and starts a state bound to the cookie', () => {
    let doc = addLink(emptyDoc(), 'SIM', ID, t0);
    for (let i = 0; i < MAX_LINK_VIEWS; i++) {
      const r = lookupLink(doc, ID, t0);
      expect(r.kind).toBe('valid');
      if (r.kind === 'valid') doc = viewLink(doc, r.link);
    }
    expect(lookupLink(doc, ID, t0).kind).toBe('worn');
    doc = addLink(doc, 'SIM', ID2, t0);
    const r = lookupLink(doc, ID2, t0);
    if (r.kind !== 'valid') throw new Error('expected valid');
    doc = consumeLink(doc, r.link, 'S'.repeat(43), 'C'.repeat(43), t0);
    expect(lookupLink(doc, ID2, t0).kind).toBe('used');
    expect(JSON.stringify(doc)).not.toContain('S'.repeat(43));
    expect(JSON.stringify(doc)).not.toContain('C'.repeat(43));
  });

  it('the callback state: unknown, missing or wrong cookie, other environment, expiry, single use', () => {
    const st = 'S'.repeat(43);
    const cookie = 'C'.repeat(43);
    let doc = addLink(emptyDoc(), 'SIM', ID, t0);
    const l = lookupLink(doc, ID, t0);
    if (l.kind !== 'valid') throw new Error('expected valid');
    doc = consumeLink(doc, l.link, st, cookie, t0);
    expect(checkState(doc, 'T'.repeat(43), cookie, 'SIM', t0)).toMatchObject({ ok: false, reason: 'state_unknown' });
    expect(checkState(doc, st, undefined, 'SIM', t0)).toMatchObject({ ok: false, reason: 'cookie_missing' });
    expect(checkState(doc, st, 'D'.repeat(43), 'SIM', t0)).toMatchObject({ ok: false, reason: 'cookie_mismatch' });
    expect(checkState(doc, st, cookie, 'LIVE', t0)).toMatchObject({ ok: false, reason: 'environment_mismatch' });
    expect(checkState(doc, st, cookie, 'SIM', t0 + STATE_TTL_MS)).toMatchObject({ ok: false, reason: 'state_expired' });
    const ok = checkState(doc, st, cookie, 'SIM', t0);
    if (!ok.ok) throw new Error(ok.reason);
    doc = useState(doc, ok.entry, t0);
    expect(checkState(doc, st, cookie, 'SIM', t0)).toMatchObject({ ok: false, reason: 'state_used' });
  });

  it('resend is rate-limited per environment', () => {
    const doc = addLink(emptyDoc(), 'SIM', ID, t0);
    expect(mayResend(doc, 'SIM', t0 + 60_000)).toBe(false);
    expect(mayResend(doc, 'SIM', t0 + 5 * 60_000)).toBe(true);
    expect(mayResend(doc, 'LIVE', t0)).toBe(true);
  });
});

function linkSecret() {
  const model = new SecretManagerState();
  model.CreateSecret({ parent: 'projects/p', secret_id: 'links', secret: { replication: { automatic: {} } } });
  const t = inProcessSecretManager(model);
  return { model, t, store: createLinkStateStore({ client: t.client, projectId: 'p', secretId: 'links' }) };
}

describe('link-state store (compare-and-set on the link-state secret)', () => {
  it('keeps the document in one annotation; a concurrent writer makes the loser re-run, so one link is spent once', async () => {
    const { model, store } = linkSecret();
    await store.transact((d) => ({ doc: addLink(d, 'SIM', ID, Date.now()), result: undefined }));
    const a = model.GetSecret({ name: 'projects/p/secrets/links' }) as { annotations: Record<string, string> };
    expect(a.annotations[LINK_DOC_ANNOTATION]).toContain(hashOf(ID));
    // Two confirms race: both read "valid"; the CAS lets exactly one spend it.
    const spend = (cookie: string) =>
      store.transact((doc) => {
        const r = lookupLink(doc, ID, Date.now());
        return r.kind === 'valid' ? { doc: consumeLink(doc, r.link, cookie, cookie, Date.now()), result: true } : { result: false };
      });
    const results = await Promise.all([spend('X'.repeat(43)), spend('Y'.repeat(43))]);
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('derives verifiers from a key in the payload, created once and stable', async () => {
    const { store, t } = linkSecret();
    const a = await store.mac('pkce-verifier', 'state-1');
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await store.mac('pkce-verifier', 'state-1')).toBe(a);
    expect(await store.mac('pkce-verifier', 'state-2')).not.toBe(a);
    expect(t.calls.filter((c) => c === 'AddSecretVersion')).toHaveLength(1);
    // Another instance (a fresh adapter) reads the same key.
    const other = createLinkStateStore({ client: t.client, projectId: 'p', secretId: 'links' });
    expect(await other.mac('pkce-verifier', 'state-1')).toBe(a);
  });
});

describe('relogin service edges', () => {
  async function serve(rate = { perAddressPerMinute: 5, globalPerMinute: 100 }) {
    const { store: links } = linkSecret();
    const lines: string[] = [];
    const logger = createLogger({ write: (l) => lines.push(l) });
    const store = new MemorySecretStore('projects/p/secrets/tok');
    await store.record({ pin: PIN });
    const server = await createReloginServer({
      baseUrl: 'https://relogin.example.test',
      chains: { SIM: { environment: 'SIM', authBaseUrl: 'https://sim.logonvalidation.net', openapiBaseUrl: 'https://gateway.invalid', appKey: 'app-1', saxo: { refresh: () => Promise.reject(new Error('no')), exchangeCode: () => Promise.reject(new Error('no')) }, store, expiryMarginMs: 60_000 } },
      links,
      logger,
      rateLimits: rate,
    });
    return { server, links, lines, logger };
  }

  it('every answer carries the security headers; URLs come from configuration, not the Host header; no open redirect', async () => {
    const { server, links, logger } = await serve();
    try {
      const issued = await issueLink({ links, environment: 'SIM', baseUrl: 'https://relogin.example.test', logger, now: Date.now(), reason: 'unit' });
      const id = issued!.link.split('/l/')[1]!;
      const res = await fetch(`${server.url}/confirm`, { method: 'POST', body: new URLSearchParams({ id }), redirect: 'manual', headers: { host: 'evil.example', 'x-forwarded-host': 'evil.example' } });
      expect(res.status).toBe(303);
      const loc = new URL(res.headers.get('location')!);
      expect(loc.origin).toBe('https://sim.logonvalidation.net');
      expect(loc.searchParams.get('redirect_uri')).toBe('https://relogin.example.test/callback/sim');
      expect(loc.searchParams.get('code_challenge_method')).toBe('S256');
      expect(res.headers.get('set-cookie')).toMatch(/^__Host-tk-relogin=[A-Za-z0-9_-]{43}; Max-Age=600; Path=\/; Secure; HttpOnly; SameSite=Lax$/);
      for (const path of ['/nope', '/done?next=https://evil.example', `/l/${id}`]) {
        const r = await fetch(`${server.url}${path}`, { redirect: 'manual' });
        expect(r.headers.get('location')).toBeNull();
        expect(r.headers.get('content-security-policy')).toBe("default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https://sim.logonvalidation.net; frame-ancestors 'none'; base-uri 'none'");
        expect(r.headers.get('referrer-policy')).toBe('no-referrer');
        expect(r.headers.get('cache-control')).toBe('no-store');
        expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      }
    } finally {
      await server.close();
    }
  });

  it('rate limits per address; every refusal is a WARNING with its reason and no link id', async () => {
    const { server, lines } = await serve({ perAddressPerMinute: 3, globalPerMinute: 100 });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await fetch(`${server.url}/l/${'Z'.repeat(43)}`)).status);
      expect(statuses).toEqual([404, 404, 404, 429, 429]);
      const refusals = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'relogin_refused');
      expect(refusals.map((r) => r.reason)).toEqual(['link_unknown', 'link_unknown', 'link_unknown', 'rate_limited_address', 'rate_limited_address']);
      expect(refusals.every((r) => r.severity === 'WARNING')).toBe(true);
      expect(lines.join('\n')).not.toContain('Z'.repeat(43));
    } finally {
      await server.close();
    }
  });
});

describe('the agent\'s pin guard (agent/pin.ts)', () => {
  const pair = (accessToken: string, refreshToken: string): TokenSet => ({ accessToken, refreshToken, accessExpiresAt: Date.now() + 600_000, generation: 1, extra: {} });
  const owner = pair(jwt({ uid: 'uk-1', cid: 'ck-1', aid: 'app-1' }), 'sr_owner_refresh_token_0001');
  const stranger = pair(jwt({ uid: 'uk-9', cid: 'ck-9', aid: 'app-1' }), 'sr_stranger_refresh_token_01');

  it('pins an unpinned chain from its current pair, then accepts only that account (ALERT once per refused pair)', async () => {
    const store = new MemorySecretStore('projects/p/secrets/tok');
    await store.add(owner);
    const lines: string[] = [];
    const guard = new PinGuard(createLogger({ write: (l) => lines.push(l) }), 'SIM');
    await guard.load(store, undefined);
    expect(guard.pinned).toEqual(PIN);
    expect(pinFromAnnotations((await store.meta()).annotations)).toEqual(PIN);
    expect(guard.accepts(owner)).toBe(true);
    expect(guard.accepts(stranger)).toBe(false);
    expect(guard.accepts(stranger)).toBe(false);
    expect(guard.accepts(pair('sa_no_claims_here_000001', 'sr_no_claims_refresh_0001'))).toBe(false);
    const alerts = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'identity_mismatch');
    expect(alerts).toHaveLength(2);
    expect(alerts.every((a) => a.severity === 'ALERT')).toBe(true);
    expect(lines.join('\n')).not.toContain(stranger.refreshToken);
  });

  it('keeps an existing pin; a chain whose token has no claims stays unpinned (and then nothing is refused)', async () => {
    const store = new MemorySecretStore('projects/p/secrets/tok');
    await store.add(stranger);
    await store.record({ pin: PIN });
    const guard = new PinGuard(createLogger({ write: () => {} }), 'SIM');
    await guard.load(store, undefined);
    expect(guard.pinned).toEqual(PIN);
    expect(guard.accepts(stranger)).toBe(false);

    const bare = new MemorySecretStore('projects/p/secrets/bare');
    await bare.add(pair('sa_opaque_access_token_01', 'sr_opaque_refresh_token_1'));
    const unpinned = new PinGuard(createLogger({ write: () => {} }), 'SIM');
    await unpinned.load(bare, undefined);
    expect(unpinned.pinned).toBeUndefined();
    expect(unpinned.accepts(stranger)).toBe(true);
  });
});
