/**
 * Logs reach Cloud Logging with their severity, labels, trace and httpRequest, and the log-based
 * metrics match them from both sides. Real log lines (core/log.ts) are put through Cloud Run's
 * structured-logging rule (the function) and the Ops Agent's processors (the VM), then matched
 * against the filters Terraform really computes (test/helpers/cloud-logging.ts).
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, httpRequestRecord, traceFields, withLogContext } from '../../core/log.js';
import { alertEventsInCode, evaluateSettings, extract, journald, loadOpsAgent, matches, TERRAFORM, viaCloudRun, viaOpsAgent, type OpsConfig } from '../helpers/cloud-logging.js';
import { ROOT } from '../helpers/terraform.js';

interface Chain { function: string; unit: string; alert: string; refreshed: string }

function logLine(severity: 'alert' | 'error' | 'info', event: string, fields: Record<string, unknown> = {}, opts: Parameters<typeof createLogger>[0] = {}): string {
  const lines: string[] = [];
  createLogger({ ...opts, write: (l) => lines.push(l) })[severity](event, `${event} happened`, fields);
  return lines[0]!;
}

const hasTerraform = existsSync(TERRAFORM);
describe.skipIf(!hasTerraform)(hasTerraform ? 'logs: function and VM agent against the log-based metrics' : `logs vs metrics (SKIPPED: ${TERRAFORM} not installed)`, () => {
  let dir: string;
  let chains: Record<'sim' | 'live', Chain>;
  let ownEvents: string[];
  let ops: OpsConfig;

  beforeAll(async () => {
    const r = await evaluateSettings();
    dir = r.dir;
    const pick = (p: 'sim' | 'live') => ({ function: r.out[p].names.function, unit: `token-keeper@${p}.service`, ...r.out[p].log_filters });
    chains = { sim: pick('sim'), live: pick('live') };
    ownEvents = Object.values(r.out.sim.own_alert_events).flat();
    ops = loadOpsAgent();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the generic ALERT metric counts every ALERT the code logs except those with a policy of their own', () => {
    const generic = alertEventsInCode().filter((e) => !ownEvents.includes(e));
    expect(generic).toEqual(expect.arrayContaining(['event_subscription_broken', 'identity_mismatch', 'refresh_alert', 'refresh_token_missing', 'relogin_wrong_account', 'secret_write_lost']));
    // The filters read the entry's severity: after either path jsonPayload.severity no longer exists.
    for (const c of Object.values(chains)) for (const f of [c.alert, c.refreshed]) expect(f).not.toContain('jsonPayload.severity');
    for (const event of [...generic, 'some_future_alert']) {
      const line = logLine('alert', event, { consecutiveFailures: 5 });
      for (const entry of [viaCloudRun(line, chains.sim.function), viaOpsAgent(ops, journald(line, chains.sim.unit))!]) {
        expect(entry.severity, event).toBe('ALERT');
        expect(matches(chains.sim.alert, entry), `${event} via ${entry.resource.type}`).toBe(true);
        expect(matches(chains.live.alert, entry), `${event} must not alert the other chain`).toBe(false);
        expect(matches(chains.sim.refreshed, entry)).toBe(false);
      }
    }
    for (const event of ownEvents) expect(matches(chains.sim.alert, viaCloudRun(logLine('alert', event), chains.sim.function)), event).toBe(false);
    // The same event below ALERT (or from another chain's unit) is not counted.
    expect(matches(chains.sim.alert, viaOpsAgent(ops, journald(logLine('error', 'refresh_alert'), chains.sim.unit))!)).toBe(false);
    expect(matches(chains.sim.alert, viaOpsAgent(ops, journald(logLine('alert', 'refresh_alert'), 'token-keeper@live.service'))!)).toBe(false);
  });

  it('token_refreshed from either side feeds the refresh metric of its chain, labelled without the pid', async () => {
    const line = logLine('info', 'token_refreshed', { by: 'agent:calypso-bot:42', version: 'projects/p/secrets/s/versions/7' });
    const fromVm = viaOpsAgent(ops, journald(line, chains.live.unit))!;
    expect(fromVm.severity).toBe('INFO');
    expect(fromVm.jsonPayload).toMatchObject({ event: 'token_refreshed', by: 'agent:calypso-bot:42', _SYSTEMD_UNIT: 'token-keeper@live.service' });
    expect(matches(chains.live.refreshed, fromVm)).toBe(true);
    expect(matches(chains.sim.refreshed, fromVm)).toBe(false);
    expect(matches(chains.live.refreshed, viaCloudRun(line, chains.live.function))).toBe(true);
    expect(matches(chains.live.refreshed, viaCloudRun(line, chains.sim.function))).toBe(false);
    // The metric's `by` label (monitoring.tf) is the same series after a restart (another pid) or another run.
    const { loadTerraform, TF_DIR, one } = await import('../helpers/terraform.js');
    const by = (one(await loadTerraform(TF_DIR), 'google_logging_metric', 'token_refreshed').label_extractors as Record<string, string>).by!;
    const label = (b: string, side: 'vm' | 'fn') => {
      const l = logLine('info', 'token_refreshed', { by: b });
      return extract(by, side === 'vm' ? viaOpsAgent(ops, journald(l, chains.live.unit))! : viaCloudRun(l, chains.live.function));
    };
    expect(label('agent:calypso-bot:42', 'vm')).toBe('agent:calypso-bot');
    expect(label('agent:calypso-bot:4242', 'vm')).toBe('agent:calypso-bot');
    expect(label('cloud:tk-live-refresh-00007-abc:1f2e3d4c', 'fn')).toBe('cloud:tk-live-refresh-00007-abc');
  });

  it('event, component and chain become indexed labels on both paths, and stay in the payload', () => {
    const line = logLine('info', 'agent_ready', {}, { component: 'agent', chain: 'tk-sim-saxo-token' });
    for (const entry of [viaOpsAgent(ops, journald(line, chains.sim.unit))!, viaCloudRun(line, chains.sim.function)]) {
      expect(entry.labels).toEqual({ event: 'agent_ready', component: 'agent', chain: 'tk-sim-saxo-token' });
      expect(entry.jsonPayload).toMatchObject({ event: 'agent_ready', component: 'agent', chain: 'tk-sim-saxo-token' });
      expect(entry.jsonPayload['logging.googleapis.com/labels']).toBeUndefined();
    }
  });

  it('a Saxo call carries an httpRequest record in the key each path reads, with no URL and no token', () => {
    const fields = { httpRequest: httpRequestRecord({ status: 503, latencyMs: 1234 }), attempt: 1 };
    const vm = viaOpsAgent(ops, journald(logLine('info', 'refresh_api_failed', fields), chains.sim.unit))!;
    const fn = viaCloudRun(logLine('info', 'refresh_api_failed', fields, { httpRequestKey: 'httpRequest' }), chains.sim.function);
    for (const e of [vm, fn]) {
      expect(e.httpRequest).toEqual({ requestMethod: 'POST', status: 503, latency: '1.234s' });
      expect(JSON.stringify(e)).not.toMatch(/requestUrl|refresh_token=/);
    }
    // The wrong key for a path would stay in the payload, unindexed.
    const wrong = viaCloudRun(logLine('info', 'x', fields), chains.sim.function);
    expect(wrong.httpRequest).toBeUndefined();
  });

  it("the function's lines carry the request's trace and span from traceparent or X-Cloud-Trace-Context", () => {
    const at = (headers: Record<string, string>) => {
      const lines: string[] = [];
      const log = createLogger({ component: 'function', httpRequestKey: 'httpRequest', write: (l) => lines.push(l) });
      withLogContext(traceFields(headers, 'my-project-123'), () => log.info('token_status', 'Token status: valid'));
      return viaCloudRun(lines[0]!, chains.sim.function);
    };
    const w3c = at({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
    expect(w3c.trace).toBe('projects/my-project-123/traces/4bf92f3577b34da6a3ce929d0e0e4736');
    expect(w3c.spanId).toBe('00f067aa0ba902b7');
    const gcp = at({ 'x-cloud-trace-context': '105445aa7843bc8bf206b12000100000/1;o=1' });
    expect(gcp.trace).toBe('projects/my-project-123/traces/105445aa7843bc8bf206b12000100000');
    expect(gcp.spanId).toBe('0000000000000001');
    const none = at({});
    expect(none.trace).toBeUndefined();
    expect(matches(chains.sim.alert, none)).toBe(false);
  });

  it('LOG_FORMAT=pretty prints what is set, never "=undefined", and no machine-only keys', () => {
    const lines: string[] = [];
    createLogger({ format: 'pretty', component: 'agent', chain: 'tk-sim-saxo-token', write: (l) => lines.push(l) }).info('token_refreshed', 'Token refreshed', { version: undefined, generation: 3 });
    expect(lines[0]).toMatch(/^\S+Z INFO {4}Token refreshed {2}component=agent chain=tk-sim-saxo-token generation=3 {2}\[token_refreshed\]$/);
    expect(lines[0]).not.toContain('undefined');
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
