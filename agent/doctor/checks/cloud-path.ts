/** Check 10: the cloud path's last refresh (the secret's annotations) against the Scheduler's period. */
import { DEFAULT_ACCESS_LIFE_MS } from '../../../core/tiers.js';
import type { Facts } from '../doctor.js';
import { human, result, sh, skip, type CheckResult } from '../types.js';

/** The function names itself `cloud:<revision>:<random>` in the lease and the annotations (functions/index.ts). */
const isCloudHolder = (by: string) => by.startsWith('cloud');

export function cloudPathCheck(f: Facts): CheckResult {
  const [c, g] = [f.config, f.config.gcp];
  if (!g || !f.secret) return skip('cloud-path', 'standalone: no cloud path');
  if (!f.secret.meta.ok) return skip('cloud-path', 'Secret Manager could not be read (see secret-manager)');
  const { lastRefresh: lr, failures: n } = f.secret.meta.value;
  const period = c.cloudSchedulePeriodMs;
  // The cloud refreshes once the token is within its threshold, at the next Scheduler run.
  const life = f.view.accessLifeMs ?? DEFAULT_ACCESS_LIFE_MS;
  const expected = Math.max(period, life - c.cloudRefreshThresholdMs) + period;
  const logs = `gcloud scheduler jobs list --project=${sh(g.projectId)}; gcloud logging read 'resource.type="cloud_run_revision" AND severity>=WARNING' --project=${sh(g.projectId)} --freshness=1h --limit=20`;
  const details = { lastRefresh: lr && { at: new Date(lr.at).toISOString(), by: lr.by, version: lr.version }, failures: n, expectedWithinSeconds: Math.round(expected / 1000), schedulePeriodSeconds: period / 1000 };
  const say = (status: 'ok' | 'warn' | 'fail', summary: string) => result('cloud-path', status, summary, status === 'ok' ? undefined : logs, details);
  if (n >= c.maxRefreshFailures) return say('fail', `${n} consecutive refresh failures recorded on the secret (ALERT at ${c.maxRefreshFailures})`);
  const every = `expected at least every ${human(expected)}: token life ${human(life)} − cloud threshold ${human(c.cloudRefreshThresholdMs)}, + the Scheduler's ${human(period)}`;
  const failures = n ? `; ${n} consecutive failure(s)` : '';
  if (!lr) return say('warn', `no refresh recorded on the secret yet${failures} (${every})`);
  const ago = human(f.now - lr.at);
  if (!isCloudHolder(lr.by)) return say('warn', `the last refresh was by ${lr.by} ${ago} ago, not by the cloud: the cloud missed its window then${failures}`);
  // One missed run is covered by the next one and the Scheduler's retries.
  if (f.now - lr.at > expected + period) return say('warn', `the cloud last refreshed ${ago} ago (${every}): Scheduler paused or the function failing?${failures}`);
  return say(n ? 'warn' : 'ok', `last refreshed by ${lr.by} ${ago} ago (${every})${failures}`);
}
