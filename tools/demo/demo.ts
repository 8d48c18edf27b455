/**
 * `npx token-keeper demo [--duration S]`: the whole system on this machine, no accounts. A scripted
 * run proves the tiers: normal cloud refreshes pushed to the agent, a Saxo 503 burst, a cloud
 * outage (the agent refreshes), a cloud + agent outage (a bot refreshes; the restarted agent pushes
 * its token upstream). Live view on stdout; component JSON logs in the run's temp dir. The last line
 * is `demo: N refreshes, M propagations, V violations`; exit 0 only when V is 0.
 */
import { createWriteStream, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import type { StandinStats } from '../../standins/saxo/server.js';
import type { TokenSet } from '../../core/token.js';
import { Observer } from './observer.js';
import { Scheduler, sleep } from './scheduler.js';
import {
  APP_KEY, APP_SECRET, PROJECT, SECRET_ID, Stack, demoParams, launchAgent, spawnBot, startFunction, startInfra,
  type DemoParams, type Infra, type RunningAgent,
} from './setup.js';

export async function runDemo(o: { durationSec: number }): Promise<number> {
  const durationSec = o.durationSec;
  if (!Number.isFinite(durationSec) || durationSec < 10) {
    process.stderr.write('demo: --duration must be a number of seconds ≥ 10\n');
    return 2;
  }
  // No metadata-server probes from the Google clients: nothing here runs on GCP.
  process.env.METADATA_SERVER_DETECTION ??= 'none';
  const p = demoParams(durationSec);
  const dir = mkdtempSync(join(tmpdir(), 'token-keeper-demo-'));
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir, { mode: 0o750 });
  const logPath = join(dir, 'components.log');
  const logFile = createWriteStream(logPath, { mode: 0o600 });
  const out = (line: string) => void process.stdout.write(line + '\n');
  const obs = new Observer({ startedAt: Date.now(), out, logFile, cachePath: join(dataDir, 'saxo_token_cache.json'), appSecret: APP_SECRET });

  const end = new AbortController();
  const onSignal = () => {
    if (end.signal.aborted) return;
    obs.say('demo', 'interrupted: ending early', false);
    end.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  out('demo: token-keeper end to end on this machine (no GCP or Saxo account needed)');
  out(`demo: work dir ${dir}`);
  out(`demo: component JSON logs → ${logPath}`);

  const stack = new Stack();
  let infra: Infra | undefined;
  let failure: string | undefined;
  const poller = setInterval(() => obs.pollCache(), 100);
  try {
    infra = await startInfra(p, dataDir, stack, obs);
    await script(p, infra, dataDir, stack, obs, end.signal, durationSec);
  } catch (err) {
    failure = err instanceof Error ? err.message : String(err);
    obs.say('demo', `ERROR: ${failure}`, false);
  } finally {
    end.abort();
    clearInterval(poller);
    obs.say('demo', 'stopping every component…', false);
    await stack.unwind((name, err) => obs.say('demo', `could not stop ${name}: ${err instanceof Error ? err.message : String(err)}`, false));
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await new Promise<void>((resolve) => logFile.end(() => resolve()));
  }
  return summary(obs, infra, logPath, failure);
}

async function script(p: DemoParams, infra: Infra, dataDir: string, stack: Stack, obs: Observer, signal: AbortSignal, durationSec: number): Promise<void> {
  const { standin, sm, emulator, noPush, config, store } = infra;
  const out = (l: string) => obs.say('demo', l, false);
  out(`Saxo stand-in ${standin.url}: access token ${p.accessLifeSec} s, refresh token ${p.refreshLifeSec} s, single use`);
  out(`refresh tiers (access time left): cloud ≤ ${p.cloudSec} s · agent ≤ ${p.agentSec} s · bots ≤ ${p.botSec} s`);
  out(`Secret Manager stand-in ${sm.host} (gRPC, real client)`);
  obs.hasPush = Boolean(emulator);
  if (emulator) out(`Pub/Sub emulator ${emulator.host} (real, Java)`);
  else out(`Pub/Sub: NOT AVAILABLE (${noPush}): the agent runs WITHOUT push and picks up new versions on its own checks`);

  // The "login": one pair, stored as a human's login would, already close to the cloud threshold.
  const pair = standin.issue(APP_KEY);
  const now = Date.now();
  const seed: TokenSet = {
    accessToken: pair.access_token,
    refreshToken: pair.refresh_token,
    accessExpiresAt: now + p.cloudSec * 1000 - 200,
    refreshExpiresAt: now + p.refreshLifeSec * 1000,
    issuedAt: now,
    generation: 1,
    source: 'login',
    appKey: APP_KEY,
    appSecret: APP_SECRET,
    extra: {},
  };
  obs.remember(seed);
  await store.add(seed);
  await createCacheFile(config.cachePath).write(seed);
  obs.pollCache();
  out('seeded gen 1 (a login) into Secret Manager and the bots\' cache');

  const fnUrl = await startFunction(config, obs.logger('function'), Boolean(emulator), stack);
  out(`function refreshToken (real handler, functions-framework) on ${fnUrl}`);

  const agentLog = obs.logger('agent');
  let agent: RunningAgent | undefined = await launchAgent(config, agentLog, store, Boolean(emulator));
  stack.push('agent', async () => {
    await agent?.stop();
    agent = undefined;
  });
  const scheduler = new Scheduler(fnUrl, p.schedulerMs, obs);
  stack.push('scheduler', () => scheduler.stop());
  const bot = spawnBot(p, dataDir, standin.url, obs);
  stack.push('bot', () => bot.stop());
  out(`bot process pid ${bot.pid} (flock + cache like the fleet's TokenCoordinator; uses its token every ${p.botIntervalSec} s)`);

  scheduler.start();
  // The run's end: the duration elapsing or the caller's signal (SIGINT), whichever comes first.
  const stopCtl = new AbortController();
  const stopAt = stopCtl.signal;
  const onAbort = () => stopCtl.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => {
    obs.say('demo', `${durationSec} s are up`, false);
    stopCtl.abort();
  }, durationSec * 1000);
  stack.push('timer', async () => {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  });
  out(`running for ${durationSec} s; Cloud Scheduler stand-in calls the function every ${p.schedulerMs / 1000} s`);

  const until = async (cond: () => boolean): Promise<boolean> => {
    while (!cond() && !stopAt.aborted) await sleep(100, stopAt);
    return !stopAt.aborted;
  };
  const incident = (t: string) => obs.say('INCIDENT', t);
  const recovered = (t: string) => obs.say('OK', t);

  // 1. Normal operation, then a burst of HTML 503s from Saxo during a cloud refresh.
  if (!(await until(() => obs.refreshesBy.cloud >= 1))) return;
  const c1 = obs.refreshesBy.cloud;
  // Two faults: their retries (≤ 1.5 s of backoff) fit well inside the cloud–bot threshold gap.
  standin.inject({ kind: 'html503', times: 2 });
  incident('Saxo answers the next 2 token requests with an HTML 503 page');
  if (!(await until(() => obs.refreshesBy.cloud > c1 || obs.refreshesBy.agent > 0))) return;
  recovered(`503 burst absorbed by retries (${obs.saxoRetries} retried attempts); one presentation per refresh token`);

  // 2. The cloud path goes silent: the agent's own check must take over at its threshold.
  scheduler.paused = true;
  const a0 = obs.refreshesBy.agent;
  incident(`cloud outage: the scheduler stops calling the function; the agent acts at ≤ ${p.agentSec} s left`);
  if (!(await until(() => obs.refreshesBy.agent > a0))) return;
  scheduler.paused = false;
  recovered('cloud path back; the agent\'s token is already in Secret Manager, so the cloud continues from it');

  // 3. Cloud and agent both down: only the bots' own fallback is left.
  scheduler.paused = true;
  await agent?.stop();
  agent = undefined;
  const b0 = obs.refreshesBy.bot;
  incident(`cloud outage AND agent stopped: a bot must refresh itself at ≤ ${p.botSec} s left`);
  if (!(await until(() => obs.refreshesBy.bot > b0))) return;
  agent = await launchAgent(config, agentLog, store, Boolean(emulator));
  scheduler.paused = false;
  recovered('agent restarted (it pushes the bot\'s token upstream) and the scheduler resumed');

  // 4. Normal operation to the end.
  await until(() => false);
}

function summary(obs: Observer, infra: Infra | undefined, logPath: string, failure: string | undefined): number {
  const out = (l: string) => void process.stdout.write(l + '\n');
  const stats: StandinStats | undefined = infra?.standin.stats();
  const live = infra?.sm.versionStates(SECRET_ID, PROJECT).filter((v) => v.state !== 'DESTROYED').length;
  const reused = stats?.reusedPresentations ?? 0;
  const refreshes = stats?.refreshes ?? 0;
  const violations = reused + obs.violations.length;
  const by = obs.refreshesBy;
  out('');
  out('──── summary ────');
  out(`  Saxo refreshes: ${refreshes} (cloud ${by.cloud} · agent ${by.agent} · bot ${by.bot}); refresh tokens presented twice: ${reused}`);
  out(`  Saxo faults served: ${stats?.faultsServed ?? 0}, absorbed by ${obs.saxoRetries} retried attempts`);
  out(`  propagations ${obs.hasPush ? 'publish→cache' : 'secret→cache (no push)'}: ${obs.propagations.length} (${obs.propagationSummary()})`);
  out(`  bot: used its token ${obs.botTicks} times; expired, invalid or missing: ${obs.violations.filter((v) => v.startsWith('bot')).length}`);
  out(`  cache: ${obs.cacheChanges} changes, went backwards: ${obs.violations.filter((v) => v.includes('older')).length}`);
  out(`  secret versions kept: ${live ?? '?'} (older ones destroyed)`);
  out(`  scanned ${obs.linesScanned} log lines and ${obs.eventsScanned} events for token material: ${obs.violations.filter((v) => v.startsWith('token')).length} found`);
  out(`  component logs: ${logPath}`);
  if (failure) out(`  the demo itself failed: ${failure}`);
  out(`demo: ${refreshes} refreshes, ${obs.propagations.length} propagations, ${violations} violations`);
  return violations === 0 && !failure ? 0 : 1;
}
