/** The one rule for comparing Secret Manager names (core/gcp/resource-names.ts). */
import { describe, expect, it } from 'vitest';
import { isProjectNumber, parseVersionName, sameVersion, SecretIdentity, versionNumberOf } from '../../core/gcp/resource-names.js';

const CONFIGURED = 'projects/my-project/secrets/saxo-token';

describe('resource names', () => {
  it('parses version names and their numbers', () => {
    expect(parseVersionName('projects/123/secrets/s/versions/7')).toEqual({ project: '123', secretId: 's', version: '7' });
    expect(versionNumberOf('projects/p/secrets/s/versions/7')).toBe(7);
    expect(versionNumberOf('projects/p/secrets/s/versions/latest')).toBeUndefined();
    expect(versionNumberOf('projects/p/secrets/s/versions/0')).toBeUndefined();
    expect(versionNumberOf('projects/p/secrets/s')).toBeUndefined();
    expect(isProjectNumber('123456789012')).toBe(true);
    expect(isProjectNumber('my-project')).toBe(false);
  });

  it('owns our secret by project id, and by any project number until the service has shown its own', () => {
    const id = new SecretIdentity(CONFIGURED);
    expect(id.ownsVersion('projects/my-project/secrets/saxo-token/versions/3')).toBe(true);
    expect(id.ownsVersion('projects/123456789012/secrets/saxo-token/versions/3')).toBe(true);
    expect(id.ownsVersion('projects/other-project/secrets/saxo-token/versions/3')).toBe(false);
    expect(id.ownsVersion('projects/my-project/secrets/other-secret/versions/3')).toBe(false);
    expect(id.ownsVersion('projects/123456789012/secrets/other-secret/versions/3')).toBe(false);
    expect(id.ownsVersion('projects/my-project/secrets/saxo-token/versions/latest')).toBe(false);
    expect(id.ownsVersion('projects/my-project/secrets/saxo-token')).toBe(false);
    expect(id.ownsSecret('projects/123456789012/secrets/saxo-token')).toBe(true);
  });

  it('learns the number from an answer for our secret, then refuses other numbers', () => {
    const id = new SecretIdentity(CONFIGURED);
    id.learn('projects/999/secrets/another/versions/1'); // not our secret: nothing learned
    expect(id.projectNumber).toBeUndefined();
    id.learn('projects/123456789012/secrets/saxo-token/versions/4');
    expect(id.projectNumber).toBe('123456789012');
    expect(id.ownsVersion('projects/123456789012/secrets/saxo-token/versions/5')).toBe(true);
    expect(id.ownsVersion('projects/my-project/secrets/saxo-token/versions/5')).toBe(true);
    expect(id.ownsVersion('projects/555555555555/secrets/saxo-token/versions/5')).toBe(false);
    id.learn('projects/555555555555/secrets/saxo-token/versions/6'); // first answer wins
    expect(id.projectNumber).toBe('123456789012');
    expect(new SecretIdentity(CONFIGURED, '42').ownsVersion('projects/43/secrets/saxo-token/versions/1')).toBe(false);
  });

  it('requests versions by the configured project id', () => {
    const id = new SecretIdentity(CONFIGURED);
    expect(id.versionName(7)).toBe(`${CONFIGURED}/versions/7`);
    expect(id.name).toBe(CONFIGURED);
    expect(() => new SecretIdentity('projects/p/topics/t')).toThrow(/not a secret resource name/);
  });

  it('compares two version names across project forms', () => {
    expect(sameVersion('projects/my-project/secrets/s/versions/7', 'projects/123/secrets/s/versions/7')).toBe(true);
    expect(sameVersion('projects/123/secrets/s/versions/7', 'projects/123/secrets/s/versions/7')).toBe(true);
    expect(sameVersion('projects/123/secrets/s/versions/7', 'projects/123/secrets/s/versions/8')).toBe(false);
    expect(sameVersion('projects/123/secrets/s/versions/7', 'projects/456/secrets/s/versions/7')).toBe(false);
    expect(sameVersion('projects/a/secrets/s/versions/7', 'projects/b/secrets/s/versions/7')).toBe(false);
    expect(sameVersion('projects/123/secrets/s/versions/7', 'projects/123/secrets/t/versions/7')).toBe(false);
  });
});
