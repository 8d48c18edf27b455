/**
 * Alerts that reach a person (issue 16 §1): every policy notifies the channels Terraform creates
 * from variables; real log lines of the agent (a real process, and the reconciler over the memory
 * rig) and of the function (runCloudRefresh) match exactly the policy that owns them, through the
 * real filters (modules/settings evaluated by terraform) and the Cloud Run / Ops Agent models; the
 * notification text names the environment, the deadline and the action, and carries the re-login link.
 */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCheckins, CHECKIN_INTERVAL_MS } from '../../agent/checkin.js';
import { createLogger } from '../../core/log.js';
import { VirtualClock, flush } from '../../standins/virtual-clock.js';
import { runCloudRefresh } from '../../functions/refresher.js';
import { createRefreshHandler } from '../../functions/handler.js';
import type { Request, Response } from '@google-cloud/functions-framework';
import { startCli } from '../helpers/agent-process.js';
import { alertEventsInCode, evaluateSettings, extract, journald, loadOpsAgent, matches, TERRAFORM, viaCloudRun, viaOpsAgent, type Entry, type OpsConfig, type SettingsOut } from '../helpers/cloud-logging.js';
import { agentRig, cloudRig, settleWithClock } from '../helpers/memory-rig.js';
import { loadTerraform, one, sub, TF_DIR, type Block, type Tf } from '../helpers/terraform.js';

const POLICIES = ['login_required', 'relogin_link', 'chain_deadline', 'refresh_alert', 'agent_not_checking_in', 'refresh_absent'];
const filterOf = (p: Block) => sub(p, 'conditions') as Block;

describe('alert policies and notification channels (parsed .tf)', () => {
  let tf: Tf;
  beforeAll(async () => {
    tf = await loadTerraform(TF_DIR);
  });

  it('creates channels from variables and every policy notifies them', () => {
    const email = one(tf, 'google_monitoring_notification_channel', 'email');
    expect(email).toMatchObject({ for_each: '${toset(var.alert_emails)}', type: 'email', labels: { email_address: '${each.value}' } });
    const other = one(tf, 'google_monitoring_notification_channel', 'other');
    expect(other.type).toBe('${each.value.type}');
    // Per-chain names: the prefix and the environment are in every channel's display name.
    for (const c of [email, other]) expect(String(c.display_name)).toMatch(/^\$\{var\.name_prefix\} \(\$\{var\.saxo_environment\}\)/);
    expect(String(tf.locals.notification_channels)).toMatch(/var\.notification_channels[\s\S]*google_monitoring_notification_channel\.email[\s\S]*google_monitoring_notification_channel\.other/);
    expect(tf.variable.alert_channel_tokens?.[0]?.sensitive).toBe(true);
    expect(Object.keys(tf.resource.google_monitoring_alert_policy ?? {}).sort()).toEqual([...POLICIES].sort());
    for (const p of POLICIES) expect(one(tf, 'google_monitoring_alert_policy', p).notification_channels, p).toBe('${local.notification_channels}');
  });

  it('log-match policies stay inside 1 notification / 5 min and 20 a day, and their text uses only extracted labels', () => {
    const perDay: Record<string, number> = {};
    for (const p of ['login_required', 'relogin_link', 'chain_deadline', 'refresh_alert']) {
      const policy = one(tf, 'google_monitoring_alert_policy', p);
      const cond = sub(filterOf(policy), 'condition_matched_log');
      const period = Number(/^(\d+)s$/.exec(String(sub(sub(policy, 'alert_strategy'), 'notification_rate_limit').period))![1]);
      expect(period, p).toBeGreaterThanOrEqual(300);
      perDay[p] = 86_400 / period;
      const doc = sub(policy, 'documentation');
      const text = `${String(doc.subject)} ${String(doc.content)}`;
      const used = [...text.matchAll(/\$\$\{log\.extracted_label\.(\w+)\}/g)].map((m) => m[1]!);
      expect(used.length, p).toBeGreaterThan(0);
      for (const k of used) expect(Object.keys(cond.label_extractors as Record<string, string>), `${p}: ${k}`).toContain(k);
      // Names the environment, the deadline and the action.
      expect(text, p).toContain('${local.env}');
      expect(used, p).toContain('deadline');
      expect(text, p).toMatch(/\*\*Action:\*\*/);
    }
    // The link's notification carries it; the refresh ALERT repeats at most hourly (≤ 24 tries a day, 20 delivered).
    expect(String(sub(one(tf, 'google_monitoring_alert_policy', 'relogin_link'), 'documentation').content)).toContain('$${log.extracted_label.link}');
    expect(perDay.refresh_alert).toBeLessThanOrEqual(24);
  });

  it('agent not checking in pages within 10 minutes of a stop, per VM, and on a crash loop', () => {
    const policy = one(tf, 'google_monitoring_alert_policy', 'agent_not_checking_in');
    const conds = policy.conditions as Block[];
    const absent = sub(conds[0]!, 'condition_absent');
    const agg = sub(absent, 'aggregations');
    expect(agg.group_by_fields).toEqual(['metric.label.host']);
    expect(absent.duration).toBe('${var.agent_checkin_absent_minutes * 60}s');
    const v = tf.variable.agent_checkin_absent_minutes![0]!;
    const maxMin = Number(/<= (\d+)/.exec(String(sub(v, 'validation').condition))![1]);
    // Last check-in + the absence window + one alignment period stays within 10 minutes.
    expect(maxMin * 60_000 + 60_000).toBeLessThanOrEqual(10 * 60_000);
    expect(CHECKIN_INTERVAL_MS * 2).toBeLessThanOrEqual(Number(v.default) * 60_000);
    const loop = sub(conds[1]!, 'condition_threshold');
    expect(sub(loop, 'aggregations')).toMatchObject({ alignment_period: '600s', group_by_fields: ['metric.label.host'] });
    expect(loop.threshold_value).toBe('${var.agent_crash_loop_starts}');
    expect(String(sub(policy, 'documentation').content)).toContain('$${metric.label.host}');
  });

  it('the two-chains example gives each chain its own channels and policies', async () => {
    const ex = await loadTerraform(join(TF_DIR, 'examples', 'two-chains'));
    expect(ex.module.sim?.[0]?.alert_emails).toBe('${var.alert_emails.sim}');
    expect(ex.module.live?.[0]?.alert_emails).toBe('${var.alert_emails.live}');
  });
});

describe.skipIf(!existsSync(TERRAFORM))('real log lines against the policies that own them', () => {
  let dir: string;
  let s: Record<'sim' | 'live', SettingsOut>;
  let ops: OpsConfig;
  let tf: Tf;
  const fnService = () => s.sim.names.function;
  const unit = 'token-keeper@sim.service';
  /** Which policies of the sim chain an entry reaches (live: must be none). */
  const owners = (e: Entry) => {
    const f = s.sim.log_filters;
    const hit = (['login', 'relogin', 'deadline', 'alert'] as const).filter((k) => matches(f[k], e));
    for (const k of ['login', 'relogin', 'deadline', 'alert'] as const) expect(matches(s.live.log_filters[k], e), `live ${k}`).toBe(false);
    return hit;
  };
  const extractors = (policy: string) => sub(filterOf(one(tf, 'google_monitoring_alert_policy', policy)), 'condition_matched_log').label_extractors as Record<string, string>;

  beforeAll(async () => {
    const r = await evaluateSettings();
    dir = r.dir;
    s = r.out;
    ops = loadOpsAgent();
    tf = await loadTerraform(TF_DIR);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("the agent's chain_deadline (reconciler) pages through the chain-deadline policy only, with its UTC deadline", async () => {
    const r = agentRig();
    r.saxo.refreshLifetimeSec = 600; // dies before the access token is due
    const t = r.login();
    r.plantCache(t);
    await r.state.write({ token: t, failures: 0 });
    await r.reconciler.load();
    await r.reconciler.run({ kind: 'tick' });
    const line = r.log.lines.find((l) => l.includes('"chain_deadline"'))!;
    expect(line).toBeDefined();
    const e = viaOpsAgent(ops, journald(line, unit))!;
    expect(owners(e)).toEqual(['deadline']);
    const deadline = extract(extractors('chain_deadline').deadline!, e)!;
    expect(deadline).toBe(new Date(t.refreshExpiresAt!).toISOString().replace('.000Z', 'Z'));
    expect(e.jsonPayload.message).toContain(`The chain dies at ${deadline.slice(11, 16)} UTC`);
    expect(e.jsonPayload.message).toMatch(/Action: /);
  });

  it("the function's failed run near the deadline logs chain_deadline and, at the 5th failure, the refresh ALERT with deadline and action", async () => {
    const r = cloudRig();
    r.saxo.refreshLifetimeSec = 600;
    const t = r.login();
    await r.store.add(t);
    r.saxo.faults = Array<'retryable'>(40).fill('retryable');
    for (let i = 0; i < 5; i++) {
      await settleWithClock(runCloudRefresh(r.deps), r.clock);
      await r.clock.advance(5_000);
    }
    const entries = r.log.lines.map((l) => viaCloudRun(l, fnService()));
    const deadlines = entries.filter((e) => e.jsonPayload.event === 'chain_deadline');
    expect(deadlines.length).toBeGreaterThan(0);
    for (const e of deadlines) expect(owners(e)).toEqual(['deadline']);
    // Each Saxo attempt is one line with its HTTP record, never the URL or a token. (The rig's logger
    // writes the Ops Agent's key, as the agent running this same session does; the function's entry
    // passes Cloud Run's: infra-logging.test.ts.)
    const viaVm = (l: string) => viaOpsAgent(ops, journald(l, unit))!;
    const attempts = r.log.lines.map(viaVm).filter((e) => ['saxo_attempt_failed', 'refresh_api_failed'].includes(String(e.jsonPayload.event)));
    // 5 runs × 4 attempts: 3 retried (saxo_attempt_failed) and the last (refresh_api_failed) per run.
    const count = (ev: string) => attempts.filter((e) => e.jsonPayload.event === ev).length;
    expect([count('saxo_attempt_failed'), count('refresh_api_failed')]).toEqual([15, 5]);
    for (const e of attempts) expect(e.httpRequest).toMatchObject({ requestMethod: 'POST', status: 503, latency: expect.stringMatching(/^\d+\.\d{3}s$/) as unknown });
    const alert = entries.find((e) => e.jsonPayload.event === 'refresh_alert')!;
    expect(owners(alert)).toEqual(['alert']);
    expect(String(alert.jsonPayload.message)).toMatch(/^ALERT: Token refresh failed 5 consecutive times!.* The chain dies at \d\d:\d\d UTC \(\S+Z\) unless a refresh succeeds\. Action: run `npx token-keeper doctor`/);
    expect(extract(extractors('refresh_alert').deadline!, alert)).toBe(new Date(t.refreshExpiresAt!).toISOString().replace('.000Z', 'Z'));
    // A success after the failures: token_refreshed carries the exchange's record, then `recovered`.
    r.saxo.faults = [];
    await settleWithClock(runCloudRefresh(r.deps), r.clock);
    const after = r.log.lines.slice(entries.length).map(viaVm);
    expect(after.find((e) => e.jsonPayload.event === 'token_refreshed')?.httpRequest).toMatchObject({ requestMethod: 'POST' });
    expect(after.find((e) => e.jsonPayload.event === 'recovered')?.jsonPayload.message).toBe('Token refresh recovered after 5 consecutive failure(s)');
    // Nothing else the function logged pages anyone.
    for (const e of entries.filter((x) => !['chain_deadline', 'refresh_alert'].includes(String(x.jsonPayload.event)))) expect(owners(e), String(e.jsonPayload.event)).toEqual([]);
  });

  it('login_required pages through the login policy, the one relogin_link line through its own, whose text gets the link', () => {
    const lines: string[] = [];
    const log = createLogger({ component: 'function', chain: 'tk-sim-saxo-token', httpRequestKey: 'httpRequest', write: (l) => lines.push(l) });
    // The shapes NAME=silent and NAME=relogin log (ALERT; link, environment, deadline).
    log.alert('login_required', 'Login required (SIM): the refresh token was rejected', { environment: 'SIM', deadline: '2026-12-07T03:47:00Z' });
    log.alert('relogin_link', 'Re-login link (SIM)', { link: 'https://relogin.example/l/abc', environment: 'SIM', deadline: '2026-12-07T03:47:00Z' });
    const [login, link] = lines.map((l) => viaCloudRun(l, fnService()));
    expect(owners(login!)).toEqual(['login']);
    expect(owners(link!)).toEqual(['relogin']);
    expect(extract(extractors('relogin_link').link!, link!)).toBe('https://relogin.example/l/abc');
    expect(extract(extractors('login_required').deadline!, login!)).toBe('2026-12-07T03:47:00Z');
    expect(owners(viaOpsAgent(ops, journald(lines[0]!, unit))!)).toEqual(['login']);
  });

  it("the function handler's lines carry the Scheduler request's trace and span", async () => {
    const r = cloudRig();
    const t = r.login();
    await r.store.add(t);
    const before = process.env.GOOGLE_CLOUD_PROJECT;
    process.env.GOOGLE_CLOUD_PROJECT = 'my-project-123';
    try {
      const handler = createRefreshHandler(() => Promise.resolve(r.deps), r.deps.logger);
      let status = 0;
      const res = { status: (n: number) => ((status = n), res), json: () => res } as unknown as Response;
      const from = r.log.lines.length;
      await handler({ headers: { 'x-cloud-trace-context': '105445aa7843bc8bf206b12000100000/11;o=1' }, body: {} } as unknown as Request, res);
      expect(status).toBe(200);
      const entries = r.log.lines.slice(from).map((l) => viaCloudRun(l, fnService()));
      expect(entries.length).toBeGreaterThan(0);
      for (const e of entries) {
        expect(e.trace).toBe('projects/my-project-123/traces/105445aa7843bc8bf206b12000100000');
        expect(e.spanId).toBe('000000000000000b');
      }
      // Outside a request, no trace.
      r.deps.logger.info('x', 'outside');
      expect(viaCloudRun(r.log.lines.at(-1)!, fnService()).trace).toBeUndefined();
    } finally {
      if (before === undefined) delete process.env.GOOGLE_CLOUD_PROJECT;
      else process.env.GOOGLE_CLOUD_PROJECT = before;
    }
  });

  it('every ALERT event the code logs pages through exactly one policy', () => {
    for (const event of [...alertEventsInCode(), 'login_required', 'relogin_link']) {
      const e = viaCloudRun(createLoggerLine(event), fnService());
      expect(owners(e), event).toHaveLength(1);
    }
  });

  it('check-ins every 2 min (virtual clock) match the liveness metric with a host label that survives a restart', async () => {
    const clock = new VirtualClock();
    const lines: string[] = [];
    const ctl = new AbortController();
    const done = runCheckins({ logger: createLogger({ component: 'agent', write: (l) => lines.push(l) }), signal: ctl.signal, clock, host: 'calypso-bot' });
    for (let i = 0; i < 5; i++) await clock.advance(CHECKIN_INTERVAL_MS);
    ctl.abort();
    await done;
    await flush();
    expect(lines.length).toBe(6); // 0, 2, 4, 6, 8, 10 min
    const host = (one(tf, 'google_logging_metric', 'agent_checkin').label_extractors as Record<string, string>).host!;
    for (const l of lines) {
      const e = viaOpsAgent(ops, journald(l, unit))!;
      expect(e.severity).toBe('INFO');
      expect(matches(s.sim.log_filters.checkin, e)).toBe(true);
      expect(matches(s.live.log_filters.checkin, e)).toBe(false);
      expect(extract(host, e)).toBe('calypso-bot');
      expect(l.length).toBeLessThan(250);
    }
  });

  it('a real agent process: agent_starting and the first check-in carry the same host label across a restart', async () => {
    const data = mkdtempSync(join(tmpdir(), 'tk-alerts-'));
    try {
      const labels: string[] = [];
      for (let run = 0; run < 2; run++) {
        const a = startCli(['agent'], { TOKEN_KEEPER_DATA_DIR: data, SAXO_APP_KEY: 'k', GOOGLE_CLOUD_PROJECT: '', TOKEN_SECRET_ID: '', CI: process.env.CI });
        const started = await a.waitForEvent('agent_starting', 20_000);
        const checkin = await a.waitForEvent('agent_checkin', 20_000);
        await a.stop();
        const raw = (ev: string) => a.raw.find((l) => l.includes(`"event":"${ev}"`))!;
        expect(started.pid ?? started.by).toBeUndefined();
        const st = viaOpsAgent(ops, journald(raw('agent_starting'), unit))!;
        const ci = viaOpsAgent(ops, journald(raw('agent_checkin'), unit))!;
        expect(matches(s.sim.log_filters.started, st)).toBe(true);
        expect(matches(s.sim.log_filters.checkin, ci)).toBe(true);
        const stHost = extract((one(tf, 'google_logging_metric', 'agent_started').label_extractors as Record<string, string>).host!, st)!;
        const ciHost = extract((one(tf, 'google_logging_metric', 'agent_checkin').label_extractors as Record<string, string>).host!, ci)!;
        expect(ciHost).toBe(stHost);
        expect(checkin.chain).toBe('standalone-sim');
        labels.push(ciHost);
      }
      expect(labels[0]).toBeTruthy();
      expect(labels[1]).toBe(labels[0]);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  }, 60_000);
});

function createLoggerLine(event: string): string {
  const lines: string[] = [];
  createLogger({ write: (l) => lines.push(l) }).alert(event, `${event} happened`);
  return lines[0]!;
}
