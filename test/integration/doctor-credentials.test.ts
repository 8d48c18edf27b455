/**
 * `token-keeper doctor --json` as a real process, cloud-connected, when Google credentials cannot
 * be loaded (GOOGLE_APPLICATION_CREDENTIALS=/nonexistent): a report with failed probes and the
 * credentials fix, never a crash (a generated client re-throws a failed initialise from a detached
 * promise: an unhandled rejection, exit 1, a stack and no report).
 *
 * Nothing leaves loopback: Secret Manager is the stand-in (plaintext, no credentials involved),
 * the clock reads the stand-in, Saxo is the stand-in. Pub/Sub has no emulator host, so its clients
 * load credentials — and fail on the missing key file before they open any connection (the key
 * file is read first; with it set, ADC looks nowhere else, and metadata detection is off).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { APP_KEY, APP_SECRET, pair, runDoctor } from '../helpers/doctor-rig.js';
import { startSecretManagerFixture, type SecretManagerFixture } from '../helpers/gcp.js';

const PROJECT = 'tk-doctor-creds';
const SECRET = 'saxo-token';
const KEY = 'check GOOGLE_APPLICATION_CREDENTIALS=/nonexistent: the key file must exist and be readable by this user (ls -l /nonexistent), or unset it to use the VM\'s service account';

describe('doctor (cloud-connected) without loadable Google credentials', () => {
  let tmp: string;
  let sm: SecretManagerFixture;
  let saxo: SaxoStandin;
  let env: Record<string, string | undefined>;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'tk-doctor-creds-'));
    const dir = join(tmp, 'data');
    mkdirSync(dir, { mode: 0o750 });
    const t = pair({ accessLeftSec: 900 });
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(t);
    [sm, saxo] = await Promise.all([startSecretManagerFixture(PROJECT, SECRET), startSaxoStandin({ clients: { [APP_KEY]: APP_SECRET } })]);
    await createSecretStore({ client: sm.client, projectId: PROJECT, secretId: SECRET }).add(t);
    env = {
      TOKEN_KEEPER_DATA_DIR: dir,
      GOOGLE_CLOUD_PROJECT: PROJECT,
      GCLOUD_PROJECT: undefined,
      TOKEN_SECRET_ID: SECRET,
      TOKEN_TOPIC_ID: 'token-rotated',
      TOKEN_SUBSCRIPTION_ID: 'token-rotated-vm1',
      SECRET_MANAGER_EMULATOR_HOST: sm.server.host,
      PUBSUB_EMULATOR_HOST: undefined,
      GOOGLE_APPLICATION_CREDENTIALS: '/nonexistent',
      METADATA_SERVER_DETECTION: 'none',
      SAXO_AUTH_BASE_URL: saxo.url,
      SAXO_APP_KEY: APP_KEY,
      SAXO_APP_SECRET: APP_SECRET,
    };
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([sm?.close(), saxo?.close()]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('prints the report (exit 2): Pub/Sub fails with the credentials fix, its IAM is skipped, nothing crashes', async () => {
    const r = await runDoctor(env);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/triggerUncaughtException|Unhandled|^\s+at /m);
    for (const id of ['pubsub.topic', 'pubsub.subscription']) {
      expect(r.check(id), id).toMatchObject({ status: 'fail', fix: KEY });
      expect(r.check(id).summary).toMatch(/failed: cannot load Google credentials: The file at \/nonexistent does not exist/);
    }
    expect(r.check('pubsub.iam')).toMatchObject({ status: 'skip', summary: 'no usable Google credentials: nothing could be asked (see pubsub.topic)' });
    // The stand-in needs no credentials: Secret Manager is judged as usual.
    expect(r.check('secret-manager').status).toBe('ok');
    expect(r.check('secret-manager.iam').status).toBe('ok');
    expect(r.ms).toBeLessThan(5000);
  });
});
