/**
 * The one refresh protocol (core/refresh.ts) as both refreshers run it, over the in-memory doubles
 * (the real SecretStore adapter in-process, the stand-in's Saxo model) and a virtual clock:
 * retries without the bots' lock, a bot refreshing during a backoff, stopping, absurd lifetimes,
 * credentials, cache write failures, publishing after every lock, the primary rule.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SaxoError } from '../../core/errors.js';
import { parseFlat } from '../../core/codec.js';
import type { TokenRotatedEvent } from '../../core/ports.js';
import type { TokenSet } from '../../core/token.js';
import { runCloudRefresh } from '../../functions/refresher.js';
import { flush } from '../../standins/memory.js';
import { agentRig, cloudRig, MIN, SEC, settleWithClock, type AgentRig, type AgentRigOptions } from '../helpers/memory-rig.js';
import { saxoIssued } from '../helpers/saxo-time.js';

const rigs: { leaks(): string[] }[] = [];
afterEach(() => {
  for (const r of rigs.splice(0)) expect(r.leaks()).toEqual([]);
});

async function steady(o: AgentRigOptions = {}): Promise<{ r: AgentRig; t: TokenSet }> {
  const r = agentRig(o);
  rigs.push(r);
  const t = r.login();
  r.plantCache(t);
  await r.state.write({ token: t, failures: 0 });
  if (r.store) await r.store.add(t);
  await r.reconciler.load();
  await r.clock.advance(t.accessExpiresAt - 250 * SEC - r.clock.now()); // due for the agent
  return { r, t };
}

const tick = (r: AgentRig) => settleWithClock(r.reconciler.run({ kind: 'tick' }), r.clock);

describe('retries: the bots\' flock is held only across one exchange and the cache write', () => {
  it('backs off 250 ms, then 500 ms (jitter 0.5) without the flock, and presents once the 503s pass', async () => {
    const { r } = await steady();
    r.saxo.faults = ['retryable', 'retryable'];
    const heldDuringSleeps: boolean[] = [];
    const sleep = r.clock.sleep.bind(r.clock);
    r.clock.sleep = (ms, signal) => {
      if (ms === 250 || ms === 500) heldDuringSleeps.push(r.lock.held);
      return sleep(ms, signal);
    };
    expect(await tick(r)).toBe('refreshed');
    expect(heldDuringSleeps).toEqual([false, false]);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });

  it('a bot that refreshes during the backoff wins: the agent adopts its pair and never re-presents', async () => {
    const { r, t } = await steady();
    r.saxo.faults = [new SaxoError('retryable', 'http_429', 'Saxo answered 429', 429, 20)];
    let bot: TokenSet | undefined;
    const sleep = r.clock.sleep.bind(r.clock);
    r.clock.sleep = (ms, signal) => {
      if (ms === 20_000 && !bot) {
        // A Python bot reaches its 120 s buffer while the agent waits out Retry-After: it gets the flock at once.
        void (async () => {
          const held = await r.lock.acquire(undefined, 1_000);
          bot = r.asBotPair(await r.successor(t));
          r.cache.raw = JSON.stringify({ access_token: bot.accessToken, refresh_token: bot.refreshToken, token_expiry: new Date(bot.accessExpiresAt).toISOString() });
          await held.release();
        })();
      }
      return sleep(ms, signal);
    };
    expect(await tick(r)).toBe('adopted');
    expect(r.reconciler.newestKnown?.refreshToken).toBe(bot?.refreshToken);
    // The agent's 429 (answered before the grant) and the bot's refresh; no third presentation.
    expect(r.saxo.presented).toEqual([t.refreshToken, t.refreshToken]);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
    expect(r.reconciler.consecutiveFailures).toBe(0);
  });

  it('a Retry-After longer than what the lease leaves is not slept: the check fails and is counted', async () => {
    const { r } = await steady({ cloud: true });
    r.saxo.faults = [new SaxoError('retryable', 'http_429', 'Saxo answered 429', 429, 50)];
    expect(await tick(r)).toBe('failed');
    expect(r.reconciler.consecutiveFailures).toBe(1);
    expect((await r.store!.meta()).lease).toBeUndefined();
    expect(r.lock.held).toBe(false);
  });
});

describe('stopping', () => {
  it('a stop during a backoff ends the session: no new attempt, the old pair stays', async () => {
    const { r, t } = await steady();
    r.saxo.faults = ['retryable'];
    const run = r.reconciler.run({ kind: 'tick' });
    await flush();
    const stopped = r.reconciler.stop();
    await r.clock.advance(1 * SEC);
    expect(await run).toBe('deferred');
    await stopped;
    expect(r.saxo.stats.presentations).toBe(0);
    expect(r.reconciler.newestKnown?.refreshToken).toBe(t.refreshToken);
    expect(await r.reconciler.run({ kind: 'tick' })).toBe('ignored');
  });

  it('a stop while Saxo is answering waits for the answer and stores it (cache and state) before resolving', async () => {
    const { r, t } = await steady({ cloud: true });
    r.saxo.delayMs = 4_500; // a slow Saxo: the exchange is in flight when the stop comes
    const run = r.reconciler.run({ kind: 'tick' });
    await r.clock.advance(100);
    expect(r.reconciler.phase).toBe('presenting');
    const stopped = r.reconciler.stop();
    await r.clock.advance(5 * SEC);
    expect(await run).toBe('refreshed');
    await stopped;
    const next = r.state.value?.token;
    expect(next?.refreshToken).not.toBe(t.refreshToken);
    expect((await r.cached())?.refreshToken).toBe(next?.refreshToken);
    // Stopping announces nothing (the next start does): it is remembered in the state file.
    expect(r.bus!.published).toHaveLength(0);
    expect(r.state.value?.announce?.version).toBe((await r.store!.latest())?.name);
  });
});

describe('absurd answers are bounded; the successor of a consumed refresh token is never thrown away', () => {
  it.each([1e9, 1e12, 1e300])('expires_in=%s: stored with a lifetime of at most an hour, WARNING logged, token_expiry an ordinary ISO instant', async (absurd) => {
    const { r } = await steady();
    r.saxo.accessLifetimeSec = absurd;
    expect(await tick(r)).toBe('refreshed');
    const raw = JSON.parse(r.cache.raw!) as { token_expiry: string };
    expect(raw.token_expiry).toMatch(/^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$/);
    const stored = r.reconciler.newestKnown!;
    expect(stored.accessExpiresAt - r.clock.now()).toBeLessThanOrEqual(3600 * SEC);
    expect(r.log.events('lifetime_clamped')[0]).toMatchObject({ severity: 'WARNING' });
    // And the chain goes on: the stored pair is refreshed again within the hour.
    r.saxo.accessLifetimeSec = 1200;
    await r.clock.advance(stored.accessExpiresAt - 250 * SEC - r.clock.now());
    expect(await tick(r)).toBe('refreshed');
    expect(r.saxo.stats.reusedPresentations).toBe(0);
  });

  it('refresh_token_expires_in=1e300 is bounded to a day, the pair stored', async () => {
    const { r } = await steady();
    r.saxo.refreshLifetimeSec = 1e300;
    expect(await tick(r)).toBe('refreshed');
    expect(r.reconciler.newestKnown!.refreshExpiresAt! - saxoIssued(r.clock.now())).toBe(24 * 3600 * SEC);
    expect(parseFlat(r.cache.raw!).ok).toBe(true);
  });
});

describe('credentials', () => {
  it('configured credentials win for the request and in the bots\' cache; the secret keeps the credentials it had', async () => {
    const { r, t } = await steady({ cloud: true, env: { SAXO_APP_KEY: 'rotated-key', SAXO_APP_SECRET: 'rotated-secret-xyz' } });
    r.log.logger.addSecret('rotated-secret-xyz');
    expect(await tick(r)).toBe('refreshed');
    expect(r.saxo.options.at(-1)).toMatchObject({ appKey: 'rotated-key', appSecret: 'rotated-secret-xyz' });
    expect(await r.cached()).toMatchObject({ appKey: 'rotated-key', appSecret: 'rotated-secret-xyz' });
    expect((await r.store!.latest())?.token).toMatchObject({ appKey: t.appKey, appSecret: t.appSecret });
  });

  it('the function with SAXO_APP_SECRET from its own secret never writes it into a token version', async () => {
    const r = cloudRig({ env: { SAXO_APP_KEY: 'fn-key', SAXO_APP_SECRET: 'fn-only-secret-123' } });
    rigs.push(r);
    r.log.logger.addSecret('fn-only-secret-123');
    const t = { ...r.login(), appKey: undefined, appSecret: undefined };
    await r.store.add(t);
    await r.clock.advance(t.accessExpiresAt - 590 * SEC - r.clock.now());
    expect((await runCloudRefresh(r.deps)).outcome).toBe('refreshed');
    expect(r.saxo.options.at(-1)).toMatchObject({ appKey: 'fn-key', appSecret: 'fn-only-secret-123' });
    const payload = r.store.versions().at(-1)!.data!;
    expect(payload).not.toContain('fn-only-secret-123');
    expect(JSON.parse(payload)).not.toHaveProperty('app_secret');
  });
});

describe('a cache that cannot be written', () => {
  it('the agent still refreshes into its state file, counts each failed write, and ALERTs at MAX with path and errno', async () => {
    const { r, t } = await steady();
    r.cache.broken = { code: 'EACCES' };
    expect(await tick(r)).toBe('refreshed');
    expect(r.state.value?.token?.refreshToken).not.toBe(t.refreshToken);
    // Two failed writes in that check: the repair of the unreadable cache, then the new pair's.
    expect(r.reconciler.consecutiveFailures).toBe(2);
    for (let i = 3; i <= 5; i++) {
      await r.clock.advance(1 * MIN);
      await tick(r);
      expect(r.reconciler.consecutiveFailures).toBe(i); // each check's repair write fails again
    }
    const alert = r.log.events('refresh_alert')[0]!;
    expect(alert.message).toMatch(/^ALERT: Token refresh failed 5 consecutive times!/);
    expect(alert.message).toContain('EACCES');
    expect(alert.message).toContain(r.cache.path);
    expect(r.saxo.stats).toMatchObject({ presentations: 1, reusedPresentations: 0 });
  });
});

describe('nothing slow under a lock: the announcement goes out after the flock and the lease, with a deadline', () => {
  it('publish happens with neither held; a publish that never answers costs 5 s and is retried from the state file', async () => {
    const { r } = await steady({ cloud: true });
    const seen: { flock: boolean; lease: unknown }[] = [];
    const publish = r.bus!.publish.bind(r.bus!);
    let hang = true;
    r.bus!.publish = async (e: TokenRotatedEvent) => {
      seen.push({ flock: r.lock.held, lease: (await r.store!.meta()).lease });
      if (hang) return new Promise<string>(() => undefined);
      return publish(e);
    };
    expect(await tick(r)).toBe('refreshed');
    expect(seen).toEqual([{ flock: false, lease: undefined }]);
    expect(r.log.events('publish_failed')).toHaveLength(1);
    const pending = r.state.value?.announce;
    expect(pending?.version).toBe((await r.store!.latest())?.name);
    expect(r.reconciler.hasPendingPush).toBe(true);
    hang = false;
    await r.reconciler.run({ kind: 'push' });
    expect(r.bus!.published.map((e) => e.version)).toEqual([pending?.version]);
    expect(r.state.value?.announce).toBeUndefined();
  });
});

describe('several VMs with Secret Manager down: one presenter', () => {
  it('a non-primary agent does not present without the lease; the primary does', async () => {
    const { r: secondary } = await steady({ cloud: true, env: { TOKEN_KEEPER_PRIMARY: 'false' } });
    secondary.store!.unavailable = true;
    expect(await tick(secondary)).toBe('deferred');
    expect(secondary.saxo.stats.presentations).toBe(0);
    expect(secondary.log.events('awaiting_primary')).toHaveLength(1);
    expect(secondary.state.value?.awaiting?.reason).toMatch(/not the primary/);
    const { r: primary } = await steady({ cloud: true });
    primary.store!.unavailable = true;
    expect(await tick(primary)).toBe('refreshed');
  });
});
