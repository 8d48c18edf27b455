/**
 * core/grant.ts — the one reading of a 2xx (docs/DESIGN.md "Durable before interpreted"): every
 * odd answer that carries a refresh token yields the successor with bounded lifetimes and names
 * what it changed; every answer without one ends the chain. Exhaustive over the field variants.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_ACCESS_LIFE_SEC, DEFAULT_REFRESH_LIFE_SEC, interpretGrant, journalEntry, pairOf, successorFrom } from '../../core/grant.js';
import { pairId, type TokenSet } from '../../core/token.js';
import { saxoIssued } from '../helpers/saxo-time.js';

const A = 'sa_access-token-0123456789abcdef';
const R = 'sr_refresh-token-0123456789abcdef';
const json = (body: unknown, status = 201) => ({ status, contentType: 'application/json', text: JSON.stringify(body) });
const good = { access_token: A, refresh_token: R, token_type: 'Bearer', expires_in: 1200, refresh_token_expires_in: 3600 };

type Row = { name: string; field: 'expires_in' | 'refresh_token_expires_in'; value: unknown; life: number; note: RegExp | undefined };
const ACCESS_ROWS: Row[] = [
  { name: 'plain', field: 'expires_in', value: 1200, life: 1200, note: undefined },
  { name: 'numeric string', field: 'expires_in', value: '1070', life: 1070, note: undefined },
  { name: 'negative', field: 'expires_in', value: -5, life: DEFAULT_ACCESS_LIFE_SEC, note: /^expires_in=-5 → 600 \(default\)$/ },
  { name: 'zero', field: 'expires_in', value: 0, life: DEFAULT_ACCESS_LIFE_SEC, note: /^expires_in=0 → 600 \(default\)$/ },
  { name: 'non-numeric text', field: 'expires_in', value: '1200 seconds', life: DEFAULT_ACCESS_LIFE_SEC, note: /^expires_in="1200 seconds" → 600 \(default\)$/ },
  { name: 'missing', field: 'expires_in', value: undefined, life: DEFAULT_ACCESS_LIFE_SEC, note: /^expires_in=missing → 600 \(default\)$/ },
  { name: 'null', field: 'expires_in', value: null, life: DEFAULT_ACCESS_LIFE_SEC, note: /^expires_in="null" → 600/ },
  { name: 'boolean', field: 'expires_in', value: true, life: DEFAULT_ACCESS_LIFE_SEC, note: /^expires_in="true" → 600/ },
  { name: 'absurdly large', field: 'expires_in', value: 1e9, life: 3600, note: /^expires_in=1000000000 → 3600$/ },
  { name: '1e300', field: 'expires_in', value: 1e300, life: 3600, note: /^expires_in=1e\+300 → 3600$/ },
];
const REFRESH_ROWS: Row[] = [
  { name: 'plain', field: 'refresh_token_expires_in', value: 3600, life: 3600, note: undefined },
  { name: 'negative', field: 'refresh_token_expires_in', value: -1, life: DEFAULT_REFRESH_LIFE_SEC, note: /^refresh_token_expires_in=-1 → 3600 \(default\)$/ },
  { name: 'zero', field: 'refresh_token_expires_in', value: 0, life: DEFAULT_REFRESH_LIFE_SEC, note: /refresh_token_expires_in=0 → 3600 \(default\)/ },
  { name: 'non-numeric', field: 'refresh_token_expires_in', value: 'an hour', life: DEFAULT_REFRESH_LIFE_SEC, note: /refresh_token_expires_in="an hour" → 3600 \(default\)/ },
  { name: 'missing', field: 'refresh_token_expires_in', value: undefined, life: DEFAULT_REFRESH_LIFE_SEC, note: /refresh_token_expires_in=missing → 3600 \(default\)/ },
  { name: 'absurdly large', field: 'refresh_token_expires_in', value: 1e300, life: 86400, note: /refresh_token_expires_in=1e\+300 → 86400/ },
];

describe('interpretGrant: a 2xx with a refresh token is always the successor', () => {
  it.each([...ACCESS_ROWS, ...REFRESH_ROWS])('$field $name → $life s', (row) => {
    const body: Record<string, unknown> = { ...good, [row.field]: row.value };
    if (row.value === undefined) delete body[row.field];
    for (const status of [200, 201, 203]) {
      const g = interpretGrant(json(body, status));
      expect(g.kind).toBe('pair');
      if (g.kind !== 'pair') return;
      expect(g.response.refreshToken).toBe(R);
      expect(g.response.accessToken).toBe(A);
      expect(row.field === 'expires_in' ? g.response.expiresIn : g.response.refreshExpiresIn).toBe(row.life);
      if (row.note) expect(g.adjusted).toEqual([expect.stringMatching(row.note)]);
      else expect(g.adjusted).toEqual([]);
    }
  });

  it('every odd field at once: each named, none fatal; token_type defaults to Bearer', () => {
    const g = interpretGrant(json({ access_token: A, refresh_token: R, expires_in: 'soon', refresh_token_expires_in: -1 }));
    expect(g).toMatchObject({ kind: 'pair', response: { tokenType: 'Bearer', expiresIn: 600, refreshExpiresIn: 3600 } });
    expect(g.kind === 'pair' && g.adjusted).toHaveLength(2);
  });

  it('a refresh token without an access token: the successor, stored as already expired (due at once)', () => {
    const g = interpretGrant(json({ refresh_token: R, expires_in: 1200 }));
    expect(g).toMatchObject({ kind: 'pair', response: { refreshToken: R, expiresIn: 0 } });
    expect(g.kind === 'pair' && g.adjusted).toContain('access_token=missing → due now');
  });

  it('warnings carry no token text, even when a field echoes one', () => {
    const g = interpretGrant(json({ ...good, expires_in: `${R} ${A}` }));
    expect(g.kind === 'pair' && g.adjusted.join(' ')).not.toContain(R.slice(3));
  });
});

describe('interpretGrant: a 2xx without a refresh token ends the chain', () => {
  it.each([
    { name: 'no refresh_token', raw: json({ access_token: A, expires_in: 1200 }), access: A, why: /without a refresh_token/ },
    { name: 'empty refresh_token', raw: json({ access_token: A, refresh_token: '', expires_in: 1200 }), access: A, why: /without a refresh_token/ },
    { name: 'refresh_token not a string', raw: json({ access_token: A, refresh_token: 42 }), access: A, why: /without a refresh_token/ },
    { name: 'HTML body', raw: { status: 200, contentType: 'text/html', text: '<html><body>ok</body></html>' }, access: undefined, why: /non-JSON 200 body \(text\/html, 28 bytes\)/ },
    { name: 'empty body', raw: { status: 204, contentType: '', text: '' }, access: undefined, why: /non-JSON 204 body/ },
    { name: 'JSON array', raw: json([good]), access: undefined, why: /non-JSON/ },
    { name: 'JSON null', raw: json(null), access: undefined, why: /non-JSON/ },
  ])('$name', ({ raw, access, why }) => {
    const g = interpretGrant(raw);
    expect(g.kind).toBe('no_refresh_token');
    if (g.kind !== 'no_refresh_token') return;
    expect(g.accessToken).toBe(access);
    expect(g.why).toMatch(why);
    expect(() => pairOf({ ...raw, retryAfter: null, date: null })).toThrow(/malformed|without|non-JSON/);
  });
});

describe('successorFrom: the same answer gives the same successor live and after a restart', () => {
  const T0 = 1_800_000_000_000;
  const presented: TokenSet = {
    accessToken: 'sa_old-0123456789abcdef', refreshToken: 'sr_old-0123456789abcdef', accessExpiresAt: T0, refreshExpiresAt: T0 + 3600_000,
    issuedAt: T0 - 1200_000, generation: 7, chainStartedAt: T0 - 86400_000, source: 'agent:x', extra: { bot_note: 'kept' }, appKey: 'k', appSecret: 's',
  };
  const entry = journalEntry({ ...json({ ...good, expires_in: -5 }), retryAfter: null, date: new Date(T0).toUTCString() }, presented, T0);

  it('the entry names the presented pair by its tag only', () => {
    expect(entry.presented).toEqual({ pairId: pairId(presented.refreshToken), generation: 7, chainStartedAt: T0 - 86400_000 });
    expect(JSON.stringify(entry.presented)).not.toContain(presented.refreshToken);
  });

  it('with the presented pair at hand: its child (generation, parent link, credentials, unknown keys)', () => {
    const s = successorFrom(entry, presented, 'agent:x', 60_000);
    expect(s.kind).toBe('pair');
    if (s.kind !== 'pair') return;
    expect(s.next).toMatchObject({ refreshToken: R, generation: 8, parentId: pairId(presented.refreshToken), chainStartedAt: presented.chainStartedAt, appKey: 'k', extra: { bot_note: 'kept' } });
    expect(s.next.accessExpiresAt).toBe(saxoIssued(T0) + 600_000 - 60_000); // issued on Saxo's clock
    expect(s.adjusted).toEqual(['expires_in=-5 → 600 (default)']);
  });

  it('without it (lost with the crash): still ordered above it by the journaled tag and generation', () => {
    const s = successorFrom(entry, undefined, 'agent:x', 60_000);
    expect(s.kind === 'pair' && s.next).toMatchObject({ refreshToken: R, generation: 8, parentId: pairId(presented.refreshToken), chainStartedAt: presented.chainStartedAt });
    const other = { ...presented, refreshToken: 'sr_someone-else-0123456789' };
    expect(successorFrom(entry, other, 'agent:x', 60_000)).toMatchObject({ kind: 'pair', next: { parentId: pairId(presented.refreshToken), generation: 8 } });
  });

  it('a journaled answer without a refresh token ends the chain', () => {
    const e = journalEntry({ ...json({ access_token: A }), retryAfter: null, date: null }, presented, T0);
    // The new access token is kept with the consumed pair (for the bots until a login), nothing else changes.
    expect(successorFrom(e, presented, 'agent:x', 60_000)).toMatchObject({
      kind: 'ended',
      kept: { ...presented, accessToken: A, accessExpiresAt: T0 + 600_000 - 60_000 },
    });
    expect(successorFrom(journalEntry({ ...json({ access_token: A, expires_in: 1200 }), retryAfter: null, date: null }, presented, T0), presented, 'agent:x', 60_000)).toMatchObject({
      kept: { refreshToken: presented.refreshToken, generation: 7, accessExpiresAt: T0 + 1200_000 - 60_000 },
    });
    expect(successorFrom(journalEntry({ status: 200, contentType: 'text/html', text: '<p>', retryAfter: null, date: null }, presented, T0), presented, 'agent:x', 60_000)).toEqual({ kind: 'ended', why: expect.any(String), kept: undefined });
  });
});
