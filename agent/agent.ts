/**
 * The VM agent's runtime: triggers (startup, a timer, the cache-file watcher, Pub/Sub messages,
 * the upstream retry) feed the one Reconciler. Stops on an AbortSignal (SIGTERM/SIGINT in the
 * CLI): no new work starts, the run in progress — an exchange with Saxo already sent, the writes
 * that make its answer durable — finishes, then everything closes.
 */
import { watch, type FSWatcher } from 'chokidar';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { Config } from '../core/config.js';
import { ConfigError, errorText } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { configuredTiers, tierProblems } from '../core/tiers.js';
import { removeStaleTmpFiles } from './atomic-write.js';
import { runCheckins } from './checkin.js';
import { startAgentClock } from './clock-watch.js';
import { acquireInstanceLock } from './instance-lock.js';
import { Reconciler, type Trigger } from './reconciler.js';
import { connectCloud, reconcilerDeps } from './wiring.js';

export interface AgentHandle {
  reconciler: Reconciler;
  /** Resolves when the agent has stopped (after the signal fires). */
  done: Promise<void>;
}

/** `onReconciler` sees the reconciler before the startup run (the CLI's stop logic watches its phase). */
export async function startAgent(config: Config, logger: Logger, signal: AbortSignal, onReconciler?: (r: Reconciler) => void): Promise<AgentHandle> {
  if (!existsSync(config.dataDir)) {
    // A typo in TOKEN_KEEPER_DATA_DIR must not run a keeper for nobody.
    if (!config.createDataDir) {
      throw new ConfigError(`data dir ${config.dataDir} does not exist: create it (owned by the bots' user) or set TOKEN_KEEPER_CREATE_DATA_DIR=true`);
    }
    await mkdir(config.dataDir, { recursive: true, mode: 0o750 });
  }
  const instance = await acquireInstanceLock(config.dataDir);
  logger.info('agent_starting', 'TOKEN KEEPER SERVICE STARTING', {
    mode: config.gcp ? 'cloud-connected' : 'standalone',
    primary: config.primary,
    dataDir: config.dataDir,
    holder: config.holderId,
    host: hostname(), // the crash-loop metric's label (infra/terraform/monitoring.tf)
  });
  logger.info('agent_config', `Check interval: ${config.checkIntervalMs / 1000}s`, {
    refreshThresholdSeconds: config.refreshThresholdMs / 1000,
    maxRefreshFailures: config.maxRefreshFailures,
  });
  logger.info('agent_config', `Refresh threshold: ${config.refreshThresholdMs / 1000}s before expiry`);
  logger.addSecret(config.appSecret);
  // Tmp files of a write killed mid-way hold token text; only this agent writes ours, and it holds the instance lock.
  const removed = await removeStaleTmpFiles([config.cachePath, config.statePath]);
  if (removed.length) logger.info('stale_tmp_removed', `Removed ${removed.length} tmp file(s) left by an interrupted write`, { removed });

  let cloud: Awaited<ReturnType<typeof connectCloud>>;
  try {
    cloud = await connectCloud(config, logger);
  } catch (err) {
    await instance.release();
    throw err;
  }
  // The agent's clock: watched for jumps, corrected by the skew to Saxo's (docs/DESIGN.md "Server time").
  let onJump: () => void = () => undefined;
  const clockWatch = await startAgentClock(config, logger, () => onJump());
  const stopClockWatch = clockWatch.start();
  const deps = { ...reconcilerDeps(config, logger, cloud, clockWatch.clock), clockWatch };
  const reconciler = new Reconciler(deps);
  onReconciler?.(reconciler);
  // The run in progress (the startup run, a timer check) must learn of the stop at once, not when
  // it is over: only then does it start nothing new, bound the secret write and leave the
  // announcement for the next start.
  signal.addEventListener('abort', () => void reconciler.stop(), { once: true });
  await reconciler.load();
  const known = reconciler.newestKnown;
  const life = known?.issuedAt !== undefined ? known.accessExpiresAt - known.issuedAt : undefined;
  for (const p of tierProblems(configuredTiers(config), life)) {
    logger.warn('tiers_out_of_order', `Refresh tiers out of order: ${p.message} (fix: ${p.fix})`);
  }
  const safeRun = (t: Trigger) =>
    reconciler.run(t).catch((err) => {
      logger.error('reconcile_error', 'Unexpected error while reconciling; continuing', { error: errorText(err), trigger: t.kind });
      return 'failed' as const;
    });

  await safeRun({ kind: 'startup' });
  onJump = () => void (signal.aborted ? undefined : safeRun({ kind: 'tick' }));
  // I7 (agent/pin.ts): read the pin — or set it from the current pair at the first start after the
  // upgrade — after the startup run, so it neither delays nor races it; waited for at most 3 s.
  const pinLoaded = reconciler.pin.load(cloud?.store, reconciler.newestKnown);
  await Promise.race([pinLoaded, new Promise<void>((r) => setTimeout(r, 3000).unref())]);

  // Cache watcher: watch the directory (the file is replaced by rename) and filter on the name.
  // A watcher that fails (inotify limits, EACCES) is said once, loudly; the periodic check carries on.
  const cacheName = basename(config.cachePath);
  let watchFailure: string | undefined;
  const watcher: FSWatcher = watch(dirname(config.cachePath), {
    depth: 0,
    ignoreInitial: true,
    ignored: (p: string) => p !== dirname(config.cachePath) && basename(p) !== cacheName,
  });
  watcher.on('all', (_ev, p) => {
    if (basename(p) === cacheName) void safeRun({ kind: 'cache-changed' });
  });
  watcher.on('error', (err) => {
    if (watchFailure !== undefined) return logger.debug('watcher_error', 'Cache watcher error', { error: errorText(err) });
    watchFailure = errorText(err);
    reconciler.noteWatchFailed(watchFailure);
    logger.warn(
      'watch_failed',
      `Cannot watch the cache file ${config.cachePath} (${watchFailure}): a bot's new pair is picked up by the periodic check (every ${config.checkIntervalMs / 1000}s), not at once`,
      { error: watchFailure },
    );
  });
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));

  let unsubscribe: (() => Promise<void>) | undefined;
  if (cloud && config.gcp?.subscriptionId) {
    try {
      unsubscribe = await cloud.bus.subscribe(
        async (event) => {
          const out = await reconciler.run({ kind: 'event', event });
          logger.debug('event_handled', `TOKEN_ROTATED handled: ${out}`, { version: event.version, generation: event.generation });
        },
        async (event) => {
          const out = await reconciler.run({ kind: 'consumed', event });
          logger.debug('event_handled', `TOKEN_CONSUMED handled: ${out}`, { pairId: event.pairId, generation: event.generation });
        },
      );
      logger.info('subscribed', 'Listening for TOKEN_ROTATED events', { subscription: config.gcp.subscriptionId });
    } catch (err) {
      logger.warn('subscribe_failed', 'Could not subscribe; relying on the periodic check', { error: errorText(err) });
    }
  } else if (cloud) {
    logger.warn('no_subscription', 'TOKEN_SUBSCRIPTION_ID not set: relying on the periodic check only');
  }

  const watching = watchFailure === undefined ? 'watching the cache file' : `NOT watching the cache file (${watchFailure}); periodic check only`;
  logger.info('agent_ready', `Agent ready: ${watching}` + (unsubscribe ? ' and listening for events' : ''), {
    checkIntervalSeconds: config.checkIntervalMs / 1000,
    watching: watchFailure === undefined,
  });

  // While a pair or an announcement waits upstream (refreshed or adopted during an outage), retry
  // every few seconds: the cloud must learn of it before it presents the consumed refresh token.
  // One retry at a time: a publish that hangs takes its full deadline (5 s), and retries queued
  // every few seconds behind it would pile up in the serial queue ahead of the periodic check.
  // Liveness for paging (agent/checkin.ts): from here on, until the stop.
  const checkins = runCheckins({ logger, signal });

  let pushing = false;
  const pushRetry = setInterval(() => {
    if (pushing || !reconciler.hasPendingPush || signal.aborted) return;
    pushing = true;
    void safeRun({ kind: 'push' }).finally(() => (pushing = false));
  }, deps.settings.pushRetryMs);
  pushRetry.unref();

  const done = (async () => {
    while (!signal.aborted) {
      await abortableSleep(config.checkIntervalMs, signal);
      if (signal.aborted) break;
      await safeRun({ kind: 'tick' });
    }
    clearInterval(pushRetry);
    await checkins;
    stopClockWatch();
    logger.info('agent_stopping', 'Token keeper stopping');
    // Triggers first (nothing new arrives), then let the run in progress finish its writes.
    await Promise.allSettled([watcher.close(), unsubscribe?.(), reconciler.stop()]);
    await cloud?.close();
    await instance.release();
    logger.info('agent_stopped', 'Token keeper stopped');
  })();
  return { reconciler, done };
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
