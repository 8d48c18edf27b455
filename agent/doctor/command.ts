/**
 * `npx token-keeper doctor [--json] [--chain NAME] [--bots-user U] [--unit PATH]`: gather, judge, print.
 * Exit 0 all ok (or skipped), 1 any warning, 2 any failure. Never presents a token, never writes
 * the secret or the data dir, never prints a token or the app secret.
 */
import { loadConfig } from '../../core/config.js';
import { ConfigError } from '../../core/errors.js';
import { secretsOf } from '../../core/token.js';
import type { Facts } from './facts.js';
import { gather } from './gather.js';
import { buildReport, configErrorChecks, formatText, judge, redact } from './report.js';
import { deployment, deploymentEnv, INSTALLED, type Deployment, type DeploymentRoots } from '../deployment.js';
import type { DoctorReport } from './types.js';

interface DoctorOptions {
  json?: boolean | undefined;
  botsUser?: string | undefined;
  unit?: string | undefined;
  /** One chain of the template unit (token-keeper@NAME): its env file, data dir and unit. */
  chain?: string | undefined;
}

function secretsIn(f: Facts): (string | undefined)[] {
  const tokens = [
    f.cache.ok && f.cache.value.kind === 'ok' ? f.cache.value.token : undefined,
    f.state.ok ? f.state.value?.token : undefined,
    f.secret?.latest.ok ? f.secret.latest.value?.token : undefined,
  ];
  return [f.config.appSecret, ...tokens.flatMap(secretsOf)];
}

export async function doctorReport(
  opts: DoctorOptions,
  callerEnv: Record<string, string | undefined> = process.env,
  roots: DeploymentRoots = INSTALLED,
): Promise<{ report: DoctorReport; secrets: (string | undefined)[] }> {
  const startedAt = Date.now();
  const configError = (message: string, fix: string, unit: string, secret?: string) =>
    ({ report: buildReport(configErrorChecks(message, fix), 'unknown', unit, startedAt), secrets: [secret] });
  let d: Deployment;
  try {
    d = deployment(opts.chain, opts.unit, roots);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return configError(e.message, `ls ${roots.etcDir}  # the installed chains are the NAME of each NAME.env there`, `token-keeper@${opts.chain ?? ''}`);
  }
  let env: Record<string, string | undefined>;
  try {
    env = await deploymentEnv(d, callerEnv);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return configError(e.message, `sudo npx token-keeper doctor${d.cliFlags}  (or as the bots' user); sudo ls -l ${d.envFile}  # does the chain exist?`, d.unit);
  }
  let config;
  try {
    config = loadConfig(env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return configError(e.message, `correct that variable in ${d.envFile} (README "Configuration")`, d.unit, env.SAXO_APP_SECRET);
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
