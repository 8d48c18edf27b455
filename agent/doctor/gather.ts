/**
 * Collect every fact doctor judges, concurrently, each IO under a short deadline: the whole
 * gathering finishes in a few seconds even when Secret Manager or Pub/Sub do not answer.
 * Read-only by construction: files are stat'ed and read, the bots' lock is flocked only if it
 * exists (and released at once), GCP is read and TestIamPermissions'd, Saxo only sees a handshake.
 */
import { join } from 'node:path';
import type { Config } from '../../core/config.js';
import { createCacheFile } from '../cache-file.js';
import { INSTANCE_LOCK_FILE } from '../instance-lock.js';
import { createStateFile } from '../state-file.js';
import type { Deployment } from '../deployment.js';
import type { Facts } from './facts.js';
import { tokenView } from './checks/token-view.js';
import { attempt } from './probes/attempt.js';
import { dataDirFacts, statNoFollow } from './probes/files.js';
import { identity, pubsubFacts, secretFacts } from './probes/gcp.js';
import { probeFlock, probeHeld } from './probes/locks.js';
import { clockFacts, saxoFacts } from './probes/network.js';
import { botsUser, nameMaps, readUnit } from './probes/users.js';

interface GatherOptions {
  botsUser?: string | undefined;
  deployment: Deployment;
  env: Record<string, string | undefined>;
  /** Deadline of each network call (default 2.5 s); local file IO gets the same. */
  timeoutMs?: number | undefined;
}

const GCP_VARS = ['GOOGLE_CLOUD_PROJECT', 'TOKEN_SECRET_ID', 'TOKEN_SUBSCRIPTION_ID', 'SECRET_MANAGER_EMULATOR_HOST'];

export async function gather(config: Config, opts: GatherOptions): Promise<Facts> {
  const now = Date.now();
  const t = opts.timeoutMs ?? 2500;
  const gcp = config.gcp;
  const [unit, names] = await Promise.all([readUnit(opts.deployment), nameMaps()]);
  const [user, dataDir, cache, state, instanceFile, secret, pubsub, clock, saxo, id] = await Promise.all([
    attempt(() => botsUser({ flag: opts.botsUser, unit, unitPath: opts.deployment.unitPath }, names.groupIds), t),
    dataDirFacts(config, now, t),
    attempt(() => createCacheFile(config.cachePath).read(), t),
    attempt(() => createStateFile(config.statePath).read(), t),
    attempt(() => statNoFollow(join(config.dataDir, INSTANCE_LOCK_FILE)), t),
    gcp ? secretFacts(gcp, t) : undefined,
    gcp ? pubsubFacts(gcp, t) : undefined,
    gcp ? clockFacts(gcp, t) : undefined,
    saxoFacts(config.authBaseUrl, t),
    gcp ? attempt(() => identity(gcp, opts.env, Math.min(t, 1000)), t) : undefined,
  ]);
  const [lock, instance] = await Promise.all([
    dataDir.lock.ok ? probeFlock(config.lockPath, dataDir.lock.value) : Promise.resolve({ state: 'error' as const, error: dataDir.lock.error }),
    instanceFile.ok ? probeHeld(instanceFile.value) : Promise.resolve({ state: 'unknown' as const, reason: instanceFile.error }),
  ]);
  const facts: Omit<Facts, 'view'> = {
    now,
    config,
    deployment: opts.deployment,
    partialGcp: gcp ? [] : GCP_VARS.filter((k) => opts.env[k]),
    botsUser: user,
    unit,
    names: { users: names.users, groups: names.groups },
    dataDir,
    lock,
    instance,
    cache,
    state,
    identity: id?.ok ? id.value : undefined,
    credentialsFile: opts.env.GOOGLE_APPLICATION_CREDENTIALS || undefined,
    secret,
    pubsub,
    clock,
    saxo,
  };
  return { ...facts, view: tokenView(facts) };
}
