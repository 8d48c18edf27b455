/**
 * The Secret Manager stand-in's IAM, through the real client: TestIamPermissions answers the
 * granted subset, a denied permission is also refused by the RPC that needs it (the two never
 * disagree), and bad requests fail as the real API's do.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECRET_MANAGER_PERMISSIONS } from '../../agent/doctor/gcp.js';
import { startSecretManagerFixture, type SecretManagerFixture } from '../helpers/gcp.js';

describe('Secret Manager stand-in: TestIamPermissions and denials', () => {
  let sm: SecretManagerFixture;
  beforeAll(async () => {
    sm = await startSecretManagerFixture('tk-doctor-iam', 'saxo-token');
  });
  afterAll(async () => {
    await sm?.close();
  });

  const test = async (permissions: readonly string[], resource = sm.secretName) =>
    ((await sm.client.testIamPermissions({ resource, permissions: [...permissions] }))[0].permissions ?? []).slice().sort();

  it('grants everything by default; a denied permission is left out and its RPC answers PERMISSION_DENIED', async () => {
    expect(await test(SECRET_MANAGER_PERMISSIONS)).toEqual([...SECRET_MANAGER_PERMISSIONS]);
    sm.server.denyPermissions(['secretmanager.versions.add']);
    try {
      expect(await test(SECRET_MANAGER_PERMISSIONS)).toEqual(SECRET_MANAGER_PERMISSIONS.filter((p) => p !== 'secretmanager.versions.add'));
      await expect(sm.client.addSecretVersion({ parent: sm.secretName, payload: { data: Buffer.from('{}') } })).rejects.toMatchObject({
        code: 7,
        details: `Permission 'secretmanager.versions.add' denied for resource '${sm.secretName}' (or it may not exist).`,
      });
      await expect(sm.client.getSecret({ name: sm.secretName })).resolves.toBeDefined();
    } finally {
      sm.server.allowAllPermissions();
    }
    await expect(sm.client.addSecretVersion({ parent: sm.secretName, payload: { data: Buffer.from('{}') } })).resolves.toBeDefined();
  });

  it('rejects a permission that does not apply to a secret, and an unknown secret', async () => {
    await expect(test(['pubsub.topics.publish'])).rejects.toMatchObject({ code: 3 });
    await expect(test(['secretmanager.versions.access'], 'projects/tk-doctor-iam/secrets/nope')).rejects.toMatchObject({ code: 5 });
  });
});
