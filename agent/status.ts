/**
 * `token-keeper status`: the token's state from the cache, the agent's state file and (when
 * configured) the secret. Exit codes (docs/DESIGN.md "CLI"): 0 healthy, 1 refresh overdue or degraded,
 * 2 expired / missing / login required. Prints no token material, ever.
 */
import type { Config } from '../core/config.js';
import { decide, expiryMovedText, type Plan, type SecretView } from '../core/decide.js';
import { describeSkew, SKEW_WARN_MS } from '../core/server-time.js';
import { silentLogger } from '../core/log.js';
import type { SecretMeta } from '../core/ports.js';
import { compareFreshness, type TokenSet } from '../core/token.js';
import { dirname, join } from 'node:path';
import { createCacheFile } from './cache-file.js';
import { createJournal, JOURNAL_NAME, peekJournal } from './journal.js';
import { createStateFile, type AgentState } from './state-file.js';
import { errorText } from '../core/errors.js';
import { agentLiveness } from './agent-liveness.js';
import { nextStep, type StatusIssue, type Where } from './status-next.js';

export interface StatusReport {
  health: 'healthy' | 'degraded' | 'refresh_overdue' | 'expired' | 'missing' | 'login_required';
  exitCode: 0 | 1 | 2;
  mode: 'standalone' | 'cloud-connected';
  now: string;
  token?: {
    origin: string;
    generation?: number | undefined;
    source?: string | undefined;
    accessExpiresAt: string;
    accessLeftSeconds: number;
    refreshExpiresAt?: string | undefined;
    refreshLeftSeconds?: number | undefined;
  };
  /** `unusable`: no regular file at the cache path (fifo, oversize, symlink…); the agent replaces it from the newest pair. */
  cache: { state: 'ok' | 'missing' | 'corrupt' | 'unusable' | 'unreadable' | 'stale'; reason?: string | undefined };
  secret?: {
    state: 'ok' | 'unavailable' | 'empty' | 'corrupt' | 'stale';
    latestVersion?: string | undefined;
    activeVersions?: number | undefined;
    consecutiveFailures?: number | undefined;
    lastRefresh?: { at: string; by: string; version?: string | undefined } | undefined;
  };
  agent: {
    /** From the agent's instance lock (as doctor): a live agent holds it; the kernel frees it when it dies. */
    running: 'running' | 'not_running' | 'unknown';
    pids?: number[] | undefined;
    consecutiveFailures: number;
    lastSeen?: string | undefined;
    lastSeenSecondsAgo?: number | undefined;
    lastRefresh?: { at: string; by: string; version?: string | undefined } | undefined;
    loginRequired: boolean;
    /** Why the agent holds back although the token is due (e.g. not the primary VM). */
    awaiting?: { reason: string; since: string } | undefined;
    /** This host's clock against Saxo's as the agent last measured it (docs/DESIGN.md "Server time"). */
    clockSkew?: { seconds: number; measuredAt: string; by: 'saxo' | 'jump' } | undefined;
    /** The agent's cache watcher failed: a bot's writes are seen only by the periodic check. */
    watchFailed?: { reason: string; since: string } | undefined;
    /** The Pub/Sub subscription cannot be pulled (no pushes arrive), with the fix. */
    subscription?: { subscription: string; code: string; problem: string; since: string } | undefined;
  };
  /** Every problem found, whatever the health (none is dropped because another is worse). */
  problems: string[];
  /** The one command that moves this state on (agent/status-next.ts). */
  next: string;
}

/** The token's health from the one decision, before anything degrades it (`status` and doctor's token check). */
export type TokenHealth = Exclude<StatusReport['health'], 'degraded'>;

export function tokenHealth(plan: Pick<Plan, 'best' | 'health' | 'origin'>, loginRequired: boolean): TokenHealth {
  if (!plan.best) return 'missing';
  // The agent's record that Saxo rejected the newest refresh token stands unless the secret holds
  // the newest pair (a login elsewhere since).
  if (plan.health === 'login_required' || (loginRequired && plan.origin !== 'secret')) return 'login_required';
  if (plan.health === 'expired') return 'expired';
  if (plan.health === 'due') return 'refresh_overdue';
  return 'healthy';
}

/** The agent stamps its state file every check: not seen for more than 3 check intervals, its loop may be stuck. */
export function agentSeenRecently(seenAgoMs: number | undefined, checkIntervalMs: number): boolean {
  return seenAgoMs !== undefined && seenAgoMs <= 3 * checkIntervalMs;
}

/** The main unit unless a chain was named (`--chain`): for the "next:" line's commands. */
const MAIN_UNIT: Omit<Where, 'cachePath'> = { unit: 'token-keeper', cliFlags: '' };

/** A state file a cloud-connected agent wrote: it recorded a secret version or an announcement. */
export function stateFromCloudConnected(state: Pick<AgentState, 'lastRefresh' | 'announce' | 'token'>): boolean {
  return state.announce !== undefined || (state.lastRefresh?.version ?? '').startsWith('projects/') || state.token?.source === 'cloud';
}

export async function collectStatus(config: Config, now = Date.now(), where: Omit<Where, 'cachePath'> = MAIN_UNIT): Promise<StatusReport> {
  const problems: string[] = [];
  const liveness = agentLiveness(config.dataDir);
  const cache = await createCacheFile(config.cachePath).read();
  if (cache.kind === 'unreadable') {
    problems.push(`cannot read the cache (${cache.code}): run status as the bots' user, or give the file back to them: sudo chown <bots-user> ${config.cachePath}`);
  }
  const state = await createStateFile(config.statePath)
    .read()
    .catch((err: unknown) => {
      problems.push(`cannot read the agent state file ${config.statePath} (${(err as NodeJS.ErrnoException).code ?? errorText(err)})`);
      return undefined;
    });
  let secret: SecretView = { kind: 'absent' };
  let meta: SecretMeta | undefined;
  let activeVersions: number | undefined;
  if (config.gcp) {
    const { connectCloud } = await import('./wiring.js');
    // Loaded before the 3 s deadlines start: on a busy machine loading them alone can take that long.
    await (await import('../core/gcp/clients.js')).loadClientModules();
    let cloud: Awaited<ReturnType<typeof connectCloud>>;
    try {
      cloud = await connectCloud(config, silentLogger, { timeoutMs: 3000 });
      const [read, m, n] = await Promise.all([cloud!.store.latest(), cloud!.store.meta(), cloud!.store.countVersions()]);
      secret = { kind: 'read', read };
      meta = m;
      activeVersions = n;
    } catch (err) {
      secret = { kind: 'unavailable' };
      problems.push(`Secret Manager unavailable: ${errorText(err)}`);
    } finally {
      await cloud?.close();
    }
  }
  // Judge expiries on Saxo's time as the agent does: a skew it recorded beyond 30 s is corrected for.
  const skew = state?.clockSkew;
  const skewMatters = skew !== undefined && Math.abs(skew.ms) > SKEW_WARN_MS;
  if (skewMatters) now -= skew.ms;
  // An unfinished refresh (docs/DESIGN.md "Durable before interpreted"): its successor is the newest pair.
  const journal = await peekJournal(createJournal(join(dirname(config.statePath), JOURNAL_NAME)), [state?.token, cache.kind === 'ok' ? cache.token : undefined], 'journal', config.expiryMarginMs);
  if (journal.kind === 'pair') problems.push('an unfinished refresh waits in the journal: the agent stores it at its next check or start');
  if (journal.kind === 'ended') problems.push(`the journal holds Saxo's answer without a refresh token (${journal.why}): login required`);
  if (journal.kind === 'unreadable') problems.push(`cannot read the journal ${journal.reason}`);
  const known = journal.kind === 'pair' && (!state?.token || compareFreshness(journal.next, state.token) > 0) ? journal.next : state?.token;
  const plan = decide({ now, cache, known, secret }, {
    refreshThresholdMs: config.refreshThresholdMs,
    refreshTokenAlertMs: config.refreshTokenAlertMs,
  });
  problems.push(...plan.notes);
  // Said whatever the health: an expiry the state file knows to be wrong, a clock the agent measured off.
  if (plan.expiryMoved?.length) problems.push(expiryMovedText(plan.expiryMoved));
  if (skewMatters) {
    problems.push(
      `${describeSkew(skew.ms)} (measured ${new Date(skew.at).toISOString()}): expiries are kept in Saxo's time, but the bots read token_expiry by this clock and may misjudge it (sudo timedatectl set-ntp true)`,
    );
  }

  const agentFailures = state?.failures ?? 0;
  const failures = Math.max(agentFailures, meta?.failures ?? 0);
  const lastSeenAgo = state?.agentSeenAt !== undefined ? (now - state.agentSeenAt) / 1000 : undefined;
  const loginRequired = state?.loginRequired === true || journal.kind === 'ended';

  const live = await liveness;
  if (!config.gcp && state && stateFromCloudConnected(state)) {
    problems.push(
      'the agent that wrote this data dir is cloud-connected, but this command runs standalone (no GOOGLE_CLOUD_PROJECT/TOKEN_SECRET_ID): ' +
        "run it with the unit's settings (sudo -u <bots-user> npx token-keeper status reads /etc/token-keeper/token-keeper.env; --chain NAME for a chain)",
    );
  }
  const seenAgo = lastSeenAgo === undefined ? '' : ` (last seen ${Math.round(lastSeenAgo)} s ago)`;
  // Each condition that makes a live token "degraded", with what status says about it. Listed
  // whatever the token's health: an expired token with a dead agent shows both.
  const found: [boolean, StatusIssue, string][] = [
    [live.state === 'not_running' && state?.agentSeenAt !== undefined, 'agent_not_running', `agent not running${seenAgo}: ${live.state === 'not_running' ? live.why : ''}`],
    [live.state === 'not_running' && state?.agentSeenAt === undefined, 'agent_never_seen', 'agent never seen: no agent has checked this data dir'],
    [live.state === 'running' && (lastSeenAgo === undefined || !agentSeenRecently(lastSeenAgo * 1000, config.checkIntervalMs)),
      'agent_stale', `agent running (pid ${live.state === 'running' ? live.pids.join(', ') : ''}) but last seen ${lastSeenAgo === undefined ? 'never' : `${Math.round(lastSeenAgo)} s ago`}: its loop may be stuck`],
    [live.state === 'unknown', 'agent_unknown', `cannot tell whether the agent runs: ${live.state === 'unknown' ? live.why : ''}`],
    [failures > 0, 'failures', `${failures} consecutive refresh failure(s)`],
    [plan.writeCache && cache.kind !== 'unreadable', 'cache_behind', 'the cache is behind the newest token'],
    [cache.kind === 'unreadable', 'cache_unreadable', 'the cache cannot be read'],
    [state?.awaiting !== undefined, 'holding_back', `the agent is holding back: ${state?.awaiting?.reason ?? ''}`],
    [plan.pushSecret, 'secret_behind', 'the secret is behind the newest token'],
    [secret.kind === 'unavailable', 'secret_unavailable', 'cannot reach Secret Manager'],
    [plan.refreshTokenExpiring, 'refresh_token_expiring', 'the refresh token expires soon'],
    [state?.watchFailed !== undefined, 'watch_failed', `the agent cannot watch the cache file: ${state?.watchFailed?.reason ?? ''}`],
    [state?.subscription !== undefined, 'subscription_broken', `no TOKEN_ROTATED pushes: ${state?.subscription?.problem ?? ''}`],
    // Their lines were said above; they still make a live token "degraded".
    [(plan.expiryMoved?.length ?? 0) > 0, 'expiry_moved', ''],
    [skewMatters, 'clock_skew', ''],
    // Said above with what the journal holds.
    [journal.kind === 'pair' || journal.kind === 'unreadable', 'journal_pending', ''],
  ];
  const issues = found.filter(([on]) => on).map(([, issue]) => issue);
  for (const [on, , text] of found) if (on && text) problems.push(text);
  let health: StatusReport['health'] = tokenHealth(plan, loginRequired);
  // Not knowing whether the agent runs (no /proc/locks) is said, not counted against the token.
  if (health === 'healthy' && issues.some((i) => i !== 'agent_unknown')) health = 'degraded';
  const exitCode: 0 | 1 | 2 = health === 'healthy' ? 0 : health === 'degraded' || health === 'refresh_overdue' ? 1 : 2;

  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  const tokenInfo = (t: TokenSet) => ({
    origin: plan.origin ?? 'unknown',
    generation: t.generation,
    source: t.source,
    accessExpiresAt: new Date(t.accessExpiresAt).toISOString(),
    accessLeftSeconds: Math.round((t.accessExpiresAt - now) / 1000),
    refreshExpiresAt: iso(t.refreshExpiresAt),
    refreshLeftSeconds: t.refreshExpiresAt !== undefined ? Math.round((t.refreshExpiresAt - now) / 1000) : undefined,
  });
  const lr = (x: { at: number; by: string; version?: string | undefined } | undefined) =>
    x ? { at: new Date(x.at).toISOString(), by: x.by, version: x.version || undefined } : undefined;

  return {
    health,
    exitCode,
    mode: config.gcp ? 'cloud-connected' : 'standalone',
    now: new Date(now).toISOString(),
    token: plan.best ? tokenInfo(plan.best) : undefined,
    cache: {
      state: cache.kind === 'ok' ? (plan.writeCache ? 'stale' : 'ok') : cache.kind === 'corrupt' && cache.unusable ? 'unusable' : cache.kind,
      reason: cache.kind === 'corrupt' || cache.kind === 'unreadable' ? cache.reason : undefined,
    },
    secret: config.gcp
      ? {
          state:
            secret.kind === 'unavailable' ? 'unavailable'
            : secret.kind === 'read' && !secret.read ? 'empty'
            : secret.kind === 'read' && !secret.read?.token ? 'corrupt'
            : plan.pushSecret ? 'stale' : 'ok',
          latestVersion: secret.kind === 'read' ? secret.read?.name : undefined,
          activeVersions,
          consecutiveFailures: meta?.failures,
          lastRefresh: lr(meta?.lastRefresh),
        }
      : undefined,
    agent: {
      running: live.state,
      pids: live.state === 'running' ? live.pids : undefined,
      consecutiveFailures: agentFailures,
      lastSeen: iso(state?.agentSeenAt),
      lastSeenSecondsAgo: lastSeenAgo !== undefined ? Math.round(lastSeenAgo) : undefined,
      lastRefresh: lr(state?.lastRefresh),
      loginRequired,
      awaiting: state?.awaiting ? { reason: state.awaiting.reason, since: new Date(state.awaiting.since).toISOString() } : undefined,
      clockSkew: skew ? { seconds: Math.round(skew.ms / 1000), measuredAt: new Date(skew.at).toISOString(), by: skew.by } : undefined,
      watchFailed: state?.watchFailed ? { reason: state.watchFailed.reason, since: new Date(state.watchFailed.since).toISOString() } : undefined,
      subscription: state?.subscription ? { ...state.subscription, since: new Date(state.subscription.since).toISOString() } : undefined,
    },
    problems,
    next: nextStep(
      { health, issues, refreshLeftSeconds: plan.best?.refreshExpiresAt !== undefined ? Math.round((plan.best.refreshExpiresAt - now) / 1000) : undefined },
      { ...where, cachePath: config.cachePath },
    ),
  };
}

function dur(seconds: number | undefined): string {
  if (seconds === undefined) return 'expiry unknown';
  const s = Math.abs(seconds);
  const txt = s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
  // "expires in …" / "expired … ago" (not "expires expired … ago").
  return seconds < 0 ? `expired ${txt} ago` : `expires in ${txt}`;
}

export function formatStatus(r: StatusReport): string {
  const lines = [`token-keeper status: ${r.health.toUpperCase()} (exit ${r.exitCode}), ${r.mode}`];
  if (r.token) {
    lines.push(`  access token   ${dur(r.token.accessLeftSeconds)} (${r.token.accessExpiresAt})`);
    lines.push(`  refresh token  ${dur(r.token.refreshLeftSeconds)}${r.token.refreshExpiresAt ? ` (${r.token.refreshExpiresAt})` : ''}`);
    lines.push(`  newest pair    generation ${r.token.generation ?? '?'} from ${r.token.origin}, obtained by ${r.token.source ?? 'unknown'}`);
  } else {
    lines.push('  no token in the cache, the agent state or the secret: run `npx token-keeper login`');
  }
  lines.push(`  cache          ${r.cache.state}${r.cache.reason ? (r.cache.state === 'unusable' ? `: ${r.cache.reason}` : ` (${r.cache.reason})`) : ''}`);
  if (r.secret) {
    lines.push(`  secret         ${r.secret.state}${r.secret.latestVersion ? `, latest ${r.secret.latestVersion}` : ''}${r.secret.activeVersions !== undefined ? `, ${r.secret.activeVersions} active version(s)` : ''}`);
    if (r.secret.lastRefresh) lines.push(`  last refresh   ${r.secret.lastRefresh.at} by ${r.secret.lastRefresh.by}${r.secret.lastRefresh.version ? ` (${r.secret.lastRefresh.version})` : ''}`);
  }
  if (r.agent.lastRefresh) lines.push(`  agent refresh  ${r.agent.lastRefresh.at} by ${r.agent.lastRefresh.by}${r.agent.lastRefresh.version ? ` (${r.agent.lastRefresh.version})` : ''}`);
  lines.push(`  failures       ${r.agent.consecutiveFailures} (agent)${r.secret?.consecutiveFailures !== undefined ? `, ${r.secret.consecutiveFailures} (cloud)` : ''}`);
  lines.push(`  agent          ${r.agent.running === 'running' ? `running (pid ${r.agent.pids?.join(', ')})` : r.agent.running === 'not_running' ? 'NOT RUNNING' : 'unknown'}`);
  lines.push(`  agent seen     ${r.agent.lastSeen ? `${r.agent.lastSeen} (${r.agent.lastSeenSecondsAgo} s ago)` : 'never'}`);
  if (r.agent.clockSkew) lines.push(`  clock skew     ${r.agent.clockSkew.seconds} s (this host − Saxo, ${r.agent.clockSkew.by === 'saxo' ? 'measured' : 'adjusted for a clock jump'} ${r.agent.clockSkew.measuredAt})`);
  if (r.agent.awaiting) lines.push(`  agent waits    since ${r.agent.awaiting.since}: ${r.agent.awaiting.reason}`);
  if (r.agent.subscription) lines.push(`  pubsub         ${r.agent.subscription.code} since ${r.agent.subscription.since}: ${r.agent.subscription.problem}`);
  for (const p of r.problems) lines.push(`  ! ${p}`);
  lines.push(`next: ${r.next}`);
  return lines.join('\n');
}
