/**
 * Several VMs with Secret Manager unreachable: one presenter (docs/DESIGN.md "Several VMs"). Two
 * real agent processes — the primary and one with TOKEN_KEEPER_PRIMARY=false — on their own data
 * dirs, the gRPC Secret Manager stand-in made unavailable, the Saxo stand-in behind the recording
 * proxy. The real-time smoke test of what only real processes show (two agents on their own data
 * dirs, `status` exiting 1 on the waiting VM); the same scenario and the cloud's patience after such
 * an outage run on the virtual clock in test/unit/several-vms.test.ts.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCli, until, type CliProcess } from '../helpers/agent-process.js';
import { cachedPair } from '../helpers/reliability-cli.js';
import { describeWithPubSub } from '../helpers/gcp.js';
import { startCloudRig, duplicates, tempDir, type CloudRig } from '../helpers/cloud-rig.js';

const PROJECT = `tk-several-vms-${process.pid}`;
const procs: CliProcess[] = [];

describeWithPubSub('several VMs, Secret Manager down: only the primary presents', () => {
  let rig: CloudRig;
  beforeAll(async () => {
    rig = await startCloudRig({ projectId: PROJECT, accessLifetimeSec: 60, refreshLifetimeSec: 300, marginSec: 1 });
  });
  afterEach(async () => {
    rig.sm.server.setUnavailable(false);
    await Promise.all(procs.splice(0).map((p) => p.stop()));
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('the primary refreshes without the lease; the other waits (says why, status shows it), then adopts the pushed pair', async () => {
    const seed = await rig.seedSecret(35, 1);
    const env = (dir: string, holder: string, extra: Record<string, string> = {}) =>
      rig.agentEnv(dir, { TOKEN_KEEPER_HOLDER_ID: holder, CHECK_INTERVAL_SECONDS: '0.5', REFRESH_THRESHOLD_SECONDS: '30', CLOUD_REFRESH_THRESHOLD_SECONDS: '45', BOT_REFRESH_THRESHOLD_SECONDS: '10', SAXO_HTTP_TIMEOUT_SECONDS: '1', ...extra });
    const dirA = tempDir('tk-vm-a-');
    const dirB = tempDir('tk-vm-b-');
    const a = startCli(['agent'], env(dirA, 'agent:vm-a'));
    const b = startCli(['agent'], env(dirB, 'agent:vm-b', { TOKEN_KEEPER_PRIMARY: 'false' }));
    procs.push(a, b);
    await Promise.all([a.waitForEvent('agent_ready'), b.waitForEvent('agent_ready')]);
    expect(cachedPair(dirA)?.refreshToken).toBe(seed.refreshToken);
    expect(cachedPair(dirB)?.refreshToken).toBe(seed.refreshToken);

    rig.sm.server.setUnavailable(true);
    // Each call to an unreachable Secret Manager costs its 10 s deadline before the agent gives up on it.
    const refreshed = await a.waitForEvent('token_refreshed', 40_000);
    const waiting = await b.waitForEvent('awaiting_primary', 40_000);
    expect(waiting.severity).toBe('WARNING');
    // One presentation of the seed's refresh token, by the primary; none by the other VM.
    expect(rig.presented.filter((t) => t === seed.refreshToken)).toHaveLength(1);
    expect(b.logs.some((l) => l.event === 'refresh_started')).toBe(false);
    expect(refreshed.by).toBe('agent:vm-a');

    // `status` on the waiting VM says so, and exits 1 (degraded), not 0. (The state file is written
    // at the end of the check that logged it: no event marks that, so poll the file.)
    await until(() => readFileSync(join(dirB, '.token-keeper-state.json'), 'utf8').includes('"awaiting"'), 5_000, 'the state file to record the wait');
    const st = startCli(['status', '--json'], env(dirB, 'agent:vm-b', { TOKEN_KEEPER_PRIMARY: 'false' }));
    procs.push(st);
    const { code } = await st.exited;
    const report = JSON.parse(st.raw.join('\n')) as { agent: { awaiting?: { reason: string } }; problems: string[] };
    expect(report.agent.awaiting?.reason).toMatch(/not the primary/);
    expect(code).not.toBe(0);

    // Secret Manager answers again: the primary pushes its pair, the other VM adopts it.
    const bFrom = b.logs.length;
    rig.sm.server.setUnavailable(false);
    await a.waitFor((l) => l.event === 'secret_version_added', 20_000, 'the primary to push');
    await b.waitFor((l) => b.logs.indexOf(l) >= bFrom && l.event === 'token_adopted', 20_000, 'the other VM to adopt the pushed pair');
    await b.waitFor((l) => b.logs.indexOf(l) >= bFrom && l.event === 'cache_written', 20_000, 'the other VM to write it to its cache');
    expect(cachedPair(dirB)?.refreshToken).toBe(cachedPair(dirA)?.refreshToken);
    if (duplicates(rig.presented) > 0 || process.env.DUMP) {
      console.log('A:', a.logs.map((l) => `${l.time as string} ${l.event} ${l.message}`).join('\n'));
      console.log('B:', b.logs.map((l) => `${l.time as string} ${l.event} ${l.message}`).join('\n'));
    }
    expect(rig.saxo.stats().reusedPresentations).toBe(0);
    expect(duplicates(rig.presented)).toBe(0);
    rig.assertNoSecrets([...a.raw, ...b.raw, a.stderr(), b.stderr()]);
  }, 120_000);
});
