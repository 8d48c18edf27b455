/**
 * IAM of infra/terraform, parsed offline: nothing public, additive members only, every grant that
 * touches tokens bound on one resource, the project-level grants limited to the build account's
 * (storage conditioned to the source buckets) and the VM accounts' Ops Agent roles, and a custom
 * role holding exactly the Secret Manager permissions of the calls the code makes.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { allResources, loadTerraform, one, ROOT, sub, TF_DIR, type Block, type Tf } from '../helpers/terraform.js';



// --- what the code needs ----------------------------------------------------------------------

/** SecretManagerServiceClient method -> IAM permission. null: not expected; using it fails the test. '': needs none. */
const SM_PERMISSION: Record<string, string | null> = {
  accessSecretVersion: 'secretmanager.versions.access',
  addSecretVersion: 'secretmanager.versions.add',
  getSecret: 'secretmanager.secrets.get',
  updateSecret: 'secretmanager.secrets.update',
  listSecretVersions: 'secretmanager.versions.list',
  listSecretVersionsAsync: 'secretmanager.versions.list',
  listSecretVersionsStream: 'secretmanager.versions.list',
  getSecretVersion: 'secretmanager.versions.get',
  destroySecretVersion: 'secretmanager.versions.destroy',
  disableSecretVersion: 'secretmanager.versions.disable',
  enableSecretVersion: 'secretmanager.versions.enable',
  getIamPolicy: 'secretmanager.secrets.getIamPolicy',
  testIamPermissions: '', // needs no permission (doctor asks it what the caller may do)
  // Project-level operations: they cannot be granted on one secret, so the code must not use them.
  listSecrets: null,
  listSecretsAsync: null,
  listSecretsStream: null,
  createSecret: null,
  deleteSecret: null,
  setIamPolicy: null,
  enableManagedRotation: null,
  rotateSecret: null,
};

function tsFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/**
 * Create-if-missing helpers for tests and the demo (they need create rights the runtime must not
 * have); its header says the runtime's permissions are derived from the adapters, not from it.
 */
const PROVISIONING_ONLY = new Set(['core/gcp/provision.ts']);

/** Every `client.<method>(` in core/, functions/, agent/ that names a Secret Manager RPC. */
function secretManagerCalls(): Map<string, string[]> {
  const calls = new Map<string, string[]>();
  for (const file of ['core', 'functions', 'agent'].flatMap((d) => tsFiles(join(ROOT, d)))) {
    if (PROVISIONING_ONLY.has(file.slice(ROOT.length + 1))) continue;
    for (const m of readFileSync(file, 'utf8').matchAll(/\bclient\s*\.\s*([A-Za-z]\w*)\s*[(<]/g)) {
      const method = m[1]!;
      if (!(method in SM_PERMISSION)) continue;
      calls.set(method, [...(calls.get(method) ?? []), file.slice(ROOT.length + 1)]);
    }
  }
  return calls;
}


describe('infra/terraform IAM', () => {
  let tf: Tf;
  let bindings: Array<[string, string, Block]>;
  beforeAll(async () => {
    tf = await loadTerraform(TF_DIR);
    bindings = allResources(tf).filter(([type]) => /_iam_(member|binding|policy)$/.test(type));
  });

  it('grants nothing to public principals, and only adds members (never replaces a policy)', () => {
    expect(JSON.stringify(tf).match(/allUsers|allAuthenticatedUsers/)?.[0]).toBeUndefined();
    expect(one(tf, 'google_storage_bucket', 'source').public_access_prevention).toBe('enforced');
    expect(bindings.length).toBeGreaterThan(6);
    // Authoritative bindings/policies would strip others' access (the bots', the other chain's).
    for (const [type, name] of bindings) expect(type, `${type}.${name}`).toMatch(/_iam_member$/);
  });

  it('project-level grants: the build account (no token access) and the VM accounts for the Ops Agent, nothing else', () => {
    const project = bindings.filter(([type]) => type === 'google_project_iam_member').map(([, name, b]) => [name, b] as const);
    expect(project.map(([n]) => n).sort()).toEqual(['build', 'build_gcf_sources', 'vm_ops_agent']);
    const byName = Object.fromEntries(project);
    expect(byName.build!.for_each).toBe('${toset([\n    "roles/artifactregistry.writer",\n    "roles/logging.logWriter",\n  ])}');
    expect(byName.build!.member).toBe('${local.build_member}');
    expect(tf.locals.build_member).toBe('serviceAccount:${google_service_account.build.email}');
    // The VM accounts write the agent's logs and host metrics, for every VM of the chain, unless
    // another instance owns those members.
    const vm = byName.vm_ops_agent!;
    expect(String(vm.for_each)).toMatch(/^\$\{var\.grant_vm_ops_agent_roles \? \{/);
    expect(String(vm.for_each)).toContain('setproduct(var.vm_names, ["roles/logging.logWriter", "roles/monitoring.metricWriter"])');
    expect(vm.member).toBe('serviceAccount:${local.vm_sa_email[each.value.vm]}');
    for (const [name, b] of project) {
      expect(`${String(b.for_each ?? '')} ${String(b.role ?? '')}`, name).not.toMatch(/secretmanager|pubsub|run\.|cloudfunctions|owner|editor|serviceAccount(User|TokenCreator)|iam\.|storage\.admin/i);
    }
  });

  it('storage for the build: bucket-level on our source bucket, and conditioned to the gcf-v2-sources bucket', () => {
    const bucket = one(tf, 'google_storage_bucket_iam_member', 'build_source');
    expect(bucket).toMatchObject({ bucket: '${google_storage_bucket.source.name}', role: 'roles/storage.objectAdmin', member: '${local.build_member}' });
    const gcf = one(tf, 'google_project_iam_member', 'build_gcf_sources');
    expect(gcf.role).toBe('roles/storage.objectAdmin');
    const expr = String(sub(gcf, 'condition').expression);
    expect(expr).toBe('resource.name == "projects/_/buckets/${local.gcf_sources_bucket}" || resource.name.startsWith("projects/_/buckets/${local.gcf_sources_bucket}/")');
    expect(tf.locals.gcf_sources_bucket).toBe('gcf-v2-sources-${data.google_project.this.number}-${var.region}');
    // No unconditioned storage role on the project: no other bucket is readable by the build.
    const storage = bindings.filter(([type, , b]) => type === 'google_project_iam_member' && /storage/.test(`${String(b.role)} ${String(b.for_each)}`));
    for (const [, name, b] of storage) expect(b.condition, name).toBeTruthy();
    // The guidance followed is named next to the grants.
    expect(readFileSync(join(TF_DIR, 'iam.tf'), 'utf8')).toContain('cloud.google.com/run/docs/configuring/services/build-service-account');
  });

  it('binds everything that touches tokens on one resource: the secret, the topic, each VM its subscription', () => {
    const byType = (t: string) => bindings.filter(([type]) => type === t).map(([, , b]) => b);
    for (const b of byType('google_secret_manager_secret_iam_member')) expect(b.secret_id).toMatch(/^\$\{google_secret_manager_secret\.\w+(\[0\])?\.secret_id\}$/);
    const topicRoles = byType('google_pubsub_topic_iam_member');
    for (const b of topicRoles) expect(b.topic).toBe('${google_pubsub_topic.token_rotated.name}');
    expect([...new Set(topicRoles.map((b) => b.role))].sort()).toEqual(['roles/pubsub.publisher', 'roles/pubsub.viewer']);
    const subs = byType('google_pubsub_subscription_iam_member');
    for (const b of subs) expect(b).toMatchObject({ subscription: '${google_pubsub_subscription.vm[each.key].name}', member: 'serviceAccount:${each.value}' });
    // Consume, and (for doctor) read the subscription's configuration; nothing else, nowhere else.
    expect(subs.map((b) => b.role).sort()).toEqual(['roles/pubsub.subscriber', 'roles/pubsub.viewer']);
    expect(one(tf, 'google_pubsub_topic_iam_member', 'vm_viewer')).toMatchObject({ for_each: '${local.vm_sa_email}', member: 'serviceAccount:${each.value}' });
    const token = one(tf, 'google_secret_manager_secret_iam_member', 'token');
    expect(token).toMatchObject({ role: '${google_project_iam_custom_role.token_secret.name}', secret_id: '${google_secret_manager_secret.token.secret_id}' });
    expect(one(tf, 'google_secret_manager_secret_iam_member', 'app_secret_function')).toMatchObject({ role: 'roles/secretmanager.secretAccessor', member: 'serviceAccount:${google_service_account.function.email}' });
  });

  it('lets only the scheduler account invoke the function', () => {
    const invokers = allResources(tf).filter(([, , b]) => /invoker/.test(String(b.role)));
    expect(invokers).toHaveLength(1);
    const [type, , b] = invokers[0]!;
    expect(type).toBe('google_cloud_run_v2_service_iam_member');
    expect(b).toMatchObject({ role: 'roles/run.invoker', name: '${google_cloudfunctions2_function.refresh.service_config[0].service}', member: 'serviceAccount:${google_service_account.scheduler.email}' });
  });

  it('maps every Secret Manager RPC of the client library (so a new call cannot go unmapped)', () => {
    const proto = readFileSync(join(ROOT, 'node_modules/@google-cloud/secret-manager/build/protos/google/cloud/secretmanager/v1/service.proto'), 'utf8');
    const rpcs = [...proto.matchAll(/^\s*rpc\s+(\w+)\s*\(/gm)].map((m) => m[1]![0]!.toLowerCase() + m[1]!.slice(1));
    expect(rpcs).toContain('accessSecretVersion');
    for (const rpc of rpcs) expect(Object.keys(SM_PERMISSION), `no permission mapping for ${rpc}`).toContain(rpc);
  });

  const storeWritten = existsSync(join(ROOT, 'core', 'gcp', 'secret-store.ts'));
  it.skipIf(!storeWritten)(storeWritten ? "the custom role holds exactly the permissions of the code's Secret Manager calls" : 'custom role vs code (SKIPPED: core/gcp/secret-store.ts not written yet)', () => {
    const calls = secretManagerCalls();
    expect([...calls.keys()]).toContain('accessSecretVersion');
    const needed = new Set<string>();
    for (const [method, files] of calls) {
      const perm = SM_PERMISSION[method];
      if (perm === '') continue; // callable without any permission
      expect(perm, `${method} (in ${files.join(', ')}) cannot be granted on the secret alone`).toBeTruthy();
      needed.add(perm!);
    }
    const granted = one(tf, 'google_project_iam_custom_role', 'token_secret').permissions as string[];
    expect(new Set(granted).size).toBe(granted.length);
    expect([...granted].sort()).toEqual([...needed].sort());
  });
});
