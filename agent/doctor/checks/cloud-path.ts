/** Check 10: the cloud path's last refresh (the secret's annotations) against the Scheduler's period. */
import { DEFAULT_ACCESS_LIFE_MS } from '../../../core/tiers.js';
import type { Facts } from '../doctor.js';
import { human, sh, skip, type CheckResult } from '../types.js';

/** The function names itself `cloud:<revision>:<random>` in the lease and the annotations (functions/index.ts). */
const isCloudHolder = (by: string) => by.startsWith('cloud');

export function cloudPathCheck(f: Facts): CheckResult {
  const g = f.config.gcp;
  if (!g || !f.secret) return skip('cloud-path', 'standalone: no cloud path');
  if (!f.secret.meta.ok) return skip('cloud-path', 'Secret Manager could not be read (see secret-manager)');
  const c = f.config;
  const meta = f.secret.meta.value;
  const period = c.cloudSchedulePeriodMs;
  // The cloud refreshes once the token is within its threshold, at the next Scheduler run.
  const life = f.view.accessLifeMs ?? DEFAULT_ACCESS_LIFE_MS;
  const expected = Math.max(period, life - c.cloudRefreshThresholdMs) + period;
  const logs = `gcloud scheduler jobs list --project=${sh(g.projectId)}; gcloud logging read 'resource.type="cloud_run_revision" AND severity>=WARNING' --project=${sh(g.projectId)} --freshness=1h --limit=20`;
  const details = {
    lastRefresh: meta.lastRefresh ? { at: new Date(meta.lastRefresh.at).toISOString(), by: meta.lastRefresh.by, version: meta.lastRefresh.version } : undefined,
    failures: meta.failures,
    expectedWithinSeconds: Math.round(expected / 1000),
    schedulePeriodSeconds: period / 1000,
  };
  if (meta.failures >= c.maxRefreshFailures) {
    return { id: 'cloud-path', status: 'fail', summary: `${meta.failures} consecutive refresh failures recorded on the secret (ALERT at ${c.maxRefreshFailures})`, fix: logs, details };
  }
  const lr = meta.lastRefresh;
  const every = `expected at least every ${human(expected)}: token life ${human(life)} − cloud threshold ${human(c.cloudRefreshThresholdMs)}, + the Scheduler's ${human(period)}`;
  const failures = meta.failures ? `; ${meta.failures} consecutive failure(s)` : '';
  if (!lr) return { id: 'cloud-path', status: 'warn', summary: `no refresh recorded on the secret yet${failures} (${every})`, fix: logs, details };
  const ago = f.now - lr.at;
  if (!isCloudHolder(lr.by)) {
    return { id: 'cloud-path', status: 'warn', summary: `the last refresh was by ${lr.by} ${human(ago)} ago, not by the cloud: the cloud missed its window then${failures}`, fix: logs, details };
  }
  // One missed run is covered by the next one and the Scheduler's retries.
  if (ago > expected + period) {
    return { id: 'cloud-path', status: 'warn', summary: `the cloud last refreshed ${human(ago)} ago (${every}): Scheduler paused or the function failing?${failures}`, fix: logs, details };
  }
  const status = meta.failures ? 'warn' : 'ok';
  return { id: 'cloud-path', status, summary: `last refreshed by ${lr.by} ${human(ago)} ago (${every})${failures}`, fix: status === 'warn' ? logs : undefined, details };
}
