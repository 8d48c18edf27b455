/**
 * Cloud Function entry (gen2, Node 24; also runs on Node 20): registers the HTTP function
 * `refreshToken`. Dependencies (functions/deps.ts) are built on the first invocation and reused.
 */
import { http } from '@google-cloud/functions-framework';
import { loadConfig } from '../core/config.js';
import { chainName, createLogger, type Logger } from '../core/log.js';
import { configuredTiers, tierProblems } from '../core/tiers.js';
import { functionDeps } from './deps.js';
import { createRefreshHandler } from './handler.js';
import type { CloudDeps } from './refresher.js';

/** Logs failures to even build the dependencies (a configuration error); runs log through `deps.logger`. */
const fallbackLogger: Logger = createLogger({ component: 'function', httpRequestKey: 'httpRequest' });
let deps: Promise<CloudDeps> | undefined;

async function build(): Promise<CloudDeps> {
  const config = loadConfig();
  const logger = createLogger({ format: config.logFormat, component: 'function', chain: chainName(config), httpRequestKey: 'httpRequest' });
  logger.addSecret(config.appSecret);
  for (const p of tierProblems(configuredTiers(config))) logger.warn('tiers_out_of_order', `Refresh tiers out of order: ${p.message} (fix: ${p.fix})`);
  // One name per revision (a stable metric label); each run's lease holder adds its own suffix (refresher.ts).
  return functionDeps(config, logger, `cloud:${process.env.K_REVISION ?? 'local'}`);
}

http(
  'refreshToken',
  createRefreshHandler(() => {
    deps ??= build().catch((err) => {
      deps = undefined; // retry construction on the next invocation
      throw err;
    });
    return deps;
  }, fallbackLogger),
);
