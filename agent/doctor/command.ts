/**
 * `npx token-keeper doctor [--json] [--chain NAME] [--bots-user U] [--unit PATH]`: gather, judge, print. Exit 0 all ok (or
 * skipped), 1 any warning, 2 any failure. Never presents a token, never writes the secret or the data dir, never prints a token or the app secret.
 */
import { loadConfig, type Config } from '../../core/config.js';
import { ConfigError } from '../../core/errors.js';
import { secretsOf } from '../../core/token.js';
import { deployment, deploymentEnv, INSTALLED, type Deployment, type DeploymentRoots } from '../deployment.js';
import { CHECK_IDS, gather, judge, type Facts } from './doctor.js';
import { exitCodeOf, skip, type CheckResult, type CheckStatus, type DoctorReport } from './types.js';

/** `chain`: one chain of the template unit (token-keeper@NAME): its env file, data dir and unit. */
type DoctorOptions = { json?: boolean | undefined; botsUser?: string | undefined; unit?: string | undefined; chain?: string | undefined };

export function buildReport(checks: CheckResult[], mode: DoctorReport['mode'], unit: string, startedAt: number): DoctorReport {
  const counts: Record<CheckStatus, number> = { ok: 0, warn: 0, fail: 0, skip: 0 };
  for (const c of checks) counts[c.status]++;
  return { exitCode: exitCodeOf(checks), mode, unit, now: new Date(startedAt).toISOString(), durationMs: Date.now() - startedAt, counts, checks };
}

/** One line a check: status, id, what was found, and the fix; then the counts. */
export function formatText(r: DoctorReport): string {
  const width = Math.max(...r.checks.map((c) => c.id.length));
  const lines = r.checks.map((c) => `${c.status.padEnd(4)}  ${c.id.padEnd(width)}  ${c.summary}${c.fix ? ` — fix: ${c.fix}` : ''}`);
  const n = r.counts;
  return [...lines, `doctor: ${n.ok} ok, ${n.warn} warn, ${n.fail} fail, ${n.skip} skipped in ${r.durationMs} ms (${r.unit}, ${r.mode}) — exit ${r.exitCode}`].join('\n');
}

/** Replace every known secret value (≥ 8 chars) with [REDACTED]: a last guard (holders' command lines, error texts). */
export const redact = (text: string, secrets: Iterable<string | undefined>): string =>
  [...secrets].reduce<string>((out, s) => (s && s.length >= 8 ? out.split(s).join('[REDACTED]') : out), text);

/** The app secret and every pair doctor read (the token view holds each source's). */
const secretsIn = (f: Facts) => [f.config.appSecret, ...Object.values(f.view.sources).flatMap(secretsOf)];

export async function doctorReport(opts: DoctorOptions, callerEnv: Record<string, string | undefined> = process.env, roots: DeploymentRoots = INSTALLED) {
  const startedAt = Date.now();
  // A step that fails with a ConfigError is the `config` finding, with that step's fix; nothing else can be judged.
  let [fix, unit, secret] = [`ls ${roots.etcDir}  # the installed chains are the NAME of each NAME.env there`, `token-keeper@${opts.chain ?? ''}`, undefined as string | undefined];
  let config: Config, d: Deployment, env: Record<string, string | undefined>;
  try {
    d = deployment(opts.chain, opts.unit, roots);
    [fix, unit] = [`sudo npx token-keeper doctor${d.cliFlags}  (or as the bots' user); sudo ls -l ${d.envFile}  # does the chain exist?`, d.unit];
    env = await deploymentEnv(d, callerEnv);
    [fix, secret] = [`correct that variable in ${d.envFile} (README "Configuration")`, env.SAXO_APP_SECRET];
    config = loadConfig(env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // The configuration does not parse (or cannot be read): that is the finding, and nothing else can be judged.
    const checks = CHECK_IDS.map((id) => (id === 'config' ? { id, status: 'fail' as const, summary: `configuration error: ${e.message}`, fix } : skip(id, 'the configuration does not parse')));
    return { report: buildReport(checks, 'unknown', unit, startedAt), secrets: [secret] };
  }
  const facts = await gather(config, { botsUser: opts.botsUser, deployment: d, env });
  return { report: buildReport(judge(facts), config.gcp ? 'cloud-connected' : 'standalone', d.unit, startedAt), secrets: secretsIn(facts) };
}

export async function runDoctor(opts: DoctorOptions): Promise<number> {
  const { report, secrets } = await doctorReport(opts);
  process.stdout.write(redact(opts.json ? JSON.stringify(report, null, 2) : formatText(report), secrets) + '\n');
  return report.exitCode;
}
