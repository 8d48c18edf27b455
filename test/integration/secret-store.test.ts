/**
 * The Secret Manager adapter and the gRPC stand-in, through the real SecretManagerServiceClient
 * over loopback gRPC.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SecretStoreError } from '../../core/errors.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { createRestSecretManagerClient } from '../../core/gcp/secret-manager-rest.js';
import { ensureSecret } from '../../core/gcp/provision.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { SecretStore } from '../../core/ports.js';
import { startSecretManagerFixture, type SecretManagerFixture } from '../helpers/gcp.js';
import { createSecretManagerClient } from '../../core/gcp/clients.js';
import { DEFAULT_PROJECT_NUMBER, startSecretManagerServer } from '../../standins/secret-manager/server.js';
import { secretStoreContract, token, type SecretStoreTarget } from '../helpers/secret-store-contract.js';
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';

const T0 = Date.UTC(2025, 0, 15, 12, 0, 0);

let fx: SecretManagerFixture;
let logLines: string[];
let logger: Logger;
let secretSeq = 0;
let secretId: string;
let store: SecretStore;

beforeAll(async () => {
  fx = await startSecretManagerFixture('proj-1', 'unused');
});
afterAll(async () => {
  await fx.close();
});

// A fresh secret per test keeps tests independent on one server.
beforeEach(async () => {
  logLines = [];
  logger = createLogger({ write: (l) => logLines.push(l), minSeverity: 'DEBUG' });
  secretId = `tok-${++secretSeq}`;
  await ensureSecret(fx.client, fx.projectId, secretId);
  store = createSecretStore({ client: fx.client, projectId: fx.projectId, secretId, logger, timeoutMs: 2000 });
});
afterEach(() => {
  fx.server.setUnavailable(false);
  fx.server.setLatency(0);
  fx.server.setCorruptAccess(false);
  fx.server.clearFaults();
  // I5: nothing secret in any line logged by the adapter during the test.
  const all = logLines.join('\n');
  expect(all).not.toMatch(/ACCESS-secret-value|REFRESH-secret-value|APP-SECRET-do-not-print/);
});

const nameOf = (v: number) => `projects/proj-1/secrets/${secretId}/versions/${v}`;

/** The contract's target over one transport to the stand-in (the raw side always goes through gRPC). */
function overTransport(client: () => SecretManagerServiceClient): SecretStoreTarget {
  return {
    async fresh(lg) {
      const id = `tok-c${++secretSeq}`;
      await ensureSecret(fx.client, fx.projectId, id);
      const parent = `projects/${fx.projectId}/secrets/${id}`;
      return {
        store: createSecretStore({ client: client(), projectId: fx.projectId, secretId: id, logger: lg, timeoutMs: 1000 }),
        raw: {
          addRaw: async (data) => void (await fx.client.addSecretVersion({ parent, payload: { data: Buffer.from(data) } })),
          setState: async (v, state) =>
            void (state === 'DESTROYED'
              ? await fx.client.destroySecretVersion({ name: `${parent}/versions/${v}` })
              : await fx.client.disableSecretVersion({ name: `${parent}/versions/${v}` })),
          setAnnotations: async (annotations) => void (await fx.client.updateSecret({ secret: { name: parent, annotations }, updateMask: { paths: ['annotations'] } })),
          outage: (on) => fx.server.setUnavailable(on),
          states: () => fx.server.versionStates(id),
        },
        projectNumber: fx.server.projectNumber(fx.projectId),
      };
    },
    missing: async (lg) => createSecretStore({ client: client(), projectId: fx.projectId, secretId: 'nope', logger: lg, timeoutMs: 1000 }),
  };
}

secretStoreContract('the adapter over the gRPC stand-in (the agent\'s transport)', overTransport(() => fx.client));
secretStoreContract(
  'the adapter over the REST transport (the function\'s) to the stand-in\'s REST front',
  overTransport(() => createRestSecretManagerClient({ baseUrl: `http://${fx.server.restHost}` })),
);

describe('SecretStore over gRPC: what only the transport does', () => {
  it('detects payload corruption in transit with the crc32c checksum', async () => {
    await store.add(token(1));
    fx.server.setCorruptAccess(true);
    const r = await store.latest();
    expect(r?.token).toBeUndefined();
    expect(r?.error).toMatch(/checksum/);
    fx.server.setCorruptAccess(false);
    expect((await store.latest())?.token?.generation).toBe(1);
  });

  it('sends a crc32c the server verifies; a wrong checksum is rejected', async () => {
    await store.add(token(1));
    const v = await fx.client.getSecretVersion({ name: nameOf(1) });
    expect(v[0].clientSpecifiedPayloadChecksum).toBe(true);
    await expect(
      fx.client.addSecretVersion({
        parent: `projects/proj-1/secrets/${secretId}`,
        payload: { data: Buffer.from('{"x":1}'), dataCrc32c: 12345 },
      }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(fx.server.versionStates(secretId)).toHaveLength(1);
  });

  it('tolerates versions destroyed concurrently by someone else while pruning', async () => {
    for (let i = 1; i <= 6; i++) await store.add(token(i));
    // Another pruner destroys v1 between our list and our destroy → FAILED_PRECONDITION, skipped.
    fx.server.inject({ code: status.FAILED_PRECONDITION, methods: ['DestroySecretVersion'] });
    expect(await store.prune(2)).toBe(3);
    expect(await store.countVersions()).toBe(3);
  });

  it('reports a lost race as false when UpdateSecret answers ABORTED', async () => {
    fx.server.inject({ code: status.ABORTED, methods: ['UpdateSecret'] });
    expect(await store.acquireLease('a', 60_000, T0)).toBe(false);
    expect((await store.meta()).lease).toBeUndefined();
  });

  it('retries a transient UNAVAILABLE on reads within the deadline', async () => {
    await store.add(token(1));
    fx.server.inject({ code: status.UNAVAILABLE, times: 1, methods: ['AccessSecretVersion'] });
    const before = fx.server.calls.length;
    expect((await store.latest())?.token?.generation).toBe(1);
    expect(fx.server.calls.slice(before)).toEqual(['AccessSecretVersion', 'AccessSecretVersion']);
  });

  it('maps a deadline overrun to "unavailable"', async () => {
    const slow = createSecretStore({ client: fx.client, projectId: 'proj-1', secretId, logger, timeoutMs: 200 });
    fx.server.setLatency(600);
    await expect(slow.meta()).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('keeps token text out of error messages', async () => {
    fx.server.inject({ code: status.INTERNAL, methods: ['AddSecretVersion'] });
    const err = await store.add(token(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SecretStoreError);
    expect(String((err as Error).message)).not.toMatch(/secret-value|APP-SECRET/);
  });
});

describe('Secret Manager stand-in: API semantics', () => {
  const parent = () => `projects/proj-1/secrets/${secretId}`;
  /** The same secret as the service names it in its answers: by project number. */
  const answered = () => `projects/${fx.server.projectNumber('proj-1')}/secrets/${secretId}`;

  it('enforces etag compare-and-swap on UpdateSecret and issues a new etag each time', async () => {
    const [s] = await fx.client.getSecret({ name: parent() });
    const [u] = await fx.client.updateSecret({
      secret: { name: parent(), etag: s.etag, labels: { a: 'b' } },
      updateMask: { paths: ['labels'] },
    });
    expect(u.etag).not.toBe(s.etag);
    expect(u.labels).toEqual({ a: 'b' });
    await expect(
      fx.client.updateSecret({ secret: { name: parent(), etag: s.etag, labels: {} }, updateMask: { paths: ['labels'] } }),
    ).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(fx.client.updateSecret({ secret: { name: parent(), labels: {} } })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
  });

  it('answers FAILED_PRECONDITION / NOT_FOUND like the real API', async () => {
    await fx.client.addSecretVersion({ parent: parent(), payload: { data: Buffer.from('x') } });
    await fx.client.destroySecretVersion({ name: `${parent()}/versions/1` });
    await expect(fx.client.accessSecretVersion({ name: `${parent()}/versions/1` })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
    await expect(fx.client.destroySecretVersion({ name: `${parent()}/versions/1` })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
    const [v] = await fx.client.getSecretVersion({ name: `${parent()}/versions/1` });
    expect(v.state).toBe('DESTROYED');
    await expect(fx.client.accessSecretVersion({ name: `${parent()}/versions/latest` })).rejects.toMatchObject({
      code: status.NOT_FOUND,
    });
    await expect(fx.client.getSecret({ name: 'projects/proj-1/secrets/absent' })).rejects.toMatchObject({ code: status.NOT_FOUND });
    await expect(
      fx.client.createSecret({ parent: 'projects/proj-1', secretId, secret: { replication: { automatic: {} } } }),
    ).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
  });

  it('disables, enables, lists with state filters and pages', async () => {
    for (let i = 0; i < 25; i++) await fx.client.addSecretVersion({ parent: parent(), payload: { data: Buffer.from(`v${i}`) } });
    await fx.client.disableSecretVersion({ name: `${parent()}/versions/25` });
    const [latest] = await fx.client.accessSecretVersion({ name: `${parent()}/versions/latest` });
    expect(latest.name).toBe(`${answered()}/versions/24`);
    expect(latest.payload?.data?.toString()).toBe('v23');
    await fx.client.enableSecretVersion({ name: `${parent()}/versions/25` });
    await fx.client.destroySecretVersion({ name: `${parent()}/versions/1` });

    const [page1, next] = await fx.client.listSecretVersions({ parent: parent(), pageSize: 10 }, { autoPaginate: false });
    expect(page1).toHaveLength(10);
    expect(page1[0]?.name).toBe(`${answered()}/versions/25`); // newest first
    expect(next?.pageToken).toBeTruthy();
    const [all] = await fx.client.listSecretVersions({ parent: parent() });
    expect(all).toHaveLength(25);
    const [destroyed] = await fx.client.listSecretVersions({ parent: parent(), filter: 'state:DESTROYED' });
    expect(destroyed.map((v) => v.name)).toEqual([`${answered()}/versions/1`]);
    const [live] = await fx.client.listSecretVersions({ parent: parent(), filter: 'NOT state:DESTROYED' });
    expect(live).toHaveLength(24);
  });

  it('applies injected faults only to the named methods and only `times` times', async () => {
    fx.server.inject({ code: status.PERMISSION_DENIED, times: 2, methods: ['GetSecret'] });
    await expect(fx.client.getSecret({ name: parent() })).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    await fx.client.listSecretVersions({ parent: parent() });
    await expect(fx.client.getSecret({ name: parent() })).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    const [s] = await fx.client.getSecret({ name: parent() });
    expect(s.name).toBe(answered());
  });

  it('answers with the project NUMBER in every resource name, over gRPC and REST, and takes requests by id or number', async () => {
    const number = fx.server.projectNumber('proj-1');
    expect(number).toBe(DEFAULT_PROJECT_NUMBER);
    const [added] = await fx.client.addSecretVersion({ parent: parent(), payload: { data: Buffer.from('x') } });
    expect(added.name).toBe(`projects/${number}/secrets/${secretId}/versions/1`);
    // By number: the same secret, the same version.
    const [byNumber] = await fx.client.accessSecretVersion({ name: `${answered()}/versions/latest` });
    expect(byNumber.name).toBe(`${answered()}/versions/1`);
    const [secret] = await fx.client.getSecret({ name: answered() });
    expect(secret.name).toBe(answered());
    const [listed] = await fx.client.listSecrets({ parent: 'projects/proj-1' });
    expect(listed.map((x) => x.name)).toContain(answered());
    // REST: the same names.
    const rest = await fetch(`http://${fx.server.restHost}/v1/${parent()}/versions/latest:access`);
    expect(((await rest.json()) as { name: string }).name).toBe(`${answered()}/versions/1`);
    // Another project id gets another number; an unknown number is NOT_FOUND.
    expect(fx.server.projectNumber('proj-2')).not.toBe(number);
    await expect(fx.client.getSecret({ name: `projects/999/secrets/${secretId}` })).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('takes the project number from its options', async () => {
    const other = await startSecretManagerServer({ projects: { numbers: { 'proj-x': '424242424242' } } });
    try {
      const client = await createSecretManagerClient({ projectId: 'proj-x', secretManagerEmulatorHost: other.host });
      await ensureSecret(client, 'proj-x', 's');
      const [v] = await client.addSecretVersion({ parent: 'projects/proj-x/secrets/s', payload: { data: Buffer.from('x') } });
      expect(v.name).toBe('projects/424242424242/secrets/s/versions/1');
      await client.close();
    } finally {
      await other.close();
    }
  });

  it('deletes a secret (etag-guarded)', async () => {
    await expect(fx.client.deleteSecret({ name: parent(), etag: '"stale"' })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
    await fx.client.deleteSecret({ name: parent() });
    await expect(fx.client.getSecret({ name: parent() })).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('runs as its own process: prints the listening line and exits 0 on SIGTERM', async () => {
    const main = fileURLToPath(new URL('../../standins/secret-manager/main.ts', import.meta.url));
    const proc = spawn(process.execPath, ['--import', 'tsx', main], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: proc.stdout! }).once('line', resolve);
      proc.once('exit', () => reject(new Error('exited before listening')));
    });
    const msg = JSON.parse(first) as { event: string; host: string };
    expect(msg.event).toBe('secret_manager_listening');
    expect(msg.host).toMatch(/^127\.0\.0\.1:\d+$/);
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

it('a client that cannot get credentials fails the call with a SecretStoreError — and leaves no unhandled rejection (which would kill the agent)', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  const saved = process.env.GOOGLE_APPLICATION_CREDENTIALS;
  process.env.GOOGLE_APPLICATION_CREDENTIALS = '/nonexistent/credentials.json';
  const { SecretManagerServiceClient } = await import('@google-cloud/secret-manager');
  // TLS towards a loopback port nobody serves: the failure is the credentials, found before any connection.
  const client = new SecretManagerServiceClient({ projectId: 'p', apiEndpoint: '127.0.0.1', port: 9 });
  try {
    const store = createSecretStore({ client, projectId: 'p', secretId: 's', timeoutMs: 1000 });
    await expect(store.latest()).rejects.toMatchObject({ name: 'SecretStoreError' });
    await expect(store.meta()).rejects.toMatchObject({ name: 'SecretStoreError' });
    await new Promise((r) => setImmediate(r));
    expect(unhandled).toEqual([]);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    if (saved === undefined) delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
    else process.env.GOOGLE_APPLICATION_CREDENTIALS = saved;
    await client.close().catch(() => undefined);
  }
});
