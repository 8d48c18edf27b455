import { describe, expect, it } from 'vitest';
import {
  compareFreshness,
  fromResponse,
  type TokenResponse,
  type TokenSet,
} from '../../core/token.js';

/** Order helpers over compareFreshness, as the reconciler applies it (production has no separate API). */
const isNewer = (a: TokenSet | undefined, than: TokenSet | undefined): boolean => !!a && (!than || compareFreshness(a, than) > 0);
function newest(...candidates: (TokenSet | undefined)[]): TokenSet | undefined {
  let best: TokenSet | undefined;
  for (const c of candidates) if (c && isNewer(c, best)) best = c;
  return best;
}

const T0 = Date.UTC(2025, 0, 6, 9, 0, 0);
const MIN = 60_000;

/** A keeper-written pair (generation, issue time, refresh expiry all known). */
function keeper(gen: number, issuedAt: number, over: Partial<TokenSet> = {}): TokenSet {
  return {
    accessToken: `AT-keeper-${gen}-${issuedAt}`,
    refreshToken: `RT-keeper-${gen}-${issuedAt}`,
    accessExpiresAt: issuedAt + 19 * MIN,
    refreshExpiresAt: issuedAt + 60 * MIN,
    issuedAt,
    generation: gen,
    source: 'cloud',
    extra: {},
    ...over,
  };
}

/** A bot-written pair: only the five flat keys, so no generation / issue time / refresh expiry. */
function bot(accessExpiresAt: number, tag = String(accessExpiresAt)): TokenSet {
  return { accessToken: `AT-bot-${tag}`, refreshToken: `RT-bot-${tag}`, accessExpiresAt, extra: {} };
}

const sign = (n: number) => Math.sign(n);

describe('compareFreshness', () => {
  it('is 0 for the same refresh token, whatever else differs (same pair read twice)', () => {
    const a = keeper(3, T0);
    const b = { ...a, accessToken: 'other', generation: 9, accessExpiresAt: T0 + 99 * MIN, extra: { x: 1 } };
    expect(compareFreshness(a, b)).toBe(0);
    expect(compareFreshness(b, a)).toBe(0);
    expect(compareFreshness(a, { ...a })).toBe(0);
    expect(compareFreshness(bot(T0), bot(T0))).toBe(0);
  });

  it.each([
    // [label, a, b, expected sign]
    ['higher generation wins over a later expiry', keeper(5, T0), keeper(4, T0 + 30 * MIN), 1],
    ['lower generation loses despite later expiry and issue', keeper(4, T0 + 30 * MIN), keeper(5, T0), -1],
    ['same generation → later access expiry wins', keeper(5, T0 + MIN), keeper(5, T0), 1],
    [
      'same generation, same expiry → later issue wins',
      keeper(5, T0 + MIN, { accessExpiresAt: T0 + 19 * MIN }),
      keeper(5, T0, { accessExpiresAt: T0 + 19 * MIN }),
      1,
    ],
    ['bot vs bot → later access expiry wins', bot(T0 + 20 * MIN), bot(T0 + 19 * MIN), 1],
    ['bot vs bot → earlier access expiry loses', bot(T0 + 19 * MIN), bot(T0 + 20 * MIN), -1],
    ['bot (later expiry) beats keeper pair: generation only counts when both have one', bot(T0 + 40 * MIN), keeper(7, T0), 1],
    ['keeper pair (later expiry) beats bot', keeper(1, T0 + 30 * MIN), bot(T0 + 20 * MIN), 1],
    [
      'equal expiry, keeper has an issue time, bot has none → keeper wins',
      keeper(2, T0),
      bot(T0 + 19 * MIN),
      1,
    ],
    [
      'one side lacks a generation, equal expiry → issue time decides',
      keeper(2, T0, { generation: undefined }),
      keeper(9, T0 - MIN, { accessExpiresAt: T0 + 19 * MIN }),
      1,
    ],
  ] as const)('%s', (_label, a, b, expected) => {
    expect(sign(compareFreshness(a, b))).toBe(expected);
    // Antisymmetric: swapping the arguments flips the sign.
    expect(sign(compareFreshness(b, a))).toBe(-expected);
  });

  it('two distinct bot pairs with identical expiry and no issue time compare equal (tie, not an error)', () => {
    expect(compareFreshness(bot(T0, 'x'), bot(T0, 'y'))).toBe(0);
  });

  it('a stale writer that copied an old keeper file (older generation) loses to the current pair', () => {
    const current = keeper(12, T0 + 45 * MIN);
    // The copy is a byte-for-byte old cache file; its access expiry may even look later if the
    // copier "touched" it, but its generation betrays it.
    const staleCopy = keeper(10, T0 + 15 * MIN);
    const touched = { ...staleCopy, accessExpiresAt: current.accessExpiresAt + 5 * MIN };
    expect(compareFreshness(staleCopy, current)).toBeLessThan(0);
    expect(compareFreshness(touched, current)).toBeLessThan(0);
    expect(isNewer(staleCopy, current)).toBe(false);
    expect(isNewer(current, staleCopy)).toBe(true);
  });

  it('a stale writer that copied an old bot-format file (no generation) loses by expiry', () => {
    const current = keeper(12, T0 + 45 * MIN);
    const staleBot = bot(T0 + 20 * MIN);
    expect(compareFreshness(staleBot, current)).toBeLessThan(0);
  });

  it('is a consistent total order over one realistic chain of keeper pairs', () => {
    const chain = [1, 2, 3, 4, 5].map((g) => keeper(g, T0 + (g - 1) * 15 * MIN));
    for (let i = 0; i < chain.length; i++) {
      for (let j = 0; j < chain.length; j++) {
        expect(sign(compareFreshness(chain[i]!, chain[j]!))).toBe(sign(i - j));
      }
    }
  });

  it('orders a realistic chain that mixes keeper and bot pairs when the keeper renumbers after the bot', () => {
    // gen1 → gen2 → bot refresh (no gen) → keeper refresh with the bot's pair as prev, numbered
    // explicitly above every generation seen (what a caller must do, see the it.fails below).
    const g1 = keeper(1, T0);
    const g2 = keeper(2, T0 + 15 * MIN);
    const b = bot(T0 + 28 * MIN + 19 * MIN);
    const g3 = keeper(3, T0 + 45 * MIN);
    const chain = [g1, g2, b, g3];
    for (let i = 0; i < chain.length; i++) {
      for (let j = 0; j < chain.length; j++) {
        expect(sign(compareFreshness(chain[i]!, chain[j]!))).toBe(sign(i - j));
      }
    }
  });

  it(
    'generation-reset guard: the successor of a bot-written pair stays unnumbered, so it compares newer than the pre-bot keeper pair',
    () => {
      // Keeper pairs gen 1, gen 2; a bot (lowest tier) refreshes gen 2 and writes a five-key cache
      // (no generation); the agent then refreshes the bot's pair with fromResponse(prev = bot pair).
      const g1 = fromResponse(res('a'), T0, undefined, 'cloud');
      const g2 = fromResponse(res('b'), T0 + 15 * MIN, g1, 'cloud');
      const botPair = bot(T0 + 28 * MIN + 19 * MIN);
      const successor = fromResponse(res('c'), T0 + 45 * MIN, botPair, 'agent:vm');
      expect(successor.generation).toBeUndefined(); // callers number it (withNextGeneration)
      // Generation 1 here would compare below g2 and make decide() pick the consumed g2 (I1/I2).
      expect(compareFreshness(successor, g2)).toBeGreaterThan(0);
    },
  );

  it(
    'generation-reset guard (consequence): newest() is order-independent for the chain [g2, bot, successor]',
    () => {
      const g1 = fromResponse(res('a'), T0, undefined, 'cloud');
      const g2 = fromResponse(res('b'), T0 + 15 * MIN, g1, 'cloud');
      const botPair = bot(T0 + 28 * MIN + 19 * MIN);
      const successor = fromResponse(res('c'), T0 + 45 * MIN, botPair, 'agent:vm');
      expect(newest(g2, botPair, successor)).toBe(successor); // passes
      expect(newest(successor, g2, botPair)).toBe(successor);
    },
  );
});

describe('chain start', () => {
  it('a login starts the chain; every successor carries its start; after a bot-written pair it is unknown, not guessed', () => {
    const login = fromResponse(res('a'), T0, undefined, 'login');
    const g2 = fromResponse(res('b'), T0 + 15 * MIN, login, 'cloud');
    expect([login.chainStartedAt, g2.chainStartedAt]).toEqual([T0, T0]);
    // Five keys: a bot's fallback refresh, or its own interactive login — nobody can tell which.
    const botPair = bot(T0 + 40 * MIN);
    const successor = fromResponse(res('c'), T0 + 45 * MIN, botPair, 'agent:vm');
    expect(successor.chainStartedAt).toBeUndefined();
  });
});

describe('isNewer / newest', () => {
  const a = keeper(1, T0);
  const b = keeper(2, T0 + 15 * MIN);
  const c = keeper(3, T0 + 30 * MIN);

  it('isNewer handles undefined on either side', () => {
    expect(isNewer(undefined, a)).toBe(false);
    expect(isNewer(undefined, undefined)).toBe(false);
    expect(isNewer(a, undefined)).toBe(true);
    expect(isNewer(a, a)).toBe(false);
    expect(isNewer(b, a)).toBe(true);
  });

  it('newest() of nothing, or only undefined, is undefined', () => {
    expect(newest()).toBeUndefined();
    expect(newest(undefined)).toBeUndefined();
    expect(newest(undefined, undefined, undefined)).toBeUndefined();
  });

  // Every permutation of {a, b, c} with undefined holes sprinkled in must pick c.
  const perms: TokenSet[][] = [
    [a, b, c],
    [a, c, b],
    [b, a, c],
    [b, c, a],
    [c, a, b],
    [c, b, a],
  ];
  const withHoles = perms.flatMap((p) => [p, [undefined, ...p], [p[0], undefined, p[1], p[2], undefined]]);
  it.each(withHoles.map((p) => [p.map((t) => (t ? `gen${t.generation}` : 'undef')).join(','), p] as const))(
    'newest(%s) picks the newest and ignores undefined',
    (_l, p) => {
      expect(newest(...p)).toBe(c);
    },
  );

  it('newest() keeps the first of equal pairs (no needless churn)', () => {
    const copy = { ...b };
    expect(newest(b, copy)).toBe(b);
    expect(newest(copy, b)).toBe(copy);
    expect(newest(undefined, a, b, copy)).toBe(b);
  });

  it('newest() picks a bot pair with a later expiry over an older keeper pair, and vice versa', () => {
    const later = bot(c.accessExpiresAt + MIN);
    expect(newest(a, later, c)).toBe(later);
    const earlier = bot(a.accessExpiresAt - MIN);
    expect(newest(earlier, a)).toBe(a);
  });
});

function res(tag: string, over: Partial<TokenResponse> = {}): TokenResponse {
  return {
    accessToken: `AT-${tag}`,
    refreshToken: `RT-${tag}`,
    tokenType: 'Bearer',
    expiresIn: 1200,
    refreshExpiresIn: 3600,
    ...over,
  };
}

describe('fromResponse', () => {
  it('builds a pair the way the bots write token_expiry: now + expires_in − 60 s', () => {
    const t = fromResponse(res('x'), T0, undefined, 'cloud');
    expect(t).toEqual({
      accessToken: 'AT-x',
      refreshToken: 'RT-x',
      accessExpiresAt: T0 + 1200_000 - 60_000,
      refreshExpiresAt: T0 + 3600_000,
      issuedAt: T0,
      chainStartedAt: T0, // no predecessor: this pair starts a chain (a login)
      generation: 1,
      source: 'cloud',
      appKey: undefined,
      appSecret: undefined,
      extra: {},
    });
  });

  it.each([
    // [expiresIn s, marginMs or undefined (default), expected access life ms]
    [1200, undefined, 1_140_000],
    [1070, undefined, 1_010_000],
    [120, undefined, 60_000], // exactly 2×margin: half the life == margin
    [119, undefined, 59_500], // below 2×margin: clamped to half
    [60, undefined, 30_000],
    [2, undefined, 1_000], // scaled-down test lifetime
    [1.5, undefined, 750], // fractional seconds
    [0, undefined, 0],
    [1200, 0, 1_200_000],
    [1200, 120_000, 1_080_000],
    [100, 120_000, 50_000], // custom margin also clamped
  ] as const)('expires_in=%s, margin=%s → access life %s ms', (expiresIn, margin, lifeMs) => {
    const t = fromResponse(res('m', { expiresIn }), T0, undefined, 'agent:h', margin);
    expect(t.accessExpiresAt - T0).toBe(lifeMs);
    // The margin never pushes expiry before issue, and never beyond the real life.
    expect(t.accessExpiresAt).toBeGreaterThanOrEqual(T0);
    expect(t.accessExpiresAt).toBeLessThanOrEqual(T0 + expiresIn * 1000);
  });

  it.each([
    [3600, T0 + 3_600_000],
    [3599.5, T0 + 3_599_500],
    [6, T0 + 6_000],
    [0, T0],
    [undefined, undefined],
  ] as const)('refresh_token_expires_in=%s → refreshExpiresAt (no margin applied)', (rin, expected) => {
    const t = fromResponse(res('r', { refreshExpiresIn: rin }), T0, undefined, 'cloud');
    expect(t.refreshExpiresAt).toBe(expected);
  });

  it.each([
    [undefined, 1],
    [keeper(1, T0), 2],
    [keeper(41, T0), 42],
    [keeper(0, T0), 1],
  ] as const)('generation follows prev (%#)', (prev, gen) => {
    expect(fromResponse(res('g'), T0 + MIN, prev, 'cloud').generation).toBe(gen);
  });

  it('successive responses form a strictly increasing chain under compareFreshness', () => {
    let prev: TokenSet | undefined;
    const seen: TokenSet[] = [];
    for (let i = 0; i < 6; i++) {
      const t = fromResponse(res(`c${i}`), T0 + i * 15 * MIN, prev, 'cloud');
      for (const s of seen) expect(compareFreshness(t, s)).toBeGreaterThan(0);
      seen.push(t);
      prev = t;
    }
    expect(prev?.generation).toBe(6);
  });

  it('carries app key/secret and unknown keys over from prev, without sharing the extra object', () => {
    const prev = keeper(4, T0, { appKey: 'KEY', appSecret: 'APPSECRET', extra: { bot_id: 'b7', nested: { n: 1 } } });
    const t = fromResponse(res('n'), T0 + MIN, prev, 'agent:vm1');
    expect(t.appKey).toBe('KEY');
    expect(t.appSecret).toBe('APPSECRET');
    expect(t.extra).toEqual({ bot_id: 'b7', nested: { n: 1 } });
    expect(t.extra).not.toBe(prev.extra);
    t.extra.added = true;
    expect(prev.extra).not.toHaveProperty('added');
    // Everything else comes from the response and `now`, not from prev.
    expect(t.accessToken).toBe('AT-n');
    expect(t.refreshToken).toBe('RT-n');
    expect(t.issuedAt).toBe(T0 + MIN);
    expect(t.source).toBe('agent:vm1');
  });

  it('carries app credentials from a bot-written prev too', () => {
    const prev: TokenSet = { ...bot(T0), appKey: 'K2', appSecret: 'S2', extra: { custom: 'x' } };
    const t = fromResponse(res('b'), T0, prev, 'agent:vm1');
    expect([t.appKey, t.appSecret, t.extra]).toEqual(['K2', 'S2', { custom: 'x' }]);
  });

  it('does not mutate the response or prev', () => {
    const r = res('i');
    const prev = keeper(3, T0, { extra: { k: 'v' } });
    const rCopy = structuredClone(r);
    const prevCopy = structuredClone(prev);
    fromResponse(r, T0 + MIN, prev, 'cloud');
    expect(r).toEqual(rCopy);
    expect(prev).toEqual(prevCopy);
  });
});
