/**
 * The push path against a Secret Manager that answers as the real one does: every resource name
 * carries the project NUMBER (the stand-in's default, 123456789012), while the agents are
 * configured with the project id. Real agent processes, the real Pub/Sub emulator, the function
 * in-process over the gRPC stand-in, Saxo's stand-in counting every presentation.
 * (Issue 15: the agents took every announcement for another project's secret; with Secret Manager
 * then unreachable from the VM, the agent presented the refresh token the function had consumed.)
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCli, until, type CliProcess } from '../helpers/agent-process.js';
import { cachedPair } from '../helpers/reliability-cli.js';
import { describeWithPubSub } from '../helpers/gcp.js';
import { startCloudRig, duplicates, tempDir, type CloudRig } from '../helpers/cloud-rig.js';
import { cachedByPush } from '../helpers/push-path.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { DEFAULT_PROJECT_NUMBER } from '../../standins/secret-manager/server.js';

const PROJECT = `tk-push-path-${process.pid}`;
const procs: CliProcess[] = [];
const proxies: TcpProxy[] = [];

describeWithPubSub('push path with project numbers in resource names', () => {
  let rig: CloudRig;
  beforeAll(async () => {
    rig = await startCloudRig({ projectId: PROJECT, accessLifetimeSec: 40, refreshLifetimeSec: 300, marginSec: 1 });
  });
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.stop()));
    await Promise.all(proxies.splice(0).map((p) => p.close()));
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('a cloud refresh reaches two agents\' caches by the push path, every time', async () => {
    const number = rig.sm.server.projectNumber(PROJECT);
    expect(number).toBe(DEFAULT_PROJECT_NUMBER);
    await rig.seedSecret(35, 1);
    // Only the cloud refreshes here: the agents' own threshold (2 s) is far below what each pair has.
    const env = (holder: string, primary: boolean) =>
      rig.agentEnv(tempDir('tk-push-'), { TOKEN_KEEPER_HOLDER_ID: holder, TOKEN_KEEPER_PRIMARY: String(primary), CHECK_INTERVAL_SECONDS: '5', REFRESH_THRESHOLD_SECONDS: '2', BOT_REFRESH_THRESHOLD_SECONDS: '1' });
    const subA = await rig.createSubscription(`vm-a-${rig.secretId}`);
    const subB = await rig.createSubscription(`vm-b-${rig.secretId}`);
    const envA: Record<string, string> = { ...env('agent:vm-a', true), TOKEN_SUBSCRIPTION_ID: subA };
    const envB: Record<string, string> = { ...env('agent:vm-b', false), TOKEN_SUBSCRIPTION_ID: subB };
    const a = startCli(['agent'], envA);
    const b = startCli(['agent'], envB);
    procs.push(a, b);
    await Promise.all([a.waitForEvent('agent_ready'), b.waitForEvent('agent_ready')]);
    const fn = await rig.startFunction(() => Promise.resolve(rig.cloudDeps()));
    for (let g = 2; g <= 6; g++) {
      const r = await fn.post({ force: true });
      expect(r.body).toMatchObject({ outcome: 'refreshed', generation: g });
      expect(String(r.body.version)).toMatch(new RegExp(`^projects/${number}/secrets/`));
      await Promise.all([cachedByPush(a, g, number), cachedByPush(b, g, number)]);
    }
    const latest = await rig.latest();
    expect(cachedPair(envA.TOKEN_KEEPER_DATA_DIR!)?.refreshToken).toBe(latest?.refreshToken);
    expect(cachedPair(envB.TOKEN_KEEPER_DATA_DIR!)?.refreshToken).toBe(latest?.refreshToken);
    // Only the function refreshed: the agents learned every pair from the announcements.
    for (const p of [a, b]) expect(p.logs.filter((l) => l.event === 'refresh_started')).toEqual([]);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect(duplicates(rig.presented)).toBe(0);
    rig.assertNoSecrets([...a.raw, ...b.raw, a.stderr(), b.stderr()]);
  }, 90_000);

  it('one VM: the function refreshes and announces, then Secret Manager stops answering the VM — the agent never presents the consumed refresh token', async () => {
    const number = rig.sm.server.projectNumber(PROJECT);
    await rig.seedSecret(35, 1);
    // The VM reaches Secret Manager through its own route, which the test cuts; the function does not.
    const route = await startTcpProxy(rig.sm.server.host);
    proxies.push(route);
    const sub = await rig.createSubscription(`vm-one-${rig.secretId}`);
    const dir = tempDir('tk-push-outage-');
    const agent = startCli(['agent'], rig.agentEnv(dir, {
      TOKEN_KEEPER_HOLDER_ID: 'agent:vm-one',
      TOKEN_SUBSCRIPTION_ID: sub,
      SECRET_MANAGER_EMULATOR_HOST: route.host,
      CHECK_INTERVAL_SECONDS: '1',
      // Due 25 s before the end (of 40 s): soon after the cut, so the test does not wait long.
      CLOUD_REFRESH_THRESHOLD_SECONDS: '30',
      REFRESH_THRESHOLD_SECONDS: '25',
      BOT_REFRESH_THRESHOLD_SECONDS: '4',
    }));
    procs.push(agent);
    await agent.waitForEvent('agent_ready');
    const fn = await rig.startFunction(() => Promise.resolve(rig.cloudDeps()));

    // The function refreshes: the agent learns of it by the push path.
    expect((await fn.post({ force: true })).body).toMatchObject({ outcome: 'refreshed', generation: 2 });
    await cachedByPush(agent, 2, number);
    const held = cachedPair(dir)!;

    // Secret Manager stops answering the VM; the function refreshes again (consuming the agent's
    // refresh token) and announces. The agent hears it but cannot read the version.
    route.cut();
    expect((await fn.post({ force: true })).body).toMatchObject({ outcome: 'refreshed', generation: 3 });
    await agent.waitFor((l) => l.event === 'event_received' && l.generation === 3, 15_000, 'the announcement of gen 3');
    // The pair it holds falls due: it must hold back, not present.
    // Either word stops it: the unreadable announcement (superseded_token) or the function's
    // TOKEN_CONSUMED for that very pair (the fence: consumed_token / consumed_blanked).
    const held_back = await agent.waitFor(
      (l) => l.event === 'superseded_token' || l.event === 'consumed_token' || l.event === 'consumed_blanked',
      60_000,
      'the agent to refuse the consumed refresh token',
    );
    expect(held_back.severity).toBe('WARNING');
    expect(rig.presented.filter((t) => t === held.refreshToken)).toHaveLength(1); // the function's, only
    expect(agent.logs.filter((l) => l.event === 'refresh_started' || l.event === 'token_refreshed')).toEqual([]);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);

    // The route comes back: the agent reads the announced pair (or a newer one) and caches it.
    route.restore();
    const from = agent.logs.length;
    await agent.waitFor((l) => agent.logs.indexOf(l) >= from && l.event === 'cache_written', 40_000, 'the announced pair in the cache');
    const latest = await rig.latest();
    expect(cachedPair(dir)?.refreshToken).toBe(latest?.refreshToken);
    // A pair Saxo accepts: its refresh token (300 s life) has never been presented.
    expect(rig.presented).not.toContain(latest!.refreshToken);
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect(duplicates(rig.presented)).toBe(0);
    expect(agent.logs.filter((l) => l.event === 'event_foreign')).toEqual([]);
    if (process.env.DUMP) console.log(agent.logs.map((l) => `${l.time as string} ${l.event} ${l.message}`).join('\n'));
    rig.assertNoSecrets([...agent.raw, agent.stderr()]);
  }, 120_000);

  it('the subscription deleted under a running agent: one ALERT with the fix, and `status` shows it (exit 1)', async () => {
    await rig.seedSecret(35, 1);
    const sub = await rig.createSubscription(`vm-gone-${rig.secretId}`);
    const dir = tempDir('tk-sub-gone-');
    const env = rig.agentEnv(dir, { TOKEN_KEEPER_HOLDER_ID: 'agent:vm-gone', TOKEN_SUBSCRIPTION_ID: sub, CHECK_INTERVAL_SECONDS: '0.5', REFRESH_THRESHOLD_SECONDS: '2', BOT_REFRESH_THRESHOLD_SECONDS: '1' });
    const agent = startCli(['agent'], env);
    procs.push(agent);
    await agent.waitForEvent('agent_ready');
    await rig.ps.pubsub.subscription(sub).delete();
    const alert = await agent.waitFor((l) => l.event === 'event_subscription_broken', 20_000, 'the ALERT');
    expect(alert).toMatchObject({ severity: 'ALERT', code: 'NOT_FOUND', subscription: `projects/${PROJECT}/subscriptions/${sub}` });
    expect(alert.message).toMatch(/terraform apply/);
    // The state file records it at the end of the next check; `status` reads it from there.
    const stateText = () => {
      try {
        return readFileSync(join(dir, '.token-keeper-state.json'), 'utf8');
      } catch {
        return '';
      }
    };
    await until(() => stateText().includes('"NOT_FOUND"'), 10_000, 'the state file to record the broken subscription');
    const st = startCli(['status', '--json'], env);
    procs.push(st);
    const { code } = await st.exited;
    const report = JSON.parse(st.raw.join('\n')) as { health: string; agent: { subscription?: { code: string; problem: string } }; problems: string[] };
    expect(report.agent.subscription).toMatchObject({ code: 'NOT_FOUND', problem: expect.stringContaining(sub) as unknown });
    expect(report.problems.some((p) => p.startsWith('no TOKEN_ROTATED pushes'))).toBe(true);
    expect(report.health).toBe('degraded');
    expect(code).toBe(1);
    // The fast loop is over: one ALERT and no reconnect storm while the slow retry (minutes) waits.
    expect(agent.logs.filter((l) => l.event === 'event_subscription_broken')).toHaveLength(1);
    expect(agent.logs.filter((l) => l.event === 'event_subscription_error')).toEqual([]);
  }, 60_000);
});
