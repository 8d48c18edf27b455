/**
 * Issue 15 item 6 (docs/DESIGN.md "Consumed announcements"): two VMs, Secret Manager down. The
 * primary refreshes alone and announces TOKEN_CONSUMED on Pub/Sub (which still answers); the other
 * VM's agent blanks the spent refresh token in its bots' cache, so the real python bot there —
 * the fleet's TokenCoordinator model, with its own fallback — neither presents it nor crashes.
 * Real processes throughout: two agents, the Pub/Sub emulator, the gRPC Secret Manager stand-in,
 * the strict Saxo stand-in behind the recording proxy, python3.
 *
 * The timeline is production's scaled down (1140 s of usable life, tiers 600/300/120 s): a seed pair
 * with SEED_LEFT s of access left, the agents' tier AGENT_T s (the primary is due SEED_LEFT − AGENT_T
 * s after the seed: time for both agents to start and read it), the bots' buffer BUFFER s (their
 * fallback comes AGENT_T − BUFFER s after the primary's refresh: time for the announcement to reach
 * the other VM and be acted on). "Secret Manager down" answers every call DEADLINE_EXCEEDED at once:
 * the adapters take it as "did not answer" exactly as UNAVAILABLE (core/gcp/grpc-errors.ts), but it
 * is not retried for the 10 s read deadline, so the timeline stays crisp.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { startCli, until, type CliProcess } from '../helpers/agent-process.js';
import { cachedPair } from '../helpers/reliability-cli.js';
import { describeWithPubSub } from '../helpers/gcp.js';
import { startCloudRig, duplicates, tempDir, type CloudRig } from '../helpers/cloud-rig.js';
import { pythonAvailable, spawnPythonBot, type PythonBot } from '../helpers/python.js';
import { pairId } from '../../core/token.js';

const PROJECT = `tk-consumed-${process.pid}`;
const SEED_LEFT = 14;
const AGENT_T = 8;
const BUFFER = 4;
const TIERS = {
  CHECK_INTERVAL_SECONDS: '0.5',
  REFRESH_THRESHOLD_SECONDS: String(AGENT_T),
  CLOUD_REFRESH_THRESHOLD_SECONDS: String(AGENT_T + 2),
  BOT_REFRESH_THRESHOLD_SECONDS: String(BUFFER),
  SAXO_HTTP_TIMEOUT_SECONDS: '1',
};
const procs: CliProcess[] = [];
const bots: PythonBot[] = [];

interface BotRecord {
  t: number;
  expired: boolean;
  refreshed: boolean;
  error?: string;
}

/** The bot's report so far (a line still being written is skipped). */
function botRecords(file: string): BotRecord[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').flatMap((l) => {
    try {
      return [JSON.parse(l) as BotRecord];
    } catch {
      return [];
    }
  });
}

describeWithPubSub('TOKEN_CONSUMED: a non-primary VM\'s bots cannot present what the primary consumed', () => {
  let rig: CloudRig;
  beforeAll(async () => {
    if (!pythonAvailable()) throw new Error('python3 is required for this test');
    rig = await startCloudRig({ projectId: PROJECT, accessLifetimeSec: 60, refreshLifetimeSec: 300, marginSec: 1 });
  });
  /** Secret Manager down: every call fails at once (see the top). */
  const smDown = () => rig.sm.server.inject({ code: grpcStatus.DEADLINE_EXCEEDED, times: Infinity, message: 'injected: Secret Manager down' });
  /** Started before the primary is due: its refresh must find Secret Manager down. */
  const beforeDue = (seed: { accessExpiresAt: number }) => {
    const spare = seed.accessExpiresAt - AGENT_T * 1000 - Date.now();
    console.log(`[measure] consumed: Secret Manager down ${spare} ms before the primary was due (of ${(SEED_LEFT - AGENT_T) * 1000} ms)`);
    expect(spare, 'the agents took too long to start: the primary was due before Secret Manager went down').toBeGreaterThan(0);
  };
  afterEach(async () => {
    rig.sm.server.clearFaults();
    for (const b of bots.splice(0)) b.kill();
    await Promise.all(procs.splice(0).map((p) => p.stop()));
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('Secret Manager down: the primary refreshes and announces; the other VM blanks its cache; its python bot presents nothing and keeps running; 0 re-presentations', async () => {
    const subA = await rig.createSubscription(`consumed-a-${process.pid}`);
    const subB = await rig.createSubscription(`consumed-b-${process.pid}`);
    const seed = await rig.seedSecret(SEED_LEFT, 1);
    const dirA = tempDir('tk-consumed-a-');
    const dirB = tempDir('tk-consumed-b-');
    const a = startCli(['agent'], rig.agentEnv(dirA, { ...TIERS, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-a', TOKEN_SUBSCRIPTION_ID: subA }));
    const b = startCli(['agent'], rig.agentEnv(dirB, { ...TIERS, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-b', TOKEN_SUBSCRIPTION_ID: subB, TOKEN_KEEPER_PRIMARY: 'false' }));
    procs.push(a, b);
    await Promise.all([a.waitForEvent('subscribed'), b.waitForEvent('subscribed')]);
    await Promise.all([a.waitForEvent('agent_ready'), b.waitForEvent('agent_ready')]);
    expect(cachedPair(dirB)?.refreshToken).toBe(seed.refreshToken);

    // The bot on VM B, as the fleet runs it: trusts the cache while > BUFFER s remain, then falls back
    // on its own refresh under the flock (the 120 s fallback, scaled). It runs until told to stop.
    const report = join(dirB, 'bot-report.jsonl');
    const stopFile = join(dirB, 'bot-stop');
    const bot = spawnPythonBot(['--mode', 'loop', '--data-dir', dirB, '--buffer', String(BUFFER), '--margin', '1', '--token-url', `${rig.saxoUrl}/token`, '--interval', '0.25', '--duration', '90', '--stop-file', stopFile, '--report', report]);
    bots.push(bot);

    smDown();
    beforeDue(seed);
    const refreshed = await a.waitForEvent('token_refreshed', 20_000);
    expect(refreshed.by).toBe('agent:vm-a');
    const announced = await a.waitForEvent('consumed_announced', 10_000);
    expect(announced.pairId).toBe(pairId(seed.refreshToken));
    const blanked = await b.waitForEvent('consumed_blanked', 20_000).catch((err: unknown) => {
      console.log('B:', b.logs.map((l) => `${l.time as string} ${l.event} ${l.message}`).join('\n'));
      throw err;
    });
    expect(blanked.pairId).toBe(pairId(seed.refreshToken));
    const fallback = seed.accessExpiresAt - BUFFER * 1000;
    console.log(`[measure] consumed: blanked ${Date.parse(blanked.time as string) - Date.parse(refreshed.time as string)} ms after the refresh, ${fallback - Date.parse(blanked.time as string)} ms before the bots' fallback`);

    // Key kept, value empty; the access token and every other key stay.
    const raw = JSON.parse(readFileSync(join(dirB, 'saxo_token_cache.json'), 'utf8')) as Record<string, string>;
    expect(raw.refresh_token).toBe('');
    expect(raw.access_token).toBe(seed.accessToken);
    expect(raw.app_key).toBeTruthy();
    expect(raw.token_expiry).toBeTruthy();

    // Hold Secret Manager down until the bot has passed its fallback point on the spent pair
    // (the moment it would have presented the consumed token): until it has reported from there.
    const fallbackAt = fallback + 500;
    await until(() => botRecords(report).some((r) => r.t * 1000 > fallbackAt), 30_000, 'the bot past its fallback point');
    expect(rig.presented.filter((t) => t === seed.refreshToken)).toHaveLength(1); // the primary's, only
    expect(b.logs.some((l) => l.event === 'refresh_started')).toBe(false);

    // Secret Manager answers again: the primary pushes, B adopts and writes its cache, the bot is served.
    const bFrom = b.logs.length;
    rig.sm.server.clearFaults();
    const written = await b.waitFor((l) => b.logs.indexOf(l) >= bFrom && l.event === 'cache_written', 20_000, 'VM B to write the pushed pair');
    // A may refresh again meanwhile (it is the primary): B follows it to the same pair.
    await until(() => cachedPair(dirB)?.refreshToken === cachedPair(dirA)?.refreshToken, 20_000, "VM B's cache to hold VM A's pair");
    expect(cachedPair(dirB)?.refreshToken).toBe(cachedPair(dirA)?.refreshToken);

    // The bot has read the pushed pair: it may stop (after the tick in progress).
    const writtenAt = Date.parse(written.time as string);
    await until(() => botRecords(report).some((r) => r.t * 1000 > writtenAt && !r.error), 20_000, 'the bot to read the pushed pair');
    writeFileSync(stopFile, '');
    await bot.waitForLine('DONE', 20_000);
    const { code } = await bot.exited;
    expect(code, `the bot crashed: ${bot.stderr()}`).toBe(0);
    const records = readFileSync(report, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as BotRecord);
    // It ran through its fallback window on the blanked cache: told "no token", never refreshed itself…
    const blankWindow = records.filter((r) => r.t * 1000 > Date.parse(blanked.time as string) && r.t * 1000 < fallbackAt);
    expect(blankWindow.length).toBeGreaterThan(0);
    expect(records.some((r) => r.error?.includes('no_token') && r.t * 1000 > seed.accessExpiresAt - BUFFER * 1000)).toBe(true);
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
  }, 90_000);

  it('control — Pub/Sub unreachable for the other VM too (no subscription): its bot presents the spent token at its fallback (the known limit)', async () => {
    const seed = await rig.seedSecret(SEED_LEFT, 1);
    const dirA = tempDir('tk-consumed-ctl-a-');
    const dirB = tempDir('tk-consumed-ctl-b-');
    const before = rig.saxo.stats().reusedPresentations;
    const a = startCli(['agent'], rig.agentEnv(dirA, { ...TIERS, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-a' }));
    const b = startCli(['agent'], rig.agentEnv(dirB, { ...TIERS, TOKEN_KEEPER_HOLDER_ID: 'agent:vm-b', TOKEN_KEEPER_PRIMARY: 'false' }));
    procs.push(a, b);
    await Promise.all([a.waitForEvent('agent_ready'), b.waitForEvent('agent_ready')]);
    const report = join(dirB, 'bot-report.jsonl');
    const bot = spawnPythonBot(['--mode', 'loop', '--data-dir', dirB, '--buffer', String(BUFFER), '--margin', '1', '--token-url', `${rig.saxoUrl}/token`, '--interval', '0.25', '--duration', '60', '--report', report]);
    bots.push(bot);
    smDown();
    beforeDue(seed);
    await a.waitForEvent('token_refreshed', 20_000);
    await until(() => rig.presented.filter((t) => t === seed.refreshToken).length >= 2, 20_000, "the bot's presentation of the spent token");
    expect(b.logs.some((l) => l.event === 'consumed_blanked')).toBe(false);
    // The proxy records a presentation as it forwards it; the stand-in counts the reuse once it has answered.
    await until(() => rig.saxo.stats().reusedPresentations - before >= 1, 5_000, "the stand-in to count the bot's reuse").catch(() => undefined);
    expect(rig.saxo.stats().reusedPresentations - before).toBeGreaterThanOrEqual(1);
  }, 90_000);
});
