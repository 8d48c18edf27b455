/**
 * Issue 9, items 6 and 12 (cloud half) — with the real function (functions-framework on 127.0.0.1),
 * the Secret Manager stand-in, the real Pub/Sub emulator and real agent processes:
 * - item 6: the function's SAXO_APP_SECRET differs from the payload's; the new version keeps the
 *   payload's app_secret (or none), and the agent's cache carries the agent's configured credentials;
 * - item 12: a bot's fallback refresh saved into the secret the fleet's way (read latest, replace
 *   three keys, add a version, destroy the previous; test/helpers/reliability-fleet.ts) is adopted:
 *   no "login required" from the copied refresh_token_expiry, the next refresh presents the bot's
 *   refresh token exactly once and numbers its successor above the copied generation, no older pair
 *   wins, reusedPresentations 0 — whether the agent was down while the bots carried the chain, or
 *   running when the bot refreshed.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile } from '../../agent/state-file.js';
import { encodeFlat, parseFlat } from '../../core/codec.js';
import type { TokenSet } from '../../core/token.js';
import { startCli, type CliProcess } from '../helpers/agent-process.js';
import { describeWithPubSub, waitFor } from '../helpers/gcp.js';
import { APP_KEY, APP_SECRET, duplicates, startCloudRig, tempDir, type CloudRig, type FunctionServer } from '../helpers/cloud-rig.js';
import { spawnPythonBot, type PythonBot } from '../helpers/python.js';
import { fleetSaveToSecret } from '../helpers/reliability-fleet.js';
import { cachedPair } from '../helpers/reliability-cli.js';

const PROJECT = 'tk-rel-cloud';
const L = 10; // s: cloud tier 5 s, agent 2.5 s, bots 1 s before token_expiry (= issue + 9 s)
const OLD_APP_SECRET = 'payload-app-secret-rotated-away-0000';

describeWithPubSub('the function, the agent and the fleet sharing the secret (items 6, 12)', () => {
  let rig: CloudRig;
  let fn: FunctionServer;
  const procs: CliProcess[] = [];
  const bots: PythonBot[] = [];

  beforeAll(async () => {
    rig = await startCloudRig({ projectId: PROJECT, accessLifetimeSec: L, refreshLifetimeSec: 300, marginSec: 1 });
    rig.seen.add(OLD_APP_SECRET);
    // The operator rotated the app secret: the function's environment has the current one.
    fn = await rig.startFunction(() => Promise.resolve(rig.cloudDeps({ SAXO_APP_SECRET: APP_SECRET, TOKEN_KEEPER_HOLDER_ID: 'cloud:rel' })));
  }, 30_000);
  afterAll(async () => {
    await rig?.close();
  });
  afterEach(async () => {
    for (const b of bots.splice(0)) b.kill('SIGKILL');
    for (const p of procs.splice(0)) await p.stop('SIGKILL');
  });

  async function agent(dir: string, name: string): Promise<CliProcess> {
    const sub = await rig.createSubscription(`rel-${name}-${Date.now()}`);
    const p = startCli(['agent'], rig.agentEnv(dir, { TOKEN_SUBSCRIPTION_ID: sub, CHECK_INTERVAL_SECONDS: '0.5', TOKEN_KEEPER_HOLDER_ID: `agent:rel-${name}` }));
    procs.push(p);
    await p.waitForEvent('agent_ready', 30_000);
    return p;
  }

  /** The Scheduler, scaled: post every 0.5 s until the function presents `refreshToken`. */
  async function cloudRefreshes(refreshToken: string): Promise<Record<string, unknown>[]> {
    const answers: Record<string, unknown>[] = [];
    await waitFor(async () => {
      answers.push((await fn.post({})).body);
      if (!rig.presented.includes(refreshToken)) await new Promise((r) => setTimeout(r, 500));
      return rig.presented.includes(refreshToken);
    }, 20_000, 'the cloud refresh');
    return answers;
  }

  const cache = (dir: string): TokenSet | undefined => cachedPair(dir, rig.seen);

  /** Cache, state and secret all hold one pair (the newest). */
  async function converged(dir: string, not: string): Promise<TokenSet> {
    return waitFor(async () => {
      const s = await rig.latest();
      const c = cache(dir);
      return s && s.refreshToken !== not && c?.refreshToken === s.refreshToken ? s : undefined;
    }, 15_000, 'cache and secret converging on the successor');
  }

  /** A bot's fallback refresh (python) and its save to the secret (the fleet's algorithm). */
  async function botRefreshAndSave(dir: string, destroyPrevious: boolean): Promise<TokenSet> {
    const saved = join(mkdtempSync(join(tmpdir(), 'tk-rel-save-')), 'secret-save.json');
    const b = spawnPythonBot(['--mode', 'refresh', '--data-dir', dir, '--buffer', '1000', '--margin', '1', '--token-url', `${rig.saxoUrl}/token`, '--secret-save', saved], {
      env: { SAXO_APP_KEY: APP_KEY, SAXO_APP_SECRET: APP_SECRET },
    });
    bots.push(b);
    await b.waitForLine(`SECRET_SAVE ${saved}`, 10_000);
    await b.waitForLine('REFRESHED', 5_000);
    const r = await fleetSaveToSecret(rig.sm.client, rig.sm.secretName, saved, { destroyPrevious });
    const botPair = parseFlat(readFileSync(saved, 'utf8'));
    if (!botPair.ok) throw new Error(botPair.reason);
    expect(r.payload.generation, 'the fleet carried our keys over').toBeDefined();
    return botPair.token;
  }

  it('item 6: the new version keeps the payload\'s app_secret (or none); the agent\'s cache carries the agent\'s credentials', async () => {
    const dir = tempDir('tk-rel-appsecret-');
    let generation = 10;
    const first = rig.issue(L - 1, generation);
    await rig.store.add({ ...first, appSecret: OLD_APP_SECRET });
    const a = await agent(dir, 'appsecret');
    for (const payloadSecret of [OLD_APP_SECRET, undefined]) {
      const seeded = payloadSecret === OLD_APP_SECRET ? first : rig.issue(L - 1, ++generation);
      if (payloadSecret === undefined) await rig.store.add({ ...seeded, appSecret: undefined });
      const answers = await cloudRefreshes(seeded.refreshToken);
      expect(answers.some((r) => r.outcome === 'refreshed'), 'the function did the refresh').toBe(true);
      const next = await converged(dir, seeded.refreshToken);
      const raw = await rig.sm.client.accessSecretVersion({ name: `${rig.sm.secretName}/versions/latest` });
      const payload = JSON.parse(Buffer.from(raw[0].payload?.data ?? []).toString('utf8')) as Record<string, unknown>;
      expect(payload.app_secret, `payload app_secret after a refresh from a payload with ${payloadSecret ?? 'none'}`).toBe(payloadSecret);
      expect(payload.app_key).toBe(APP_KEY);
      expect(next.generation).toBeGreaterThan(generation);
      generation = next.generation!;
      const c = cache(dir)!;
      expect(c.appSecret).toBe(APP_SECRET); // the agent's configured credentials
      expect(c.appKey).toBe(APP_KEY);
      expect(rig.saxo.isValidAccessToken(c.accessToken)).toBe(true);
    }
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect(duplicates(rig.presented)).toBe(0);
    expect((await a.stop()).code).toBe(0);
    rig.assertNoSecrets([...a.raw, a.stderr()]);
  }, 60_000);

  it('item 12: agent and cloud down while a bot refreshed and saved the fleet\'s way (stale copied keys): adopted on restart, no login required, presented once, numbered above', async () => {
    const dir = tempDir('tk-rel-fleet-down-');
    const gen = ((await rig.latest())?.generation ?? 0) + 1;
    const now = Date.now();
    // Our pair in the secret, written hours ago: its refresh_token_expiry record has passed since.
    const A: TokenSet = { ...rig.issue(L - 1, gen), issuedAt: now - 7_200_000, refreshExpiresAt: now - 60_000, source: 'cloud' };
    await rig.store.add(A);
    // The agent's own record from before it went down.
    await createStateFile(join(dir, '.token-keeper-state.json')).write({ token: A, failures: 0, agentSeenAt: now - 3_600_000 });
    // A bot starts: loads the secret, writes the cache (the lock is free), then falls back on its own.
    const loaded = join(dir, 'loaded.json');
    writeFileSync(loaded, JSON.stringify(encodeFlat(A)));
    const starting = spawnPythonBot(['--mode', 'startup', '--data-dir', dir, '--from', loaded]);
    bots.push(starting);
    await starting.waitForLine('LOCKED_WRITE', 10_000);
    const B = await botRefreshAndSave(dir, true);
    expect(rig.presented.filter((t) => t === A.refreshToken)).toHaveLength(1);

    const a = await agent(dir, 'fleet-down');
    await waitFor(() => cache(dir)?.refreshToken === B.refreshToken, 5_000, 'the cache holding the bot pair');
    const answers = await cloudRefreshes(B.refreshToken);
    const C = await converged(dir, B.refreshToken);
    expect(C.generation).toBeGreaterThan(gen); // above the generation the fleet copied
    await a.waitFor((l) => l.event === 'token_adopted' && l.generation === C.generation, 10_000, 'the agent adopting the successor');
    expect(rig.presented.filter((t) => t === B.refreshToken)).toHaveLength(1);
    expect(rig.presented.filter((t) => t === A.refreshToken)).toHaveLength(1);
    expect(duplicates(rig.presented)).toBe(0);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect(a.logs.filter((l) => l.event === 'login_required' || l.event === 'refresh_failed')).toEqual([]);
    expect(answers.filter((r) => r.outcome === 'rejected' || r.outcome === 'failed')).toEqual([]);
    expect((await a.stop()).code).toBe(0);
    rig.assertNoSecrets([...a.raw, a.stderr()]);
  }, 60_000);

  it('item 12: the agent running when a bot refreshes and saves (previous version destroyed): converges, the bot\'s token presented once', async () => {
    const dir = tempDir('tk-rel-fleet-up-');
    const gen = ((await rig.latest())?.generation ?? 0) + 1;
    const T = rig.issue(L - 1, gen);
    await rig.store.add(T);
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(T);
    const a = await agent(dir, 'fleet-up');
    const B = await botRefreshAndSave(dir, true);
    await a.waitFor((l) => l.event === 'token_adopted' && l.from === 'cache', 10_000, 'the agent adopting the bot pair');
    await cloudRefreshes(B.refreshToken);
    const C = await converged(dir, B.refreshToken);
    expect(C.generation).toBeGreaterThan(gen);
    expect(rig.presented.filter((t) => t === B.refreshToken)).toHaveLength(1);
    expect(rig.presented.filter((t) => t === T.refreshToken)).toHaveLength(1);
    expect(duplicates(rig.presented)).toBe(0);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect(a.logs.filter((l) => l.event === 'login_required' || l.event === 'refresh_failed')).toEqual([]);
    expect((await a.stop()).code).toBe(0);
    rig.assertNoSecrets([...a.raw, a.stderr()]);
  }, 60_000);
});
