/**
 * `npx token-keeper doctor [--json] [--chain NAME] [--bots-user U] [--unit PATH]`: gather, judge, print.
 * Exit 0 all ok (or skipped), 1 any warning, 2 any failure. Never presents a token, never writes
 * the secret or the data dir, never prints a token or the app secret.
 */
import { loadConfig } from '../../core/config.js';
import { ConfigError } from '../../core/errors.js';
import type { TokenSet } from '../../core/token.js';
import type { Facts } from './facts.js';
import { gather } from './gather.js';
import { buildReport, configErrorChecks, formatText, judge, redact } from './report.js';
import { deployment, deploymentEnv, INSTALLED, type DeploymentRoots } from '../deployment.js';
import type { DoctorReport } from './types.js';

export interface DoctorOptions {
  json?: boolean | undefined;
  botsUser?: string | undefined;
  unit?: string | undefined;
  /** One chain of the template unit (token-keeper@NAME): its env file, data dir and unit. */
  chain?: string | undefined;
}

function secretsIn(f: Facts): (string | undefined)[] {
  const tokens: (TokenSet | undefined)[] = [
    f.cache.ok && f.cache.value.kind === 'ok' ? f.cache.value.token : undefined,
    f.state.ok ? f.state.value?.token : undefined,
    f.secret?.latest.ok ? f.secret.latest.value?.token : undefined,
  ];
  return [f.config.appSecret, ...tokens.flatMap((t) => [t?.accessToken, t?.refreshToken, t?.appSecret])];
}

export async function doctorReport(
  opts: DoctorOptions,
  callerEnv: Record<string, string | undefined> = process.env,
  roots: DeploymentRoots = INSTALLED,
): Promise<{ report: DoctorReport; secrets: (string | undefined)[] }> {
  const startedAt = Date.now();
  const d = deployment(opts.chain, opts.unit, roots);
  const env = await deploymentEnv(d, callerEnv);
  let config;
  try {
    config = loadConfig(env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return { report: buildReport(configErrorChecks(e.message, d.envFile), 'unknown', d.unit, startedAt), secrets: [env.SAXO_APP_SECRET] };
  }
  const facts = await gather(config, { botsUser: opts.botsUser, deployment: d, env });
  const report = buildReport(judge(facts), config.gcp ? 'cloud-connected' : 'standalone', d.unit, startedAt);
  return { report, secrets: secretsIn(facts) };
}

export async function runDoctor(opts: DoctorOptions): Promise<number> {
  const { report, secrets } = await doctorReport(opts);
  const text = opts.json ? JSON.stringify(report, null, 2) : formatText(report);
  process.stdout.write(redact(text, secrets) + '\n');
  return report.exitCode;
}
