/** Check 1: the configuration parses and makes sense; the refresh tiers are in order. */
import { configuredTiers, DEFAULT_ACCESS_LIFE_MS, tierProblems } from '../../../core/tiers.js';
import type { Facts } from '../doctor.js';
import { fold, human, type CheckResult, type Finding } from '../types.js';

/** Plain http to a non-loopback Saxo host never gets here: core/config-check.ts refuses it, and doctor reports that as this check's failure. */
export function configCheck(f: Facts): CheckResult {
  const [c, g, env] = [f.config, f.config.gcp, f.deployment.envFile];
  const url = new URL(c.authBaseUrl);
  const findings: Finding[] = [];
  if (url.hostname.startsWith(`${c.environment === 'SIM' ? 'live' : 'sim'}.`)) {
    findings.push({ status: 'warn', text: `SAXO_ENVIRONMENT=${c.environment} but SAXO_AUTH_BASE_URL points at ${url.hostname}`, fix: `make SAXO_ENVIRONMENT and SAXO_AUTH_BASE_URL agree in ${env}` });
  }
  if (f.partialGcp.length) {
    const text = `${f.partialGcp.join(', ')} set, but cloud-connected mode needs both GOOGLE_CLOUD_PROJECT and TOKEN_SECRET_ID: running standalone`;
    findings.push({ status: 'warn', text, fix: `set both in ${env} (terraform output -json agent_env), or remove the GCP lines` });
  }
  if (g && !g.subscriptionId) {
    const text = 'no TOKEN_SUBSCRIPTION_ID: the agent does not hear TOKEN_ROTATED and copies a cloud refresh into the cache only at its own threshold';
    findings.push({ status: 'warn', text, fix: `set TOKEN_SUBSCRIPTION_ID in ${env} (terraform output -json agent_env)` });
  }
  const mode = g ? `cloud-connected (project ${g.projectId}, secret ${g.secretId}, topic ${g.topicId}${g.subscriptionId ? `, subscription ${g.subscriptionId}` : ''})` : 'standalone';
  const role = c.primary ? 'the primary (refreshes without the lease when Secret Manager is down)' : 'not the primary (waits for Secret Manager when it is down)';
  const primary = g ? `this VM is ${role}` : 'primary (standalone)';
  const ok = `${c.environment} via ${url.origin}; ${mode}; ${primary}; data dir ${c.dataDir}${c.createDataDir ? ' (created at start if missing)' : ''}`;
  const details = { environment: c.environment, authBaseUrl: url.origin, mode: g ? 'cloud-connected' : 'standalone', primary: c.primary, createDataDir: c.createDataDir, dataDir: c.dataDir };
  return fold('config', ok, findings, { ...details, cloudSchedulePeriodSeconds: c.cloudSchedulePeriodMs / 1000 });
}

const secs = (ms: number) => `${Math.round(ms / 100) / 10} s`;

export function tiersCheck(f: Facts): CheckResult {
  const [c, view] = [f.config, f.view];
  const tiers = configuredTiers(c);
  const problems = tierProblems(tiers, view.accessLifeMs);
  const findings: Finding[] = problems.map((p) => ({ status: 'fail', text: p.message, fix: `${p.fix} in ${f.deployment.envFile}` }));
  const window = c.cloudRefreshThresholdMs - c.refreshThresholdMs;
  if (c.gcp && window > 0 && c.cloudSchedulePeriodMs > window) {
    const text = `CLOUD_SCHEDULE_SECONDS (${secs(c.cloudSchedulePeriodMs)}) is longer than the cloud's window (${secs(window)} between the cloud and agent thresholds): some tokens will pass it unrefreshed and the agent will refresh instead`;
    findings.push({ status: 'warn', text, fix: `a Scheduler period ≤ ${Math.floor(window / 1000)} s (var.schedule in infra/terraform), then CLOUD_SCHEDULE_SECONDS to match` });
  }
  const life = view.accessLifeMs !== undefined ? `${human(view.accessLifeMs)} (the newest pair's)` : `${human(DEFAULT_ACCESS_LIFE_MS)} (Saxo's documented)`;
  const order = tiers.cloudThresholdMs !== undefined ? `cloud ${secs(tiers.cloudThresholdMs)} > agent ${secs(tiers.agentThresholdMs)}` : `agent ${secs(tiers.agentThresholdMs)}`;
  const secsOf = (ms: number | undefined) => (ms !== undefined ? ms / 1000 : undefined);
  const details = { cloudThresholdSeconds: secsOf(tiers.cloudThresholdMs), agentThresholdSeconds: tiers.agentThresholdMs / 1000, botThresholdSeconds: tiers.botThresholdMs / 1000 };
  return fold('config.tiers', `${order} > bots ${secs(tiers.botThresholdMs)}, all inside the token's usable life ${life}`, findings, { ...details, accessLifeSeconds: secsOf(view.accessLifeMs) });
}
