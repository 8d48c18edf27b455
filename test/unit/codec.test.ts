import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFlat, encodeFlat, formatTimestamp, parseFlat, parseTimestamp, serializeFlat } from '../../core/codec.js';
import type { TokenSet } from '../../core/token.js';

const ACCESS = 'eyJhbGciOiJFUzI1NiIsIng1dCI6IkFDQ0VTUy1TRUNSRVQtVEVYVCJ9';
const REFRESH = 'ref-8d1e6f3a-REFRESH-SECRET-TEXT-4c0b';
const APPSECRET = 'app-secret-SHOULD-NOT-LEAK-42';

const base = {
  access_token: ACCESS,
  refresh_token: REFRESH,
  token_expiry: '2026-01-27T14:35:00+00:00',
  app_key: 'appkey123',
  app_secret: APPSECRET,
};

function token(over: Partial<TokenSet> = {}): TokenSet {
  return {
    accessToken: ACCESS,
    refreshToken: REFRESH,
    accessExpiresAt: Date.UTC(2026, 0, 27, 14, 35, 0, 123),
    refreshExpiresAt: Date.UTC(2026, 0, 27, 15, 15, 0),
    issuedAt: Date.UTC(2026, 0, 27, 14, 15, 0),
    generation: 42,
    source: 'agent:vm-1',
    appKey: 'appkey123',
    appSecret: APPSECRET,
    extra: {},
    ...over,
  };
}

describe('parseTimestamp', () => {
  const savedTz = process.env.TZ;
  // Naive timestamps are local time: run these under a zone with a real offset and DST.
  beforeAll(() => {
    process.env.TZ = 'America/New_York';
  });
  afterAll(() => {
    if (savedTz === undefined) delete process.env.TZ;
    else process.env.TZ = savedTz;
  });

  it('runs under a non-UTC zone (the naive cases below would prove nothing under UTC)', () => {
    expect(new Date(2026, 0, 27).getTimezoneOffset()).toBe(300);
  });

  it('reads naive ISO as local time, as the bots write it', () => {
    expect(parseTimestamp('2026-01-27T14:35:00')).toBe(Date.UTC(2026, 0, 27, 19, 35, 0));
    // summer: EDT is UTC-4
    expect(parseTimestamp('2026-07-01T12:00:00')).toBe(Date.UTC(2026, 6, 1, 16, 0, 0));
  });

  it('reads naive ISO with Python microseconds and other fractions', () => {
    expect(parseTimestamp('2026-01-27T14:35:00.123456')).toBe(Date.UTC(2026, 0, 27, 19, 35, 0, 123));
    expect(parseTimestamp('2026-01-27T14:35:00.5')).toBe(Date.UTC(2026, 0, 27, 19, 35, 0, 500));
    expect(parseTimestamp('2026-01-27 14:35:00')).toBe(Date.UTC(2026, 0, 27, 19, 35, 0));
  });

  it('reads Z and ±HH:MM offsets independent of the local zone', () => {
    expect(parseTimestamp('2026-01-27T14:35:00Z')).toBe(Date.UTC(2026, 0, 27, 14, 35));
    expect(parseTimestamp('2026-01-27T14:35:00.250Z')).toBe(Date.UTC(2026, 0, 27, 14, 35, 0, 250));
    expect(parseTimestamp('2026-01-27T14:35:00+00:00')).toBe(Date.UTC(2026, 0, 27, 14, 35));
    expect(parseTimestamp('2026-01-27T14:35:00+01:00')).toBe(Date.UTC(2026, 0, 27, 13, 35));
    expect(parseTimestamp('2026-01-27T14:35:00-05:30')).toBe(Date.UTC(2026, 0, 27, 20, 5));
    expect(parseTimestamp('2026-01-27T14:35:00.123456+02:00')).toBe(Date.UTC(2026, 0, 27, 12, 35, 0, 123));
  });

  it.each([
    '',
    'yesterday',
    '2026-01-27',
    '2026-13-01T00:00:00',
    '2026-02-30T00:00:00',
    '2026-01-27T24:00:00',
    '2026-01-27T14:60:00',
    '2026-01-27T14:35:00+25:00',
    '2026-01-27T14:35:00 UTC',
    '1769524500',
  ])('rejects %j', (s) => {
    expect(parseTimestamp(s)).toBeUndefined();
  });

  it('formats UTC with an explicit +00:00 offset and reads it back', () => {
    const ms = Date.UTC(2026, 0, 27, 14, 35, 0, 123);
    expect(formatTimestamp(ms)).toBe('2026-01-27T14:35:00.123000+00:00');
    expect(formatTimestamp(Date.UTC(2026, 0, 27, 14, 35))).toBe('2026-01-27T14:35:00+00:00');
    expect(parseTimestamp(formatTimestamp(ms))).toBe(ms);
    expect(() => formatTimestamp(Number.NaN)).toThrow(RangeError);
  });

  it('writes what Python datetime.fromisoformat reads as the same instant (real python3)', () => {
    const instants = [Date.UTC(2026, 0, 27, 14, 35, 0, 123), Date.UTC(2026, 6, 1, 0, 0, 0)];
    const strings = instants.map(formatTimestamp);
    const py = spawnSync(
      'python3',
      ['-c', 'import sys,json; from datetime import datetime; print(json.dumps([datetime.fromisoformat(s).timestamp() for s in sys.argv[1:]]))', ...strings],
      { encoding: 'utf8', env: { ...process.env, TZ: 'Asia/Kolkata' } },
    );
    expect(py.status, py.stderr).toBe(0);
    expect((JSON.parse(py.stdout) as number[]).map((s) => Math.round(s * 1000))).toEqual(instants);
  });
});

describe('decodeFlat / encodeFlat', () => {
  it('decodes the bots’ five keys (no generation, no issue time)', () => {
    const r = decodeFlat(base);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.token).toEqual({
      accessToken: ACCESS,
      refreshToken: REFRESH,
      accessExpiresAt: Date.UTC(2026, 0, 27, 14, 35),
      refreshExpiresAt: undefined,
      issuedAt: undefined,
      generation: undefined,
      source: undefined,
      appKey: 'appkey123',
      appSecret: APPSECRET,
      extra: {},
    });
  });

  it('round-trips every field through serializeFlat/parseFlat', () => {
    const t = token({ extra: { bot_note: 'keep me', nested: { a: [1, 2] }, count: 7 } });
    const r = parseFlat(serializeFlat(t));
    expect(r).toEqual({ ok: true, token: t });
  });

  it('encodes all values of known keys as strings, generation as a decimal string', () => {
    const flat = encodeFlat(token());
    for (const k of ['access_token', 'refresh_token', 'token_expiry', 'app_key', 'app_secret', 'refresh_token_expiry', 'issued_at', 'generation', 'source']) {
      expect(typeof flat[k], k).toBe('string');
    }
    expect(flat.generation).toBe('42');
    expect(flat.token_expiry).toMatch(/\+00:00$/);
  });

  it('writes app_key/app_secret and optional fields only when known', () => {
    const flat = encodeFlat(token({ appKey: undefined, appSecret: undefined, generation: undefined, issuedAt: undefined, refreshExpiresAt: undefined, source: undefined }));
    expect(Object.keys(flat).sort()).toEqual(['access_token', 'refresh_token', 'token_expiry']);
  });

  it('preserves unknown keys verbatim, and known fields win over a colliding extra', () => {
    const r = decodeFlat({ ...base, future_key: 'x', weird: 12, obj: { k: true } });
    expect(r.ok && r.token.extra).toEqual({ future_key: 'x', weird: 12, obj: { k: true } });
    if (!r.ok) return;
    const flat = encodeFlat({ ...r.token, extra: { ...r.token.extra, access_token: 'forged' } });
    expect(flat).toMatchObject({ future_key: 'x', weird: 12, obj: { k: true }, access_token: ACCESS });
  });

  it('accepts generation as a number or a numeric string', () => {
    const a = decodeFlat({ ...base, generation: 7 });
    const b = decodeFlat({ ...base, generation: '7' });
    expect(a.ok && a.token.generation).toBe(7);
    expect(b.ok && b.token.generation).toBe(7);
  });

  it('keeps an empty app_key as written (bots may write "")', () => {
    const r = decodeFlat({ ...base, app_key: '' });
    expect(r.ok && r.token.appKey).toBe('');
  });
});

describe('corrupt input → {ok:false} with a reason that holds no secret', () => {
  const cases: [string, unknown][] = [
    ['null', null],
    ['a string', ACCESS],
    ['a number', 5],
    ['an array', [base]],
    ['missing access_token', { ...base, access_token: undefined }],
    ['missing refresh_token', { ...base, refresh_token: undefined }],
    ['missing token_expiry', { ...base, token_expiry: undefined }],
    ['empty access_token', { ...base, access_token: '' }],
    ['empty refresh_token', { ...base, refresh_token: '' }],
    ['bad token_expiry', { ...base, token_expiry: `not-a-date ${REFRESH}` }],
    ['numeric token_expiry', { ...base, token_expiry: 1769524500 }],
    ['bad issued_at', { ...base, issued_at: 'soon' }],
    ['bad refresh_token_expiry', { ...base, refresh_token_expiry: '2026-99-99T00:00:00' }],
    ['numeric access_token', { ...base, access_token: 12345678901 }],
    ['object refresh_token', { ...base, refresh_token: { v: REFRESH } }],
    ['non-numeric generation', { ...base, generation: `g${REFRESH}` }],
    ['negative generation', { ...base, generation: -1 }],
    ['fractional generation', { ...base, generation: 1.5 }],
    ['numeric app_secret', { ...base, app_secret: 99 }],
  ];
  it.each(cases)('%s', (_name, input) => {
    const r = decodeFlat(input);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason.length).toBeGreaterThan(0);
    for (const s of [ACCESS, REFRESH, APPSECRET, 'appkey123']) expect(r.reason).not.toContain(s);
  });

  it.each([
    ['not JSON', `{"access_token": "${ACCESS}", `],
    ['truncated', JSON.stringify(base).slice(0, 40)],
    ['empty file', ''],
    ['JSON array', JSON.stringify([base])],
    ['JSON string', JSON.stringify(REFRESH)],
  ])('parseFlat: %s', (_name, text) => {
    const r = parseFlat(text);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    for (const s of [ACCESS, REFRESH, APPSECRET, ACCESS.slice(0, 20)]) expect(r.reason).not.toContain(s);
  });

  it('names the offending key in the reason', () => {
    const r = decodeFlat({ ...base, refresh_token: '' });
    expect(!r.ok && r.reason).toContain('refresh_token');
  });
});

describe('pair_id: our keys belong to the pair they were written with', () => {
  const ours: TokenSet = {
    accessToken: 'AT-ours-0123456789',
    refreshToken: 'RT-ours-0123456789',
    accessExpiresAt: Date.UTC(2026, 0, 1, 12, 0),
    refreshExpiresAt: Date.UTC(2026, 0, 1, 12, 41),
    issuedAt: Date.UTC(2026, 0, 1, 11, 41),
    generation: 57,
    source: 'cloud',
    appKey: 'k',
    appSecret: 's3cr3t-app',
    extra: {},
  };

  it('is written with our keys and round-trips', () => {
    const flat = encodeFlat(ours);
    expect(flat.pair_id).toMatch(/^[0-9a-f]{16}$/);
    const back = decodeFlat(flat);
    expect(back.ok && back.token).toMatchObject({ generation: 57, refreshExpiresAt: ours.refreshExpiresAt, source: 'cloud' });
  });

  it("a bot's save over our version (three keys replaced, the rest copied) drops the copied keys and keeps the generation only as a floor", () => {
    // The fleet's TokenCoordinator: read the latest payload, replace three keys, add a version.
    const copied = { ...encodeFlat(ours), access_token: 'AT-bot-0123456789', refresh_token: 'RT-bot-0123456789', token_expiry: '2026-01-01T12:30:00.000000' };
    const r = decodeFlat(copied);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.token).toMatchObject({ refreshToken: 'RT-bot-0123456789', generation: undefined, refreshExpiresAt: undefined, issuedAt: undefined, source: undefined, inheritedGeneration: 57 });
    // The stale refresh_token_expiry (12:41) no longer claims the bot's live refresh token is dead at 12:41.
    expect(r.token.appSecret).toBe('s3cr3t-app');
  });

  it("chain_started round-trips, is dropped with the rest of our keys from a bot's copy (its pair may come from its own login), and an unreadable one is dropped, not fatal", () => {
    const started = Date.UTC(2025, 11, 28, 9, 15);
    const flat = encodeFlat({ ...ours, chainStartedAt: started });
    expect(typeof flat.chain_started).toBe('string');
    const back = decodeFlat(flat);
    expect(back.ok && back.token.chainStartedAt).toBe(started);
    const copied = decodeFlat({ ...flat, access_token: 'AT-bot-0123456789', refresh_token: 'RT-bot-0123456789' });
    expect(copied.ok && copied.token.chainStartedAt).toBeUndefined();
    const garbled = decodeFlat({ ...flat, chain_started: 'yesterday' });
    expect(garbled.ok && garbled.token).toMatchObject({ chainStartedAt: undefined, generation: 57 });
    expect(encodeFlat(ours)).not.toHaveProperty('chain_started');
  });

  it('a version written before pair_id existed keeps its keys (cannot tell; one rotation later every version has one)', () => {
    const { pair_id: _, ...legacy } = encodeFlat(ours);
    const r = decodeFlat(legacy);
    expect(r.ok && r.token.generation).toBe(57);
  });
});
