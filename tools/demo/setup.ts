/**
 * Starts the demo's pieces, each the real thing on 127.0.0.1: the Saxo stand-in, the Secret Manager
 * gRPC stand-in, Google's Pub/Sub emulator (when java + the jar are here), the real `refreshToken`
 * handler behind functions-framework's server, the agent and a bot process. Every start registers
 * its stop on `stack`, so cleanup undoes exactly what was started, in reverse order.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import type { Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { systemClock } from '../../core/clock.js';
import { loadConfig, type Config } from '../../core/config.js';
import type { Logger } from '../../core/log.js';
import type { SecretStore } from '../../core/ports.js';
import { createPubSub, createSecretManagerClient } from '../../core/gcp/clients.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { ensureSecret, ensureTopicAndSubscription } from '../../core/gcp/provision.js';
import { createRefreshHandler } from '../../functions/handler.js';
import { functionDeps } from '../../functions/deps.js';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { startSecretManagerServer, type SecretManagerServer } from '../../standins/secret-manager/server.js';
import { findPubSubEmulatorJar, startPubSubEmulator } from '../../standins/pubsub-emulator.js';
import { startAgent } from '../../agent/agent.js';
import { Reconciler } from '../../agent/reconciler.js';
import { reconcilerDeps } from '../../agent/wiring.js';
import type { Observer } from './observer.js';

export const APP_KEY = 'demo-app-key';
/** Random per run: a fixed string would be "found" in any log that printed a constant. */
export const APP_SECRET = `demo-secret-${randomBytes(12).toString('hex')}`;
export const PROJECT = 'token-keeper-demo';
export const SECRET_ID = 'saxo-token';
export const TOPIC_ID = 'token-rotated';
export const AGENT_SUB = 'token-keeper-agent';
export const AUDIT_SUB = 'demo-audit';

/** Lifetimes and tiers scaled to the run (docs/DESIGN.md "Tiers"; ratios: cloud 40 %, agent 20 %, bot 8 % of life left). */
export interface DemoParams {
  accessLifeSec: number;
  refreshLifeSec: number;
  marginSec: number;
  cloudSec: number;
  agentSec: number;
  botSec: number;
  schedulerMs: number;
  checkSec: number;
  botIntervalSec: number;
}

export function demoParams(durationSec: number): DemoParams {
  // About three lifetimes per run: enough for the scripted incidents and a recovery after them.
  // Not below 15 s: the cloud–bot gap (0.32 L) must exceed a cloud refresh's real-time retries
  // (backoff is not scaled), or a bot refreshes mid-retry and the cloud re-presents a spent token.
  const L = Math.min(30, Math.max(15, Math.round(durationSec / 3)));
  return {
    accessLifeSec: L,
    refreshLifeSec: 3 * L,
    marginSec: round(L / 20),
    cloudSec: round(0.4 * L),
    agentSec: round(0.2 * L),
    botSec: round(0.08 * L),
    schedulerMs: Math.round(100 * L),
    checkSec: round(Math.max(0.25, L / 40)),
    botIntervalSec: round(Math.max(0.25, L / 40)),
  };
}

const round = (n: number) => Math.round(n * 100) / 100;
/** A quarter of the token's life: the demo's lease (production: 60 s of 1200 s, scaled up for slow CI). */
const L4 = (p: DemoParams) => p.accessLifeSec / 4;

export type Stop = () => Promise<void>;

export class Stack {
  private readonly stops: { name: string; stop: Stop }[] = [];
  push(name: string, stop: Stop): void {
    this.stops.push({ name, stop });
  }
  /** Undo in reverse order; one failing stop does not keep the others from running. */
  async unwind(onError: (name: string, err: unknown) => void): Promise<void> {
    for (const { name, stop } of this.stops.splice(0).reverse()) {
      try {
        await stop();
      } catch (err) {
        onError(name, err);
      }
    }
  }
}

export function pubsubUnavailableReason(): string | undefined {
  if (!findPubSubEmulatorJar()) return 'the Pub/Sub emulator jar (google-cloud-cli-pubsub-emulator) is not installed';
  if (spawnSync('java', ['-version'], { stdio: 'ignore' }).status !== 0) return 'java is not installed';
  return undefined;
}

export interface Infra {
  standin: SaxoStandin;
  sm: SecretManagerServer;
  emulator?: { host: string } | undefined;
  /** Why there is no Pub/Sub (the agent then runs without push). */
  noPush?: string | undefined;
  config: Config;
  store: SecretStore;
}

export async function startInfra(p: DemoParams, dataDir: string, stack: Stack, obs: Observer): Promise<Infra> {
  const standin = await startSaxoStandin({
    accessLifetimeSec: p.accessLifeSec,
    refreshLifetimeSec: p.refreshLifeSec,
    clients: { [APP_KEY]: APP_SECRET },
  });
  stack.push('Saxo stand-in', () => standin.close());
  const sm = await startSecretManagerServer();
  stack.push('Secret Manager stand-in', () => sm.close());

  let emulator: Infra['emulator'];
  let noPush = pubsubUnavailableReason();
  if (!noPush) {
    try {
      const em = await startPubSubEmulator();
      stack.push('Pub/Sub emulator', () => em.stop());
      emulator = { host: em.host };
    } catch (err) {
      noPush = `the emulator did not start: ${err instanceof Error ? err.message.slice(0, 200) : String(err)}`;
    }
  }

  const config = loadConfig({
    TOKEN_KEEPER_DATA_DIR: dataDir,
    SAXO_AUTH_BASE_URL: standin.url,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    CHECK_INTERVAL_SECONDS: String(p.checkSec),
    REFRESH_THRESHOLD_SECONDS: String(p.agentSec),
    CLOUD_REFRESH_THRESHOLD_SECONDS: String(p.cloudSec),
    BOT_REFRESH_THRESHOLD_SECONDS: String(p.botSec),
    TOKEN_EXPIRY_MARGIN_SECONDS: String(p.marginSec),
    REFRESH_TOKEN_ALERT_SECONDS: '0',
    KEEP_SECRET_VERSIONS: '3',
    LEASE_TTL_SECONDS: String(Math.max(2, round(L4(p)))),
    CLOUD_SCHEDULE_SECONDS: String(p.schedulerMs / 1000),
    CLOUD_EXPIRED_GRACE_SECONDS: String(round(2.25 * p.accessLifeSec)),
    SAXO_HTTP_TIMEOUT_SECONDS: String(Math.max(1, round(p.accessLifeSec / 8))),
    TOKEN_KEEPER_HOLDER_ID: 'agent:demo-vm',
    GOOGLE_CLOUD_PROJECT: PROJECT,
    TOKEN_SECRET_ID: SECRET_ID,
    TOKEN_TOPIC_ID: TOPIC_ID,
    TOKEN_SUBSCRIPTION_ID: emulator ? AGENT_SUB : undefined,
    PUBSUB_EMULATOR_HOST: emulator?.host,
    SECRET_MANAGER_EMULATOR_HOST: sm.host,
    SECRET_MANAGER_EMULATOR_REST_HOST: sm.restHost,
  });
  const gcp = config.gcp!;

  // The demo's own clients: provisioning (create rights the runtime never has) and the audit view.
  const demoLog = obs.logger('demo');
  demoLog.addSecret(APP_SECRET);
  const smClient = await createSecretManagerClient(gcp);
  stack.push('demo Secret Manager client', () => smClient.close());
  await ensureSecret(smClient, PROJECT, SECRET_ID);
  const store = createSecretStore({ client: smClient, projectId: PROJECT, secretId: SECRET_ID, logger: demoLog });
  if (emulator) {
    const pubsub = await createPubSub(gcp);
    stack.push('demo Pub/Sub client', () => pubsub.close());
    await ensureTopicAndSubscription(pubsub, TOPIC_ID, AGENT_SUB, { ackDeadlineSeconds: 10 });
    await ensureTopicAndSubscription(pubsub, TOPIC_ID, AUDIT_SUB, { ackDeadlineSeconds: 10 });
    const audit = pubsub.subscription(AUDIT_SUB);
    audit.on('message', (m: { data: Buffer; ack(): void }) => {
      obs.auditEvent(m.data.toString('utf8'));
      m.ack();
    });
    audit.on('error', () => undefined); // the audit copy is best effort
    stack.push('audit subscription', async () => {
      audit.removeAllListeners('message');
      await audit.close();
    });
  }
  return { standin, sm, emulator, noPush, config, store };
}

/** The real handler (functions/handler.ts) with real adapters, behind functions-framework's server. */
export async function startFunction(config: Config, logger: Logger, hasPush: boolean, stack: Stack): Promise<string> {
  logger.addSecret(config.appSecret);
  // The production wiring (functions/deps.ts): Secret Manager over REST, the publisher made lazily.
  const deps = await functionDeps(config, logger, `cloud:demo:${randomBytes(3).toString('hex')}`);
  stack.push('function Pub/Sub client', () => deps.bus.close());
  if (!hasPush) deps.bus = undefined as never; // no emulator: the agent polls (the demo says so)
  const ff = await import('@google-cloud/functions-framework');
  const { getTestServer } = await import('@google-cloud/functions-framework/testing');
  ff.http('refreshToken', createRefreshHandler(() => Promise.resolve(deps), logger));
  const server: Server = getTestServer('refreshToken');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  stack.push('function server', () => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

export interface RunningAgent {
  stop: Stop;
}

/** The real agent runtime; without Pub/Sub, its reconciler on a timer with no event bus (no push). */
export async function launchAgent(config: Config, logger: Logger, store: SecretStore, hasPush: boolean): Promise<RunningAgent> {
  const ctl = new AbortController();
  // agent.ts adds one abort listener per check and never removes it; at demo check rates Node
  // would warn about it within seconds (reported upstream; harmless for a run this short).
  setMaxListeners(0, ctl.signal);
  if (hasPush) {
    const h = await startAgent(config, logger, ctl.signal);
    return { stop: async () => { ctl.abort(); await h.done; } };
  }
  const r = new Reconciler({ ...reconcilerDeps(config, logger), store, bus: undefined });
  await r.load();
  await r.run({ kind: 'startup' });
  logger.info('agent_ready', 'Agent ready (no Pub/Sub: periodic checks only)');
  const done = (async () => {
    while (!ctl.signal.aborted) {
      await systemClock.sleep(config.checkIntervalMs, ctl.signal).catch(() => undefined);
      if (!ctl.signal.aborted) await r.run({ kind: 'tick' }).catch(() => 'failed');
    }
  })();
  return { stop: async () => { ctl.abort(); await done; } };
}

export interface BotProcess {
  pid: number | undefined;
  stop: Stop;
}

/** The bot as its own process, like a real one; its report lines feed the observer. */
export function spawnBot(p: DemoParams, dataDir: string, saxoUrl: string, obs: Observer): BotProcess {
  const here = new URL('.', import.meta.url);
  const ts = import.meta.url.endsWith('.ts');
  const entry = new URL(ts ? 'bot-main.ts' : 'bot-main.js', here);
  const child: ChildProcess = spawn(
    process.execPath,
    [...(ts ? ['--import', 'tsx'] : []), entry.pathname, '--data-dir', dataDir, '--saxo-url', saxoUrl,
      '--buffer', String(p.botSec), '--margin', String(p.marginSec), '--interval', String(p.botIntervalSec)],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SAXO_APP_KEY: APP_KEY, SAXO_APP_SECRET: APP_SECRET } },
  );
  createInterface({ input: child.stdout! }).on('line', (l) => obs.botLine(l));
  createInterface({ input: child.stderr! }).on('line', (l) => obs.botStderr(l));
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    child.once('exit', () => resolve());
  });
  return {
    pid: child.pid,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
