/**
 * docs/DESIGN.md "Server time": the pure arithmetic that turns Saxo's Date header and the local
 * clock into the instant a pair's lifetimes count from, and the skew to record.
 */
import { describe, expect, it } from 'vitest';
import { issueTime, parseServerDate, serverTimeNote, skewOf, SKEW_WARN_MS } from '../../core/server-time.js';
import { fromResponse, type TokenResponse } from '../../core/token.js';
import { startSaxoStandin } from '../../standins/saxo/server.js';

const SEC = 1000;
const HOUR = 3600 * SEC;
// The true (server) instant of the exchange: whole second + 400 ms, so resolution matters.
const TRUE = Date.UTC(2026, 11, 7, 10, 0, 0) + 400;
const httpDate = (ms: number) => new Date(ms).toUTCString(); // IMF-fixdate, whole seconds
const floorSec = (ms: number) => Math.floor(ms / SEC) * SEC;

describe('issueTime: the issue instant comes from the server, whatever the local clock says', () => {
  const rows: { name: string; localOffsetMs: number }[] = [
    { name: 'clock right', localOffsetMs: 0 },
    { name: 'clock 2 h ahead', localOffsetMs: 2 * HOUR },
    { name: 'clock 2 h behind', localOffsetMs: -2 * HOUR },
    { name: 'clock 45 s ahead', localOffsetMs: 45 * SEC },
  ];
  for (const r of rows) {
    it(`${r.name}: issuedAt = Date − 1 s (never after the true grant), skew ≈ ${r.localOffsetMs / SEC} s`, () => {
      const sentAt = TRUE - 150 + r.localOffsetMs;
      const receivedAt = TRUE + 150 + r.localOffsetMs;
      const t = issueTime({ sentAt, receivedAt, serverDate: httpDate(TRUE) });
      expect(t.basis).toBe('server');
      expect(t.issuedAt).toBe(floorSec(TRUE) - SEC);
      // Never after the true grant, never more than 2 s before it (1 s resolution + 1 s margin).
      expect(t.issuedAt).toBeLessThanOrEqual(TRUE);
      expect(TRUE - t.issuedAt).toBeLessThan(2 * SEC);
      expect(Math.abs(t.skewMs! - r.localOffsetMs)).toBeLessThanOrEqual(SEC);
      // The least skew consistent with the header is a lower bound of the real one.
      expect(t.minAbsSkewMs!).toBeLessThanOrEqual(Math.abs(r.localOffsetMs));
      const pair = fromResponse(res(), t, undefined, 'agent:test', 60 * SEC);
      // token_expiry ≤ what the server granted (true grant + expires_in), whatever the local clock.
      expect(pair.accessExpiresAt).toBeLessThanOrEqual(TRUE + 1200 * SEC - 60 * SEC);
      expect(pair.refreshExpiresAt!).toBeLessThanOrEqual(TRUE + 3600 * SEC);
      expect(pair.issuedAt).toBe(t.issuedAt);
    });
  }

  it('1 s resolution: a Date stamped late in its second still gives an instant no later than the grant', () => {
    const grant = floorSec(TRUE) + 999; // the server read 10:00:00.999, its header says 10:00:00
    const t = issueTime({ sentAt: grant - 5, receivedAt: grant + 5, serverDate: httpDate(grant) });
    expect(t.issuedAt).toBe(floorSec(TRUE) - SEC);
    expect(t.issuedAt).toBeLessThan(grant);
    // A grant at the very start of the second (10:00:00.000, processed 1 ms before the stamp).
    const early = issueTime({ sentAt: floorSec(TRUE) - 1, receivedAt: floorSec(TRUE) + 1, serverDate: httpDate(floorSec(TRUE)) });
    expect(early.issuedAt).toBeLessThan(floorSec(TRUE) - 1);
    // The skew's bounds straddle zero within the second: no skew is claimed.
    expect(early.minAbsSkewMs).toBe(0);
  });

  it('no Date header: the local clock when the request went out, bounded by the presented token\'s death', () => {
    const t = issueTime({ sentAt: TRUE, receivedAt: TRUE + 300, serverDate: null });
    expect(t).toMatchObject({ basis: 'local', issuedAt: TRUE, problem: 'no Date header' });
    expect(t.skewMs).toBeUndefined();
    // A local clock 2 h ahead without a Date header: bounded by the presented refresh token's death.
    const ahead = issueTime({ sentAt: TRUE + 2 * HOUR, receivedAt: TRUE + 2 * HOUR + 300, serverDate: undefined, notAfter: TRUE + 20 * 60 * SEC });
    expect(ahead.issuedAt).toBe(TRUE + 20 * 60 * SEC);
    const pair = fromResponse(res(), ahead, undefined, 'agent:test', 60 * SEC);
    // At most one refresh-token life past the true exchange: not 2 h of invented life.
    expect(pair.accessExpiresAt - TRUE).toBeLessThan(2 * HOUR);
  });

  it('a bad Date header is not believed: local clock (bounded), with the reason', () => {
    for (const [bad, reason] of [
      ['yesterday', 'not an HTTP date'],
      ['1733565600', 'not an HTTP date'],
      ['2026-12-07T10:00:00Z', 'not an HTTP date'],
      ['Mon, 99 Foo 2026 99:99:99 GMT', 'not an HTTP date'],
      ['Thu, 01 Jan 1970 00:00:00 GMT', 'implausible'],
      ['', 'no Date header'],
    ] as const) {
      const t = issueTime({ sentAt: TRUE, receivedAt: TRUE + 10, serverDate: bad, notAfter: TRUE - 5 * SEC });
      expect(t.basis, bad).toBe('local');
      expect(t.problem, bad).toContain(reason);
      expect(t.issuedAt, bad).toBe(TRUE - 5 * SEC);
      expect(t.skewMs, bad).toBeUndefined();
    }
  });

  it('a Date header wins over a recorded refresh-token death that was wrong (the server accepted it)', () => {
    const t = issueTime({ sentAt: TRUE, receivedAt: TRUE + 10, serverDate: httpDate(TRUE), notAfter: TRUE - HOUR });
    expect(t.issuedAt).toBe(floorSec(TRUE) - SEC);
  });

  it('the obsolete HTTP date forms are read too', () => {
    expect(parseServerDate('Monday, 07-Dec-26 10:00:00 GMT')).toMatchObject({ ok: true });
    expect(parseServerDate('Mon Dec  7 10:00:00 2026')).toMatchObject({ ok: true });
  });

  it('a corrected clock (appliedSkewMs) reports the machine\'s own skew', () => {
    // The agent's clock already subtracts a known 2 h: it reads true time, the machine reads +2 h.
    const t = issueTime({ sentAt: TRUE - 100, receivedAt: TRUE + 100, serverDate: httpDate(TRUE), appliedSkewMs: 2 * HOUR });
    expect(Math.abs(t.skewMs! - 2 * HOUR)).toBeLessThanOrEqual(SEC);
    expect(t.issuedAt).toBe(floorSec(TRUE) - SEC);
  });
});

describe('serverTimeNote: WARNING above 30 s, never on the Date header\'s own rounding', () => {
  it('warns on ±2 h and says the bots may misjudge the expiry; silent within 30 s', () => {
    for (const off of [2 * HOUR, -2 * HOUR]) {
      const t = issueTime({ sentAt: TRUE + off, receivedAt: TRUE + off + 200, serverDate: httpDate(TRUE) });
      const n = serverTimeNote(t, TRUE);
      expect(n.skew?.by).toBe('saxo');
      expect(n.warning).toMatch(off > 0 ? /7200 s ahead of Saxo/ : /7200 s behind Saxo/);
      expect(n.warning).toMatch(/bots .* may misjudge/);
    }
    const small = serverTimeNote(issueTime({ sentAt: TRUE + 29 * SEC, receivedAt: TRUE + 29 * SEC, serverDate: httpDate(TRUE) }), TRUE);
    expect(small.warning).toBeUndefined();
    expect(small.skew?.ms).toBeGreaterThan(28 * SEC);
    // 30.5 s estimated but only 30 s certain: no WARNING (the header has whole seconds).
    const edge = issueTime({ sentAt: floorSec(TRUE) + 30_000, receivedAt: floorSec(TRUE) + 31_000, serverDate: httpDate(floorSec(TRUE)) });
    expect(edge.minAbsSkewMs).toBeLessThanOrEqual(SKEW_WARN_MS);
    expect(serverTimeNote(edge, TRUE).warning).toBeUndefined();
    const none = serverTimeNote(issueTime({ sentAt: TRUE, receivedAt: TRUE, serverDate: null }), TRUE);
    expect(none.skew).toBeUndefined();
    expect(none.info).toMatch(/no Date header/);
  });

  it('skewOf brackets the skew by the request\'s duration and the header\'s second', () => {
    expect(skewOf({ dateMs: 0, sentAt: 10_000, receivedAt: 10_500 })).toEqual({ estimateMs: 9_750, minAbsMs: 9_000 });
    expect(skewOf({ dateMs: 10_000, sentAt: 0, receivedAt: 500 })).toEqual({ estimateMs: -10_250, minAbsMs: 9_500 });
  });
});

function res(): TokenResponse {
  return { accessToken: 'a', refreshToken: 'r', tokenType: 'Bearer', expiresIn: 1200, refreshExpiresIn: 3600 };
}

describe('the Saxo stand-in stamps its own clock', () => {
  it('every answer\'s Date header is the stand-in\'s clock (injected), not the caller\'s', async () => {
    const standinNow = Date.UTC(2031, 4, 6, 7, 8, 9) + 700;
    const saxo = await startSaxoStandin({ now: () => standinNow });
    try {
      for (const [method, path] of [['HEAD', '/'], ['POST', '/token'], ['GET', '/_admin/stats']] as const) {
        const r = await fetch(saxo.url + path, { method });
        await r.arrayBuffer();
        expect(r.headers.get('date'), `${method} ${path}`).toBe('Tue, 06 May 2031 07:08:09 GMT');
        expect(parseServerDate(r.headers.get('date'))).toEqual({ ok: true, ms: floorSec(standinNow) });
      }
    } finally {
      await saxo.close();
    }
  });
});
