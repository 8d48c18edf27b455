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
import { ANNOTATION, createSecretStore } from '../../core/gcp/secret-store.js';
import { ensureSecret } from '../../core/gcp/provision.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { SecretStore } from '../../core/ports.js';
import type { TokenSet } from '../../core/token.js';
import { startSecretManagerFixture, type SecretManagerFixture } from '../helpers/gcp.js';

const T0 = Date.UTC(2025, 0, 15, 12, 0, 0);

function token(n: number, extra: Record<string, unknown> = {}): TokenSet {
  return {
    accessToken: `ACCESS-secret-value-${n}-${'a'.repeat(24)}`,
    refreshToken: `REFRESH-secret-value-${n}-${'r'.repeat(24)}`,
    accessExpiresAt: T0 + n * 60_000,
    refreshExpiresAt: T0 + n * 60_000 + 3_600_000,
    issuedAt: T0 + n * 60_000 - 1_200_000,
    generation: n,
    source: 'test',
    appKey: 'app-key-123',
    appSecret: 'APP-SECRET-do-not-print',
    extra,
  };
}

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

describe('SecretStore: versions', () => {
  it('adds versions numbered from 1 and reads latest and specific versions back', async () => {
    expect(await store.latest()).toBeUndefined();
    expect(await store.add(token(1))).toEqual({ name: nameOf(1), version: 1 });
    expect(await store.add(token(2, { custom_key: 'kept', nested: { a: 1 } }))).toEqual({ name: nameOf(2), version: 2 });

    const latest = await store.latest();
    expect(latest).toMatchObject({ name: nameOf(2), version: 2 });
    expect(latest?.error).toBeUndefined();
    expect(latest?.token).toMatchObject({
      accessToken: token(2).accessToken,
      refreshToken: token(2).refreshToken,
      generation: 2,
      appSecret: token(2).appSecret,
      extra: { custom_key: 'kept', nested: { a: 1 } },
    });
    expect(latest?.token?.accessExpiresAt).toBe(token(2).accessExpiresAt);

    expect((await store.version(1))?.token?.refreshToken).toBe(token(1).refreshToken);
    expect((await store.version(nameOf(1)))?.version).toBe(1);
    expect((await store.version('2'))?.token?.generation).toBe(2);
    expect(await store.version(99)).toBeUndefined();
    expect(await store.countVersions()).toBe(2);
  });

  it('treats destroyed versions as gone and falls back to the newest enabled one', async () => {
    await store.add(token(1));
    await store.add(token(2));
    await store.add(token(3));
    await fx.client.destroySecretVersion({ name: nameOf(2) });
    await fx.client.disableSecretVersion({ name: nameOf(3) });
    expect(await store.version(2)).toBeUndefined();
    expect(await store.version(3)).toBeUndefined();
    expect((await store.latest())?.version).toBe(1);
    expect(await store.countVersions()).toBe(2); // ENABLED + DISABLED are billed; DESTROYED is not
    expect(fx.server.versionStates(secretId).map((v) => v.state)).toEqual(['ENABLED', 'DESTROYED', 'DISABLED']);
  });

  it('returns an error (not a throw, not the payload) for a corrupt payload', async () => {
    const junk = '{"access_token": "ACCESS-secret-value-leak", "refresh_token": ';
    await fx.client.addSecretVersion({ parent: `projects/proj-1/secrets/${secretId}`, payload: { data: Buffer.from(junk) } });
    const r = await store.latest();
    expect(r).toMatchObject({ version: 1 });
    expect(r?.token).toBeUndefined();
    expect(r?.error).toMatch(/unusable/);
    expect(r?.error).not.toContain('ACCESS-secret-value');

    await fx.client.addSecretVersion({
      parent: `projects/proj-1/secrets/${secretId}`,
      payload: { data: Buffer.from(JSON.stringify({ refresh_token: 'REFRESH-secret-value-x' })) },
    });
    const r2 = await store.latest();
    expect(r2?.token).toBeUndefined();
    expect(r2?.error).toMatch(/access_token/);
    expect(r2?.error).not.toContain('REFRESH-secret-value');
    expect(logLines.some((l) => l.includes('"event":"secret_payload_corrupt"'))).toBe(true);
  });

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

  it('prunes to exactly K after 100 adds, keeping the newest', async () => {
    for (let i = 1; i <= 100; i++) await store.add(token(i));
    await fx.client.disableSecretVersion({ name: nameOf(50) });
    expect(await store.countVersions()).toBe(100);
    expect(await store.prune(3)).toBe(97);
    expect(await store.countVersions()).toBe(3);
    const states = fx.server.versionStates(secretId);
    expect(states.filter((s) => s.state !== 'DESTROYED').map((s) => s.version)).toEqual([98, 99, 100]);
    expect((await store.latest())?.token?.generation).toBe(100);
    expect(await store.prune(3)).toBe(0);
    await expect(store.prune(0)).rejects.toBeInstanceOf(SecretStoreError);
  });

  it('tolerates versions destroyed concurrently by someone else while pruning', async () => {
    for (let i = 1; i <= 6; i++) await store.add(token(i));
    // Another pruner destroys v1 between our list and our destroy → FAILED_PRECONDITION, skipped.
    fx.server.inject({ code: status.FAILED_PRECONDITION, methods: ['DestroySecretVersion'] });
    expect(await store.prune(2)).toBe(3);
    expect(await store.countVersions()).toBe(3);
  });
});

describe('SecretStore: lease and bookkeeping annotations', () => {
  it('lets exactly one of N concurrent acquirers win', async () => {
    const holders = Array.from({ length: 8 }, (_, i) => `host-${i}`);
    const results = await Promise.all(holders.map((h) => store.acquireLease(h, 60_000, T0)));
    expect(results.filter(Boolean)).toHaveLength(1);
    const winner = holders[results.indexOf(true)];
    const meta = await store.meta();
    expect(meta.lease).toEqual({ holder: winner, expiresAt: T0 + 60_000 });
  });

  it('blocks others until expiry, then lets them take it; same holder extends', async () => {
    expect(await store.acquireLease('a', 1000, T0)).toBe(true);
    expect(await store.acquireLease('b', 1000, T0 + 500)).toBe(false);
    expect(await store.acquireLease('a', 1000, T0 + 600)).toBe(true);
    expect((await store.meta()).lease).toEqual({ holder: 'a', expiresAt: T0 + 1600 });
    expect(await store.acquireLease('b', 1000, T0 + 1500)).toBe(false);
    expect(await store.acquireLease('b', 1000, T0 + 1601)).toBe(true);
    expect((await store.meta()).lease?.holder).toBe('b');
  });

  it('releases only for the holder, records outcome, and preserves operator annotations', async () => {
    await fx.client.updateSecret({
      secret: { name: `projects/proj-1/secrets/${secretId}`, annotations: { owner: 'ops-team' } },
      updateMask: { paths: ['annotations'] },
    });
    expect(await store.acquireLease('a', 60_000, T0)).toBe(true);
    await store.releaseLease('b');
    expect((await store.meta()).lease?.holder).toBe('a');

    const lastRefresh = { at: T0 + 5, by: 'cloud', version: nameOf(7) };
    await store.releaseLease('a', { failures: 0, lastRefresh });
    const meta = await store.meta();
    expect(meta.lease).toBeUndefined();
    expect(meta.failures).toBe(0);
    expect(meta.lastRefresh).toEqual(lastRefresh);
    expect(meta.annotations.owner).toBe('ops-team');
    expect(meta.annotations[ANNOTATION.leaseHolder]).toBeUndefined();

    await store.record({ failures: 3 });
    const m2 = await store.meta();
    expect(m2.failures).toBe(3);
    expect(m2.lastRefresh).toEqual(lastRefresh);
    // An older lastRefresh never replaces a newer one.
    await store.record({ lastRefresh: { at: T0, by: 'agent:x', version: nameOf(6) } });
    expect((await store.meta()).lastRefresh).toEqual(lastRefresh);
    expect(m2.etag).not.toBe(meta.etag);
  });

  it('retries bookkeeping writes when the etag changes underneath (CAS)', async () => {
    await Promise.all([
      store.record({ failures: 1 }),
      store.record({ lastRefresh: { at: T0, by: 'cloud', version: nameOf(1) } }),
      store.acquireLease('a', 60_000, T0),
    ]);
    const meta = await store.meta();
    expect(meta.failures).toBe(1);
    expect(meta.lastRefresh?.by).toBe('cloud');
    expect(fx.server.calls.filter((c) => c === 'UpdateSecret').length).toBeGreaterThanOrEqual(3);
  });

  it('reports a lost race as false when UpdateSecret answers ABORTED', async () => {
    fx.server.inject({ code: status.ABORTED, methods: ['UpdateSecret'] });
    expect(await store.acquireLease('a', 60_000, T0)).toBe(false);
    expect((await store.meta()).lease).toBeUndefined();
  });
});

describe('SecretStore: errors', () => {
  it('maps an outage to SecretStoreError("unavailable") and never retries AddSecretVersion', async () => {
    store = createSecretStore({ client: fx.client, projectId: 'proj-1', secretId, logger, timeoutMs: 400 });
    fx.server.setUnavailable(true);
    const before = fx.server.calls.length;
    await expect(store.add(token(1))).rejects.toMatchObject({ name: 'SecretStoreError', code: 'unavailable' });
    expect(fx.server.calls.slice(before)).toEqual(['AddSecretVersion']);
    await expect(store.latest()).rejects.toMatchObject({ code: 'unavailable' });
    await expect(store.meta()).rejects.toMatchObject({ code: 'unavailable' });
    await expect(store.acquireLease('a', 1000, T0)).rejects.toBeInstanceOf(SecretStoreError);
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

  it('maps a missing secret to not_found for metadata and undefined for reads', async () => {
    const missing = createSecretStore({ client: fx.client, projectId: 'proj-1', secretId: 'nope', logger });
    await expect(missing.meta()).rejects.toMatchObject({ code: 'not_found' });
    expect(await missing.latest()).toBeUndefined();
    await expect(missing.add(token(1))).rejects.toMatchObject({ code: 'not_found' });
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
    expect(latest.name).toBe(`${parent()}/versions/24`);
    expect(latest.payload?.data?.toString()).toBe('v23');
    await fx.client.enableSecretVersion({ name: `${parent()}/versions/25` });
    await fx.client.destroySecretVersion({ name: `${parent()}/versions/1` });

    const [page1, next] = await fx.client.listSecretVersions({ parent: parent(), pageSize: 10 }, { autoPaginate: false });
    expect(page1).toHaveLength(10);
    expect(page1[0]?.name).toBe(`${parent()}/versions/25`); // newest first
    expect(next?.pageToken).toBeTruthy();
    const [all] = await fx.client.listSecretVersions({ parent: parent() });
    expect(all).toHaveLength(25);
    const [destroyed] = await fx.client.listSecretVersions({ parent: parent(), filter: 'state:DESTROYED' });
    expect(destroyed.map((v) => v.name)).toEqual([`${parent()}/versions/1`]);
    const [live] = await fx.client.listSecretVersions({ parent: parent(), filter: 'NOT state:DESTROYED' });
    expect(live).toHaveLength(24);
  });

  it('applies injected faults only to the named methods and only `times` times', async () => {
    fx.server.inject({ code: status.PERMISSION_DENIED, times: 2, methods: ['GetSecret'] });
    await expect(fx.client.getSecret({ name: parent() })).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    await fx.client.listSecretVersions({ parent: parent() });
    await expect(fx.client.getSecret({ name: parent() })).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    const [s] = await fx.client.getSecret({ name: parent() });
    expect(s.name).toBe(parent());
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
