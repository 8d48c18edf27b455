/**
 * Timed measurements: publish → cache rename propagation through the real agent, the function's
 * handler time (runCloudRefresh on real adapters), and the bots' cache read.
 */
import { watch, statSync, readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { runCloudRefresh, type CloudDeps } from '../../functions/refresher.js';
import { systemClock } from '../../core/clock.js';
import { createSaxoClient } from '../../core/saxo/client.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { parseFlat } from '../../core/codec.js';
import type { EventBus } from '../../core/ports.js';
import { benchConfig, type Channel, type Rig } from './rig.js';
import { cloudSettings } from '../../core/settings.js';

export function median(xs: number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** CloudDeps over the real adapters; `onPublish` fires just before each TOKEN_ROTATED publish. */
export function cloudDeps(rig: Rig, ch: Channel, onPublish?: () => void): CloudDeps {
  const bus: EventBus = {
    publish: (e) => {
      onPublish?.();
      return ch.bus.publish(e);
    },
    subscribe: (h) => ch.bus.subscribe(h),
  };
  return {
    clock: systemClock,
    store: ch.store,
    bus,
    saxo: createSaxoClient({ authBaseUrl: rig.saxo.url, httpTimeoutMs: 10_000 }),
    logger: rig.logger,
    settings: cloudSettings(benchConfig(rig.projectId, ch.secretId), { holderId: 'cloud:bench' }),
  };
}

/** Handler time of a no-op run (token fresh: one AccessSecretVersion), in ms. */
export async function functionNoop(rig: Rig, ch: Channel, n: number): Promise<number[]> {
  const deps = cloudDeps(rig, ch);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await runCloudRefresh(deps);
    out.push(performance.now() - t0);
    if (r.outcome !== 'fresh') throw new Error(`function no-op run did ${r.outcome} (${r.reason ?? ''})`);
  }
  return out;
}

export interface PropagationResult {
  latenciesMs: number[];
  refreshMs: number[];
}

/**
 * Forced cloud refreshes, one at a time; for each, the time from just before the publish to the
 * agent's rename of the cache file (inode change seen by inotify, with a 5 ms stat poll as backstop).
 */
export async function propagation(rig: Rig, ch: Channel, cachePath: string, n: number, timeoutMs = 10_000): Promise<PropagationResult> {
  const name = basename(cachePath);
  const ino = () => {
    try {
      return statSync(cachePath).ino;
    } catch {
      return -1;
    }
  };
  let lastIno = ino();
  const renames: number[] = [];
  let wake: (() => void) | undefined;
  const check = () => {
    const i = ino();
    if (i !== lastIno) {
      lastIno = i;
      renames.push(performance.now());
      wake?.();
    }
  };
  const watcher = watch(dirname(cachePath), (_ev, f) => {
    if (f === name) check();
  });
  const poll = setInterval(check, 5);
  let publishedAt = 0;
  const deps = cloudDeps(rig, ch, () => (publishedAt = performance.now()));
  const latenciesMs: number[] = [];
  const refreshMs: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      publishedAt = 0;
      const t0 = performance.now();
      const r = await runCloudRefresh(deps, { force: true });
      refreshMs.push(performance.now() - t0);
      if (r.outcome !== 'refreshed' || !publishedAt) throw new Error(`forced refresh ${i} did ${r.outcome} (${r.reason ?? ''})`);
      const deadline = Date.now() + timeoutMs;
      let seen: number | undefined;
      while ((seen = renames.find((t) => t >= publishedAt)) === undefined) {
        if (Date.now() > deadline) throw new Error(`refresh ${i}: the agent did not rewrite the cache within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 50);
        });
      }
      latenciesMs.push(seen - publishedAt);
      renames.length = 0;
      // The rename must carry the pair just stored, or the measurement timed the wrong write.
      const stored = await ch.store.version(r.version!);
      const cached = parseFlat(readFileSync(cachePath, 'utf8'));
      if (!cached.ok || !stored?.token || cached.token.refreshToken !== stored.token.refreshToken) {
        // A later write may already have replaced it; only a pair older than stored is an error.
        if (!cached.ok || (cached.token.generation ?? 0) < (r.generation ?? 0)) throw new Error(`refresh ${i}: cache does not hold generation ${r.generation}`);
      }
    }
  } finally {
    clearInterval(poll);
    watcher.close();
  }
  return { latenciesMs, refreshMs };
}

/** Microseconds per createCacheFile(...).read() of a real cache file. */
export async function cacheRead(cachePath: string, n: number): Promise<number[]> {
  const cache = createCacheFile(cachePath);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await cache.read();
    out.push((performance.now() - t0) * 1000);
    if (r.kind !== 'ok') throw new Error(`cache read: ${r.kind}`);
  }
  return out;
}
