/**
 * The pure decision function, over the whole input space: every combination of what the cache,
 * the agent's own record and Secret Manager hold, at every interesting moment of the best pair's
 * life. An independent oracle computes the expected Plan; invariants are checked over the product.
 */
import { describe, expect, it } from 'vitest';
import { assess, decide, decideCloud, type Gates, type Plan, type Policy, type SecretView, type View } from '../../core/decide.js';
import { shouldAlert } from '../../core/failures.js';
import type { CacheRead, SecretRead } from '../../core/ports.js';
import { compareFreshness, fromResponse, pairId, type TokenSet } from '../../core/token.js';

const T0 = Date.UTC(2025, 0, 6, 9, 0, 0);
const S = 1000;
const MIN = 60 * S;
const POLICY: Policy = { refreshThresholdMs: 5 * MIN, refreshTokenAlertMs: 10 * MIN };
const SECRET_NAME = 'projects/p/secrets/saxo-token/versions/';

// ── Token fixtures ──────────────────────────────────────────────────────────────────────────────
// Three generations of one chain: 0 = older, 1 = "same" (the reference), 2 = newer.
type Level = 0 | 1 | 2;
type Style = 'keeper' | 'bot';
const LEVELS: Level[] = [0, 1, 2];
const APP_SECRET = 'APPSECRET-d3c1sion';

/** A fresh object on every call: each source is a separate read, never the same reference. */
function tok(level: Level, style: Style): TokenSet {
  const issuedAt = T0 + level * 15 * MIN;
  const base = {
    accessToken: `AT-${style}-L${level}-secretaccess`,
    refreshToken: `RT-${style}-L${level}-secretrefresh`,
    accessExpiresAt: issuedAt + 19 * MIN,
    appKey: 'APPKEY',
    appSecret: APP_SECRET,
    extra: { bot_id: 'b1' },
  };
  if (style === 'bot') return base; // five flat keys only: no generation / issue time / refresh expiry
  return { ...base, refreshExpiresAt: issuedAt + 60 * MIN, issuedAt, generation: 10 + level, source: 'cloud' };
}

const ALL_TOKEN_TEXT = (['keeper', 'bot'] as const).flatMap((st) =>
  LEVELS.flatMap((l) => [tok(l, st).accessToken, tok(l, st).refreshToken]),
).concat([APP_SECRET]);

// ── The input dimensions ────────────────────────────────────────────────────────────────────────
type CacheCase = 'ok-older' | 'ok-same' | 'ok-newer' | 'missing' | 'corrupt';
type KnownCase = 'absent' | 'older' | 'same' | 'newer';
type SecretCase =
  | 'absent'
  | 'unknown'
  | 'unavailable'
  | 'read-none'
  | 'read-corrupt'
  | 'read-older'
  | 'read-same'
  | 'read-newer';
type TimeCase = 'fresh' | 'at-threshold' | 'due' | 'access-expired' | 'refresh-dead' | 'refresh-unknown';

const CACHE_CASES: CacheCase[] = ['ok-older', 'ok-same', 'ok-newer', 'missing', 'corrupt'];
const KNOWN_CASES: KnownCase[] = ['absent', 'older', 'same', 'newer'];
const SECRET_CASES: SecretCase[] = [
  'absent',
  'unknown',
  'unavailable',
  'read-none',
  'read-corrupt',
  'read-older',
  'read-same',
  'read-newer',
];
const TIME_CASES: TimeCase[] = ['fresh', 'at-threshold', 'due', 'access-expired', 'refresh-dead', 'refresh-unknown'];

const levelOf = (s: string): Level | undefined =>
  s.endsWith('older') ? 0 : s.endsWith('same') ? 1 : s.endsWith('newer') ? 2 : undefined;

function cacheRead(c: CacheCase, style: Style): CacheRead {
  if (c === 'missing') return { kind: 'missing' };
  if (c === 'corrupt') return { kind: 'corrupt', reason: 'invalid JSON at position 3' };
  return { kind: 'ok', token: tok(levelOf(c)!, style) };
}

function secretView(c: SecretCase, style: Style): SecretView {
  switch (c) {
    case 'absent':
    case 'unknown':
    case 'unavailable':
      return { kind: c };
    case 'read-none':
      return { kind: 'read', read: undefined };
    case 'read-corrupt':
      return { kind: 'read', read: { name: `${SECRET_NAME}7`, version: 7, token: undefined, error: 'payload is not JSON' } };
    default: {
      const l = levelOf(c)!;
      return { kind: 'read', read: { name: `${SECRET_NAME}${5 + l}`, version: 5 + l, token: tok(l, style) } };
    }
  }
}

/** Place `now` relative to the best pair's life (or anywhere when there is none). */
function nowFor(t: TimeCase, best: TokenSet | undefined): number {
  if (!best) return T0 + 30 * MIN;
  const acc = best.accessExpiresAt;
  const thr = POLICY.refreshThresholdMs;
  switch (t) {
    case 'fresh':
      return acc - thr - 2 * MIN;
    case 'at-threshold':
      return acc - thr; // exactly the threshold left: `≤` means due
    case 'due':
    case 'refresh-unknown':
      return acc - thr / 2;
    case 'access-expired':
      return acc + MIN; // refresh token still has ~40 min
    case 'refresh-dead':
      return best.refreshExpiresAt! + S;
  }
}

interface Case {
  label: string;
  cache: CacheCase;
  known: KnownCase;
  secret: SecretCase;
  time: TimeCase;
  view: View;
  /** The oracle's answer. */
  bestLevel?: Level | undefined;
  bestToken?: TokenSet | undefined;
  origin?: 'cache' | 'known' | 'secret' | undefined;
  candidates: TokenSet[];
}

function buildCase(cache: CacheCase, known: KnownCase, secret: SecretCase, time: TimeCase): Case {
  const style: Style = time === 'refresh-unknown' ? 'bot' : 'keeper';
  // Candidate levels in decide()'s tie-break order: cache, known, secret.
  const srcLevels: ['cache' | 'known' | 'secret', Level | undefined][] = [
    ['cache', cache.startsWith('ok') ? levelOf(cache) : undefined],
    ['known', levelOf(known)],
    ['secret', secret.startsWith('read-') ? levelOf(secret) : undefined],
  ];
  let bestLevel: Level | undefined;
  let origin: Case['origin'];
  for (const [src, l] of srcLevels) {
    if (l !== undefined && (bestLevel === undefined || l > bestLevel)) {
      bestLevel = l;
      origin = src;
    }
  }
  const bestToken = bestLevel === undefined ? undefined : tok(bestLevel, style);
  const view: View = {
    now: nowFor(time, bestToken),
    cache: cacheRead(cache, style),
    known: levelOf(known) === undefined ? undefined : tok(levelOf(known)!, style),
    secret: secretView(secret, style),
  };
  const candidates = srcLevels.flatMap(([, l]) => (l === undefined ? [] : [tok(l, style)]));
  return {
    label: `cache=${cache} known=${known} secret=${secret} time=${time}`,
    cache,
    known,
    secret,
    time,
    view,
    bestLevel,
    bestToken,
    origin,
    candidates,
  };
}

const PRODUCT: Case[] = CACHE_CASES.flatMap((c) =>
  KNOWN_CASES.flatMap((k) => SECRET_CASES.flatMap((s) => TIME_CASES.map((t) => buildCase(c, k, s, t)))),
);

// ── The oracle ──────────────────────────────────────────────────────────────────────────────────
function expectedPlan(k: Case): Plan {
  if (k.bestLevel === undefined || !k.bestToken) {
    return {
      action: { kind: 'login_required', reason: 'no_token' },
      writeCache: false,
      updateKnown: false,
      pushSecret: false,
      refresh: false,
      health: 'login_required',
      refreshTokenExpiring: false,
      notes: [], // checked separately
    };
  }
  const bl = k.bestLevel;
  const cacheLevel = k.cache.startsWith('ok') ? levelOf(k.cache) : undefined;
  const knownLevel = levelOf(k.known);
  const secretLevel = k.secret.startsWith('read-') ? levelOf(k.secret) : undefined;
  const b = k.bestToken;
  const accessLeftMs = b.accessExpiresAt - k.view.now;
  const refreshLeftMs = b.refreshExpiresAt === undefined ? undefined : b.refreshExpiresAt - k.view.now;
  const byTime: Record<TimeCase, Pick<Plan, 'refresh' | 'health'>> = {
    fresh: { refresh: false, health: 'fresh' },
    'at-threshold': { refresh: true, health: 'due' },
    due: { refresh: true, health: 'due' },
    'access-expired': { refresh: true, health: 'expired' },
    'refresh-dead': { refresh: false, health: 'login_required' },
    'refresh-unknown': { refresh: true, health: 'due' },
  };
  // No gates: the agent's check ('trigger'): open a session when due, else say why not.
  const { refresh, health } = byTime[k.time];
  const action: Plan['action'] = refresh
    ? { kind: 'present', pair: b }
    : health === 'login_required'
      ? { kind: 'login_required', reason: 'refresh_token_expired', pair: b }
      : { kind: 'fresh', pair: b, origin: k.origin };
  return {
    action,
    best: b,
    origin: k.origin,
    writeCache: cacheLevel === undefined || cacheLevel < bl,
    updateKnown: knownLevel === undefined || knownLevel < bl,
    pushSecret: k.secret.startsWith('read-') && (secretLevel === undefined || secretLevel < bl),
    ...byTime[k.time],
    accessLeftMs,
    refreshLeftMs,
    refreshTokenExpiring: false, // never in the product: see the dedicated table below
    notes: [],
  };
}

function expectedNotePatterns(k: Case): RegExp[] {
  const p: RegExp[] = [];
  if (k.cache === 'corrupt') p.push(/cache corrupt: invalid JSON at position 3/);
  if (k.secret === 'read-corrupt') p.push(/secret version 7 unusable: payload is not JSON/);
  if (k.bestLevel === undefined) p.push(/no token in any source/);
  // A stale writer only when the cache is behind what the process already knew (not merely behind
  // a newer secret version: that is the normal hand-off from the cloud).
  else if (k.cache.startsWith('ok') && levelOf(k.cache)! < k.bestLevel && k.known !== 'absent' && levelOf(k.cache)! < levelOf(k.known)!) {
    p.push(/stale writer/);
  }
  return p;
}

// ── The product ─────────────────────────────────────────────────────────────────────────────────
describe(`decide: full cross-product (${PRODUCT.length} cases)`, () => {
  it('covers 5 cache × 4 known × 8 secret × 6 time states', () => {
    expect(PRODUCT).toHaveLength(5 * 4 * 8 * 6);
    expect(new Set(PRODUCT.map((k) => k.label)).size).toBe(PRODUCT.length);
  });

  it.each(PRODUCT.map((k) => [k.label, k] as const))('%s', (_label, k) => {
    const before = structuredClone(k.view);
    const plan = decide(k.view, POLICY);
    const { notes, ...rest } = plan;
    const { notes: _n, ...want } = expectedPlan(k);
    expect(rest).toEqual(want);
    // Every expected note present, nothing else said.
    const patterns = expectedNotePatterns(k);
    for (const re of patterns) expect(notes.some((n) => re.test(n)), `note ${re}`).toBe(true);
    expect(notes).toHaveLength(patterns.length);
    // Pure: inputs untouched.
    expect(k.view).toEqual(before);
  });
});

describe('decide: invariants over the product', () => {
  const results = PRODUCT.map((k) => ({ k, plan: decide(k.view, POLICY) }));

  it('I2: best is never older than any candidate, and is one of them', () => {
    for (const { k, plan } of results) {
      if (k.candidates.length === 0) {
        expect(plan.best, k.label).toBeUndefined();
        continue;
      }
      expect(plan.best, k.label).toBeDefined();
      for (const c of k.candidates) expect(compareFreshness(plan.best!, c), k.label).toBeGreaterThanOrEqual(0);
      expect(k.candidates.some((c) => c.refreshToken === plan.best!.refreshToken), k.label).toBe(true);
    }
  });

  it('writeCache is true whenever the cache is missing/corrupt/older (given a best), false when it holds best', () => {
    for (const { k, plan } of results) {
      if (!plan.best) {
        expect(plan.writeCache, k.label).toBe(false);
        continue;
      }
      const c = k.view.cache;
      if (c.kind !== 'ok' || compareFreshness(c.token, plan.best) < 0) expect(plan.writeCache, k.label).toBe(true);
      else {
        expect(c.token.refreshToken, k.label).toBe(plan.best.refreshToken);
        expect(plan.writeCache, k.label).toBe(false);
      }
    }
  });

  it('a refresh is always done with best — never with a stale cache pair when a newer one is known', () => {
    let refreshes = 0;
    for (const { k, plan } of results) {
      if (!plan.refresh) continue;
      refreshes++;
      expect(plan.best, k.label).toBeDefined();
      expect(plan.best!.refreshToken, k.label).toBe(k.bestToken!.refreshToken);
      const c = k.view.cache;
      if (c.kind === 'ok' && k.bestLevel! > levelOf(k.cache)!) {
        expect(plan.best!.refreshToken, k.label).not.toBe(c.token.refreshToken);
        expect(plan.origin, k.label).not.toBe('cache');
      }
    }
    expect(refreshes).toBeGreaterThan(100); // the property was actually exercised
  });

  it("no token anywhere ('none') never triggers a refresh or any write", () => {
    const none = results.filter(({ k }) => k.candidates.length === 0);
    expect(none.length).toBeGreaterThan(0);
    for (const { k, plan } of none) {
      expect(plan, k.label).toMatchObject({
        refresh: false,
        writeCache: false,
        updateKnown: false,
        pushSecret: false,
        health: 'login_required',
        refreshTokenExpiring: false,
      });
      expect(plan.origin, k.label).toBeUndefined();
    }
  });

  it("pushSecret is only ever true when the secret was read (never standalone / unknown / unavailable)", () => {
    for (const { k, plan } of results) if (plan.pushSecret) expect(k.view.secret.kind, k.label).toBe('read');
    expect(results.some(({ plan }) => plan.pushSecret)).toBe(true);
  });

  it('never refreshes when the refresh token is dead, nor without a best', () => {
    for (const { k, plan } of results) {
      if (!plan.refresh) continue;
      expect(plan.best, k.label).toBeDefined();
      if (plan.refreshLeftMs !== undefined) expect(plan.refreshLeftMs, k.label).toBeGreaterThan(0);
    }
    for (const { k, plan } of results.filter(({ k }) => k.time === 'refresh-dead')) {
      expect(plan.refresh, k.label).toBe(false);
      expect(plan.health, k.label).toBe('login_required');
    }
  });

  it('refresh ⇔ due and refresh token not known dead (given a best)', () => {
    for (const { k, plan } of results) {
      if (!plan.best) continue;
      const due = plan.accessLeftMs! <= POLICY.refreshThresholdMs;
      const dead = plan.refreshLeftMs !== undefined && plan.refreshLeftMs <= 0;
      expect(plan.refresh, k.label).toBe(due && !dead);
    }
  });

  it('updateKnown is false exactly when the known pair is best', () => {
    for (const { k, plan } of results) {
      if (!plan.best) continue;
      const knownIsBest = !!k.view.known && compareFreshness(k.view.known, plan.best) === 0;
      expect(plan.updateKnown, k.label).toBe(!knownIsBest);
    }
  });

  it('notes never contain token text or the app secret', () => {
    let noted = 0;
    for (const { k, plan } of results) {
      for (const n of plan.notes) {
        noted++;
        for (const s of ALL_TOKEN_TEXT) expect(n, k.label).not.toContain(s);
        expect(n, k.label).not.toMatch(/secretaccess|secretrefresh/);
      }
    }
    expect(noted).toBeGreaterThan(0);
  });

  it('is deterministic: the same view gives the same plan', () => {
    for (const { k, plan } of results.filter((_, i) => i % 37 === 0)) {
      expect(decide(structuredClone(k.view), POLICY), k.label).toEqual(plan);
    }
  });
});

// ── Boundaries and mixed writers ────────────────────────────────────────────────────────────────
function only(t: TokenSet, now: number, policy = POLICY): Plan {
  return decide({ now, cache: { kind: 'ok', token: t }, known: t, secret: { kind: 'absent' } }, policy);
}

describe('decide: time boundaries', () => {
  const t = tok(1, 'keeper');
  const A = t.accessExpiresAt;
  const R = t.refreshExpiresAt!;
  const thr = POLICY.refreshThresholdMs;

  it.each([
    ['threshold + 1 ms left', A - thr - 1, 'fresh', false],
    ['exactly threshold left', A - thr, 'due', true],
    ['threshold − 1 ms left', A - thr + 1, 'due', true],
    ['1 ms of access left', A - 1, 'due', true],
    ['access expires this instant', A, 'expired', true],
    ['access expired 1 ms ago', A + 1, 'expired', true],
    ['refresh token has 1 ms left', R - 1, 'expired', true],
    ['refresh token dies this instant', R, 'login_required', false],
    ['refresh token died 1 ms ago', R + 1, 'login_required', false],
    ['refresh token died a day ago', R + 24 * 60 * MIN, 'login_required', false],
  ] as const)('%s → health %s, refresh %s', (_l, now, health, refresh) => {
    const plan = only(t, now);
    expect(plan.health).toBe(health);
    expect(plan.refresh).toBe(refresh);
    expect(plan.accessLeftMs).toBe(A - now);
    expect(plan.refreshLeftMs).toBe(R - now);
  });

  it.each([
    ['threshold 0: due only once expired', { refreshThresholdMs: 0, refreshTokenAlertMs: 0 }, A - 1, 'fresh'],
    ['threshold 0 at expiry', { refreshThresholdMs: 0, refreshTokenAlertMs: 0 }, A, 'expired'],
    ['fractional threshold (scaled tests)', { refreshThresholdMs: 1500.5, refreshTokenAlertMs: 0 }, A - 1500.5, 'due'],
    ['threshold larger than the whole life: always due', { refreshThresholdMs: 30 * MIN, refreshTokenAlertMs: 0 }, t.issuedAt!, 'due'],
  ] as const)('%s', (_l, policy, now, health) => {
    expect(only(t, now, policy).health).toBe(health);
  });

  it('a bot-written pair (no refresh expiry) long past its access expiry still asks for a refresh, never "dead"', () => {
    const b = tok(1, 'bot');
    const plan = only(b, b.accessExpiresAt + 10 * MIN);
    expect(plan).toMatchObject({ health: 'expired', refresh: true, refreshLeftMs: undefined, refreshTokenExpiring: false });
  });
});

describe('decide: refreshTokenExpiring', () => {
  // A pair whose refresh token outlives its access token only briefly (e.g. a session cap).
  const now = T0;
  const pair = (accessLeft: number, refreshLeft: number | undefined): TokenSet => ({
    ...tok(1, 'keeper'),
    accessExpiresAt: now + accessLeft,
    refreshExpiresAt: refreshLeft === undefined ? undefined : now + refreshLeft,
  });
  const alert = POLICY.refreshTokenAlertMs;

  it.each([
    ['not due, refresh left < alert', 15 * MIN, 8 * MIN, true],
    ['not due, refresh left exactly alert', 15 * MIN, alert, true],
    ['not due, refresh left alert + 1 ms', 15 * MIN, alert + 1, false],
    ['refresh left 1 ms: the refresh is due instead (see below)', 15 * MIN, 1, false],
    ['due (will be refreshed this round anyway)', 4 * MIN, 8 * MIN, false],
    ['due exactly at threshold', POLICY.refreshThresholdMs, 8 * MIN, false],
    ['refresh token dead', 15 * MIN, 0, false],
    ['refresh expiry unknown (bot-written)', 15 * MIN, undefined, false],
    ['plenty of refresh left', 15 * MIN, 45 * MIN, false],
  ] as const)('%s → %s', (_l, accessLeft, refreshLeft, expected) => {
    const plan = only(pair(accessLeft, refreshLeft), now);
    expect(plan.refreshTokenExpiring).toBe(expected);
    if (expected) expect(plan.refresh).toBe(false);
  });

  it.each([
    ['1 ms', 1],
    ['exactly the threshold', POLICY.refreshThresholdMs],
  ])('a refresh token that dies before its access token is due (%s left) makes the pair due: the chain, not the access token, is what counts', (_l, refreshLeft) => {
    const plan = only(pair(15 * MIN, refreshLeft), now);
    expect(plan).toMatchObject({ refresh: true, health: 'due', refreshTokenExpiring: false });
  });

  it('alert threshold 0 never flags', () => {
    expect(only(pair(15 * MIN, 1), now, { ...POLICY, refreshTokenAlertMs: 0 }).refreshTokenExpiring).toBe(false);
  });
});

describe('decide: mixed keeper / bot writers', () => {
  const known = tok(1, 'keeper'); // gen 11, expires T0+34min
  const botNewer: TokenSet = { ...tok(2, 'bot') }; // a bot refreshed as the last tier: expires T0+49min
  const botStale: TokenSet = { ...tok(0, 'bot') }; // someone copied an old five-key file back: T0+19min
  const now = known.accessExpiresAt - 2 * MIN;
  const read = (t: TokenSet | undefined, version = 9): SecretView => ({
    kind: 'read',
    read: { name: `${SECRET_NAME}${version}`, version, token: t },
  });

  it('a newer bot-written cache pair is adopted: known updated, pushed to the secret, cache left alone', () => {
    const plan = decide({ now, cache: { kind: 'ok', token: botNewer }, known, secret: read(tok(1, 'keeper')) }, POLICY);
    expect(plan).toMatchObject({ origin: 'cache', writeCache: false, updateKnown: true, pushSecret: true });
    expect(plan.best?.refreshToken).toBe(botNewer.refreshToken);
    expect(plan.refresh).toBe(false); // the bot's pair is fresh
    expect(plan.refreshLeftMs).toBeUndefined();
    expect(plan.notes).toEqual([]);
  });

  it('a stale bot-format copy in the cache is undone and never refreshed with', () => {
    const plan = decide(
      { now: known.accessExpiresAt - MIN, cache: { kind: 'ok', token: botStale }, known, secret: read(tok(1, 'keeper')) },
      POLICY,
    );
    expect(plan).toMatchObject({ origin: 'known', writeCache: true, updateKnown: false, pushSecret: false, refresh: true });
    expect(plan.best?.refreshToken).toBe(known.refreshToken);
    expect(plan.notes.some((n) => /stale writer/.test(n))).toBe(true);
  });

  it('a stale keeper-file copy (older generation, later-looking expiry) is undone', () => {
    const copy: TokenSet = { ...tok(0, 'keeper'), accessExpiresAt: known.accessExpiresAt + 30 * MIN };
    const plan = decide({ now, cache: { kind: 'ok', token: copy }, known, secret: { kind: 'unavailable' } }, POLICY);
    expect(plan).toMatchObject({ origin: 'known', writeCache: true, pushSecret: false });
    expect(plan.best?.refreshToken).toBe(known.refreshToken);
  });

  it('the secret holding a newer pair than cache and known wins, and both local copies are updated', () => {
    const newer = tok(2, 'keeper');
    const plan = decide({ now, cache: { kind: 'ok', token: known }, known, secret: read(newer) }, POLICY);
    expect(plan).toMatchObject({ origin: 'secret', writeCache: true, updateKnown: true, pushSecret: false, refresh: false });
    expect(plan.best?.refreshToken).toBe(newer.refreshToken);
  });

  it('a corrupt secret with no error text still yields a note, and the secret is repaired from local', () => {
    const plan = decide(
      { now, cache: { kind: 'ok', token: known }, known, secret: { kind: 'read', read: { name: `${SECRET_NAME}3`, version: 3 } } },
      POLICY,
    );
    expect(plan.pushSecret).toBe(true);
    expect(plan.notes).toEqual([expect.stringMatching(/secret version 3 unusable: corrupt/)]);
  });
});

it(
  'generation-reset guard (see token.test.ts): after a bot-written pair, decide() picks the successor, not the consumed pre-bot pair',
  () => {
    const res = (tag: string) => ({ accessToken: `AT-${tag}`, refreshToken: `RT-${tag}`, tokenType: 'Bearer', expiresIn: 1200, refreshExpiresIn: 3600 });
    const g1 = fromResponse(res('g1'), T0, undefined, 'cloud');
    const g2 = fromResponse(res('g2'), T0 + 15 * MIN, g1, 'cloud'); // the agent's record stops here (agent down)
    const botPair: TokenSet = { ...tok(0, 'bot'), accessExpiresAt: T0 + 47 * MIN }; // bot refreshed g2 at T0+28
    const successor = fromResponse(res('s'), T0 + 45 * MIN, botPair, 'agent:vm'); // unnumbered
    const plan = decide(
      {
        now: successor.accessExpiresAt - 4 * MIN,
        cache: { kind: 'ok', token: successor },
        known: g2,
        secret: { kind: 'read', read: { name: `${SECRET_NAME}8`, version: 8, token: successor } },
      },
      POLICY,
    );
    expect(plan.best?.refreshToken).toBe(successor.refreshToken);
    expect(plan.writeCache).toBe(false);
  },
);

// ── decideCloud ─────────────────────────────────────────────────────────────────────────────────
describe('decideCloud (secret only, cloud threshold)', () => {
  const CLOUD = 10 * MIN;
  const t = tok(1, 'keeper');
  const A = t.accessExpiresAt;
  const R = t.refreshExpiresAt!;
  const read = (token: TokenSet | undefined, error?: string): SecretRead => ({
    name: `${SECRET_NAME}4`,
    version: 4,
    token,
    error,
  });

  it.each([
    ['fresh (11 min left)', A - 11 * MIN, 'fresh', false],
    ['cloud threshold + 1 ms', A - CLOUD - 1, 'fresh', false],
    ['exactly the cloud threshold', A - CLOUD, 'due', true],
    ['inside the window', A - 7 * MIN, 'due', true],
    ['access expired, refresh alive', A + MIN, 'expired', true],
    ['refresh token dead', R, 'login_required', false],
  ] as const)('%s → %s, refresh=%s', (_l, now, health, refresh) => {
    const plan = decideCloud(now, read(tok(1, 'keeper')), CLOUD);
    expect(plan).toMatchObject({ health, refresh, origin: 'secret', pushSecret: false, refreshTokenExpiring: false });
    expect(plan.best?.refreshToken).toBe(t.refreshToken);
    expect(plan.notes).toEqual([]);
  });

  it('no enabled version → login required, nothing to do', () => {
    const plan = decideCloud(T0, undefined, CLOUD);
    expect(plan.best).toBeUndefined();
    expect(plan).toMatchObject({ refresh: false, pushSecret: false, writeCache: false, health: 'login_required' });
    expect(plan.notes).toEqual(['no token in any source']);
  });

  it('corrupt payload → login required, a note naming the version, no token text', () => {
    const plan = decideCloud(T0, read(undefined, 'checksum mismatch'), CLOUD);
    expect(plan.best).toBeUndefined();
    expect(plan).toMatchObject({ refresh: false, pushSecret: false, health: 'login_required' });
    expect(plan.notes).toEqual([expect.stringMatching(/secret version 4 unusable: checksum mismatch/), 'no token in any source']);
  });

  it('never flags refreshTokenExpiring (alerting is the failure counter’s job in the cloud)', () => {
    const short = { ...t, refreshExpiresAt: A + MIN };
    expect(decideCloud(A - 20 * MIN, read(short), CLOUD).refreshTokenExpiring).toBe(false);
  });

  it('uses the cloud threshold, not the agent one: 8 min left is due for the cloud, fresh for the agent', () => {
    const now = A - 8 * MIN;
    expect(decideCloud(now, read(t), CLOUD).refresh).toBe(true);
    expect(only(t, now).refresh).toBe(false);
  });
});

// ── shouldAlert ─────────────────────────────────────────────────────────────────────────────────
describe('shouldAlert', () => {
  it.each([
    [0, false],
    [1, false],
    [2, false],
    [3, false],
    [4, false],
    [5, true],
    [6, false],
    [7, false],
    [8, false],
    [9, false],
    [10, true],
    [11, false],
    [14, false],
    [15, true],
    [16, false],
    [100, true],
    [101, false],
  ] as const)('max 5: %i consecutive failures → %s', (n, expected) => {
    expect(shouldAlert(n, 5)).toBe(expected);
  });

  it.each([1, 2, 3, 4, 7, 10, 13])('max %i: alerts exactly at max, 2·max, 3·max …', (max) => {
    for (let n = 0; n <= 6 * max + 1; n++) {
      expect(shouldAlert(n, max), `n=${n}`).toBe(n > 0 && n % max === 0);
    }
  });

  it('negative counts never alert', () => {
    expect(shouldAlert(-5, 5)).toBe(false);
    expect(shouldAlert(-1, 1)).toBe(false);
  });
});

describe('decide: room for the successor is an input (docs/DESIGN.md "Durable before interpreted")', () => {
  const NO_ROOM = { ok: false as const, reason: 'no room for the successor: 0 bytes free in /data' };
  it.each(PRODUCT.filter((k) => k.cache === 'ok-same' && k.secret === SECRET_CASES[0]).map((k) => [k.label, k] as const))('%s', (_label, k) => {
    const without = decide(k.view, POLICY);
    // Room: the plan is exactly the plan without the input.
    expect(decide({ ...k.view, room: { ok: true } }, POLICY)).toEqual(without);
    // No room: nothing is presented; every other part of the plan stands (repairs, adoption, pushes).
    const blocked = decide({ ...k.view, room: NO_ROOM }, POLICY);
    const action = without.action.kind === 'present' ? { kind: 'wait', reason: 'no_room', pair: without.best } : without.action;
    expect(blocked).toEqual({ ...without, refresh: false, noRoom: NO_ROOM.reason, action });
  });
});

// ── The action under every gate ─────────────────────────────────────────────────────────────────
// One source (the known pair, generation 11) at three moments of its life, crossed with every
// gate decide() weighs. The oracle is the rule table of docs/ARCHITECTURE.md "One refresh, as code
// walks it", written as a list read top to bottom.
describe('decide: the action, over every gate', () => {
  const b = tok(1, 'keeper');
  const at = { fresh: nowFor('fresh', b), due: nowFor('due', b), dead: nowFor('refresh-dead', b) };
  type When = keyof typeof at;
  type Presented = 'none' | 'older' | 'same';
  type CloudCase = 'none' | 'in-window' | 'missed' | 'last-chance';
  const patience = (c: CloudCase) => {
    const base = { expiredGraceMs: 10 * MIN, schedulePeriodMs: MIN, leaseTtlMs: MIN, pushRetryMs: 5 * S };
    if (c === 'in-window') return { ...base, agentThresholdMs: MIN }; // 2.5 min left > 1 min: the cloud's own window
    if (c === 'missed') return { ...base, agentThresholdMs: 4 * MIN }; // inside the agent's window, the chain has time
    if (c === 'last-chance') return { ...base, agentThresholdMs: 4 * MIN, schedulePeriodMs: 30 * MIN }; // no later run can save it
    return undefined;
  };
  const bools = [false, true];
  const cases = (['fresh', 'due', 'dead'] as When[]).flatMap((when) =>
    (['none', 'older', 'same'] as Presented[]).flatMap((presented) =>
      bools.flatMap((rejected) =>
        bools.flatMap((pinRefuses) =>
          bools.flatMap((superseded) =>
            bools.flatMap((consumed) =>
              bools.flatMap((noRoom) =>
                bools.flatMap((force) =>
                  bools.flatMap((refused) => (['none', 'in-window', 'missed', 'last-chance'] as CloudCase[]).map((cloud) => ({ when, presented, rejected, pinRefuses, superseded, consumed, noRoom, force, refused, cloud }))),
                ),
              ),
            ),
          ),
        ),
      ),
    ),
  );
  type C = (typeof cases)[number];

  function expected(c: C): Plan['action'] {
    const pair = b;
    if (c.presented === 'older') return { kind: 'adopt', pair, origin: 'known' };
    // recover()'s looks after invalid_grant: an announced successor is waited for, else login.
    if (c.refused) return c.superseded ? { kind: 'wait', reason: 'superseded_unreadable', pair } : { kind: 'login_required', reason: 'invalid_grant', pair };
    if (c.rejected || c.pinRefuses) return { kind: 'login_required', reason: 'invalid_grant', pair };
    if (c.when === 'dead' && !c.force) return { kind: 'login_required', reason: 'refresh_token_expired', pair };
    if (c.consumed) return { kind: 'wait', reason: 'consumed_elsewhere', pair };
    const retried = c.presented === 'same';
    if (c.noRoom && (c.when === 'due' || c.force || retried)) return { kind: 'no_room', reason: 'disk full', pair };
    if (c.when !== 'due' && !c.force && !retried) return { kind: 'fresh', pair, origin: 'known' };
    if (c.superseded) return { kind: 'wait', reason: 'superseded_unreadable', pair };
    if (!c.force && !retried && c.cloud === 'missed') return { kind: 'wait', reason: 'awaiting_lower_tiers', pair };
    const lastChance = !c.force && !retried && c.cloud === 'last-chance';
    return lastChance ? { kind: 'present', pair, lastChance: true } : { kind: 'present', pair };
  }

  it(`the oracle's table holds for all ${cases.length} combinations; each gate is asked at most once, and only when it can matter`, () => {
    const kinds = new Set<string>();
    for (const c of cases) {
      const asked = { pin: 0, superseded: 0 };
      const gates: Gates = {
        stage: 'attempt',
        force: c.force,
        refused: c.refused,
        presented: c.presented === 'none' ? undefined : tok(c.presented === 'older' ? 0 : 1, 'keeper'),
        rejected: c.rejected ? new Set([pairId(b.refreshToken)]) : new Set([pairId('another-refresh-token')]),
        pinAccepts: () => (asked.pin++, !c.pinRefuses),
        superseded: () => (asked.superseded++, c.superseded),
        cloud: patience(c.cloud),
      };
      const view: View = {
        now: at[c.when],
        cache: { kind: 'missing' },
        known: tok(1, 'keeper'),
        secret: { kind: 'absent' },
        consumed: c.consumed ? new Set([pairId(b.refreshToken)]) : undefined,
        room: c.noRoom ? { ok: false, reason: 'disk full' } : { ok: true },
        gates,
      };
      const label = JSON.stringify(c);
      const plan = decide(view, POLICY);
      expect(plan.action, label).toEqual(expected(c));
      // assess() (the agent's first look) is the same facts without the action; it asks no gate.
      const { action: _action, ...facts } = plan;
      expect(assess(view, POLICY), label).toEqual(facts);
      kinds.add(plan.action.kind + ('reason' in plan.action ? `:${plan.action.reason}` : ''));
      // The pin ALERTs per refused pair, an expired announcement logs: each is asked once at most,
      // the pin never for a pair already rejected, neither for a pair someone else replaced.
      expect(asked.pin, label).toBe(c.presented === 'older' || c.refused || c.rejected ? 0 : 1);
      expect(asked.superseded, label).toBe(c.presented === 'older' ? 0 : c.refused ? 1 : c.rejected || c.pinRefuses ? 0 : 1);
    }
    // Every kind of action (and every reason) occurs in the product.
    expect([...kinds].sort()).toEqual(
      ['adopt', 'fresh', 'login_required:invalid_grant', 'login_required:refresh_token_expired', 'no_room:disk full', 'present',
        'wait:awaiting_lower_tiers', 'wait:consumed_elsewhere', 'wait:superseded_unreadable'].sort(),
    );
  });

  it("'trigger' (the agent's check): a session opens when due or forced, unless a non-primary VM is within the push grace", () => {
    const grace = 13 * S;
    for (const when of ['fresh', 'due', 'dead'] as When[]) {
      for (const force of bools) {
        for (const consumed of bools) {
          for (const noRoom of bools) {
            for (const back of ['primary', 'never', 'just-now', 'long-ago'] as const) {
              const now = at[when];
              const notPrimary = back === 'primary' ? undefined : { secretBackAt: back === 'never' ? -Infinity : back === 'just-now' ? now - grace + 1 : now - grace, pushGraceMs: grace };
              const plan = decide(
                {
                  now,
                  cache: { kind: 'missing' },
                  known: tok(1, 'keeper'),
                  secret: { kind: 'absent' },
                  consumed: consumed ? new Set([pairId(b.refreshToken)]) : undefined,
                  room: noRoom ? { ok: false, reason: 'disk full' } : undefined,
                  gates: { stage: 'trigger', force, notPrimary },
                },
                POLICY,
              );
              const label = JSON.stringify({ when, force, consumed, noRoom, back });
              const refresh = when === 'due' && !consumed && !noRoom;
              let want: Plan['action'];
              if (refresh || force) want = back === 'just-now' ? { kind: 'wait', reason: 'awaiting_primary', pair: b } : { kind: 'present', pair: b };
              else if (when === 'dead') want = { kind: 'login_required', reason: 'refresh_token_expired', pair: b };
              else if (consumed) want = { kind: 'wait', reason: 'consumed_elsewhere', pair: b };
              else if (noRoom && when === 'due') want = { kind: 'wait', reason: 'no_room', pair: b };
              else want = { kind: 'fresh', pair: b, origin: 'known' };
              expect(plan.action, label).toEqual(want);
            }
          }
        }
      }
    }
  });

  it('no pair anywhere: login required (no_token), whatever the gates', () => {
    for (const stage of ['trigger', 'attempt'] as const) {
      const plan = decide({ now: T0, cache: { kind: 'missing' }, secret: { kind: 'absent' }, gates: { stage, force: true } }, POLICY);
      expect(plan.action).toEqual({ kind: 'login_required', reason: 'no_token' });
    }
  });

  it("the function's look (decideCloud) weighs the same gates", () => {
    const read: SecretRead = { name: `${SECRET_NAME}6`, version: 6, token: b };
    const gates: Gates = { stage: 'attempt', cloud: patience('missed') };
    expect(decideCloud(at.due, read, POLICY.refreshThresholdMs, gates).action).toEqual({ kind: 'wait', reason: 'awaiting_lower_tiers', pair: b });
    expect(decideCloud(at.due, read, POLICY.refreshThresholdMs, { ...gates, rejected: new Set([pairId(b.refreshToken)]) }).action).toEqual({
      kind: 'login_required',
      reason: 'invalid_grant',
      pair: b,
    });
    expect(decideCloud(at.fresh, read, POLICY.refreshThresholdMs, gates).action).toEqual({ kind: 'fresh', pair: b, origin: 'secret' });
  });
});
