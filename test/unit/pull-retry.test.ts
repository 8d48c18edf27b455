/** Which stream endings the Pub/Sub subscriber retries fast, and what it tells the operator otherwise. */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../core/log.js';
import { jittered, nonRetryableCode, SubscriptionHealth, subscriptionFix } from '../../core/gcp/pull-retry.js';
import { agentCheck } from '../../agent/doctor/checks/locks.js';
import { facts, ok } from '../helpers/doctor-facts.js';

describe('pull retry', () => {
  it('retries transient codes fast; stops on the ones retrying cannot heal', () => {
    for (const transient of [0, 1, 2, 4, 8, 10, 13, 14]) expect(nonRetryableCode(transient)).toBeUndefined();
    expect(nonRetryableCode(5)).toBe('NOT_FOUND');
    expect(nonRetryableCode(7)).toBe('PERMISSION_DENIED');
    expect(nonRetryableCode(9)).toBe('FAILED_PRECONDITION');
    expect(nonRetryableCode(16)).toBe('UNAUTHENTICATED');
  });

  it('names the subscription and the fix', () => {
    const sub = 'projects/p/subscriptions/s';
    expect(subscriptionFix('NOT_FOUND', sub, 'projects/p/topics/t')).toMatch(/projects\/p\/subscriptions\/s does not exist.*recreate it on projects\/p\/topics\/t.*terraform apply/);
    expect(subscriptionFix('PERMISSION_DENIED', sub, 't')).toMatch(/roles\/pubsub\.subscriber.*terraform apply/);
  });

  it('ALERTs once per episode and code, then NOTICEs the restoration', () => {
    const lines: string[] = [];
    const h = new SubscriptionHealth({ subscription: 'projects/p/subscriptions/s', topic: 'projects/p/topics/t', logger: createLogger({ write: (l) => lines.push(l) }), brokenRetryMs: 60_000, now: () => 1000 });
    const d = h.broken('NOT_FOUND', 'gone');
    expect(d).toBeGreaterThanOrEqual(30_000);
    expect(d).toBeLessThanOrEqual(60_000);
    h.broken('NOT_FOUND', 'gone');
    h.broken('PERMISSION_DENIED', 'role removed');
    const severities = lines.map((l) => (JSON.parse(l) as { severity: string; event: string }).severity);
    expect(severities).toEqual(['ALERT', 'WARNING', 'ALERT']);
    expect(h.problem).toMatchObject({ code: 'PERMISSION_DENIED', since: 1000 });
    h.restored();
    expect(h.problem).toBeUndefined();
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ severity: 'NOTICE', event: 'event_subscription_restored' });
    h.restored();
    expect(lines).toHaveLength(4);
    expect(jittered(1000, () => 0)).toBe(500);
    expect(jittered(1000, () => 1)).toBe(1000);
  });

  it('doctor\'s agent check fails on a subscription the agent recorded as broken, with its fix', () => {
    const base = facts();
    const value = base.state.ok ? base.state.value : undefined;
    const subscription = { subscription: 'projects/p1/subscriptions/s', code: 'NOT_FOUND', problem: 'subscription projects/p1/subscriptions/s does not exist (deleted?): recreate it — terraform apply in infra/terraform', since: 1 };
    const c = agentCheck(facts({ state: ok({ ...value, failures: 0, subscription }) }));
    expect(c.status).toBe('fail');
    expect(JSON.stringify(c)).toContain('cannot pull projects/p1/subscriptions/s (NOT_FOUND)');
    expect(JSON.stringify(c)).toContain('terraform apply');
    expect(agentCheck(base).status).not.toBe('fail');
  });
});
