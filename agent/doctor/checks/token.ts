/** `token`: the newest pair across the cache, the agent state and the secret — never its text. The tiers, subscription and cloud-path checks read its view too. */
import { decide, type SecretView } from '../../../core/decide.js';
import { compareFreshness, type TokenSet } from '../../../core/token.js';
import { tokenHealth } from '../../status.js';
import type { Facts } from '../doctor.js';
import { isCredentialFailure } from '../gcp.js';
import { fold, human, result, sh, type CheckResult, type Finding } from '../types.js';
import { chownFix } from './data-dir.js';

/**
 * The one decision over the sources doctor read (core/decide.ts, as the agent and `status` use it), made once by gather;
 * `sources`: each source's pair (undefined: none there, or unreadable); the newest pair's usable life (token_expiry − issue
 * time) and refresh-token life, when known.
 */
export type TokenView = ReturnType<typeof tokenView>;
export function tokenView(f: Pick<Facts, 'now' | 'config' | 'cache' | 'state' | 'secret'>) {
  const cache = f.cache.ok ? f.cache.value : ({ kind: 'unreadable', code: f.cache.code ?? 'error', reason: f.cache.error } as const);
  const state = f.state.ok ? f.state.value : undefined;
  const secret: SecretView = !f.secret ? { kind: 'absent' } : f.secret.latest.ok ? { kind: 'read', read: f.secret.latest.value } : { kind: 'unavailable' };
  const plan = decide({ now: f.now, cache, known: state?.token, secret }, { refreshThresholdMs: f.config.refreshThresholdMs, refreshTokenAlertMs: f.config.refreshTokenAlertMs });
  const b = plan.best;
  const life = (end: number | undefined) => (b?.issuedAt !== undefined && end !== undefined && end > b.issuedAt ? end - b.issuedAt : undefined);
  const sources = { cache: cache.kind === 'ok' ? cache.token : undefined, state: state?.token, secret: secret.kind === 'read' ? secret.read?.token : undefined };
  return { plan, sources, accessLifeMs: life(b?.accessExpiresAt), refreshLifeMs: life(b?.refreshExpiresAt) };
}

const ORIGIN_NAME = { cache: 'cache', known: 'agent state', secret: 'secret' } as const;

const describe = (t: TokenSet | undefined, best: TokenSet) =>
  !t ? 'none' : `${t.generation !== undefined ? `gen ${t.generation}` : 'no generation'}${compareFreshness(t, best) === 0 ? '' : ' (older)'}`;

/** The fix for a file doctor cannot read: run doctor as someone who can, or give the file back to the bots. */
function fileFix(f: Facts, path: string, code: string | undefined): string {
  if (code !== 'EACCES' && code !== 'EPERM') return `the file cannot be read (${code ?? 'error'}): check the filesystem (dmesg | tail; ls -l ${sh(path)})`;
  const u = f.botsUser.ok ? f.botsUser.value : undefined;
  const as = u ? `sudo -u ${sh(u.name)} npx token-keeper doctor${f.deployment.cliFlags}` : `sudo npx token-keeper doctor${f.deployment.cliFlags}`;
  const back = u ? chownFix(path, u, f.names, '0600') : `sudo chown <the bots' user> ${sh(path)} && sudo chmod 0600 ${sh(path)}`;
  return `run doctor as the bots' user or root (${as}); if the bots cannot read it either, give the file back: ${back}`;
}

/** The sources doctor could not read (`how`: "unreadable (EACCES)", "unreachable"): the newest pair may be there, so "login" is not the fix. */
function unreadSources(f: Facts): { source: 'cache' | 'state' | 'secret'; how: string; text: string; fix: string }[] {
  const file = (source: 'cache' | 'state', what: string, path: string, code = 'error') => ({ source, how: `unreadable (${code})`, text: `cannot read the ${what} ${path} (${code})`, fix: fileFix(f, path, code) });
  const [c, latest] = [f.cache, f.secret?.latest];
  const cacheCode = !c.ok ? (c.code ?? 'error') : c.value.kind === 'unreadable' ? c.value.code : undefined;
  const out = [...(cacheCode ? [file('cache', 'cache', f.config.cachePath, cacheCode)] : []), ...(f.state.ok ? [] : [file('state', 'agent state file', f.config.statePath, f.state.code)])];
  if (!latest || latest.ok) return out;
  const text = isCredentialFailure(latest) ? 'the secret could not be read (no usable Google credentials)' : 'the secret did not answer';
  return [...out, { source: 'secret', how: 'unreachable', text, fix: 'see secret-manager' }];
}

export function tokenCheck(f: Facts): CheckResult {
  const cli = (cmd: string) => `npx token-keeper ${cmd}${f.deployment.cliFlags}`;
  const journal = `journalctl -u ${f.deployment.unit} -n 50`;
  const LOGIN = cli('login');
  const { plan, sources } = f.view;
  const b = plan.best;
  const unread = unreadSources(f);
  if (!b) {
    // Propose a login only when every source was read and none holds a pair.
    if (!unread.length) return result('token', 'fail', 'no token in the cache, the agent state or the secret', LOGIN);
    // The bots read the cache: when doctor read it and found nothing, they have nothing either.
    const summary = `no token in what doctor could read (${unread.map((u) => u.text).join('; ')}): the newest pair may be there, so no login is proposed yet`;
    return result('token', unread.some((u) => u.source === 'cache') ? 'warn' : 'fail', summary, [...new Set(unread.map((u) => u.fix))].join(' ; '));
  }
  const findings: Finding[] = [];
  const access = plan.accessLeftMs ?? 0;
  const refresh = plan.refreshLeftMs;
  const state = f.state.ok ? f.state.value : undefined;
  const health = tokenHealth(plan, state?.loginRequired === true);
  const dead = plan.health === 'login_required' ? `the newest refresh token expired ${human(-(refresh ?? 0))} ago: the chain is dead` : 'the agent recorded that Saxo rejected the newest refresh token (login required)';
  if (health === 'login_required') findings.push({ status: 'fail', text: dead, fix: LOGIN });
  else if (health === 'expired') findings.push({ status: 'fail', text: `the access token expired ${human(-access)} ago and nobody refreshed it`, fix: `${cli('refresh')}; ${journal}` });
  else if (health === 'refresh_overdue') {
    const why = f.config.gcp ? 'the cloud missed its window' : 'the agent refreshes now if it runs';
    findings.push({ status: 'warn', text: `only ${human(access)} left: inside the agent's threshold, ${why}`, fix: `${cli('status')}; ${journal}` });
  }
  if (plan.refreshTokenExpiring) findings.push({ status: 'warn', text: `the refresh token dies in ${human(refresh ?? 0)} and no refresh is due before`, fix: cli('refresh --force') });
  if (sources.cache && plan.writeCache) findings.push({ status: 'warn', text: 'the cache holds an older pair than the newest (the running agent rewrites it within seconds)' });
  if (!sources.cache && f.cache.ok && f.cache.value.kind === 'corrupt') findings.push({ status: 'warn', text: `the cache is unusable: ${f.cache.value.reason}` });
  const unreadCache = unread.find((u) => u.source === 'cache');
  if (unreadCache) findings.push({ status: 'warn', text: `${unreadCache.text}: doctor cannot tell what the bots see`, fix: unreadCache.fix });
  if (plan.pushSecret) findings.push({ status: 'warn', text: 'the secret holds an older pair than the newest (the running agent pushes it)' });
  const noKey = 'no app key (SAXO_APP_KEY, or app_key in the cache / secret payload): no refresh is possible';
  if (!(f.config.appKey ?? b.appKey)) findings.push({ status: 'fail', text: noKey, fix: `SAXO_APP_KEY=… in ${f.deployment.envFile}` });
  // The latest refresh recorded, on the secret or in the agent's state.
  const [onSecret, inState] = [f.secret?.meta.ok ? f.secret.meta.value.lastRefresh : undefined, state?.lastRefresh];
  const last = onSecret && inState ? (onSecret.at >= inState.at ? onSecret : inState) : (onSecret ?? inState);
  const ago = (ms: number) => `${human(f.now - ms)} ago`;
  const each = (['cache', 'state', 'secret'] as const).filter((s) => s !== 'secret' || f.secret).map((s) => `${s} ${unread.find((u) => u.source === s)?.how ?? describe(sources[s], b)}`);
  const origin = ORIGIN_NAME[plan.origin ?? 'cache'];
  const summary = [
    `newest: ${b.generation !== undefined ? `gen ${b.generation}` : 'no generation'} from the ${origin} (${each.join(', ')})`,
    `access ${human(access)} left`,
    `refresh ${refresh !== undefined ? `${human(refresh)} left` : 'expiry unknown (a bot wrote it)'}`,
    `obtained by ${b.source ?? 'unknown'}${b.issuedAt !== undefined ? ` ${ago(b.issuedAt)}` : ''}`,
    last ? `last refresh ${ago(last.at)} by ${last.by}` : 'no refresh recorded',
    b.chainStartedAt !== undefined ? `chain started ${ago(b.chainStartedAt)} (login)` : 'chain start unknown (a bot wrote a pair of this chain, or the login predates token-keeper)',
  ].join('; ');
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  const secs = (ms: number | undefined) => (ms === undefined ? undefined : Math.round(ms / 1000));
  const times = { accessExpiresAt: iso(b.accessExpiresAt), refreshExpiresAt: iso(b.refreshExpiresAt), issuedAt: iso(b.issuedAt), chainStartedAt: iso(b.chainStartedAt) };
  const left = { accessLeftSeconds: secs(access), refreshLeftSeconds: secs(refresh), chainAgeSeconds: secs(b.chainStartedAt !== undefined ? f.now - b.chainStartedAt : undefined) };
  const generations = { cache: sources.cache?.generation ?? null, state: sources.state?.generation ?? null, secret: sources.secret?.generation ?? null };
  const lastDetails = last ? { at: iso(last.at), by: last.by } : undefined;
  return fold('token', summary, findings, { origin, health: plan.health, generation: b.generation, source: b.source, ...times, ...left, lastRefresh: lastDetails, sources: generations });
}
