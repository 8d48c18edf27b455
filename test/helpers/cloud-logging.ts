/**
 * How a log line becomes a Cloud Logging entry, and whether a Logging query matches it — for the
 * infra-logging and infra-alerts tests. Real log lines (core/log.ts) go through (a) Cloud Run's
 * structured-logging rule for the function and (b) the processors of infra/ops-agent/config.yaml
 * as the Ops Agent applies them to a journald record for the VM, including the special keys each
 * path moves out of the payload (labels, trace, span, httpRequest). The filters are the ones
 * Terraform really computes (modules/settings evaluated by terraform, offline).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from '@cdktf/hcl2json';
import { expect } from 'vitest';
import { ROOT, TF_DIR } from './terraform.js';

export const SETTINGS = join(TF_DIR, 'modules', 'settings');
export const OPS_AGENT = join(ROOT, 'infra', 'ops-agent', 'config.yaml');
export const TERRAFORM = '/usr/local/bin/terraform';
const yaml = createRequire(import.meta.url)('js-yaml') as { load(text: string): unknown };

export type Entry = {
  severity?: string;
  resource: { type: string; labels: Record<string, string> };
  jsonPayload: Record<string, unknown>;
  labels?: Record<string, string>;
  trace?: string;
  spanId?: string;
  httpRequest?: Record<string, unknown>;
};

// --- a Logging query evaluator for the subset the filters use: = AND OR NOT ( ) ------------------
export function matches(filter: string, entry: Entry): boolean {
  const tokens = [...filter.matchAll(/\s*(\(|\)|AND\b|OR\b|NOT\b|"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*|=)/gy)].map((m) => m[1]!);
  expect(tokens.join(''), `unparsed input in ${filter}`).toBe(filter.replace(/\s+/g, ''));
  let i = 0;
  const value = (path: string): unknown => path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), entry);
  const unary = (): boolean => {
    const t = tokens[i++];
    if (t === 'NOT') return !unary();
    if (t === '(') {
      const v = conj();
      expect(tokens[i++]).toBe(')');
      return v;
    }
    expect(tokens[i++], `comparison after ${t}`).toBe('=');
    const rhs = tokens[i++]!;
    return value(t!) === (rhs.startsWith('"') ? (JSON.parse(rhs) as string) : rhs);
  };
  // Logging query language: OR binds tighter than AND.
  const disj = (): boolean => {
    let v = unary();
    while (tokens[i] === 'OR') {
      i++;
      v = unary() || v;
    }
    return v;
  };
  const conj = (): boolean => {
    let v = disj();
    while (tokens[i] === 'AND') {
      i++;
      v = disj() && v;
    }
    return v;
  };
  const result = conj();
  expect(i).toBe(tokens.length);
  return result;
}

/** A label extractor (EXTRACT / REGEXP_EXTRACT of a jsonPayload field) applied to an entry. */
export function extract(extractor: string, entry: Entry): string | undefined {
  const m = /^(EXTRACT|REGEXP_EXTRACT)\(jsonPayload\.(\w+)(?:,\s*"((?:[^"\\]|\\.)*)")?\)$/.exec(extractor);
  expect(m, `extractor ${extractor} is not simulated`).not.toBeNull();
  const v = entry.jsonPayload[m![2]!];
  if (typeof v !== 'string') return undefined;
  if (m![1] === 'EXTRACT') return v;
  const re = new RegExp(JSON.parse(`"${m![3]!}"`) as string);
  return re.exec(v)?.[1];
}

/** The special keys both paths move from the payload into the LogEntry. */
function special(entry: Entry, httpKey: string): Entry {
  const p = entry.jsonPayload;
  const take = (k: string) => {
    const v = p[k];
    delete p[k];
    return v;
  };
  const labels = take('logging.googleapis.com/labels') as Record<string, string> | undefined;
  const trace = take('logging.googleapis.com/trace') as string | undefined;
  const spanId = take('logging.googleapis.com/spanId') as string | undefined;
  const httpRequest = take(httpKey) as Record<string, unknown> | undefined;
  return { ...entry, ...(labels ? { labels } : {}), ...(trace ? { trace } : {}), ...(spanId ? { spanId } : {}), ...(httpRequest ? { httpRequest } : {}) };
}

/** Cloud Run (the function's stdout): `severity` and the special keys move into the entry; `httpRequest` is its key. */
export function viaCloudRun(line: string, service: string): Entry {
  const { severity, ...rest } = JSON.parse(line) as Record<string, unknown>;
  return special({ severity: severity as string, resource: { type: 'cloud_run_revision', labels: { service_name: service } }, jsonPayload: rest }, 'httpRequest');
}

const PRIORITY: Record<string, string> = { '7': 'DEBUG', '6': 'INFO', '5': 'NOTICE', '4': 'WARNING', '3': 'ERROR', '2': 'CRITICAL', '1': 'ALERT', '0': 'EMERGENCY' };
export interface OpsConfig { logging: { receivers: Record<string, { type: string }>; processors: Record<string, Record<string, unknown>>; service: { pipelines: Record<string, { receivers: string[]; processors: string[] }> } } }

export const loadOpsAgent = (): OpsConfig => yaml.load(readFileSync(OPS_AGENT, 'utf8')) as OpsConfig;

/**
 * The Ops Agent: journald receiver (severity from PRIORITY), the pipeline's processors in order,
 * then its output's special keys (the Ops Agent sets http_request_key to logging.googleapis.com/httpRequest).
 */
export function viaOpsAgent(config: OpsConfig, record: Record<string, string>): Entry | undefined {
  const pipelines = Object.values(config.logging.service.pipelines);
  expect(pipelines).toHaveLength(1);
  const pipeline = pipelines[0]!;
  expect(pipeline.receivers.map((r) => config.logging.receivers[r]!.type)).toEqual(['systemd_journald']);
  const entry: Entry = { severity: PRIORITY[record.PRIORITY ?? '6'], resource: { type: 'gce_instance', labels: {} }, jsonPayload: { ...record } };
  for (const name of pipeline.processors) {
    const p = config.logging.processors[name]!;
    if (p.type === 'exclude_logs') {
      if ((p.match_any as string[]).some((f) => matches(f, entry))) return undefined;
    } else if (p.type === 'parse_json') {
      const field = String(p.field ?? 'message');
      let parsed: unknown;
      try {
        parsed = JSON.parse(String(entry.jsonPayload[field]));
      } catch {
        continue; // left as it was, as fluent-bit's parser filter does
      }
      delete entry.jsonPayload[field];
      Object.assign(entry.jsonPayload, parsed);
    } else if (p.type === 'modify_fields') {
      for (const [dest, spec] of Object.entries(p.fields as Record<string, Record<string, string>>)) {
        const src = (spec.move_from ?? spec.copy_from)!;
        expect(src, `${dest}: only jsonPayload sources are simulated`).toMatch(/^jsonPayload\.\w+$/);
        const key = src.slice('jsonPayload.'.length);
        let v = entry.jsonPayload[key] as string | undefined;
        if (spec.move_from) delete entry.jsonPayload[key];
        v ??= spec.default_value;
        expect(dest, 'only the severity destination is simulated').toBe('severity');
        entry.severity = v;
      }
    } else {
      throw new Error(`processor type ${String(p.type)} is not simulated here: extend viaOpsAgent`);
    }
  }
  return special(entry, 'logging.googleapis.com/httpRequest');
}

export const journald = (line: string, unit: string, identifier = 'token-keeper') => ({ MESSAGE: line, _SYSTEMD_UNIT: unit, SYSLOG_IDENTIFIER: identifier, PRIORITY: '6', _HOSTNAME: 'calypso-bot' });

export interface SettingsOut {
  names: Record<string, string> & { function: string };
  log_filters: Record<'alert' | 'refreshed' | 'login' | 'relogin' | 'deadline' | 'checkin' | 'started', string>;
  alert_events: string[];
  own_alert_events: { login: string[]; relogin: string[]; deadline: string[] };
}

/** modules/settings evaluated by the real terraform, offline, for two chains (sim, live) on units token-keeper@<chain>. */
export async function evaluateSettings(): Promise<{ dir: string; out: Record<'sim' | 'live', SettingsOut> }> {
  const dir = mkdtempSync(join(tmpdir(), 'tk-tf-logging-'));
  const vars = ((await parse('v.tf', readFileSync(join(TF_DIR, 'variables.tf'), 'utf8'))) as { variable: Record<string, Array<Record<string, unknown>>> }).variable;
  const settingsVars = ((await parse('m.tf', readFileSync(join(SETTINGS, 'main.tf'), 'utf8'))) as { variable: Record<string, unknown> }).variable;
  const defaults = Object.fromEntries(Object.keys(settingsVars).filter((k) => vars[k]?.[0] && 'default' in vars[k][0]).map((k) => [k, vars[k]![0]!.default]));
  const chain = (p: string) => ({ source: SETTINGS, ...defaults, project_id: 'my-project-123', name_prefix: `tk-${p}`, agent_systemd_unit: `token-keeper@${p}.service`, saxo_environment: p.toUpperCase() });
  writeFileSync(join(dir, 'main.tf.json'), JSON.stringify({
    module: { sim: chain('sim'), live: chain('live') },
    output: { sim: { value: '${module.sim}' }, live: { value: '${module.live}' } },
  }));
  const env = { ...process.env, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1', TF_CLI_CONFIG_FILE: '/dev/null' };
  for (const args of [['init', '-input=false', '-no-color'], ['apply', '-auto-approve', '-input=false', '-no-color']]) {
    const r = spawnSync(TERRAFORM, args, { cwd: dir, env, encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
  }
  const raw = JSON.parse(spawnSync(TERRAFORM, ['output', '-json'], { cwd: dir, env, encoding: 'utf8' }).stdout) as Record<'sim' | 'live', { value: SettingsOut }>;
  return { dir, out: { sim: raw.sim.value, live: raw.live.value } };
}

/** Every event name the code logs with logger.alert(...). */
export function alertEventsInCode(): string[] {
  const events = new Set<string>();
  for (const d of ['core', 'agent', 'functions']) {
    for (const e of readdirSync(join(ROOT, d), { withFileTypes: true, recursive: true })) {
      if (!e.isFile() || !e.name.endsWith('.ts')) continue;
      for (const m of readFileSync(join(e.parentPath, e.name), 'utf8').matchAll(/\.alert\(\s*'([a-z_]+)'/g)) events.add(m[1]!);
    }
  }
  return [...events].sort();
}
