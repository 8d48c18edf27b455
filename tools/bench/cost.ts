/**
 * Monthly cost from counted calls. A simulated day at default settings (fake clock) runs the real
 * Reconciler and runCloudRefresh over the real Secret Manager adapter and the gRPC stand-in, so
 * every RPC the system makes is counted by the server, per method. Prices are list prices
 * (stated below, checked 2025) — edit PRICES when Google changes them.
 */
import { Reconciler } from '../../agent/reconciler.js';
import { runCloudRefresh } from '../../functions/refresher.js';
import { fromResponse } from '../../core/token.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { ensureSecret } from '../../core/gcp/provision.js';
import { VirtualClock, MemoryCache, MemoryEventBus, MemoryLock, MemoryState, SaxoModel } from '../../standins/memory.js';
import { agentSettings, cloudSettings } from '../../core/settings.js';
import { APP_KEY, APP_SECRET, benchConfig, type Rig } from './rig.js';

export const PRICES = {
  /** Secret Manager: per ENABLED/DISABLED version per month (destroyed versions are free). */
  smVersionMonth: 0.06,
  /** Secret Manager: per 10,000 access operations (AccessSecretVersion). */
  smAccessPer10k: 0.03,
  /** Pub/Sub: first 10 GiB/month free, then $40/TiB; each publish/delivery bills ≥ 1 KB. */
  pubsubFreeGiB: 10,
  pubsubPerTiB: 40,
  /** Cloud Scheduler: 3 jobs per billing account free, then $0.10/job/month. */
  schedulerJobMonth: 0.1,
  schedulerFreeJobs: 3,
  /** Cloud Run functions (gen2), tier-1 region: per vCPU-second, per GiB-second, per million requests (2M free). */
  cpuPerVcpuSecond: 0.000024,
  memPerGibSecond: 0.0000025,
  requestsPerMillion: 0.4,
  freeRequests: 2_000_000,
} as const;

/** Deployed function shape (infra/terraform): 256 MB, which Cloud Run pairs with 0.167 vCPU. */
export const FUNCTION_MEMORY_GIB = 0.25;
export const FUNCTION_VCPU = 0.167;
const HOURS_PER_MONTH = 720; // the 30-day month the brief asks for
const SCHEDULE_MIN = 5;
const CHECK_S = 60;

export interface HourlyCounts {
  /** RPCs to Secret Manager per hour, by method (function + agent). A run's event deliveries are counted with the run. */
  smCalls: Record<string, number>;
  smCallsByCaller: { functionRunsAndEvents: number; agentTicks: number };
  functionRuns: number;
  refreshes: number;
  versionsAdded: number;
  publishes: number;
  /** Live (billable) versions at the end of the simulation. */
  liveVersions: number;
  /** Saxo presentations that reused a refresh token (must be 0). */
  reusedPresentations: number;
}

/** Simulate `hours` (+1 warm-up hour not counted) at default settings; returns per-hour averages. */
export async function countCalls(rig: Rig, hours = 6): Promise<HourlyCounts> {
  const clock = new VirtualClock(Date.now());
  const secretId = 'tok-cost';
  await ensureSecret(rig.smClient, rig.projectId, secretId);
  const store = createSecretStore({ client: rig.smClient, projectId: rig.projectId, secretId, logger: rig.logger });
  const saxo = new SaxoModel(clock);
  const bus = new MemoryEventBus();
  const login = { ...fromResponse(saxo.issue(), clock.now(), undefined, 'login', 60_000), generation: 1, appKey: APP_KEY, appSecret: APP_SECRET };
  await store.add(login);
  const config = benchConfig(rig.projectId, secretId);
  const reconciler = new Reconciler({
    clock,
    cache: new MemoryCache(),
    lock: () => new MemoryLock(clock).acquire(),
    state: new MemoryState(),
    saxo,
    store,
    bus,
    logger: rig.logger,
    settings: agentSettings(config, { holderId: 'agent:bench' }),
  });
  await reconciler.load();
  await reconciler.run({ kind: 'startup' });
  // Pub/Sub deliveries reach the agent (asynchronously, as in production).
  await bus.subscribe(async (event) => void (await reconciler.run({ kind: 'event', event })));
  const cloud = { clock, store, bus, saxo, logger: rig.logger, settings: cloudSettings(config, { holderId: 'cloud:bench' }) };

  const calls = rig.sm.calls;
  const byCaller = { functionRunsAndEvents: 0, agentTicks: 0 };
  const smCalls: Record<string, number> = {};
  let functionRuns = 0;
  let counting = false;
  const start = { published: 0, refreshes: 0 };
  const settle = async () => {
    // Let asynchronous event deliveries (and their RPCs) finish before attributing calls.
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    await reconciler.run({ kind: 'cache-changed' }).catch(() => undefined);
  };
  const attribute = async (who: keyof typeof byCaller, work: () => Promise<unknown>) => {
    const before = calls.length;
    await work();
    await settle();
    if (!counting) return;
    for (const m of calls.slice(before)) smCalls[m] = (smCalls[m] ?? 0) + 1;
    byCaller[who] += calls.length - before;
  };
  for (let s = 0; s < (hours + 1) * 3600; s += CHECK_S) {
    if (s === 3600) {
      counting = true;
      start.published = bus.published.length;
      start.refreshes = saxo.stats.refreshes;
    }
    if (s % (SCHEDULE_MIN * 60) === 0) {
      await attribute('functionRunsAndEvents', () => runCloudRefresh(cloud));
      if (counting) functionRuns++;
    }
    await attribute('agentTicks', () => reconciler.run({ kind: 'tick' }));
    await clock.advance(CHECK_S * 1000);
  }
  // The 'cache-changed' settle runs are not agent work the watcher would do in production when
  // nothing changed; they cost no RPC (cache only), so they do not distort the counts.
  const per = (n: number) => n / hours;
  for (const k of Object.keys(smCalls)) smCalls[k] = per(smCalls[k]!);
  return {
    smCalls,
    smCallsByCaller: { functionRunsAndEvents: per(byCaller.functionRunsAndEvents), agentTicks: per(byCaller.agentTicks) },
    functionRuns: per(functionRuns),
    refreshes: per(saxo.stats.refreshes - start.refreshes),
    versionsAdded: smCalls.AddSecretVersion ?? 0,
    publishes: per(bus.published.length - start.published),
    liveVersions: rig.sm.versionStates(secretId, rig.projectId).filter((v) => v.state !== 'DESTROYED').length,
    reusedPresentations: saxo.stats.reusedPresentations,
  };
}

export interface CostLine {
  item: string;
  quantity: string;
  usd: number;
}

export interface CostModel {
  lines: CostLine[];
  total: number;
}

const PUBSUB_MIN_BYTES = 1000;

/** Our design's month at default settings from the counted calls and the measured function time. */
export function monthlyCost(c: HourlyCounts, functionMs: { noop: number; refresh: number }): CostModel {
  const month = (perHour: number) => perHour * HOURS_PER_MONTH;
  const accesses = month(c.smCalls.AccessSecretVersion ?? 0);
  const runs = month(c.functionRuns);
  const refreshRuns = month(c.refreshes);
  // Cloud Run bills request time rounded up to 100 ms.
  const billed = (ms: number) => Math.ceil(ms / 100) / 10;
  const seconds = (runs - refreshRuns) * billed(functionMs.noop) + refreshRuns * billed(functionMs.refresh);
  const pubsubBytes = month(c.publishes) * PUBSUB_MIN_BYTES * 2; // publish + one delivery
  const pubsubGiB = pubsubBytes / 2 ** 30;
  const lines: CostLine[] = [
    { item: 'Secret Manager active versions', quantity: `${c.liveVersions} versions kept (K=3)`, usd: c.liveVersions * PRICES.smVersionMonth },
    { item: 'Secret Manager access operations', quantity: `${Math.round(accesses)} AccessSecretVersion`, usd: (accesses / 10_000) * PRICES.smAccessPer10k },
    { item: 'Cloud Run functions CPU', quantity: `${Math.round(seconds)} s × ${FUNCTION_VCPU} vCPU`, usd: seconds * FUNCTION_VCPU * PRICES.cpuPerVcpuSecond },
    { item: 'Cloud Run functions memory', quantity: `${Math.round(seconds)} s × ${FUNCTION_MEMORY_GIB} GiB`, usd: seconds * FUNCTION_MEMORY_GIB * PRICES.memPerGibSecond },
    { item: 'Cloud Run functions requests', quantity: `${Math.round(runs)} (2M free)`, usd: (Math.max(0, runs - PRICES.freeRequests) / 1e6) * PRICES.requestsPerMillion },
    { item: 'Pub/Sub', quantity: `${pubsubGiB.toFixed(4)} GiB (10 GiB free)`, usd: (Math.max(0, pubsubGiB - PRICES.pubsubFreeGiB) / 1024) * PRICES.pubsubPerTiB },
    { item: 'Cloud Scheduler', quantity: '1 job (3 free per account)', usd: 0 },
  ];
  return { lines, total: lines.reduce((s, l) => s + l.usd, 0) };
}

/**
 * The naive design: every VM polls the secret every 60 s and versions are never destroyed.
 * Versions accumulate linearly, so the 30-day bill is the integral (average live count × price).
 */
export function naiveMonthlyCost(versionsPerHour: number): CostModel & { versionsAtDay30: number; runRateAtDay30: number } {
  const versionsAtDay30 = versionsPerHour * HOURS_PER_MONTH;
  const avgLive = versionsAtDay30 / 2;
  const accesses = (3600 / CHECK_S) * HOURS_PER_MONTH;
  const lines: CostLine[] = [
    { item: 'Secret Manager versions (never destroyed)', quantity: `${versionsPerHour.toFixed(1)}/h → ${Math.round(versionsAtDay30)} at day 30`, usd: avgLive * PRICES.smVersionMonth },
    { item: 'Secret Manager access (poll every 60 s)', quantity: `${accesses} AccessSecretVersion`, usd: (accesses / 10_000) * PRICES.smAccessPer10k },
  ];
  return {
    lines,
    total: lines.reduce((s, l) => s + l.usd, 0),
    versionsAtDay30,
    runRateAtDay30: versionsAtDay30 * PRICES.smVersionMonth,
  };
}
