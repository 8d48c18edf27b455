/**
 * Issue 15 item 6 (docs/DESIGN.md "Consumed announcements"): two VMs, Secret Manager down. The
 * primary refreshes alone and announces TOKEN_CONSUMED on Pub/Sub (which still answers); the other
 * VM's agent blanks the spent refresh token in its bots' cache, so the real python bot there —
 * the fleet's TokenCoordinator model, with its own fallback — neither presents it nor crashes.
 * Real processes throughout: two agents, the Pub/Sub emulator, the gRPC Secret Manager stand-in,
 * the strict Saxo stand-in behind the recording proxy, python3.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCli, until, type CliProcess } from '../helpers/agent-process.js';
import { cachedPair } from '../helpers/reliability-cli.js';
import { describeWithPubSub } from '../helpers/gcp.js';
import { startCloudRig, duplicates, tempDir, type CloudRig } from '../helpers/cloud-rig.js';
import { pythonAvailable, spawnPythonBot, type PythonBot } from '../helpers/python.js';
import { pairId } from '../../core/token.js';

const PROJECT = `tk-consumed-${process.pid}`;
const procs: CliProcess[] = [];
const bots: PythonBot[] = [];

interface BotRecord {
  t: number;
  expired: boolean;
  refreshed: boolean;
  error?: string;
}

describeWithPubSub('TOKEN_CONSUMED: a non-primary VM\'s bots cannot present what the primary consumed', () => {
  let rig: CloudRig;
  beforeAll(async () => {
    if (!pythonAvailable()) throw new Error('python3 is required for this test');
    rig = await startCloudRig({ projectId: PROJECT, accessLifetimeSec: 60, refreshLifetimeSec: 300, marginSec: 1 });
  });
  afterEach(async () => {
    rig.sm.server.setUnavailable(false);
    for (const b of bots.splice(0)) b.kill();
    await Promise.all(procs.splice(0).map((p) => p.stop()));
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('Secret Manager down: the primary refreshes and announces; the other VM blanks its cache; its python bot presents nothing and keeps running; 0 re-presentations', async () => {
    const seed = await rig.seedSecret(45, 1);
    const subA = await rig.createSubscription(`consumed-a-${process.pid}`);
    const subB = await rig.createSubscription(`consumed-b-${process.pid}`);
    const tiers = { CHECK_INTERVAL_SECONDS: '0.5', REFRESH_THRESHOLD_SECONDS: '40', CLOUD_REFRESH_THRESHOLD_SECONDS: '50', BOT_REFRESH_THRESHOLD_SECONDS: '10', SAXO_HTTP_TIMEOUT_SECONDS: '1' };
    const dirA = tempDir('tk-consumed-a-');
    const dirB = tempDir('tk-consumed-b-');
    const a = startCli(['agent'], rig.agentEnv(dirA, { ...tiers, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-a', TOKEN_SUBSCRIPTION_ID: subA }));
    const b = startCli(['agent'], rig.agentEnv(dirB, { ...tiers, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-b', TOKEN_SUBSCRIPTION_ID: subB, TOKEN_KEEPER_PRIMARY: 'false' }));
    procs.push(a, b);
    await Promise.all([a.waitForEvent('subscribed'), b.waitForEvent('subscribed')]);
    await Promise.all([a.waitForEvent('agent_ready'), b.waitForEvent('agent_ready')]);
    expect(cachedPair(dirB)?.refreshToken).toBe(seed.refreshToken);

    // The bot on VM B, as the fleet runs it: trusts the cache while > 10 s remain, then falls back
    // on its own refresh under the flock (the 120 s fallback, scaled).
    const report = join(dirB, 'bot-report.jsonl');
    const bot = spawnPythonBot(['--mode', 'loop', '--data-dir', dirB, '--buffer', '10', '--margin', '1', '--token-url', `${rig.saxoUrl}/token`, '--interval', '0.25', '--duration', '48', '--report', report]);
    bots.push(bot);

    rig.sm.server.setUnavailable(true);
    const refreshed = await a.waitForEvent('token_refreshed', 40_000);
    expect(refreshed.by).toBe('agent:vm-a');
    const announced = await a.waitForEvent('consumed_announced', 10_000);
    expect(announced.pairId).toBe(pairId(seed.refreshToken));
    const blanked = await b.waitForEvent('consumed_blanked', 30_000).catch((err: unknown) => {
      console.log('B:', b.logs.map((l) => `${l.time as string} ${l.event} ${l.message}`).join('\n'));
      throw err;
    });
    expect(blanked.pairId).toBe(pairId(seed.refreshToken));

    // Key kept, value empty; the access token and every other key stay.
    const raw = JSON.parse(readFileSync(join(dirB, 'saxo_token_cache.json'), 'utf8')) as Record<string, string>;
    expect(raw.refresh_token).toBe('');
    expect(raw.access_token).toBe(seed.accessToken);
    expect(raw.app_key).toBeTruthy();
    expect(raw.token_expiry).toBeTruthy();

    // Hold Secret Manager down until the bot has passed its fallback point on the spent pair
    // (the moment it would have presented the consumed token).
    const fallbackAt = seed.accessExpiresAt - 10_000 + 2_000;
    await until(() => Date.now() > fallbackAt, 60_000, "the bot's fallback point");
    expect(rig.presented.filter((t) => t === seed.refreshToken)).toHaveLength(1); // the primary's, only
    expect(b.logs.some((l) => l.event === 'refresh_started')).toBe(false);

    // Secret Manager answers again: the primary pushes, B adopts and writes its cache, the bot is served.
    const bFrom = b.logs.length;
    rig.sm.server.setUnavailable(false);
    await b.waitFor((l) => b.logs.indexOf(l) >= bFrom && l.event === 'cache_written', 30_000, 'VM B to write the pushed pair');
    // A may refresh again meanwhile (it is the primary): B follows it to the same pair.
    await until(() => cachedPair(dirB)?.refreshToken === cachedPair(dirA)?.refreshToken, 30_000, "VM B's cache to hold VM A's pair");
    expect(cachedPair(dirB)?.refreshToken).toBe(cachedPair(dirA)?.refreshToken);

    await bot.waitForLine('DONE', 40_000);
    const { code } = await bot.exited;
    expect(code, `the bot crashed: ${bot.stderr()}`).toBe(0);
    const records = readFileSync(report, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as BotRecord);
    // It ran through its fallback window on the blanked cache: told "no token", never refreshed itself…
    const blankWindow = records.filter((r) => r.t * 1000 > Date.parse(blanked.time as string) && r.t * 1000 < fallbackAt);
    expect(blankWindow.length).toBeGreaterThan(0);
    expect(records.some((r) => r.error?.includes('no_token') && r.t * 1000 > seed.accessExpiresAt - 10_000)).toBe(true);
    expect(records.filter((r) => r.refreshed)).toHaveLength(0);
    expect(records.some((r) => r.error === 'invalid_grant')).toBe(false);
    // …and once the pushed pair arrived it was served again.
    expect(records.at(-1)).toMatchObject({ expired: false, refreshed: false });
    expect(records.at(-1)?.error).toBeUndefined();

    if (duplicates(rig.presented) > 0 || process.env.DUMP) {
      console.log('A:', a.logs.map((l) => `${l.time as string} ${l.event} ${l.message}`).join('\n'));
      console.log('B:', b.logs.map((l) => `${l.time as string} ${l.event} ${l.message}`).join('\n'));
    }
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect(duplicates(rig.presented)).toBe(0);
    // The event on the wire: the pairId, never the token (I5 as amended).
    const ev = rig.consumedEvents.find((e) => e.pairId === pairId(seed.refreshToken));
    expect(ev).toMatchObject({ type: 'TOKEN_CONSUMED', generation: 1, source: 'agent:vm-a' });
    rig.assertNoSecrets([...a.raw, ...b.raw, a.stderr(), b.stderr(), bot.lines.join('\n'), bot.stderr()]);
  }, 150_000);

  it('control — Pub/Sub unreachable for the other VM too (no subscription): its bot presents the spent token at its fallback (the known limit)', async () => {
    const seed = await rig.seedSecret(45, 1);
    const tiers = { CHECK_INTERVAL_SECONDS: '0.5', REFRESH_THRESHOLD_SECONDS: '40', CLOUD_REFRESH_THRESHOLD_SECONDS: '50', BOT_REFRESH_THRESHOLD_SECONDS: '10', SAXO_HTTP_TIMEOUT_SECONDS: '1' };
    const dirA = tempDir('tk-consumed-ctl-a-');
    const dirB = tempDir('tk-consumed-ctl-b-');
    const before = rig.saxo.stats().reusedPresentations;
    const a = startCli(['agent'], rig.agentEnv(dirA, { ...tiers, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-a' }));
    const b = startCli(['agent'], rig.agentEnv(dirB, { ...tiers, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-b', TOKEN_KEEPER_PRIMARY: 'false' }));
    procs.push(a, b);
    await Promise.all([a.waitForEvent('agent_ready'), b.waitForEvent('agent_ready')]);
    const report = join(dirB, 'bot-report.jsonl');
    const bot = spawnPythonBot(['--mode', 'loop', '--data-dir', dirB, '--buffer', '10', '--margin', '1', '--token-url', `${rig.saxoUrl}/token`, '--interval', '0.25', '--duration', '40', '--report', report]);
    bots.push(bot);
    rig.sm.server.setUnavailable(true);
    await a.waitForEvent('token_refreshed', 40_000);
    await until(() => rig.presented.filter((t) => t === seed.refreshToken).length >= 2, 40_000, "the bot's presentation of the spent token");
    expect(b.logs.some((l) => l.event === 'consumed_blanked')).toBe(false);
    expect(rig.saxo.stats().reusedPresentations - before).toBeGreaterThanOrEqual(1);
  }, 150_000);
});
