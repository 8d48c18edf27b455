/**
 * infra/terraform/modules/settings evaluated by the real terraform binary (it has no provider, so it
 * runs offline): every project-unique name per name_prefix, two instances side by side, the
 * scheduler's cron vs CLOUD_SCHEDULE_SECONDS, the tier checks, the primary VM, and the environment
 * handed to the function and the agents. Defaults come from infra/terraform/variables.tf.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '@cdktf/hcl2json';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configEnvNames } from '../helpers/config-env.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TF_DIR = join(ROOT, 'infra', 'terraform');
const SETTINGS = join(TF_DIR, 'modules', 'settings');
const TERRAFORM = '/usr/local/bin/terraform';

type Json = Record<string, unknown>;
interface Settings {
  names: Json & { vm_account_ids: Record<string, string>; subscriptions: Record<string, string>; custom_role_id: string };
  schedule: { cron: string; seconds: number };
  function_env: Record<string, string>;
  agent_env: Record<string, string>;
}

let dir: string;
let defaults: Json;
const tfEnv = { ...process.env, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1', TF_CLI_CONFIG_FILE: '/dev/null' };

/** The module's inputs as the parent passes them: variables.tf defaults, then overrides. */
function inputs(overrides: Json): Json {
  return { project_id: 'my-project-123', ...defaults, ...overrides };
}

/**
 * Evaluates one settings instance per entry (a for_each over one module block, so one init serves
 * every call); throws with terraform's message when a validation or precondition fails.
 */
function evaluate(instances: Record<string, Json>): Record<string, Settings> {
  const all = Object.fromEntries(Object.entries(instances).map(([k, v]) => [k, inputs(v)]));
  writeFileSync(join(dir, 'terraform.tfvars.json'), JSON.stringify({ instances: all }));
  rmSync(join(dir, 'terraform.tfstate'), { force: true });
  const run = (args: string[]) => spawnSync(TERRAFORM, args, { cwd: dir, env: tfEnv, encoding: 'utf8', timeout: 30_000 });
  const apply = run(['apply', '-auto-approve', '-input=false', '-no-color']);
  if (apply.status !== 0) throw new Error(apply.stderr.replace(/\s+/g, ' '));
  const out = JSON.parse(run(['output', '-json']).stdout) as { s: { value: Record<string, Settings> } };
  return out.s.value;
}

const envLines = (text: string) => Object.fromEntries(text.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

/** Every string value in the names object (nested maps included). */
function allNames(s: Settings): string[] {
  return Object.values(s.names).flatMap((v) => (typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v as Json).map(String) : []));
}

const hasTerraform = existsSync(TERRAFORM);
describe.skipIf(!hasTerraform)(hasTerraform ? 'infra/terraform/modules/settings (real terraform)' : `settings module (SKIPPED: ${TERRAFORM} not installed)`, () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tk-tf-settings-'));
    const vars = ((await parse('variables.tf', readFileSync(join(TF_DIR, 'variables.tf'), 'utf8'))) as { variable: Record<string, Json[]> }).variable;
    const settingsVars = ((await parse('main.tf', readFileSync(join(SETTINGS, 'main.tf'), 'utf8'))) as { variable: Record<string, Json[]> }).variable;
    // Only what the settings module takes (the parent's other variables configure resources).
    defaults = Object.fromEntries(Object.keys(settingsVars).filter((k) => k in vars && 'default' in vars[k]![0]!).map((k) => [k, vars[k]![0]!.default]));
    // A local module and no provider: init installs nothing from the network.
    const args = Object.fromEntries(Object.keys(settingsVars).map((k) => [k, `\${each.value.${k}}`]));
    writeFileSync(join(dir, 'main.tf.json'), JSON.stringify({
      variable: { instances: { type: 'any' } },
      module: { s: { source: SETTINGS, for_each: '${var.instances}', ...args } },
      output: { s: { value: '${module.s}' } },
    }));
    const init = spawnSync(TERRAFORM, ['init', '-input=false', '-no-color'], { cwd: dir, env: tfEnv, encoding: 'utf8' });
    expect(init.status, init.stderr).toBe(0);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('derives every name from the default prefix, as the operations guide names them', () => {
    const { d } = evaluate({ d: {} });
    expect(d!.names).toMatchObject({
      function: 'token-keeper-refresh',
      scheduler_job: 'token-keeper-refresh',
      custom_role_id: 'token_keeper_secretRotator',
      token_secret_id: 'token-keeper-saxo-token',
      topic_id: 'token-keeper-rotated',
      subscriptions: { 'calypso-bot': 'token-keeper-rotated-calypso-bot' },
      vm_account_ids: { 'calypso-bot': 'token-keeper-vm-calypso-bot' },
      source_bucket: 'my-project-123-token-keeper-src',
      app_secret_id: null,
    });
    const guide = readFileSync(join(ROOT, 'docs', 'OPERATIONS.md'), 'utf8');
    for (const n of ['token-keeper-refresh', 'token-keeper-saxo-token', 'token-keeper-rotated', 'token-keeper-rotated-calypso-bot', 'token-keeper-vm-calypso-bot']) {
      expect(guide, n).toContain(n);
    }
  });

  it('two instances (sim, live) share no project-unique name; the custom role id follows the prefix', () => {
    const { sim, live } = evaluate({ sim: { name_prefix: 'tk-sim', use_app_secret: true }, live: { name_prefix: 'tk-live', use_app_secret: true } });
    expect(sim!.names.custom_role_id).toBe('tk_sim_secretRotator');
    expect(live!.names.custom_role_id).toBe('tk_live_secretRotator');
    const a = new Set(allNames(sim!));
    const shared = allNames(live!).filter((n) => a.has(n));
    expect(shared).toEqual([]);
    for (const s of [sim!, live!]) {
      expect(s.names.custom_role_id).toMatch(/^[a-zA-Z0-9_.]{3,64}$/);
      for (const id of [s.names.function_account_id, s.names.scheduler_account_id, s.names.build_account_id, ...Object.values(s.names.vm_account_ids)]) {
        expect(id).toMatch(/^[a-z][-a-z0-9]{4,28}[a-z0-9]$/);
      }
    }
  });

  it('keeps VM account ids valid and distinct for long VM names', () => {
    const vms = ['a', 'calypso-bot', 'a-very-long-virtual-machine-name-one', 'a-very-long-virtual-machine-name-two'];
    const { d } = evaluate({ d: { name_prefix: 'token-keeper-prod1', vm_names: vms } });
    const ids = Object.values(d!.names.vm_account_ids);
    expect(new Set(ids).size).toBe(vms.length);
    for (const id of ids) expect(id).toMatch(/^[a-z][-a-z0-9]{4,28}[a-z0-9]$/);
  });

  it('derives the cron and CLOUD_SCHEDULE_SECONDS from one number, for every allowed period', () => {
    const periods = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30];
    // Thresholds wide enough that every period fits the cloud's window.
    const wide = { cloud_refresh_threshold_seconds: 2400, refresh_threshold_seconds: 300 };
    const out = evaluate(Object.fromEntries(periods.map((n) => [`p${n}`, { ...wide, schedule_every_minutes: n }])));
    for (const n of periods) {
      const s = out[`p${n}`]!;
      expect(s.schedule.cron).toBe(`*/${n} * * * *`);
      expect(s.schedule.seconds).toBe(n * 60);
      expect(s.function_env.CLOUD_SCHEDULE_SECONDS).toBe(String(n * 60));
      // The VM's doctor judges the cloud path's silence against the same period.
      for (const text of Object.values(s.agent_env)) expect(envLines(text).CLOUD_SCHEDULE_SECONDS).toBe(String(n * 60));
    }
    expect(() => evaluate({ d: { schedule_every_minutes: 7 } })).toThrow(/must divide 60/);
    // Every 10 min with the default 600/300 window could skip the window entirely.
    expect(() => evaluate({ d: { schedule_every_minutes: 10 } })).toThrow(/tick can miss the cloud's window/);
  });

  it('passes the tiers to the function and the agents alike, and refuses them out of order', () => {
    const { d } = evaluate({ d: { cloud_refresh_threshold_seconds: 900, refresh_threshold_seconds: 400, bot_refresh_threshold_seconds: 150 } });
    const agent = envLines(d!.agent_env['calypso-bot']!);
    for (const k of ['CLOUD_REFRESH_THRESHOLD_SECONDS', 'REFRESH_THRESHOLD_SECONDS', 'BOT_REFRESH_THRESHOLD_SECONDS']) {
      expect(agent[k], k).toBeDefined();
      expect(agent[k], k).toBe(d!.function_env[k]);
    }
    expect(agent.REFRESH_THRESHOLD_SECONDS).toBe('400');
    for (const bad of [
      { cloud_refresh_threshold_seconds: 300, refresh_threshold_seconds: 300 },
      { refresh_threshold_seconds: 120, bot_refresh_threshold_seconds: 120 },
      { cloud_refresh_threshold_seconds: 200, refresh_threshold_seconds: 300, bot_refresh_threshold_seconds: 100 },
    ]) {
      expect(() => evaluate({ d: bad }), JSON.stringify(bad)).toThrow(/cloud > agent > bots/);
    }
  });

  it('marks the first VM of vm_names primary and every other VM not', () => {
    const { d } = evaluate({ d: { vm_names: ['vm-b', 'vm-a', 'vm-c'] } });
    const primary = Object.fromEntries(Object.entries(d!.agent_env).map(([vm, text]) => [vm, envLines(text).TOKEN_KEEPER_PRIMARY]));
    expect(primary).toEqual({ 'vm-b': 'true', 'vm-a': 'false', 'vm-c': 'false' });
    expect(envLines(d!.agent_env['vm-a']!).TOKEN_SUBSCRIPTION_ID).toBe('token-keeper-rotated-vm-a');
  });

  it('hands the function and the agents only variables the code reads, and no secret', () => {
    const { d } = evaluate({ d: { saxo_app_key: 'app-key-not-secret', use_app_secret: true } });
    const known = configEnvNames();
    expect(known).toContain('TOKEN_SECRET_ID');
    const keys = [...Object.keys(d!.function_env), ...Object.values(d!.agent_env).flatMap((t) => Object.keys(envLines(t)))];
    // Read by the Functions Framework itself, not by core/config.ts.
    const framework = new Set(['LOG_EXECUTION_ID']);
    expect(d!.function_env.LOG_EXECUTION_ID).toBe('true');
    for (const k of keys) expect(known.has(k) || framework.has(k), `${k} is not read by core/config.ts`).toBe(true);
    expect(keys).not.toContain('SAXO_APP_SECRET');
    expect(Object.keys(d!.function_env)).toEqual(expect.arrayContaining(['GOOGLE_CLOUD_PROJECT', 'TOKEN_SECRET_ID', 'TOKEN_TOPIC_ID', 'CLOUD_SCHEDULE_SECONDS', 'SAXO_APP_KEY']));
    for (const k of ['GOOGLE_CLOUD_PROJECT', 'TOKEN_SECRET_ID', 'TOKEN_TOPIC_ID', 'TOKEN_SUBSCRIPTION_ID', 'TOKEN_KEEPER_PRIMARY']) {
      expect(Object.keys(envLines(d!.agent_env['calypso-bot']!))).toContain(k);
    }
  });

  it('rejects names GCP would refuse at apply time', () => {
    for (const [k, v] of [
      ['name_prefix', 'Token'],
      ['name_prefix', 'ab'],
      ['name_prefix', 'token-'],
      ['vm_names', ['calypso-bot', 'calypso-bot']],
      ['vm_names', ['Bad_Name']],
      ['topic_id', 'google-topic'],
      ['agent_systemd_unit', 'token-keeper'],
      ['saxo_environment', 'PROD'],
    ] as const) {
      expect(() => evaluate({ d: { [k]: v } }), `${k}=${JSON.stringify(v)}`).toThrow(/Invalid value for variable/);
    }
  });
});
