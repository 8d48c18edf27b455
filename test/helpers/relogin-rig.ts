/**
 * The phone re-login wired for tests: two Saxo stand-ins (SIM and LIVE, sign-in page with two
 * accounts each) on 127.0.0.1, the Secret Manager gRPC stand-in holding each chain's token secret
 * and the link-state secret, the real Pub/Sub emulator, and the relogin service on `localhost`
 * (a different site from the stand-ins, so cookie and SameSite mistakes show).
 */
import { randomBytes } from 'node:crypto';
import { createLogger, type Logger } from '../../core/log.js';
import { ensureSecret } from '../../core/gcp/secret-store.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { createEventBus, type ClosableEventBus } from '../../core/gcp/event-bus.js';
import { createSaxoClient } from '../../core/saxo/client.js';
import { pinFromClaims, type SaxoEnvironment } from '../../core/identity.js';
import type { SecretStore } from '../../core/ports.js';
import type { TokenSet } from '../../core/token.js';
import { createLinkStateStore, type LinkStateStore } from '../../functions/relogin/link-store.js';
import { createReloginServer, type ReloginServer } from '../../functions/relogin/server.js';
import type { ChainDeps } from '../../functions/relogin/types.js';
import { startSaxoStandin, type SaxoStandin, type StandinAccount } from '../../standins/saxo/server.js';
import { ensureTopicAndSubscription, startPubSubFixture, startSecretManagerFixture, type PubSubFixture, type SecretManagerFixture } from './gcp.js';

export const OWNER: StandinAccount = { userId: 'u-owner', userKey: 'owner-user-key-7Qx', clientKey: 'owner-client-key-3Fz', name: 'Olivia Owner' };
export const STRANGER: StandinAccount = { userId: 'u-stranger', userKey: 'stranger-user-key-9Kd', clientKey: 'stranger-client-key-1Mb', name: 'Sam Stranger' };
export const APP = { SIM: { key: 'sim-app-key', secret: 'sim-app-secret-0123456789' }, LIVE: { key: 'live-app-key', secret: 'live-app-secret-0123456789' } } as const;

export interface ChainRig {
  env: SaxoEnvironment;
  saxo: SaxoStandin;
  secretId: string;
  store: SecretStore;
  versions(): Promise<number>;
}

export interface ReloginRig {
  sm: SecretManagerFixture;
  ps: PubSubFixture;
  topicId: string;
  chains: Record<SaxoEnvironment, ChainRig>;
  links: LinkStateStore;
  linkSecretId: string;
  server: ReloginServer;
  /** http://localhost:PORT — RELOGIN_BASE_URL. */
  baseUrl: string;
  /** Every line the relogin service logged. */
  lines: string[];
  logger: Logger;
  /** Moves the service's clock (expiry tests). */
  skewMs: number;
  /** A dead pair of `account` stored in the chain's secret (pinned to OWNER unless `pin` is false). */
  seedDeadChain(env: SaxoEnvironment, o?: { pin?: boolean }): Promise<TokenSet>;
  agentEnv(dataDir: string, sub: string): Record<string, string>;
  close(): Promise<void>;
}

export async function startReloginRig(projectId: string): Promise<ReloginRig> {
  const n = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const topicId = `relogin-rotated-${n}`;
  const sm = await startSecretManagerFixture(projectId, `saxo-token-sim-${n}`);
  const ps = await startPubSubFixture(projectId);
  await ensureTopicAndSubscription(ps.pubsub, topicId, `relogin-audit-${n}`);
  const linkSecretId = `relogin-links-${n}`;
  await ensureSecret(sm.client, projectId, linkSecretId);
  const liveSecretId = `saxo-token-live-${n}`;
  await ensureSecret(sm.client, projectId, liveSecretId);
  const lines: string[] = [];
  const logger = createLogger({ component: 'relogin', write: (l) => lines.push(l), minSeverity: 'DEBUG' });
  const buses: ClosableEventBus[] = [];

  const chain = async (env: SaxoEnvironment, secretId: string): Promise<ChainRig> => {
    const saxo = await startSaxoStandin({
      accessLifetimeSec: 1200,
      refreshLifetimeSec: 3600,
      clients: { [APP[env].key]: APP[env].secret },
      accounts: [OWNER, STRANGER],
      signIn: 'page',
      environment: env,
    });
    const store = createSecretStore({ client: sm.client, projectId, secretId, logger });
    return { env, saxo, secretId, store, versions: () => store.countVersions() };
  };
  const chains = { SIM: await chain('SIM', sm.secretId), LIVE: await chain('LIVE', liveSecretId) };
  const links = createLinkStateStore({ client: sm.client, projectId, secretId: linkSecretId });
  const chainDeps = (c: ChainRig): ChainDeps => {
    const bus = createEventBus({ gcp: { projectId, topicId, pubsubEmulatorHost: ps.emulator.host }, logger });
    buses.push(bus);
    return {
      environment: c.env,
      authBaseUrl: c.saxo.url,
      openapiBaseUrl: `${c.saxo.url}/openapi`,
      appKey: APP[c.env].key,
      appSecret: APP[c.env].secret,
      saxo: createSaxoClient({ authBaseUrl: c.saxo.url, httpTimeoutMs: 5000, logger }),
      store: c.store,
      bus,
      expiryMarginMs: 60_000,
    };
  };
  logger.addSecret(APP.SIM.secret, APP.LIVE.secret);
  const rig = {
    skewMs: 0,
  } as ReloginRig;
  // The service is reached as http://localhost:PORT (a secure context for Chromium); the stand-ins as 127.0.0.1.
  let server = await createReloginServer({ baseUrl: 'http://localhost:1', chains: {}, links, logger });
  const port = Number(new URL(server.url).port);
  await server.close();
  const baseUrl = `http://localhost:${port}`;
  server = await createReloginServer(
    { baseUrl, chains: { SIM: chainDeps(chains.SIM), LIVE: chainDeps(chains.LIVE) }, links, logger, now: () => Date.now() + rig.skewMs, rateLimits: { perAddressPerMinute: 200, globalPerMinute: 1000 } },
    { port, host: '127.0.0.1' },
  );
  return Object.assign(rig, {
    sm,
    ps,
    topicId,
    chains,
    links,
    linkSecretId,
    server,
    baseUrl,
    lines,
    logger,
    async seedDeadChain(env: SaxoEnvironment, o: { pin?: boolean } = {}) {
      const c = chains[env];
      const p = c.saxo.issue(APP[env].key, OWNER);
      const now = Date.now();
      const t: TokenSet = {
        accessToken: p.access_token,
        refreshToken: p.refresh_token,
        accessExpiresAt: now - 3_600_000,
        refreshExpiresAt: now - 60_000,
        issuedAt: now - 3_700_000,
        generation: 7,
        source: 'seed',
        appKey: APP[env].key,
        appSecret: APP[env].secret,
        extra: {},
      };
      await c.store.add(t);
      if (o.pin !== false) {
        const got = pinFromClaims(t.accessToken, env);
        if (!('pin' in got)) throw new Error(got.reason);
        await c.store.record({ pin: got.pin });
      }
      return t;
    },
    agentEnv: (dataDir: string, sub: string) => ({
      TOKEN_KEEPER_DATA_DIR: dataDir,
      GOOGLE_CLOUD_PROJECT: projectId,
      TOKEN_SECRET_ID: sm.secretId,
      TOKEN_TOPIC_ID: topicId,
      TOKEN_SUBSCRIPTION_ID: sub,
      PUBSUB_EMULATOR_HOST: ps.emulator.host,
      SECRET_MANAGER_EMULATOR_HOST: sm.server.host,
      SAXO_AUTH_BASE_URL: chains.SIM.saxo.url,
      SAXO_APP_KEY: APP.SIM.key,
      SAXO_APP_SECRET: APP.SIM.secret,
      SAXO_ENVIRONMENT: 'SIM',
      CHECK_INTERVAL_SECONDS: '60',
      METADATA_SERVER_DETECTION: 'none',
    }),
    async close() {
      await server.close();
      await Promise.allSettled(buses.map((b) => b.close()));
      await ps.pubsub.topic(topicId).delete().catch(() => undefined);
      await ps.close();
      await sm.close();
      await chains.SIM.saxo.close();
      await chains.LIVE.saxo.close();
    },
  });
}
