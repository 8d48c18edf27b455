/**
 * Builds the real adapters from a Config. Cloud clients are imported lazily so that a standalone
 * agent (and `status` without GCP settings) never loads the gRPC stacks.
 */
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import type { EventBus, SecretStore } from '../core/ports.js';
import { systemClock, type Clock } from '../core/clock.js';
import { createSaxoClient } from '../core/saxo/client.js';
import { agentSettings, type SettingsOverrides } from '../core/settings.js';
import { createCacheFile } from './cache-file.js';
import { acquireFlock } from './flock.js';
import { createStateFile } from './state-file.js';
import { createJournal, JOURNAL_NAME } from './journal.js';
import { dirname, join } from 'node:path';
import type { ReconcilerDeps } from './reconciler.js';

export interface Cloud {
  store: SecretStore;
  bus: EventBus;
  close(): Promise<void>;
}

/** `timeoutMs`: per-call Secret Manager deadline (status uses a short one to answer quickly). */
export async function connectCloud(config: Config, logger: Logger, opts: { timeoutMs?: number } = {}): Promise<Cloud | undefined> {
  const gcp = config.gcp;
  if (!gcp) return undefined;
  const [{ createSecretManagerClient }, { createSecretStore }, { createEventBus }] = await Promise.all([
    import('../core/gcp/clients.js'),
    import('../core/gcp/secret-store.js'),
    import('../core/gcp/event-bus.js'),
  ]);
  const client = await createSecretManagerClient(gcp);
  const store = createSecretStore({ client, projectId: gcp.projectId, secretId: gcp.secretId, logger, timeoutMs: opts.timeoutMs });
  const bus = createEventBus({ gcp, logger });
  return {
    store,
    bus,
    close: async () => {
      await Promise.allSettled([client.close(), bus.close()]);
    },
  };
}

export function reconcilerDeps(config: Config, logger: Logger, cloud?: Cloud, clock: Clock = systemClock, over: SettingsOverrides = {}): ReconcilerDeps {
  return {
    clock,
    cache: createCacheFile(config.cachePath, { logger }),
    lock: (signal) => acquireFlock(config.lockPath, { timeoutMs: config.lockTimeoutMs, retryMs: config.lockRetryMs, clock, signal }),
    state: createStateFile(config.statePath, { logger }),
    saxo: createSaxoClient({ authBaseUrl: config.authBaseUrl, httpTimeoutMs: config.httpTimeoutMs, clock, logger }),
    store: cloud?.store,
    bus: cloud?.bus,
    logger,
    settings: agentSettings(config, over),
    journal: createJournal(join(dirname(config.statePath), JOURNAL_NAME)),
  };
}
