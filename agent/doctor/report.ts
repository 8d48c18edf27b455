/** Run every check over the facts, in the issue's order; build the report; print it (text or JSON). */
import type { Facts } from './facts.js';
import { agentCheck, lockCheck } from './checks/locks.js';
import { cloudPathCheck } from './checks/cloud-path.js';
import { configCheck, tiersCheck } from './checks/config.js';
import { dataDirCheck, filesCheck, spaceCheck, tmpCheck } from './checks/data-dir.js';
import { clockCheck, saxoCheck } from './checks/network.js';
import { pubsubIamCheck, subscriptionCheck, topicCheck } from './checks/pubsub.js';
import { secretIamCheck, secretManagerCheck } from './checks/secret-manager.js';
import { tokenCheck } from './checks/token.js';
import { exitCodeOf, skip, type CheckResult, type CheckStatus, type DoctorReport } from './types.js';

const CHECKS: [string, (f: Facts) => CheckResult][] = [
  ['config', configCheck],
  ['config.tiers', tiersCheck],
  ['data-dir', dataDirCheck],
  ['data-dir.files', filesCheck],
  ['data-dir.tmp', tmpCheck],
  ['data-dir.space', spaceCheck],
  ['lock', lockCheck],
  ['token', tokenCheck],
  ['secret-manager', secretManagerCheck],
  ['secret-manager.iam', secretIamCheck],
  ['pubsub.topic', topicCheck],
  ['pubsub.subscription', subscriptionCheck],
  ['pubsub.iam', pubsubIamCheck],
  ['clock', clockCheck],
  ['saxo', saxoCheck],
  ['agent', agentCheck],
  ['cloud-path', cloudPathCheck],
];

export const CHECK_IDS: readonly string[] = CHECKS.map(([id]) => id);

/** Every check; one that throws (a bug) is reported as a failure of that check, never a crash. */
export function judge(f: Facts): CheckResult[] {
  return CHECKS.map(([id, check]) => {
    try {
      return check(f);
    } catch (e) {
      return { id, status: 'fail' as const, summary: `doctor's own check failed: ${e instanceof Error ? e.message : String(e)}` };
    }
  });
}

/** The configuration does not parse (or cannot be read): that is the finding, and nothing else can be judged. */
export function configErrorChecks(message: string, fix: string): CheckResult[] {
  return CHECK_IDS.map((id) => (id === 'config' ? { id, status: 'fail', summary: `configuration error: ${message}`, fix } : skip(id, 'the configuration does not parse')));
}

export function buildReport(checks: CheckResult[], mode: DoctorReport['mode'], unit: string, startedAt: number): DoctorReport {
  const counts: Record<CheckStatus, number> = { ok: 0, warn: 0, fail: 0, skip: 0 };
  for (const c of checks) counts[c.status]++;
  return { exitCode: exitCodeOf(checks), mode, unit, now: new Date(startedAt).toISOString(), durationMs: Date.now() - startedAt, counts, checks };
}

/** One line a check: status, id, what was found, and the fix. */
export function formatText(r: DoctorReport): string {
  const width = Math.max(...r.checks.map((c) => c.id.length));
  const lines = r.checks.map((c) => `${c.status.padEnd(4)}  ${c.id.padEnd(width)}  ${c.summary}${c.fix ? ` — fix: ${c.fix}` : ''}`);
  const n = r.counts;
  lines.push(`doctor: ${n.ok} ok, ${n.warn} warn, ${n.fail} fail, ${n.skip} skipped in ${r.durationMs} ms (${r.unit}, ${r.mode}) — exit ${r.exitCode}`);
  return lines.join('\n');
}

/** Replace every known secret value (≥ 8 chars) with [REDACTED]: a last guard (holders' command lines, error texts). */
export function redact(text: string, secrets: Iterable<string | undefined>): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 8 && out.includes(s)) out = out.split(s).join('[REDACTED]');
  return out;
}
