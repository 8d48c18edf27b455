/**
 * The pure rules of docs/DESIGN.md "Nothing dangerous is silent" and "Consumed announcements":
 * decide()'s consumed fence, the TOKEN_CONSUMED schema (and what an agent built before it does
 * with one), the event built from a spent pair, the login-required page and its repetition.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { consumedEvent } from '../../core/announce.js';
import { decide, type Policy, type View } from '../../core/decide.js';
import { loginAlertDue, loginRequiredMessage } from '../../core/failures.js';
import { parseTokenEvent, parseTokenRotated, tokenConsumedEventSchema } from '../../core/gcp/event-schema.js';
import { createLogger } from '../../core/log.js';
import { pairId, type TokenSet } from '../../core/token.js';
import { Health } from '../../agent/health.js';
import { createLocalSide } from '../../agent/local-side.js';
import { VirtualClock } from '../../standins/virtual-clock.js';

const T0 = Date.UTC(2026, 0, 5, 9, 0, 0);
const MIN = 60_000;
const POLICY: Policy = { refreshThresholdMs: 5 * MIN, refreshTokenAlertMs: 0 };

function pair(n: number, leftMin: number): TokenSet {
  return {
    accessToken: `AT-${n}-secretaccess`,
    refreshToken: `RT-${n}-secretrefresh`,
    accessExpiresAt: T0 + leftMin * MIN,
    refreshExpiresAt: T0 + 60 * MIN,
    issuedAt: T0 - 10 * MIN,
    generation: n,
    source: 'cloud',
    extra: {},
  };
}

const view = (over: Partial<View>): View => ({ now: T0, cache: { kind: 'missing' }, known: undefined, secret: { kind: 'unavailable' }, ...over });

describe('decide(): the consumed fence', () => {
  it('a due pair announced as spent is not refreshed, not written to the cache, not pushed', () => {
    const spent = pair(7, 3);
    const open = decide(view({ known: spent }), POLICY);
    expect(open).toMatchObject({ refresh: true, writeCache: true });
    const fenced = decide(view({ known: spent, consumed: new Set([pairId(spent.refreshToken)]) }), POLICY);
    expect(fenced).toMatchObject({ refresh: false, writeCache: false, pushSecret: false, consumed: true, best: spent });
  });

  it('the fence holds against a forced secret view too (Secret Manager answered with the same spent pair)', () => {
    const spent = pair(7, 3);
    const plan = decide(view({ known: spent, secret: { kind: 'read', read: undefined }, consumed: new Set([pairId(spent.refreshToken)]) }), POLICY);
    expect(plan.pushSecret).toBe(false);
    expect(plan.refresh).toBe(false);
  });

  it('never fences a different pair: another id, or a newer pair that replaced the spent one', () => {
    const spent = pair(7, 3);
    const next = { ...pair(8, 19), parentId: pairId(spent.refreshToken) };
    expect(decide(view({ known: spent, consumed: new Set([pairId('some-other-token')]) }), POLICY)).toMatchObject({ refresh: true });
    const plan = decide(view({ known: spent, secret: { kind: 'read', read: { name: 'projects/p/secrets/s/versions/9', version: 9, token: next } }, consumed: new Set([pairId(spent.refreshToken)]) }), POLICY);
    expect(plan.best?.refreshToken).toBe(next.refreshToken);
    expect(plan.consumed).toBeUndefined();
    expect(plan.writeCache).toBe(true);
  });

  it('an empty set changes nothing (the Plan is the same object shape as without one)', () => {
    const t = pair(3, 3);
    expect(decide(view({ known: t, consumed: new Set() }), POLICY)).toEqual(decide(view({ known: t }), POLICY));
  });
});

describe('TOKEN_CONSUMED: schema and event', () => {
  const spent = pair(4, 3);
  const ev = consumedEvent(spent, 'agent:vm-a', T0);

  it('carries the 16-hex pairId and the generation, never a token', () => {
    expect(ev).toEqual({ type: 'TOKEN_CONSUMED', pairId: pairId(spent.refreshToken), generation: 4, source: 'agent:vm-a', publishedAt: new Date(T0).toISOString() });
    const text = JSON.stringify(ev);
    expect(text).not.toContain(spent.refreshToken);
    expect(text).not.toContain(spent.accessToken);
    expect(ev.pairId).toMatch(/^[0-9a-f]{16}$/);
  });

  it('parses as consumed; a TOKEN_ROTATED still parses as rotated', () => {
    const r = parseTokenEvent(Buffer.from(JSON.stringify(ev)));
    expect(r).toEqual({ ok: true, consumed: ev });
    const rot = { type: 'TOKEN_ROTATED', version: 'projects/p/secrets/s/versions/3', generation: 3, accessExpiresAt: new Date(T0).toISOString(), source: 'cloud', publishedAt: new Date(T0).toISOString() };
    expect(parseTokenEvent(Buffer.from(JSON.stringify(rot)))).toEqual({ ok: true, event: rot });
  });

  it('refuses extra keys (a token riding along), a pairId that is not 16 hex, an unknown type', () => {
    const withToken = { ...ev, refresh_token: spent.refreshToken };
    const r1 = parseTokenEvent(Buffer.from(JSON.stringify(withToken)));
    expect(r1.ok).toBe(false);
    if (!r1.ok) expect(r1.reason).not.toContain(spent.refreshToken);
    expect(() => tokenConsumedEventSchema.parse(withToken)).toThrow();
    expect(parseTokenEvent(Buffer.from(JSON.stringify({ ...ev, pairId: spent.refreshToken }))).ok).toBe(false);
    expect(parseTokenEvent(Buffer.from(JSON.stringify({ ...ev, type: 'TOKEN_SOMETHING' }))).ok).toBe(false);
  });

  it('an agent built before TOKEN_CONSUMED (parseTokenRotated only) finds it malformed: logged and acked, never acted on', () => {
    const old = parseTokenRotated(Buffer.from(JSON.stringify(ev)));
    expect(old.ok).toBe(false);
    if (!old.ok) expect(old.reason).toMatch(/type/);
  });
});

describe('login required: the page and its repetition', () => {
  it('names the environment, what happened and the action', () => {
    const m = loginRequiredMessage('LIVE', 'invalid_grant');
    expect(m).toMatch(/^ALERT: Login required for Saxo LIVE: Saxo rejected the newest refresh token \(invalid_grant\)/);
    expect(m).toContain('run `npx token-keeper login` or use the re-login link');
    expect(loginRequiredMessage('SIM', 'refresh_token_expired')).toContain('the refresh token has expired');
  });

  it('due the first time and every repeat interval after', () => {
    expect(loginAlertDue(undefined, T0, 15 * MIN)).toBe(true);
    expect(loginAlertDue(T0, T0 + 15 * MIN - 1, 15 * MIN)).toBe(false);
    expect(loginAlertDue(T0, T0 + 15 * MIN, 15 * MIN)).toBe(true);
  });

  it('Health: ALERT at once, again every 15 minutes while it lasts, silent once a newer pair is adopted', () => {
    const lines: { severity: string; event: string; message: string }[] = [];
    const logger = createLogger({ write: (l) => lines.push(JSON.parse(l) as (typeof lines)[number]) });
    const clock = new VirtualClock(T0);
    const h = new Health(logger, 5, {}, { clock, repeatMs: 15 * MIN, environment: 'SIM' });
    const dead = pair(2, -1);
    const alerts = () => lines.filter((l) => l.event === 'login_required');
    for (let m = 0; m <= 46; m++) {
      h.requireLogin('invalid_grant', dead);
      clock.t = T0 + (m + 1) * MIN;
    }
    // Minutes 0, 15, 30, 45.
    expect(alerts()).toHaveLength(4);
    expect(alerts().every((l) => l.severity === 'ALERT')).toBe(true);
    h.adopted(pair(3, 19), dead);
    expect(h.loginRequired).toBe(false);
    h.requireLogin('invalid_grant', pair(3, 19));
    expect(alerts()).toHaveLength(5); // a new episode pages at once
  });
});

describe('a failed cache write says where the only copy of the pair is', () => {
  async function persistWith(stateOk: boolean) {
    const lines: { event: string; message: string; onlyCopy?: string }[] = [];
    const logger = createLogger({ write: (l) => lines.push(JSON.parse(l) as (typeof lines)[number]) });
    const side = createLocalSide({
      lock: () => Promise.resolve({ release: () => Promise.resolve() }),
      cache: { path: '/data/saxo_token_cache.json', read: () => Promise.resolve({ kind: 'missing' }), write: () => Promise.reject(Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' })) },
      credentials: {},
      logger,
      known: () => undefined,
      adopt: () => undefined,
      consumed: () => undefined,
      saveState: () => Promise.resolve(stateOk ? undefined : new Error('EROFS: state')),
    });
    const r = await side.persist(pair(5, 19));
    expect(r.cacheError?.message).toMatch(/EROFS/);
    return lines.filter((l) => l.event === 'cache_write_failed');
  }

  it('the state file was written: "only in the agent\'s state file"', async () => {
    const [l] = await persistWith(true);
    expect(l?.message).toMatch(/the new token is only in the agent's state file$/);
    expect(l?.onlyCopy).toBe('state_file');
  });

  it('the state file failed too: "only in this process\'s memory", never a claim about the state file', async () => {
    const [l] = await persistWith(false);
    expect(l?.message).toMatch(/only in this process's memory/);
    expect(l?.message).not.toMatch(/only in the agent's state file/);
    expect(l?.onlyCopy).toBe('memory');
  });
});

describe("blanking a spent refresh token in the bots' cache (agent/cache-file.ts)", () => {
  it('blanks only the matching pair, keeps every other key byte for byte, and is idempotent', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-blank-'));
    const path = join(dir, 'saxo_token_cache.json');
    const cache = createCacheFile(path);
    const t = pair(6, 10);
    writeFileSync(path, JSON.stringify({ access_token: t.accessToken, refresh_token: t.refreshToken, token_expiry: '2026-01-05T09:10:00+00:00', app_key: 'K', bot_note: 'kept' }));
    expect(await cache.blankRefreshToken!(pairId('another-token'))).toBe('other');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ refresh_token: t.refreshToken });
    expect(await cache.blankRefreshToken!(pairId(t.refreshToken))).toBe('blanked');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ access_token: t.accessToken, refresh_token: '', token_expiry: '2026-01-05T09:10:00+00:00', app_key: 'K', bot_note: 'kept' });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await cache.blankRefreshToken!(pairId(t.refreshToken))).toBe('other');
    expect((await cache.read()).kind).toBe('corrupt'); // what decide() then sees: no pair to present or hand out
    rmSync(dir, { recursive: true });
    expect(await cache.blankRefreshToken!(pairId(t.refreshToken))).toBe('missing');
  });
});
