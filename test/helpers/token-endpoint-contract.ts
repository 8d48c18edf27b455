/**
 * What Saxo's token endpoint does, as every TokenEndpoint the project uses must show it: the real
 * client over HTTP to the stand-in (test/integration/saxo-standin.test.ts) and the in-memory model
 * the unit tests and the soak use (test/unit/memory-doubles.test.ts). Single-use rotating refresh
 * tokens, both lifetimes in every answer, invalid_grant for a spent, unknown or expired token, no
 * attempt past the deadline, no token text in any error.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SaxoError } from '../../core/errors.js';
import type { TokenEndpoint } from '../../core/ports.js';
import type { IssuedPair, StandinStats } from '../../standins/saxo/state.js';
import { interpretGrant, pairOf } from '../../core/grant.js';
import type { OddAnswer } from '../../standins/saxo/odd.js';

export interface EndpointUnderTest {
  endpoint: TokenEndpoint;
  /** Mint a pair directly at the server (not a presentation). */
  issue(clientId?: string): IssuedPair;
  state: { stats?(): StandinStats; counters?: StandinStats; isValidAccessToken(a: string): boolean };
  /** Move the server's clock forward. */
  advance(ms: number): Promise<void> | void;
  /** Make the next grant's 2xx odd (the grant itself happens: the token is consumed). */
  odd(a: OddAnswer): void;
  close(): Promise<void>;
}

export type MakeEndpoint = (o: { accessLifetimeSec: number; refreshLifetimeSec: number }) => Promise<EndpointUnderTest>;

const APP = 'contract-app';

export function tokenEndpointContract(label: string, make: MakeEndpoint): void {
  describe(`TokenEndpoint contract: ${label}`, () => {
    let t: EndpointUnderTest;
    const stats = () => (t.state.stats ? t.state.stats() : t.state.counters!);
    const ro = (extra: object = {}) => ({ deadline: Date.now() + 60_000 * 60, appKey: APP, ...extra });
    const fails = async (p: Promise<unknown>): Promise<SaxoError> => {
      const e = await p.then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(SaxoError);
      return e as SaxoError;
    };

    beforeEach(async () => {
      t = await make({ accessLifetimeSec: 1200, refreshLifetimeSec: 3600 });
    });
    afterEach(async () => {
      await t.close();
    });

    it('a live refresh token buys a new pair with both lifetimes; the old one is spent', async () => {
      const p = t.issue(APP);
      const raw = await t.endpoint.refresh(p.refresh_token, ro());
      // Handed over as it arrived: Saxo's 201, its JSON content type and Date header, the body untouched.
      expect(raw).toMatchObject({ status: 201, contentType: expect.stringMatching(/^application\/json/) });
      expect(Number.isNaN(Date.parse(raw.date ?? ''))).toBe(false);
      expect(JSON.parse(raw.text)).toMatchObject({ token_type: 'Bearer', expires_in: 1200, refresh_token_expires_in: 3600 });
      const res = pairOf(raw);
      expect(res).toMatchObject({ tokenType: 'Bearer', expiresIn: 1200, refreshExpiresIn: 3600 });
      expect(res.refreshToken).not.toBe(p.refresh_token);
      expect(t.state.isValidAccessToken(res.accessToken)).toBe(true);
      expect(stats()).toMatchObject({ presentations: 1, refreshes: 1, reusedPresentations: 0 });
    });

    it.each<[string, OddAnswer, 'pair' | 'no_refresh_token']>([
      ['expires_in −5', { set: { expires_in: -5 } }, 'pair'],
      ['expires_in "1200 seconds"', { set: { expires_in: '1200 seconds' } }, 'pair'],
      ['no refresh_token', { omit: ['refresh_token'] }, 'no_refresh_token'],
      ['an HTML body', { html: true }, 'no_refresh_token'],
    ])('an odd 2xx (%s) is handed over raw, never refused; the presented token is consumed all the same', async (_name, odd, kind) => {
      const p = t.issue(APP);
      t.odd(odd);
      const raw = await t.endpoint.refresh(p.refresh_token, ro());
      expect(raw.status).toBe(201);
      expect(interpretGrant(raw).kind).toBe(kind);
      expect(await fails(t.endpoint.refresh(p.refresh_token, ro()))).toMatchObject({ code: 'invalid_grant' });
      expect(stats()).toMatchObject({ presentations: 2, refreshes: 1, reusedPresentations: 1 });
    });

    it('presenting a spent refresh token is invalid_grant (fatal) and counted as a reuse', async () => {
      const p = t.issue(APP);
      await t.endpoint.refresh(p.refresh_token, ro());
      const e = await fails(t.endpoint.refresh(p.refresh_token, ro()));
      expect(e).toMatchObject({ kind: 'fatal', code: 'invalid_grant', status: 400 });
      expect(e.message).not.toContain(p.refresh_token);
      expect(stats()).toMatchObject({ presentations: 2, reusedPresentations: 1, invalidGrants: 1 });
    });

    it('an unknown or another client\'s refresh token is invalid_grant, not a reuse', async () => {
      expect(await fails(t.endpoint.refresh('sr_never-issued-token-value', ro()))).toMatchObject({ code: 'invalid_grant' });
      const other = t.issue('someone-else');
      expect(await fails(t.endpoint.refresh(other.refresh_token, ro()))).toMatchObject({ code: 'invalid_grant' });
      expect(stats().reusedPresentations).toBe(0);
    });

    it('an expired refresh token is invalid_grant', async () => {
      const p = t.issue(APP);
      await t.advance(3600_000 + 1_000);
      expect(await fails(t.endpoint.refresh(p.refresh_token, { ...ro(), deadline: Date.now() + 10 * 3600_000 }))).toMatchObject({ code: 'invalid_grant' });
    });

    it('no attempt once the deadline has passed: retryable "deadline", nothing presented', async () => {
      const p = t.issue(APP);
      const e = await fails(t.endpoint.refresh(p.refresh_token, { appKey: APP, deadline: 0 }));
      expect(e).toMatchObject({ kind: 'retryable', code: 'deadline' });
      expect(stats().presentations).toBe(0);
    });
  });
}
