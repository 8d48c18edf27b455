/**
 * Test fixtures for the GCP adapters: the Secret Manager stand-in with a real client, the real
 * Pub/Sub emulator, and a describe() that skips (visibly) only when the emulator cannot run here.
 */
import { spawnSync } from 'node:child_process';
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import type { PubSub } from '@google-cloud/pubsub';
import { describe } from 'vitest';
import { createPubSub, createSecretManagerClient } from '../../core/gcp/clients.js';
import { ensureSecret, ensureTopicAndSubscription } from '../../core/gcp/provision.js';
import { startSecretManagerServer, type SecretManagerServer } from '../../standins/secret-manager/server.js';
import { findPubSubEmulatorJar, startPubSubEmulator, type PubSubEmulator } from '../../standins/pubsub-emulator.js';

let availability: { ok: boolean; why: string } | undefined;

function checkPubSub(): { ok: boolean; why: string } {
  if (availability) return availability;
  if (process.env.PUBSUB_EMULATOR_HOST) availability = { ok: true, why: '' };
  else if (!findPubSubEmulatorJar()) availability = { ok: false, why: 'Pub/Sub emulator jar not found' };
  else if (spawnSync('java', ['-version']).status !== 0) availability = { ok: false, why: 'java not found' };
  else availability = { ok: true, why: '' };
  return availability;
}

/** True when the Pub/Sub emulator jar and a java runtime are present. */
export function pubsubAvailable(): boolean {
  return checkPubSub().ok;
}

/**
 * describe() for suites needing the Pub/Sub emulator. Missing emulator: a named skip locally, a
 * failure under CI=true (nothing this machine can run may skip there). `concurrent`: the suite runs
 * alongside the file's other concurrent tests (describe.concurrent).
 */
export function describeWithPubSub(name: string, fn: () => void, o: { concurrent?: boolean } = {}): void {
  const { ok, why } = checkPubSub();
  if (ok) {
    (o.concurrent ? describe.concurrent : describe)(name, fn);
    return;
  }
  if (process.env.CI === 'true') throw new Error(`${name}: ${why} (required under CI=true)`);
  describe.skip(`${name} (skipped: Pub/Sub emulator jar or java not found: ${why})`, fn);
}

/** Poll `cond` until truthy or the timeout passes (a condition wait, not a sleep). */
export async function waitFor<T>(cond: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface SecretManagerFixture {
  server: SecretManagerServer;
  client: SecretManagerServiceClient;
  projectId: string;
  secretId: string;
  /** Full secret name. */
  secretName: string;
  close(): Promise<void>;
}

/** Stand-in + real client + an existing secret (automatic replication). */
export async function startSecretManagerFixture(projectId = 'test-project', secretId = 'saxo-token'): Promise<SecretManagerFixture> {
  const server = await startSecretManagerServer();
  const client = await createSecretManagerClient({ projectId, secretManagerEmulatorHost: server.host });
  const secretName = await ensureSecret(client, projectId, secretId);
  return {
    server,
    client,
    projectId,
    secretId,
    secretName,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

/**
 * The cloud settings of an agent or CLI on `sm`'s secret: every key present, undefined where not
 * given, so that nothing CI exports (PUBSUB_EMULATOR_HOST, TOKEN_TOPIC_ID, …) leaks in.
 */
export function cloudEnv(sm: SecretManagerFixture, o: { topic?: string; sub?: string; pubsubHost?: string }): Record<string, string | undefined> {
  return {
    GOOGLE_CLOUD_PROJECT: sm.projectId,
    TOKEN_SECRET_ID: sm.secretId,
    TOKEN_TOPIC_ID: o.topic,
    TOKEN_SUBSCRIPTION_ID: o.sub,
    SECRET_MANAGER_EMULATOR_HOST: sm.server.host,
    PUBSUB_EMULATOR_HOST: o.pubsubHost,
  };
}

export interface PubSubFixture {
  emulator: PubSubEmulator;
  pubsub: PubSub;
  projectId: string;
  close(): Promise<void>;
}

/**
 * Uses the emulator `.ci/run` started (PUBSUB_EMULATOR_HOST) when there is one, else starts a
 * private one. Give each test file its own projectId so that shared emulators do not mix topics.
 */
export async function startPubSubFixture(projectId = 'test-project'): Promise<PubSubFixture> {
  const shared = process.env.PUBSUB_EMULATOR_HOST;
  const emulator: PubSubEmulator = shared
    ? { host: shared, port: Number(shared.split(':').pop()), stop: async () => undefined }
    : await startPubSubEmulator();
  const pubsub = await createPubSub({ projectId, pubsubEmulatorHost: emulator.host });
  return {
    emulator,
    pubsub,
    projectId,
    close: async () => {
      await pubsub.close();
      await emulator.stop();
    },
  };
}

export { ensureTopicAndSubscription };
