/** Hand-built doctor Facts for unit tests of the pure checks: a healthy cloud-connected VM by default. */
import { deployment } from '../../agent/deployment.js';
import { loadConfig } from '../../core/config.js';
import type { TokenSet } from '../../core/token.js';
import { tokenView } from '../../agent/doctor/checks/token.js';
import type { Facts } from '../../agent/doctor/doctor.js';
import type { FileInfo } from '../../agent/lock-holders.js';
import type { Probe } from '../../agent/doctor/types.js';

export const NOW = Date.parse('2026-03-02T10:00:00Z');

export const ok = <T>(value: T, ms = 5): Probe<T> => ({ ok: true, value, ms });
export const failed = (code: string, error = `${code}: injected`, ms = 5): Probe<never> => ({ ok: false, code, error, ms });

export function file(over: Partial<FileInfo> = {}): FileInfo {
  return { kind: 'file', uid: 1000, gid: 1000, mode: 0o600, mtimeMs: NOW - 10_000, ino: 42, dev: 65024, ...over };
}

export function token(over: Partial<TokenSet> = {}): TokenSet {
  return {
    accessToken: 'sa_unit_access_token_0001',
    refreshToken: 'sr_unit_refresh_token_0001',
    accessExpiresAt: NOW + 1_000_000,
    refreshExpiresAt: NOW + 3_400_000,
    issuedAt: NOW - 140_000,
    chainStartedAt: NOW - 3 * 86_400_000 - 5 * 3_600_000, // logged in 3 days 5 hours ago
    generation: 7,
    source: 'cloud:rev:ab',
    appKey: 'key',
    appSecret: 'unit-app-secret-123',
    extra: {},
    ...over,
  };
}

const GCP_ENV = {
  TOKEN_KEEPER_DATA_DIR: '/opt/calypso/data',
  GOOGLE_CLOUD_PROJECT: 'p1',
  TOKEN_SECRET_ID: 'saxo-token',
  TOKEN_TOPIC_ID: 'token-rotated',
  TOKEN_SUBSCRIPTION_ID: 'token-rotated-vm1',
};

/**
 * Healthy facts; `env` replaces the configuration's environment, `over` any fact. The token view
 * is computed from the result (as gather does) unless `over.view` gives one.
 */
export function facts(over: Partial<Facts> = {}, env: Record<string, string | undefined> = GCP_ENV): Facts {
  const config = loadConfig(env, '/');
  const t = token();
  const cloud = Boolean(config.gcp);
  const secretName = 'projects/p1/secrets/saxo-token';
  const f: Omit<Facts, 'view'> & { view?: Facts['view'] } = {
    now: NOW,
    config,
    deployment: deployment(),
    partialGcp: [],
    botsUser: ok({ name: 'calypso', uid: 1000, gid: 1000, groups: [1000], basis: 'User= in /etc/systemd/system/token-keeper.service' }),
    unit: { path: '/etc/systemd/system/token-keeper.service', user: 'calypso', group: 'calypso', readWritePaths: ['/opt/calypso/data'], stateDirectories: [], protectSystem: 'strict' },
    names: { users: { 0: 'root', 1000: 'calypso', 65534: 'nobody' }, groups: { 0: 'root', 1000: 'calypso', 65534: 'nogroup' } },
    dataDir: {
      dir: ok(file({ kind: 'dir', mode: 0o750 })),
      cache: ok(file()),
      lock: ok(file()),
      state: ok(file()),
      tmpFiles: ok([]),
      space: ok({ freeBytes: 10 * 1024 ** 3, freeInodes: 100_000, files: 1_000_000 }),
    },
    lock: { state: 'free', ms: 0 },
    instance: { state: 'held', holders: [{ pid: 4242, type: 'FLOCK', command: 'node /opt/token-keeper/bin/token-keeper.js agent' }] },
    cache: ok({ kind: 'ok', token: t }),
    state: ok({ token: t, failures: 0, agentSeenAt: NOW - 20_000 }),
    identity: undefined,
    secret: cloud
      ? {
          name: secretName,
          meta: ok({ etag: '"e"', failures: 0, annotations: {}, lastRefresh: { at: NOW - 140_000, by: 'cloud:rev:ab', version: `${secretName}/versions/9` } }),
          latest: ok({ name: `${secretName}/versions/9`, version: 9, token: t }),
          versions: ok(3),
          iam: ok(['secretmanager.secrets.get', 'secretmanager.secrets.update', 'secretmanager.versions.access', 'secretmanager.versions.add', 'secretmanager.versions.destroy', 'secretmanager.versions.list']),
        }
      : undefined,
    pubsub: cloud
      ? {
          emulator: false,
          topicName: 'projects/p1/topics/token-rotated',
          subscriptionName: 'projects/p1/subscriptions/token-rotated-vm1',
          topic: ok(true as const),
          subscription: ok({ topic: 'projects/p1/topics/token-rotated', ackDeadlineSeconds: 30, retentionSeconds: 3600, filter: '', detached: false }),
          topicIam: ok(['pubsub.topics.publish']),
          subscriptionIam: ok(['pubsub.subscriptions.consume']),
        }
      : undefined,
    clock: cloud ? { target: 'https://secretmanager.googleapis.com', local: false, probe: ok({ dateMs: NOW, sentAt: NOW + 100, receivedAt: NOW + 300 }) } : undefined,
    saxo: {
      url: 'https://sim.logonvalidation.net',
      protocol: 'https:',
      host: 'sim.logonvalidation.net',
      port: 443,
      dns: ok(['192.0.2.10']),
      tls: ok({ protocol: 'TLSv1.3', subject: 'sim.logonvalidation.net', validTo: NOW + 90 * 86_400_000 }),
    },
    ...over,
  };
  return { ...f, view: f.view ?? tokenView(f) };
}

export const STANDALONE_ENV = { TOKEN_KEEPER_DATA_DIR: '/opt/calypso/data' };
