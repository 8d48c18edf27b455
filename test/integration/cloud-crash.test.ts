/**
 * I3 (nothing lost) with I1: a refresher dies after Saxo answered, before each later step in turn.
 * "Dies" = every later IO of that refresher fails and its lease is never released (in-process), or
 * kill -9 of the real agent process at a log event. On restart the newest pair is found and used,
 * nothing presents a consumed token, and the chain continues.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createCacheFile } from '../../agent/cache-file.js';
import type { ReconcilerDeps } from '../../agent/reconciler.js';
import type { EventBus, SecretStore } from '../../core/ports.js';
import { startCli } from '../helpers/agent-process.js';
import { describeWithPubSub, waitFor } from '../helpers/gcp.js';
import { startCloudRig, duplicates, tempDir, type CloudRig } from '../helpers/cloud-rig.js';

const PROJECT = 'tk-cloud-crash';
const LEASE_SEC = 2; // the Saxo attempt deadline is 0.75 × lease and an attempt needs ≥ 1 s

class Crash extends Error {
  override readonly name = 'Crash';
}

type Step = 'state' | 'add' | 'publish' | 'prune' | 'release';

/** Wraps the sinks so that, once Saxo has answered, reaching `step` kills every later IO. */
function crashing(step: Step) {
  let answered = false;
  let dead = false;
  const gate = <A extends unknown[], R>(name: Step | 'other', fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      if (dead) throw new Crash('refresher is dead');
      if (answered && name === step) {
        dead = true;
        throw new Crash(`died before ${step}`);
      }
      return fn(...a);
    };
  const store = (s: SecretStore): SecretStore => ({
    name: s.name,
    latest: gate('other', s.latest),
    version: gate('other', s.version),
    add: gate('add', s.add),
    prune: gate('prune', s.prune),
    countVersions: gate('other', s.countVersions),
    meta: gate('other', s.meta),
    acquireLease: gate('other', s.acquireLease),
    releaseLease: gate('release', s.releaseLease),
    record: gate('other', s.record),
  });
  const bus = (b: EventBus): EventBus => ({ publish: gate('publish', b.publish), subscribe: b.subscribe });
  return {
    get dead() {
      return dead;
    },
    store,
    bus,
    agent: (d: ReconcilerDeps): ReconcilerDeps => ({
      ...d,
      saxo: {
        refresh: async (rt, o) => {
          const r = await d.saxo.refresh(rt, o);
          answered = true;
          return r;
        },
        exchangeCode: d.saxo.exchangeCode.bind(d.saxo),
      },
      state: { read: d.state.read.bind(d.state), write: gate('state', d.state.write.bind(d.state)) },
      cache: { path: d.cache.path, read: gate('other', d.cache.read), write: gate('other', d.cache.write) },
      store: d.store && store(d.store),
      bus: d.bus && bus(d.bus),
    }),
    markAnswered: () => {
      answered = true;
    },
  };
}

describeWithPubSub('I3 crash at every step after Saxo answered', () => {
  let rig: CloudRig;
  beforeAll(async () => {
    rig = await startCloudRig({ projectId: PROJECT, accessLifetimeSec: 30, refreshLifetimeSec: 600 });
    await rig.seedSecret(25, 1);
  });
  afterAll(async () => {
    await rig?.close();
  });

  const leaseFree = () =>
    waitFor(async () => {
      const m = await rig.store.meta();
      return !m.lease || m.lease.expiresAt < Date.now();
    }, 5000, 'lease expiry');

  const agentEnv = (holder: string) => ({ REFRESH_THRESHOLD_SECONDS: '5', LEASE_TTL_SECONDS: String(LEASE_SEC), TOKEN_KEEPER_HOLDER_ID: holder });

  for (const step of ['state', 'add', 'publish', 'prune', 'release'] as Step[]) {
    it(`agent dies before ${step}: restart finds the new pair, pushes it, refreshes from it`, async () => {
      const dir = tempDir(`tk-crash-${step}-`);
      const before = (await rig.latest())!;
      const c = crashing(step);
      const a1 = await rig.inProcessAgent(dir, agentEnv(`agent:doomed-${step}`), c.agent);
      await a1.reconciler.run({ kind: 'refresh', force: true }).catch((e: unknown) => {
        if (!(e instanceof Crash)) throw e;
      });
      expect(c.dead, 'the crash point was reached').toBe(true);
      const cached = await createCacheFile(a1.config.cachePath).read();
      expect(cached.kind === 'ok' && cached.token.refreshToken !== before.refreshToken, 'new pair durable in the cache').toBe(true);
      const newPair = cached.kind === 'ok' ? cached.token : undefined;

      // Restart: a new process (fresh adapters, another holder id) on the same data dir.
      const a2 = await rig.inProcessAgent(dir, agentEnv(`agent:restarted-${step}`));
      await a2.reconciler.run({ kind: 'startup' });
      expect((await rig.latest())?.refreshToken, 'the secret caught up with the pair the dead agent got').toBe(newPair!.refreshToken);
      await leaseFree();
      expect(await a2.reconciler.run({ kind: 'refresh', force: true })).toBe('refreshed');
      const after = (await rig.latest())!;
      expect(after.generation!).toBeGreaterThan(newPair!.generation!);
      expect(rig.saxo.isValidAccessToken(after.accessToken)).toBe(true);
      expect(rig.saxo.stats().reusedPresentations).toBe(0);
      expect(duplicates(rig.presented)).toBe(0);
    });
  }

  for (const step of ['publish', 'prune', 'release'] as Step[]) {
    it(`function dies before ${step}: the next invocation continues from the stored pair`, async () => {
      const before = (await rig.latest())!;
      const c = crashing(step);
      c.markAnswered(); // the function's first write after Saxo is the secret add; arm every later step
      const base = rig.cloudDeps({ LEASE_TTL_SECONDS: String(LEASE_SEC) });
      // Arm only after the add: wrap add so that it runs for real, then the crash gate applies.
      const store = c.store(base.store);
      const deps = { ...base, store: { ...store, add: base.store.add }, bus: c.bus(base.bus!) };
      const fn = await rig.startFunction(() => Promise.resolve(deps));
      const r = await fn.post({ force: true });
      expect(c.dead, `the crash point was reached (${JSON.stringify(r.body)})`).toBe(true);
      const stored = (await rig.latest())!;
      expect(stored.generation).toBe(before.generation! + 1);

      await leaseFree();
      const fn2 = await rig.startFunction(() => Promise.resolve(rig.cloudDeps({ LEASE_TTL_SECONDS: String(LEASE_SEC) })));
      const r2 = await fn2.post({ force: true });
      expect(r2.body).toMatchObject({ outcome: 'refreshed', generation: stored.generation! + 1 });
      expect(rig.saxo.stats().reusedPresentations).toBe(0);
      expect(duplicates(rig.presented)).toBe(0);
    });
  }

  for (const at of ['token_refreshed']) {
    it(`kill -9 of the real agent at ${at}: the restarted agent pushes the pair and keeps the chain`, async () => {
      const dir = tempDir('tk-crash-kill-');
      // A token the agent must refresh at once (2 s left, threshold 5 s).
      const seeded = await rig.seedSecret(2, ((await rig.latest())?.generation ?? 0) + 1);
      const env = rig.agentEnv(dir, { ...agentEnv('agent:killed'), CHECK_INTERVAL_SECONDS: '0.5' });
      const p1 = startCli(['agent'], env);
      const hit = await p1.waitForEvent(at, 30_000);
      p1.proc.kill('SIGKILL');
      await p1.exited;
      expect(hit.generation).toBeGreaterThan(seeded.generation!);
      const cached = await createCacheFile(`${dir}/saxo_token_cache.json`).read();
      expect(cached.kind).toBe('ok');
      const pair = cached.kind === 'ok' ? cached.token : undefined;
      expect(pair!.refreshToken).not.toBe(seeded.refreshToken);

      // Short lifetime now so the restarted agent must refresh again from the recovered pair.
      // The dead agent's instance lock (mkdir + heartbeat) goes stale after 10 s: restart until it
      // starts, as systemd's Restart= would.
      const env2 = { ...env, TOKEN_KEEPER_HOLDER_ID: 'agent:killed-restarted', REFRESH_THRESHOLD_SECONDS: '40' };
      let p2 = startCli(['agent'], env2);
      const restarts: string[] = [];
      for (;;) {
        const first = await Promise.race([p2.waitForEvent('agent_starting', 20_000).then(() => 'up'), p2.exited.then(() => 'exited')]);
        if (first === 'up') break;
        restarts.push(...p2.raw, p2.stderr());
        expect(p2.stderr()).toContain('InstanceLockedError');
        await new Promise((r) => setTimeout(r, 1000)); // systemd RestartSec
        p2 = startCli(['agent'], env2);
      }
      try {
        await p2.waitFor((l) => l.event === 'token_refreshed', 30_000, 'a refresh after restart');
        const latest = await waitFor(async () => {
          const t = await rig.latest();
          return t && t.generation! > pair!.generation! ? t : undefined;
        }, 15_000, 'secret beyond the recovered pair');
        expect(rig.saxo.isValidAccessToken(latest.accessToken)).toBe(true);
        expect(rig.saxo.stats().reusedPresentations).toBe(0);
        expect(duplicates(rig.presented)).toBe(0);
      } finally {
        await p2.stop();
      }
      rig.assertNoSecrets([...p1.raw, p1.stderr(), ...restarts, ...p2.raw, p2.stderr()]);
    });
  }

  it('no token or app secret in any log line, event or error message of the whole run', () => {
    rig.assertNoSecrets();
  });
});
