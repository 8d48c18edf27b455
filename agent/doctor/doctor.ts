/**
 * doctor's two steps: gather every fact once, concurrently, each IO under a short deadline (the whole gathering ends in a few
 * seconds even when Secret Manager or Pub/Sub do not answer), then judge them with pure checks, in this order. A new check is
 * a file in checks/ (its probe and its judgement) and a line here. Read-only by construction: docs/DOCTOR.md "What doctor never does".
 */
import { join } from 'node:path';
import type { Config } from '../../core/config.js';
import type { CacheRead } from '../../core/ports.js';
import { createCacheFile } from '../cache-file.js';
import type { Deployment } from '../deployment.js';
import { INSTANCE_LOCK_FILE } from '../instance-lock.js';
import { probeHeld, statNoFollow, type InstanceProbe } from '../lock-holders.js';
import { createStateFile, type AgentState } from '../state-file.js';
import { cloudPathCheck } from './checks/cloud-path.js';
import { configCheck, tiersCheck } from './checks/config.js';
import { dataDirCheck, dataDirFacts, filesCheck, spaceCheck, tmpCheck, type DataDirFacts } from './checks/data-dir.js';
import { agentCheck, lockCheck, probeFlock, type LockProbe } from './checks/locks.js';
import { clockCheck, clockFacts, saxoCheck, saxoFacts, type ClockFacts, type SaxoFacts } from './checks/network.js';
import { pubsubFacts, pubsubIamCheck, subscriptionCheck, topicCheck, type PubSubFacts } from './checks/pubsub.js';
import { secretFacts, secretIamCheck, secretManagerCheck, type SecretFacts } from './checks/secret-manager.js';
import { tokenCheck, tokenView, type TokenView } from './checks/token.js';
import { loadClientModules } from '../../core/gcp/clients.js';
import { identity } from './gcp.js';
import { botsUser, nameMaps, readUnit, type BotsUser, type UnitInfo } from './system.js';
import { attempt, type CheckResult, type Probe } from './types.js';

/** What doctor learned, gathered once; checks read it and never do IO. No field's text is printed as is. */
export interface Facts {
  now: number;
  config: Config;
  /** Which installed agent this is about: names the unit and env file in every fix. */
  deployment: Deployment;
  /** GCP variables that are set while the mode stayed standalone (half a configuration). */
  partialGcp: string[];
  botsUser: Probe<BotsUser>;
  unit?: UnitInfo | undefined;
  /** uid/gid → name, for readable summaries. */
  names: { users: Record<number, string>; groups: Record<number, string> };
  dataDir: DataDirFacts;
  lock: LockProbe;
  instance: InstanceProbe;
  cache: Probe<CacheRead>;
  state: Probe<AgentState | undefined>;
  /** The service account doctor runs as, when known (`--member=` of fixes); GOOGLE_APPLICATION_CREDENTIALS, when set. */
  identity?: string | undefined;
  credentialsFile?: string | undefined;
  secret?: SecretFacts | undefined;
  pubsub?: PubSubFacts | undefined;
  clock?: ClockFacts | undefined;
  saxo: SaxoFacts;
  /** The one decision over cache, agent state and secret (core/decide.ts), made once per report. */
  view: TokenView;
}

const GCP_VARS = ['GOOGLE_CLOUD_PROJECT', 'TOKEN_SECRET_ID', 'TOKEN_SUBSCRIPTION_ID', 'SECRET_MANAGER_EMULATOR_HOST'];

/** `timeoutMs`: the deadline of each network call (default 2.5 s); local file IO gets the same. */
export async function gather(config: Config, opts: { botsUser?: string | undefined; deployment: Deployment; env: Record<string, string | undefined>; timeoutMs?: number }): Promise<Facts> {
  // Nothing that blocks the event loop may run while a deadline does: a timer fires late but first, and
  // a fast answer counts as none. So the Google clients are loaded, and the system's names (getent, 2 s
  // each) looked up, before any probe starts.
  if (config.gcp) await loadClientModules();
  const [t, gcp, env] = [opts.timeoutMs ?? 2500, config.gcp, opts.env];
  const system = await (async () => {
    const [unit, { users, groups, groupIds }] = await Promise.all([readUnit(opts.deployment), nameMaps()]);
    return { unit, names: { users, groups }, botsUser: await attempt(() => botsUser({ flag: opts.botsUser, unit, unitPath: opts.deployment.unitPath }, groupIds), t) };
  })();
  const now = Date.now();
  // The lock probes follow their file's stat, off the network calls' critical path.
  const files = async () => {
    const [dataDir, instanceFile] = await Promise.all([dataDirFacts(config, now, t), attempt(() => statNoFollow(join(config.dataDir, INSTANCE_LOCK_FILE)), t)]);
    const [lock, instance] = await Promise.all([
      dataDir.lock.ok ? probeFlock(config.lockPath, dataDir.lock.value) : ({ state: 'error', error: dataDir.lock.error } as const),
      instanceFile.ok ? probeHeld(instanceFile.value) : ({ state: 'unknown', reason: instanceFile.error } as const),
    ]);
    return { dataDir, lock, instance };
  };
  const [onDisk, cache, state, secret, pubsub, clock, saxo, id] = await Promise.all([
    files(),
    attempt(() => createCacheFile(config.cachePath).read(), t),
    attempt(() => createStateFile(config.statePath).read(), t),
    gcp ? secretFacts(gcp, t) : undefined,
    gcp ? pubsubFacts(gcp, t) : undefined,
    gcp ? clockFacts(gcp, t) : undefined,
    saxoFacts(config.authBaseUrl, t),
    gcp ? attempt(() => identity(gcp, env, Math.min(t, 1000)), t) : undefined,
  ]);
  const partialGcp = gcp ? [] : GCP_VARS.filter((k) => env[k]);
  const facts = { now, config, deployment: opts.deployment, partialGcp, ...system, ...onDisk, cache, state, secret, pubsub, clock, saxo };
  return { ...facts, identity: id?.ok ? id.value : undefined, credentialsFile: env.GOOGLE_APPLICATION_CREDENTIALS || undefined, view: tokenView(facts) };
}

/** Every check, in the order printed; the id is the one a check's result carries. */
const CHECKS: Record<string, (f: Facts) => CheckResult> = {
  config: configCheck, 'config.tiers': tiersCheck,
  'data-dir': dataDirCheck, 'data-dir.files': filesCheck, 'data-dir.tmp': tmpCheck, 'data-dir.space': spaceCheck,
  lock: lockCheck, token: tokenCheck,
  'secret-manager': secretManagerCheck, 'secret-manager.iam': secretIamCheck,
  'pubsub.topic': topicCheck, 'pubsub.subscription': subscriptionCheck, 'pubsub.iam': pubsubIamCheck,
  clock: clockCheck, saxo: saxoCheck, agent: agentCheck, 'cloud-path': cloudPathCheck,
};

export const CHECK_IDS: readonly string[] = Object.keys(CHECKS);

/** Every check; one that throws (a bug) is reported as a failure of that check, never a crash. */
export function judge(f: Facts): CheckResult[] {
  return Object.entries(CHECKS).map(([id, check]) => {
    try {
      return check(f);
    } catch (e) {
      return { id, status: 'fail' as const, summary: `doctor's own check failed: ${e instanceof Error ? e.message : String(e)}` };
    }
  });
}
