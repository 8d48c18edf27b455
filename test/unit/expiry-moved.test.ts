/**
 * docs/DESIGN.md "Server time": an expiry only moves later with a new refresh token. The pure rule
 * (core/decide.ts believedExpiry) and what decide() makes of it.
 */
import { describe, expect, it } from 'vitest';
import { believedExpiry, decide, type Policy } from '../../core/decide.js';
import type { TokenSet } from '../../core/token.js';

const T0 = Date.UTC(2026, 11, 7, 10, 0, 0);
const S = 1000;
const MIN = 60 * S;
const POLICY: Policy = { refreshThresholdMs: 5 * MIN, refreshTokenAlertMs: 0 };
const Y2099 = Date.UTC(2099, 0, 1);

function pair(over: Partial<TokenSet> = {}): TokenSet {
  return {
    accessToken: 'AT-moved-1',
    refreshToken: 'RT-moved-1',
    accessExpiresAt: T0 + 19 * MIN,
    refreshExpiresAt: T0 + 60 * MIN,
    issuedAt: T0,
    generation: 7,
    source: 'agent:vm',
    extra: {},
    ...over,
  };
}

describe('believedExpiry', () => {
  it('the same refresh token with a later access expiry: not believed, the recorded one stands', () => {
    const known = pair();
    const r = believedExpiry(pair({ accessExpiresAt: Y2099 }), known);
    expect(r.moved).toBe(true);
    expect(r.token.accessExpiresAt).toBe(known.accessExpiresAt);
    expect(r.token.refreshToken).toBe(known.refreshToken);
  });

  it('a later refresh-token expiry alone is not believed either', () => {
    const r = believedExpiry(pair({ refreshExpiresAt: Y2099 }), pair());
    expect(r.moved).toBe(true);
    expect(r.token.refreshExpiresAt).toBe(T0 + 60 * MIN);
  });

  it('within a second (a rewrite in whole seconds), earlier, or a new refresh token: believed as is', () => {
    expect(believedExpiry(pair({ accessExpiresAt: T0 + 19 * MIN + 999 }), pair()).moved).toBe(false);
    expect(believedExpiry(pair({ accessExpiresAt: T0 + 10 * MIN }), pair()).moved).toBe(false);
    const successor = pair({ refreshToken: 'RT-moved-2', accessExpiresAt: Y2099 });
    expect(believedExpiry(successor, pair())).toEqual({ token: successor, moved: false });
    expect(believedExpiry(pair({ accessExpiresAt: Y2099 }), undefined).moved).toBe(false);
  });
});

describe('decide() with the known pair\'s expiry moved later', () => {
  it('a hand-edited 2099 token_expiry in the cache: the earlier expiry decides, the cache is rewritten, a refresh is due on time', () => {
    const known = pair();
    const now = T0 + 16 * MIN; // 3 min left on the true expiry: inside the 5 min threshold
    const plan = decide({ now, cache: { kind: 'ok', token: pair({ accessExpiresAt: Y2099 }) }, known, secret: { kind: 'absent' } }, POLICY);
    expect(plan.expiryMoved).toEqual(['cache']);
    expect(plan.best?.accessExpiresAt).toBe(known.accessExpiresAt);
    expect(plan.refresh).toBe(true);
    expect(plan.health).toBe('due');
    expect(plan.writeCache).toBe(true);
    expect(plan.accessLeftMs).toBe(3 * MIN);
  });

  it('the secret holding the same pair with a later expiry is put right too (push)', () => {
    const known = pair();
    const plan = decide(
      { now: T0, cache: { kind: 'ok', token: pair() }, known, secret: { kind: 'read', read: { name: 'v/3', version: 3, token: pair({ accessExpiresAt: Y2099 }) } } },
      POLICY,
    );
    expect(plan.expiryMoved).toEqual(['secret']);
    expect(plan.pushSecret).toBe(true);
    expect(plan.writeCache).toBe(false);
    expect(plan.best?.accessExpiresAt).toBe(known.accessExpiresAt);
  });

  it('nothing moved: no expiryMoved, no rewrite', () => {
    const plan = decide({ now: T0, cache: { kind: 'ok', token: pair() }, known: pair(), secret: { kind: 'absent' } }, POLICY);
    expect(plan.expiryMoved).toBeUndefined();
    expect(plan.writeCache).toBe(false);
  });
});
