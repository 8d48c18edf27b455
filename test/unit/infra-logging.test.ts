/**
 * Logs reach Cloud Logging with their severity, and the log-based metrics match them from both sides.
 * Real log lines (core/log.ts) are put through (a) Cloud Run's structured-logging rule for the
 * function and (b) the processors of infra/ops-agent/config.yaml as the Ops Agent applies them to a
 * journald record for the VM; the resulting entries are matched against the filters Terraform
 * really computes (modules/settings evaluated by terraform, offline) with a small evaluator of the
 * Logging query subset those filters use.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '@cdktf/hcl2json';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/log.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TF_DIR = join(ROOT, 'infra', 'terraform');
const SETTINGS = join(TF_DIR, 'modules', 'settings');
const OPS_AGENT = join(ROOT, 'infra', 'ops-agent', 'config.yaml');
const TERRAFORM = '/usr/local/bin/terraform';
const yaml = createRequire(import.meta.url)('js-yaml') as { load(text: string): unknown };

type Entry = { severity?: string; resource: { type: string; labels: Record<string, string> }; jsonPayload: Record<string, unknown> };
interface Chain { function: string; unit: string; alert: string; refreshed: string }

// --- a Logging query evaluator for the subset the filters use: = AND OR NOT ( ) ------------------
function matches(filter: string, entry: Entry): boolean {
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

// --- how each side's line becomes a LogEntry --------------------------------------------------------
/** Cloud Run (the function's stdout): `severity` is a special field, moved into the entry. */
function viaCloudRun(line: string, service: string): Entry {
  const { severity, ...rest } = JSON.parse(line) as Record<string, unknown>;
  return { severity: severity as string, resource: { type: 'cloud_run_revision', labels: { service_name: service } }, jsonPayload: rest };
}

const PRIORITY: Record<string, string> = { '7': 'DEBUG', '6': 'INFO', '5': 'NOTICE', '4': 'WARNING', '3': 'ERROR', '2': 'CRITICAL', '1': 'ALERT', '0': 'EMERGENCY' };
interface OpsConfig { logging: { receivers: Record<string, { type: string }>; processors: Record<string, Record<string, unknown>>; service: { pipelines: Record<string, { receivers: string[]; processors: string[] }> } } }

/** The Ops Agent: journald receiver (severity from PRIORITY), then the pipeline's processors in order. */
function viaOpsAgent(config: OpsConfig, record: Record<string, string>): Entry | undefined {
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
  return entry;
}

const journald = (line: string, unit: string, identifier = 'token-keeper') => ({ MESSAGE: line, _SYSTEMD_UNIT: unit, SYSLOG_IDENTIFIER: identifier, PRIORITY: '6', _HOSTNAME: 'calypso-bot' });

function logLine(severity: 'alert' | 'error' | 'info', event: string, fields: Record<string, unknown> = {}): string {
  const lines: string[] = [];
  createLogger({ write: (l) => lines.push(l) })[severity](event, `${event} happened`, fields);
  return lines[0]!;
}

/** Every event name the code logs with logger.alert(...). */
function alertEventsInCode(): string[] {
  const events = new Set<string>();
  for (const d of ['core', 'agent', 'functions']) {
    for (const e of readdirSync(join(ROOT, d), { withFileTypes: true, recursive: true })) {
      if (!e.isFile() || !e.name.endsWith('.ts')) continue;
      for (const m of readFileSync(join(e.parentPath, e.name), 'utf8').matchAll(/\.alert\(\s*'([a-z_]+)'/g)) events.add(m[1]!);
    }
  }
  return [...events].sort();
}

const hasTerraform = existsSync(TERRAFORM);
describe.skipIf(!hasTerraform)(hasTerraform ? 'logs: function and VM agent against the log-based metrics' : `logs vs metrics (SKIPPED: ${TERRAFORM} not installed)`, () => {
  let dir: string;
  let chains: Record<'sim' | 'live', Chain>;
  let alertEvents: string[];
  let ops: OpsConfig;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tk-tf-logging-'));
    const vars = ((await parse('v.tf', readFileSync(join(TF_DIR, 'variables.tf'), 'utf8'))) as { variable: Record<string, Array<Record<string, unknown>>> }).variable;
    const settingsVars = ((await parse('m.tf', readFileSync(join(SETTINGS, 'main.tf'), 'utf8'))) as { variable: Record<string, unknown> }).variable;
    const defaults = Object.fromEntries(Object.keys(settingsVars).filter((k) => vars[k]?.[0] && 'default' in vars[k][0]).map((k) => [k, vars[k]![0]!.default]));
    const chain = (p: string) => ({ source: SETTINGS, ...defaults, project_id: 'my-project-123', name_prefix: `tk-${p}`, agent_systemd_unit: `token-keeper@${p}.service` });
    writeFileSync(join(dir, 'main.tf.json'), JSON.stringify({
      module: { sim: chain('sim'), live: chain('live') },
      output: { sim: { value: '${module.sim}' }, live: { value: '${module.live}' } },
    }));
    const env = { ...process.env, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1', TF_CLI_CONFIG_FILE: '/dev/null' };
    for (const args of [['init', '-input=false', '-no-color'], ['apply', '-auto-approve', '-input=false', '-no-color']]) {
      const r = spawnSync(TERRAFORM, args, { cwd: dir, env, encoding: 'utf8', timeout: 30_000 });
      expect(r.status, r.stderr).toBe(0);
    }
    const out = JSON.parse(spawnSync(TERRAFORM, ['output', '-json'], { cwd: dir, env, encoding: 'utf8' }).stdout) as Record<string, { value: { names: { function: string }; log_filters: { alert: string; refreshed: string }; alert_events: string[] } }>;
    const pick = (p: 'sim' | 'live') => ({ function: out[p]!.value.names.function, unit: `token-keeper@${p}.service`, ...out[p]!.value.log_filters });
    chains = { sim: pick('sim'), live: pick('live') };
    alertEvents = out.sim!.value.alert_events;
    ops = yaml.load(readFileSync(OPS_AGENT, 'utf8')) as OpsConfig;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('counts exactly the events the code logs at ALERT', () => {
    expect(alertEventsInCode()).toEqual(['refresh_alert', 'refresh_token_expiring', 'refresh_token_missing', 'secret_write_lost']);
    expect([...alertEvents].sort()).toEqual(alertEventsInCode());
    // The filters read the entry's severity: after either path jsonPayload.severity no longer exists.
    for (const c of Object.values(chains)) for (const f of [c.alert, c.refreshed]) expect(f).not.toContain('jsonPayload.severity');
  });

  it('an ALERT line reaches the alert metric of its own chain from the function and from the VM, and no other', () => {
    for (const event of alertEvents) {
      const line = logLine('alert', event, { consecutiveFailures: 5 });
      const fromFunction = viaCloudRun(line, chains.sim.function);
      const fromVm = viaOpsAgent(ops, journald(line, chains.sim.unit))!;
      for (const entry of [fromFunction, fromVm]) {
        expect(entry.severity, event).toBe('ALERT');
        expect(entry.jsonPayload.event).toBe(event);
        expect(matches(chains.sim.alert, entry), `${event} via ${entry.resource.type}`).toBe(true);
        expect(matches(chains.live.alert, entry), `${event} must not alert the other chain`).toBe(false);
        expect(matches(chains.sim.refreshed, entry)).toBe(false);
      }
    }
    // The same event below ALERT (or from another chain's unit) is not counted.
    expect(matches(chains.sim.alert, viaOpsAgent(ops, journald(logLine('error', 'refresh_alert'), chains.sim.unit))!)).toBe(false);
    expect(matches(chains.sim.alert, viaOpsAgent(ops, journald(logLine('alert', 'refresh_alert'), 'token-keeper@live.service'))!)).toBe(false);
  });

  it('token_refreshed from either side feeds the refresh metric of its chain', () => {
    const line = logLine('info', 'token_refreshed', { by: 'agent:calypso-bot:42', version: 'projects/p/secrets/s/versions/7' });
    const fromVm = viaOpsAgent(ops, journald(line, chains.live.unit))!;
    expect(fromVm.severity).toBe('INFO');
    expect(fromVm.jsonPayload).toMatchObject({ event: 'token_refreshed', by: 'agent:calypso-bot:42', _SYSTEMD_UNIT: 'token-keeper@live.service' });
    expect(matches(chains.live.refreshed, fromVm)).toBe(true);
    expect(matches(chains.sim.refreshed, fromVm)).toBe(false);
    expect(matches(chains.live.refreshed, viaCloudRun(line, chains.live.function))).toBe(true);
    expect(matches(chains.live.refreshed, viaCloudRun(line, chains.sim.function))).toBe(false);
  });

  it('the Ops Agent keeps only token-keeper lines, maps their severity, and marks a non-JSON line ERROR', () => {
    expect(viaOpsAgent(ops, journald(logLine('alert', 'refresh_alert'), 'sshd.service', 'sshd'))).toBeUndefined();
    expect(viaOpsAgent(ops, { MESSAGE: 'kernel line', PRIORITY: '6' })).toBeUndefined();
    const info = viaOpsAgent(ops, journald(logLine('info', 'agent_ready'), 'token-keeper.service'))!;
    expect(info.severity).toBe('INFO');
    expect(info.jsonPayload.MESSAGE).toBeUndefined();
    const crash = viaOpsAgent(ops, journald('TypeError: x is not a function', 'token-keeper.service'))!;
    expect(crash.severity).toBe('ERROR');
    // Both units write under the identifier the exclusion keeps.
    for (const unit of ['token-keeper.service', 'token-keeper@.service']) {
      expect(readFileSync(join(ROOT, 'infra', 'systemd', unit), 'utf8')).toMatch(/^SyslogIdentifier=token-keeper$/m);
    }
  });
});
