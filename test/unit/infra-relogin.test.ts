/**
 * infra/terraform/relogin.tf, parsed offline: the phone re-login is the only public endpoint — a
 * Cloud Run v2 service with the invoker IAM check off (never allUsers), its own service account
 * holding only what the login needs, bound on single resources; the refresher stays IAM-protected.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { allResources, loadTerraform, one, sub, TF_DIR, type Block, type Tf } from '../helpers/terraform.js';

describe('infra/terraform relogin', () => {
  let tf: Tf;
  beforeAll(async () => {
    tf = await loadTerraform(TF_DIR);
  });

  it('a Cloud Run v2 service with invoker_iam_disabled, its own account, the chain environment and app secret', () => {
    const svc = one(tf, 'google_cloud_run_v2_service', 'relogin');
    expect(svc.invoker_iam_disabled).toBe(true);
    expect(svc.name).toBe('${local.names.relogin_service}');
    expect(svc.count).toBe('${local.relogin}');
    const tpl = sub(svc, 'template');
    expect(tpl.service_account).toBe('${google_service_account.relogin[0].email}');
    const container = sub(tpl, 'containers');
    expect(container.image).toBe('${var.relogin_image}');
    expect(JSON.stringify(container)).toContain('${module.settings.function_env}');
    expect(JSON.stringify(container)).toContain('SAXO_APP_SECRET');
    expect(tf.variable.relogin_base_url?.[0]?.default).toBeNull();
  });

  it('no public principal anywhere; the refresher keeps its single invoker', () => {
    for (const [type, name, b] of allResources(tf)) {
      expect(JSON.stringify(b), `${type}.${name}`).not.toMatch(/allUsers|allAuthenticatedUsers/);
    }
    const invokers = allResources(tf).filter(([, , b]) => /invoker/.test(String(b.role)));
    expect(invokers).toHaveLength(1);
  });

  it('least privilege: get/access/add on the token secret; get/update/access/add on the link-state secret; publish on the topic', () => {
    const perms = (name: string) => (one(tf, 'google_project_iam_custom_role', name).permissions as string[]).slice().sort();
    expect(perms('relogin_token')).toEqual(['secretmanager.secrets.get', 'secretmanager.versions.access', 'secretmanager.versions.add']);
    expect(perms('relogin_links')).toEqual(['secretmanager.secrets.get', 'secretmanager.secrets.update', 'secretmanager.versions.access', 'secretmanager.versions.add']);
    expect(one(tf, 'google_secret_manager_secret_iam_member', 'relogin_token')).toMatchObject({
      secret_id: '${google_secret_manager_secret.token.secret_id}',
      role: '${google_project_iam_custom_role.relogin_token[0].id}',
      member: 'serviceAccount:${google_service_account.relogin[0].email}',
    });
    expect(one(tf, 'google_secret_manager_secret_iam_member', 'relogin_links').secret_id).toBe('${google_secret_manager_secret.relogin_links[0].secret_id}');
    expect(one(tf, 'google_pubsub_topic_iam_member', 'relogin_publisher')).toMatchObject({ topic: '${google_pubsub_topic.token_rotated.name}', role: 'roles/pubsub.publisher' });
    // Nothing for the relogin account at project level.
    const projectMembers = allResources(tf).filter(([type]) => type === 'google_project_iam_member').map(([, , b]) => JSON.stringify(b as Block));
    for (const m of projectMembers) expect(m).not.toContain('google_service_account.relogin');
    // The link-state secret's annotations are the CAS document: an apply must not reset them.
    expect(sub(one(tf, 'google_secret_manager_secret', 'relogin_links'), 'lifecycle').ignore_changes).toEqual(['${annotations}']);
  });
});
