/**
 * The VM agent's runtime: triggers (startup, a timer, the cache-file watcher, Pub/Sub messages)
 * feed the one Reconciler. Stops cleanly on an AbortSignal (SIGTERM/SIGINT in the CLI).
 */
import { watch, type FSWatcher } from 'chokidar';
import { basename, dirname } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { acquireInstanceLock } from './instance-lock.js';
import { Reconciler } from './reconciler.js';
import { errorText } from '../core/errors.js';
import { connectCloud, reconcilerDeps } from './wiring.js';

export interface AgentHandle {
  reconciler: Reconciler;
  /** Resolves when the agent has stopped (after the signal fires). */
  done: Promise<void>;
}

export async function startAgent(config: Config, logger: Logger, signal: AbortSignal): Promise<AgentHandle> {
  await mkdir(config.dataDir, { recursive: true, mode: 0o750 });
  const instance = await acquireInstanceLock(config.dataDir);
  logger.info('agent_starting', 'TOKEN KEEPER SERVICE STARTING', {
    mode: config.gcp ? 'cloud-connected' : 'standalone',
    dataDir: config.dataDir,
    holder: config.holderId,
  });
  logger.info('agent_config', `Check interval: ${config.checkIntervalMs / 1000}s`, {
    refreshThresholdSeconds: config.refreshThresholdMs / 1000,
    maxRefreshFailures: config.maxRefreshFailures,
  });
  logger.info('agent_config', `Refresh threshold: ${config.refreshThresholdMs / 1000}s before expiry`);
  logger.addSecret(config.appSecret);

  let cloud: Awaited<ReturnType<typeof connectCloud>>;
  try {
    cloud = await connectCloud(config, logger);
  } catch (err) {
    await instance.release();
    throw err;
  }
  const reconciler = new Reconciler(reconcilerDeps(config, logger, cloud));
  await reconciler.load();
  const safeRun = (t: Parameters<Reconciler['run']>[0]) =>
    reconciler.run(t).catch((err) => {
      logger.error('reconcile_error', 'Unexpected error while reconciling; continuing', { error: errorText(err), trigger: t.kind });
      return 'failed' as const;
    });

  await safeRun({ kind: 'startup' });

  // Cache watcher: watch the directory (the file is replaced by rename) and filter on the name.
  const cacheName = basename(config.cachePath);
  const watcher: FSWatcher = watch(dirname(config.cachePath), {
    depth: 0,
    ignoreInitial: true,
    ignored: (p: string) => p !== dirname(config.cachePath) && basename(p) !== cacheName,
  });
  watcher.on('all', (_ev, p) => {
    if (basename(p) === cacheName) void safeRun({ kind: 'cache-changed' });
  });
  watcher.on('error', (err) => logger.warn('watcher_error', 'Cache watcher error', { error: errorText(err) }));
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));

  let unsubscribe: (() => Promise<void>) | undefined;
  if (cloud && config.gcp?.subscriptionId) {
    try {
      unsubscribe = await cloud.bus.subscribe(async (event) => {
        const out = await reconciler.run({ kind: 'event', event });
        logger.debug('event_handled', `TOKEN_ROTATED handled: ${out}`, { version: event.version, generation: event.generation });
      });
      logger.info('subscribed', 'Listening for TOKEN_ROTATED events', { subscription: config.gcp.subscriptionId });
    } catch (err) {
      logger.warn('subscribe_failed', 'Could not subscribe; relying on the periodic check', { error: errorText(err) });
    }
  } else if (cloud) {
    logger.warn('no_subscription', 'TOKEN_SUBSCRIPTION_ID not set: relying on the periodic check only');
  }

  logger.info('agent_ready', 'Agent ready: watching the cache file' + (unsubscribe ? ' and listening for events' : ''), {
    checkIntervalSeconds: config.checkIntervalMs / 1000,
  });

  // While a pair waits for Secret Manager (refreshed or adopted during an outage), retry the push
  // every few seconds: the cloud must learn of it before it presents the consumed refresh token.
  const pushRetry = setInterval(() => {
    if (reconciler.hasPendingPush && !signal.aborted) void safeRun({ kind: 'push' });
  }, Math.min(5000, config.checkIntervalMs));
  pushRetry.unref();

  const done = (async () => {
    while (!signal.aborted) {
      await new Promise<void>((resolve) => {
        const onAbort = () => {
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        }, config.checkIntervalMs);
        signal.addEventListener('abort', onAbort, { once: true });
      });
      if (signal.aborted) break;
      await safeRun({ kind: 'tick' });
    }
    clearInterval(pushRetry);
    logger.info('agent_stopping', 'Token keeper stopping');
    await Promise.allSettled([watcher.close(), unsubscribe?.()]);
    await cloud?.close();
    await instance.release();
    logger.info('agent_stopped', 'Token keeper stopped');
  })();
  return { reconciler, done };
}
