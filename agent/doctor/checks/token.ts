/** Check 4: the token across the cache, the agent's state and the secret — never its text. */
import { compareFreshness, type TokenSet } from '../../../core/token.js';
import type { Facts } from '../facts.js';
import { fold, human, type CheckResult, type Finding } from '../types.js';
import { tokenView } from './token-view.js';

const ORIGIN_NAME = { cache: 'cache', known: 'agent state', secret: 'secret' } as const;

function describe(t: TokenSet | undefined, best: TokenSet): string {
  if (!t) return 'none';
  const same = compareFreshness(t, best) === 0;
  return `${t.generation !== undefined ? `gen ${t.generation}` : 'no generation'}${same ? '' : ' (older)'}`;
}

function lastRefresh(f: Facts): { at: number; by: string } | undefined {
  const a = f.secret?.meta.ok ? f.secret.meta.value.lastRefresh : undefined;
  const b = f.state.ok ? f.state.value?.lastRefresh : undefined;
  if (a && b) return a.at >= b.at ? a : b;
  return a ?? b;
}

export function tokenCheck(f: Facts): CheckResult {
  const cli = (cmd: string) => `npx token-keeper ${cmd}${f.deployment.cliFlags}`;
  const journal = `journalctl -u ${f.deployment.unit} -n 50`;
  const LOGIN = cli('login');
  const { plan, sources } = tokenView(f);
  const b = plan.best;
  if (!b) {
    const why = [!f.cache.ok ? `cache unreadable: ${f.cache.error}` : undefined, f.secret && !f.secret.latest.ok ? 'the secret did not answer' : undefined]
      .filter(Boolean)
      .join('; ');
    return { id: 'token', status: 'fail', summary: `no token in the cache, the agent state or the secret${why ? ` (${why})` : ''}`, fix: LOGIN };
  }
  const findings: Finding[] = [];
  const access = plan.accessLeftMs ?? 0;
  const refresh = plan.refreshLeftMs;
  const state = f.state.ok ? f.state.value : undefined;
  if (plan.health === 'login_required') {
    findings.push({ status: 'fail', text: `the newest refresh token expired ${human(-(refresh ?? 0))} ago: the chain is dead`, fix: LOGIN });
  } else if (state?.loginRequired && plan.origin !== 'secret') {
    findings.push({ status: 'fail', text: 'the agent recorded that Saxo rejected the newest refresh token (login required)', fix: LOGIN });
  } else if (plan.health === 'expired') {
    findings.push({ status: 'fail', text: `the access token expired ${human(-access)} ago and nobody refreshed it`, fix: `${cli('refresh')}; ${journal}` });
  } else if (plan.health === 'due') {
    const why = f.config.gcp ? 'the cloud missed its window' : 'the agent refreshes now if it runs';
    findings.push({ status: 'warn', text: `only ${human(access)} left: inside the agent's threshold, ${why}`, fix: `${cli('status')}; ${journal}` });
  }
  if (plan.refreshTokenExpiring) {
    findings.push({ status: 'warn', text: `the refresh token dies in ${human(refresh ?? 0)} and no refresh is due before`, fix: cli('refresh --force') });
  }
  if (sources.cache && plan.writeCache) findings.push({ status: 'warn', text: 'the cache holds an older pair than the newest (the running agent rewrites it within seconds)' });
  if (!sources.cache && f.cache.ok && f.cache.value.kind === 'corrupt') findings.push({ status: 'warn', text: `the cache is unusable: ${f.cache.value.reason}` });
  if (plan.pushSecret) findings.push({ status: 'warn', text: 'the secret holds an older pair than the newest (the running agent pushes it)' });
  if (!(f.config.appKey ?? b.appKey)) {
    findings.push({ status: 'fail', text: 'no app key (SAXO_APP_KEY, or app_key in the cache / secret payload): no refresh is possible', fix: `SAXO_APP_KEY=… in ${f.deployment.envFile}` });
  }
  const last = lastRefresh(f);
  const parts = [
    `newest: ${b.generation !== undefined ? `gen ${b.generation}` : 'no generation'} from the ${ORIGIN_NAME[plan.origin ?? 'cache']}`,
    `(cache ${describe(sources.cache, b)}, state ${describe(sources.state, b)}${f.secret ? `, secret ${f.secret.latest.ok ? describe(sources.secret, b) : 'unreachable'}` : ''})`,
    `access ${human(access)} left`,
    `refresh ${refresh !== undefined ? `${human(refresh)} left` : 'expiry unknown (a bot wrote it)'}`,
    `obtained by ${b.source ?? 'unknown'}${b.issuedAt !== undefined ? ` ${human(f.now - b.issuedAt)} ago` : ''}`,
    last ? `last refresh ${human(f.now - last.at)} ago by ${last.by}` : 'no refresh recorded',
    b.chainStartedAt !== undefined ? `chain started ${human(f.now - b.chainStartedAt)} ago (login)` : 'chain start unknown (a bot wrote a pair of this chain, or the login predates token-keeper)',
  ];
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  return fold('token', `${parts[0]} ${parts[1]}; ${parts.slice(2).join('; ')}`, findings, {
    origin: ORIGIN_NAME[plan.origin ?? 'cache'],
    health: plan.health,
    generation: b.generation,
    source: b.source,
    accessExpiresAt: iso(b.accessExpiresAt),
    accessLeftSeconds: Math.round(access / 1000),
    refreshExpiresAt: iso(b.refreshExpiresAt),
    refreshLeftSeconds: refresh !== undefined ? Math.round(refresh / 1000) : undefined,
    issuedAt: iso(b.issuedAt),
    chainStartedAt: iso(b.chainStartedAt),
    chainAgeSeconds: b.chainStartedAt !== undefined ? Math.round((f.now - b.chainStartedAt) / 1000) : undefined,
    lastRefresh: last ? { at: iso(last.at), by: last.by } : undefined,
    sources: { cache: sources.cache?.generation ?? null, state: sources.state?.generation ?? null, secret: sources.secret?.generation ?? null },
  });
}
