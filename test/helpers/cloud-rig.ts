/**
 * The cloud path wired for integration tests: the Saxo stand-in behind a recording proxy (so every
 * token Saxo hands out is known, whoever asked for it), the local Secret Manager gRPC server with
 * the real client, the real Pub/Sub emulator (plus an audit subscription that keeps every event
 * payload), the function served by functions-framework on 127.0.0.1, and agents either in-process
 * (Reconciler over real adapters) or as real processes (env builder for startCli).
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { http } from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import type { Message, Subscription } from '@google-cloud/pubsub';
import { loadConfig, type Config } from '../../core/config.js';
import { systemClock } from '../../core/clock.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { EventBus, SecretStore, TokenConsumedEvent, TokenRotatedEvent } from '../../core/ports.js';
import type { TokenSet } from '../../core/token.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { createEventBus } from '../../core/gcp/event-bus.js';
import { createSaxoClient } from '../../core/saxo/client.js';
import { cloudSettings } from '../../core/settings.js';
import { createRefreshHandler } from '../../functions/handler.js';
import type { CloudDeps } from '../../functions/refresher.js';
import { Reconciler, type ReconcilerDeps } from '../../agent/reconciler.js';
import { reconcilerDeps } from '../../agent/wiring.js';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import {
  ensureTopicAndSubscription,
  startPubSubFixture,
  startSecretManagerFixture,
  type PubSubFixture,
  type SecretManagerFixture,
} from './gcp.js';

export const APP_KEY = 'rig-app-key';
export const APP_SECRET = 'rig-app-secret-0123456789abcdef';

export interface CloudRigOptions {
  /** Unique per test file: the shared emulator must not mix topics between files. */
  projectId: string;
  accessLifetimeSec: number;
  refreshLifetimeSec?: number;
  /** Token-expiry margin (seconds) used everywhere (TOKEN_EXPIRY_MARGIN_SECONDS). */
  marginSec?: number;
  keepVersions?: number;
}

export interface FunctionServer {
  url: string;
  post(body?: unknown): Promise<{ status: number; body: Record<string, unknown> }>;
  close(): Promise<void>;
}

export interface InProcessAgent {
  reconciler: Reconciler;
  deps: ReconcilerDeps;
  config: Config;
}

export interface CloudRig {
  readonly projectId: string;
  readonly secretId: string;
  readonly topicId: string;
  readonly saxo: SaxoStandin;
  /** The recording proxy in front of the stand-in: give this to every refresher. */
  readonly saxoUrl: string;
  readonly sm: SecretManagerFixture;
  readonly ps: PubSubFixture;
  /** A test-side store (for seeding and assertions). */
  readonly store: SecretStore;
  readonly bus: EventBus;
  /** Every token that existed during the run, and the app secret. */
  readonly seen: Set<string>;
  /** Every refresh token presented to Saxo through the proxy, in order. */
  readonly presented: string[];
  /** Every log line, event payload, HTTP answer and error text collected during the run. */
  readonly texts: string[];
  /** TOKEN_ROTATED events seen by the audit subscription, with their raw payload. */
  readonly events: TokenRotatedEvent[];
  /** TOKEN_CONSUMED events seen by the audit subscription. */
  readonly consumedEvents: TokenConsumedEvent[];
  logger(component: string): Logger;
  marginSec: number;
  keep: number;
  createSubscription(id: string): Promise<string>;
  /** The function's deps at this rig's scaled settings, `env` on top (the same builder as production). */
  cloudDeps(env?: Record<string, string>, over?: { store?: SecretStore; bus?: EventBus | undefined; storeTimeoutMs?: number }): CloudDeps;
  startFunction(getDeps: () => Promise<CloudDeps>): Promise<FunctionServer>;
  serve(name: string): Promise<FunctionServer>;
  agentEnv(dataDir: string, extra?: Record<string, string>): Record<string, string>;
  inProcessAgent(dataDir: string, extra?: Record<string, string>, wrap?: (d: ReconcilerDeps) => ReconcilerDeps, storeTimeoutMs?: number): Promise<InProcessAgent>;
  /** Issue a pair at the stand-in and store it as a secret version (`leftSec` of access left). */
  seedSecret(leftSec: number, generation?: number): Promise<TokenSet>;
  issue(leftSec: number, generation?: number): TokenSet;
  latest(): Promise<TokenSet | undefined>;
  assertNoSecrets(extra?: string[]): void;
  close(): Promise<void>;
}

let counter = 0;
export const tempDir = (prefix: string): string => mkdtempSync(join(tmpdir(), prefix));

export async function startCloudRig(o: CloudRigOptions): Promise<CloudRig> {
  const n = `${process.pid}-${++counter}-${randomBytes(2).toString('hex')}`;
  const secretId = `saxo-token-${n}`;
  const topicId = `token-rotated-${n}`;
  const marginSec = o.marginSec ?? 1;
  const keep = o.keepVersions ?? 3;
  const seen = new Set<string>([APP_SECRET]);
  const texts: string[] = [];
  const presented: string[] = [];
  const events: TokenRotatedEvent[] = [];
  const consumedEvents: TokenConsumedEvent[] = [];

  const saxo = await startSaxoStandin({
    accessLifetimeSec: o.accessLifetimeSec,
    refreshLifetimeSec: o.refreshLifetimeSec ?? o.accessLifetimeSec * 4,
    clients: { [APP_KEY]: APP_SECRET },
  });
  const proxy = await startRecordingProxy(saxo.port, seen, presented);
  const sm = await startSecretManagerFixture(o.projectId, secretId);
  const ps = await startPubSubFixture(o.projectId);
  const logger = (component: string) => createLogger({ component, write: (l) => texts.push(l), minSeverity: 'DEBUG' });
  const store = createSecretStore({ client: sm.client, projectId: o.projectId, secretId, logger: logger('rig') });
  const gcpOf = () => ({ projectId: o.projectId, topicId, pubsubEmulatorHost: ps.emulator.host });
  const buses: { close(): Promise<void> }[] = [];
  const newBus = (lg: Logger) => {
    const b = createEventBus({ gcp: gcpOf(), logger: lg });
    buses.push(b);
    return b;
  };
  const bus = newBus(logger('rig'));

  await ensureTopicAndSubscription(ps.pubsub, topicId, `audit-${n}`);
  const audit: Subscription = ps.pubsub.subscription(`audit-${n}`);
  audit.on('message', (m: Message) => {
    const raw = m.data.toString('utf8');
    texts.push(raw);
    try {
      const e = JSON.parse(raw) as TokenRotatedEvent | TokenConsumedEvent;
      if (e.type === 'TOKEN_CONSUMED') consumedEvents.push(e);
      else events.push(e);
    } catch {
      /* malformed events are the adapter's concern; the raw text is still checked */
    }
    m.ack();
  });

  const servers: FunctionServer[] = [];
  const issue = (leftSec: number, generation?: number): TokenSet => {
    const p = saxo.issue(APP_KEY);
    seen.add(p.access_token);
    seen.add(p.refresh_token);
    const now = Date.now();
    return {
      accessToken: p.access_token,
      refreshToken: p.refresh_token,
      accessExpiresAt: now + leftSec * 1000,
      refreshExpiresAt: now + p.refresh_token_expires_in * 1000,
      issuedAt: now,
      generation,
      source: 'seed',
      appKey: APP_KEY,
      appSecret: APP_SECRET,
      extra: {},
    };
  };

  // Every tier scaled to the token's life L, in production's proportions (cloud 0.5 L, agent 0.25 L,
  // bots 0.1 L; the Scheduler every 0.25 L): a test sets only what it is about.
  const L = o.accessLifetimeSec;
  const baseEnv = (): Record<string, string> => ({
    CLOUD_REFRESH_THRESHOLD_SECONDS: String(0.5 * L),
    REFRESH_THRESHOLD_SECONDS: String(0.25 * L),
    BOT_REFRESH_THRESHOLD_SECONDS: String(0.1 * L),
    CLOUD_SCHEDULE_SECONDS: String(0.25 * L),
    CLOUD_EXPIRED_GRACE_SECONDS: String(2.25 * L),
    LEASE_TTL_SECONDS: '10',
    // Loopback answers in milliseconds; tests with sub-second-scaled leases need the lease to outlast an attempt.
    SAXO_HTTP_TIMEOUT_SECONDS: '1',
    GOOGLE_CLOUD_PROJECT: o.projectId,
    TOKEN_SECRET_ID: secretId,
    TOKEN_TOPIC_ID: topicId,
    PUBSUB_EMULATOR_HOST: ps.emulator.host,
    SECRET_MANAGER_EMULATOR_HOST: sm.server.host,
    SECRET_MANAGER_EMULATOR_REST_HOST: sm.server.restHost,
    SAXO_AUTH_BASE_URL: proxy.url,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    TOKEN_EXPIRY_MARGIN_SECONDS: String(marginSec),
    REFRESH_TOKEN_ALERT_SECONDS: '0',
    KEEP_SECRET_VERSIONS: String(keep),
    METADATA_SERVER_DETECTION: 'none',
  });

  const serveServer = async (server: Server): Promise<FunctionServer> => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const fs: FunctionServer = {
      url,
      post: async (body = {}) => {
        const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        const text = await res.text();
        texts.push(text);
        return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
      },
      close: () =>
        new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
    };
    servers.push(fs);
    return fs;
  };

  const rig: CloudRig = {
    projectId: o.projectId,
    secretId,
    topicId,
    saxo,
    saxoUrl: proxy.url,
    sm,
    ps,
    store,
    bus,
    seen,
    presented,
    texts,
    events,
    consumedEvents,
    logger,
    marginSec,
    keep,
    async createSubscription(id) {
      await ensureTopicAndSubscription(ps.pubsub, topicId, id);
      return id;
    },
    cloudDeps(env = {}, over = {}) {
      const lg = logger('function');
      lg.addSecret(APP_SECRET);
      const config = loadConfig({ ...baseEnv(), TOKEN_KEEPER_HOLDER_ID: `cloud:test:${randomBytes(3).toString('hex')}`, ...env });
      return {
        clock: systemClock,
        store: over.store ?? createSecretStore({ client: sm.client, projectId: o.projectId, secretId, logger: lg, timeoutMs: over.storeTimeoutMs }),
        bus: 'bus' in over ? over.bus : newBus(lg),
        saxo: createSaxoClient({ authBaseUrl: proxy.url, httpTimeoutMs: config.httpTimeoutMs, logger: lg }),
        logger: lg,
        settings: cloudSettings(config),
      };
    },
    async startFunction(getDeps) {
      // Each rig registers its own name: the framework's registry is process-global.
      const name = `refreshToken-${n}-${servers.length}`;
      http(name, createRefreshHandler(getDeps, logger('function')));
      return serveServer(getTestServer(name));
    },
    serve: (name) => serveServer(getTestServer(name)),
    agentEnv: (dataDir, extra = {}) => ({ ...baseEnv(), TOKEN_KEEPER_DATA_DIR: dataDir, ...extra }),
    async inProcessAgent(dataDir, extra = {}, wrap = (d) => d, storeTimeoutMs = 3000) {
      const config = loadConfig({ ...baseEnv(), TOKEN_KEEPER_DATA_DIR: dataDir, ...extra });
      const lg = logger(`agent:${config.holderId}`);
      lg.addSecret(APP_SECRET);
      const cloud = {
        store: createSecretStore({ client: sm.client, projectId: o.projectId, secretId, logger: lg, timeoutMs: storeTimeoutMs }),
        bus: newBus(lg),
        close: async () => undefined,
      };
      const deps = wrap(reconcilerDeps(config, lg, cloud));
      const reconciler = new Reconciler(deps);
      await reconciler.load();
      return { reconciler, deps, config };
    },
    issue,
    async seedSecret(leftSec, generation = 1) {
      const t = issue(leftSec, generation);
      await store.add(t);
      return t;
    },
    async latest() {
      const r = await store.latest();
      if (r?.token) {
        seen.add(r.token.accessToken);
        seen.add(r.token.refreshToken);
      }
      return r?.token;
    },
    assertNoSecrets(extra = []) {
      const all = [...texts, ...extra].join('\n');
      expect(all.length, 'collected texts are empty: the check would prove nothing').toBeGreaterThan(0);
      for (const s of seen) {
        expect(all.includes(s), 'a token or the app secret appeared in a log line, event or error message').toBe(false);
      }
    },
    async close() {
      await Promise.allSettled(servers.map((s) => s.close()));
      await Promise.allSettled(buses.map((b) => b.close()));
      audit.removeAllListeners('message');
      await audit.close().catch(() => undefined);
      await ps.pubsub.topic(topicId).delete().catch(() => undefined);
      await ps.close();
      await sm.close();
      await proxy.close();
      await saxo.close();
    },
  };
  return rig;
}

/**
 * A pass-through HTTP proxy to the stand-in that remembers every token it answers with and every
 * refresh token presented, even when the client has given up (a pair Saxo issued still counts).
 */
async function startRecordingProxy(
  upstreamPort: number,
  seen: Set<string>,
  presented: string[],
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.url === '/token') {
        const form = new URLSearchParams(body.toString('utf8'));
        const rt = form.get('refresh_token');
        if (rt) {
          presented.push(rt);
          seen.add(rt);
        }
      }
      const up = request(
        { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
        (ur) => {
          const out: Buffer[] = [];
          ur.on('data', (c: Buffer) => out.push(c));
          ur.on('end', () => {
            const text = Buffer.concat(out);
            try {
              const j = JSON.parse(text.toString('utf8')) as { access_token?: string; refresh_token?: string };
              if (j.access_token) seen.add(j.access_token);
              if (j.refresh_token) seen.add(j.refresh_token);
            } catch {
              /* not JSON (HTML 503 etc.) */
            }
            if (res.destroyed) return;
            res.writeHead(ur.statusCode ?? 502, ur.headers);
            res.end(text);
          });
        },
      );
      up.on('error', () => req.socket.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/** Duplicates in a list (refresh tokens presented more than once). */
export function duplicates(xs: string[]): number {
  return xs.length - new Set(xs).size;
}

/** p-th percentile (nearest rank) of samples. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
