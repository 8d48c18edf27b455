/**
 * Offline checks of infra/terraform, parsed with @cdktf/hcl2json (no providers needed): the resources
 * and their wiring to modules/settings (whose values test/unit/infra-settings.test.ts evaluates with
 * real terraform), the APIs, every project-unique name derived from name_prefix, the first-deploy
 * order, the two-chains example root module and terraform.tfvars.example.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from '@cdktf/hcl2json';
import { beforeAll, describe, expect, it } from 'vitest';
import { allResources, loadTerraform, one, ROOT, sub, TF_DIR, type Block, type Tf } from '../helpers/terraform.js';

const TERRAFORM = '/usr/local/bin/terraform';


/** Attributes that carry a project-unique (or global) name, per resource type. */
const NAME_ATTRS: Record<string, string> = {
  google_service_account: 'account_id',
  google_project_iam_custom_role: 'role_id',
  google_secret_manager_secret: 'secret_id',
  google_pubsub_topic: 'name',
  google_pubsub_subscription: 'name',
  google_cloudfunctions2_function: 'name',
  google_cloud_scheduler_job: 'name',
  google_storage_bucket: 'name',
  google_logging_metric: 'name',
  google_monitoring_alert_policy: 'display_name',
};

describe('infra/terraform', () => {
  let tf: Tf;
  beforeAll(async () => {
    tf = await loadTerraform(TF_DIR);
  });

  const hasTerraform = existsSync(TERRAFORM);
  it.skipIf(!hasTerraform)(hasTerraform ? 'terraform fmt -check is clean (module, settings, example)' : `terraform fmt (SKIPPED: ${TERRAFORM} not installed)`, () => {
    const r = spawnSync(TERRAFORM, ['fmt', '-check', '-diff', '-recursive', TF_DIR], { encoding: 'utf8', env: { ...process.env, CHECKPOINT_DISABLE: '1', TF_CLI_CONFIG_FILE: '/dev/null' } });
    expect(r.stdout).toBe('');
    expect(r.status).toBe(0);
  });

  it('creates the secret, topic, one subscription per VM, the gen2 function and the scheduler', () => {
    const secret = one(tf, 'google_secret_manager_secret', 'token');
    // The lease lives in the annotations: an apply must not reset it.
    expect(sub(secret, 'lifecycle').ignore_changes).toEqual(['${annotations}']);
    // Deleting it deletes every token version (the chain): a plan that would replace it must fail.
    expect(sub(secret, 'lifecycle').prevent_destroy).toBe(true);
    const subscription = one(tf, 'google_pubsub_subscription', 'vm');
    expect(subscription.for_each).toBe('${toset(var.vm_names)}');
    expect(subscription.topic).toBe('${google_pubsub_topic.token_rotated.id}');
    const fn = one(tf, 'google_cloudfunctions2_function', 'refresh');
    const build = sub(fn, 'build_config');
    expect(build.runtime).toBe('nodejs24');
    expect(build.entry_point).toBe('refreshToken');
    expect(build.service_account).toBe('${google_service_account.build.id}');
    const archive = tf.data.archive_file?.function?.[0];
    expect(archive?.source_dir).toContain('${var.function_source_dir}');
    // One zip per instance: two chains in one configuration never write the same file.
    expect(archive?.output_path).toContain('${local.names.function_source_zip}');
    expect(tf.variable.function_source_dir?.[0]?.default).toBe('../../build/function');
    expect(sub(fn, 'service_config').service_account_email).toBe('${google_service_account.function.email}');
  });

  it('enables every API it uses, Cloud Resource Manager included, and names the one it cannot', () => {
    const apis = readFileSync(join(TF_DIR, 'apis.tf'), 'utf8');
    const listed = [...apis.matchAll(/"([a-z]+)\.googleapis\.com"/g)].map((m) => m[1]);
    for (const api of ['cloudresourcemanager', 'secretmanager', 'pubsub', 'cloudfunctions', 'run', 'cloudbuild', 'artifactregistry', 'cloudscheduler', 'iam', 'logging', 'monitoring', 'storage']) {
      expect(listed, api).toContain(api);
    }
    // Service Usage enables the others; it must already be on, and the guide says how.
    expect(listed).not.toContain('serviceusage');
    expect(apis).toContain('gcloud services enable serviceusage.googleapis.com');
    expect(readFileSync(join(ROOT, 'docs', 'OPERATIONS.md'), 'utf8')).toMatch(/gcloud services enable serviceusage\.googleapis\.com --project=/);
  });

  it('takes the schedule, the function environment and every name from modules/settings', () => {
    const settingsVars = readFileSync(join(TF_DIR, 'modules', 'settings', 'main.tf'), 'utf8');
    const declared = [...settingsVars.matchAll(/^variable "(\w+)"/gm)].map((m) => m[1]!).sort();
    const call = tf.module.settings?.[0] ?? {};
    expect(call.source).toBe('./modules/settings');
    const passed = Object.keys(call).filter((k) => k !== 'source').sort();
    expect(passed).toEqual(declared);
    for (const k of passed) expect(call[k], k).toBe(`\${var.${k}}`);
    expect(one(tf, 'google_cloud_scheduler_job', 'refresh').schedule).toBe('${module.settings.schedule.cron}');
    expect(sub(one(tf, 'google_cloudfunctions2_function', 'refresh'), 'service_config').environment_variables).toBe('${module.settings.function_env}');
    expect(tf.output.agent_env?.[0]?.value).toBe('${module.settings.agent_env}');
    // No project-unique name is written here by hand: a second instance could collide on it.
    for (const [type, name, body] of allResources(tf)) {
      const attr = NAME_ATTRS[type];
      if (attr) expect(String(body[attr]), `${type}.${name}.${attr}`).toContain('${local.names.');
    }
    expect(one(tf, 'google_project_iam_custom_role', 'token_secret').role_id).toBe('${local.names.custom_role_id}');
  });

  it('counts log events with the filters of modules/settings, and creates the policies once the metrics are visible', () => {
    expect(one(tf, 'google_logging_metric', 'refresh_alert').filter).toBe('${module.settings.log_filters.alert}');
    expect(one(tf, 'google_logging_metric', 'token_refreshed').filter).toBe('${module.settings.log_filters.refreshed}');
    const wait = one(tf, 'time_sleep', 'metrics_visible');
    expect(wait.depends_on).toEqual(['${google_logging_metric.refresh_alert}', '${google_logging_metric.token_refreshed}', '${google_logging_metric.agent_checkin}', '${google_logging_metric.agent_started}']);
    // Metric policies wait for their metrics; log-match policies need none (test/unit/infra-alerts.test.ts).
    for (const p of ['agent_not_checking_in', 'refresh_absent']) {
      const policy = one(tf, 'google_monitoring_alert_policy', p);
      expect(policy.depends_on).toEqual(['${time_sleep.metrics_visible}']);
      expect(policy.notification_channels).toBe('${local.notification_channels}');
    }
  });

  it('makes the documented first deployment possible: secrets first, the function after its grants', () => {
    // The app secret exists only on request, and the function reads it at start-up...
    expect(one(tf, 'google_secret_manager_secret', 'app_secret').count).toBe('${var.use_app_secret ? 1 : 0}');
    const fn = one(tf, 'google_cloudfunctions2_function', 'refresh');
    const dyn = (sub(fn, 'service_config').dynamic as Record<string, Block[]>).secret_environment_variables?.[0] ?? {};
    expect(sub(dyn, 'content')).toMatchObject({ key: 'SAXO_APP_SECRET', secret: '${google_secret_manager_secret.app_secret[0].secret_id}', version: 'latest' });
    // ...after IAM has propagated to it and to the build account.
    expect(fn.depends_on).toEqual(['${time_sleep.iam_propagation}']);
    const waits = one(tf, 'time_sleep', 'iam_propagation').depends_on as string[];
    for (const r of ['google_secret_manager_secret_iam_member.app_secret_function', 'google_project_iam_member.build', 'google_storage_bucket_iam_member.build_source', 'google_project_iam_member.build_gcf_sources']) {
      expect(waits).toContain(`\${${r}}`);
    }
    // Every -target in the guide names a resource of the module (or of a chain in the example).
    const guide = readFileSync(join(ROOT, 'docs', 'OPERATIONS.md'), 'utf8');
    const targets = [...guide.matchAll(/-target=(?:'|")?([\w.[\]"]+?)(?:'|")?(?=\s|$)/gm)].map((m) => m[1]!);
    expect(targets.length).toBeGreaterThanOrEqual(3);
    for (const t of targets) {
      const [type, name] = t.replace(/^module\.(sim|live)\./, '').replace(/\[.*\]$/, '').split('.');
      expect(tf.resource[type!]?.[name!], t).toBeTruthy();
    }
  });

  it('the two-chains example instantiates the module twice without sharing a name or a VM account role', async () => {
    const ex = await loadTerraform(join(TF_DIR, 'examples', 'two-chains'));
    const sim = ex.module.sim?.[0] ?? {};
    const live = ex.module.live?.[0] ?? {};
    expect([sim.source, live.source]).toEqual(['../..', '../..']);
    expect(sim.name_prefix).not.toBe(live.name_prefix);
    expect([sim.agent_systemd_unit, live.agent_systemd_unit]).toEqual(['token-keeper@sim.service', 'token-keeper@live.service']);
    expect([sim.saxo_environment, live.saxo_environment]).toEqual(['SIM', 'LIVE']);
    // One VM, one service account: the live chain binds on the one sim created, and leaves the
    // project-level Ops Agent roles to sim (two owners of one project member would revoke it).
    expect(JSON.stringify(live.existing_vm_service_accounts)).toContain('module.sim.vm_service_accounts');
    expect(sim.grant_vm_ops_agent_roles).toBeUndefined();
    expect(tf.variable.grant_vm_ops_agent_roles?.[0]?.default).toBe(true);
    expect(live.grant_vm_ops_agent_roles).toBe(false);
    // The module has no provider block, so it can be instantiated (and removed) like any module.
    for (const f of readdirSync(TF_DIR).filter((n) => n.endsWith('.tf'))) expect(readFileSync(join(TF_DIR, f), 'utf8'), f).not.toMatch(/^provider\s+"/m);
  });

  it('terraform.tfvars.example only sets variables the module has', async () => {
    const example = (await parse('terraform.tfvars', readFileSync(join(TF_DIR, 'terraform.tfvars.example'), 'utf8'))) as Record<string, unknown>;
    expect(Object.keys(example)).toEqual(expect.arrayContaining(['project_id', 'name_prefix', 'vm_names', 'schedule_every_minutes']));
    for (const k of Object.keys(example)) expect(Object.keys(tf.variable), k).toContain(k);
    const commented = [...readFileSync(join(TF_DIR, 'terraform.tfvars.example'), 'utf8').matchAll(/^# ?(\w+)\s+=/gm)].map((m) => m[1]!);
    for (const k of commented) expect(Object.keys(tf.variable), k).toContain(k);
    expect(readFileSync(join(TF_DIR, '.gitignore'), 'utf8').split('\n')).toEqual(expect.arrayContaining(['*.tfvars', '*.tfstate']));
  });
});
