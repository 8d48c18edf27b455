/**
 * `npx token-keeper <command>`: agent | status [--json] | refresh [--force] | login | demo | doctor.
 * Returns the process exit code; never prints token material.
 */
import { existsSync } from 'node:fs';
import { loadConfig, type Config } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { chainName, commandLogFormat, createLogger, type Logger } from '../core/log.js';
import { errorText } from '../core/errors.js';

/** `human`: a command a person runs (text lines on a terminal unless LOG_FORMAT says otherwise). */
function setup(human = false): { config: Config; logger: Logger } {
  const config = loadConfig();
  const format = human ? commandLogFormat(config.logFormat) : config.logFormat;
  const logger = createLogger({ format, component: 'agent', chain: chainName(config) });
  logger.addSecret(config.appSecret);
  return { config, logger };
}

/** While idle, a stop that takes longer than this exits anyway (docs/DESIGN.md "Stopping"). */
const IDLE_STOP_MS = 4_500;

async function runAgent(): Promise<number> {
  const { config, logger } = setup();
  {
    // A refresh every ~17 min, a file watcher and a rare event need no optimising compiler: without
    // TurboFan, Maglev (newer Node) and Sparkplug the agent keeps ~4 MB less resident (docs/BENCHMARKS.md
    // "The standalone agent"). Set before the agent's modules load. Node 24 starts Maglev before this
    // line runs: the launchers pass --no-maglev too (agent/runtime-flags.ts).
    const { setFlagsFromString } = await import('node:v8');
    setFlagsFromString('--no-turbofan');
    setFlagsFromString('--no-maglev');
    setFlagsFromString('--no-sparkplug');
    // The idle agent runs a full GC rarely: the memory reducer's two a few seconds after start, then
    // hardly any. At those, drop the bytecode of code not run since the previous full GC (start-up,
    // client construction, proto loading: recompiled lazily should it run again) and compact the pages
    // it leaves: ≈ 3 MB less resident when subscribed on Node 24 (docs/BENCHMARKS.md "Agent memory on Node 24").
    setFlagsFromString('--bytecode-old-age=1');
    setFlagsFromString('--compact-on-every-full-gc');
  }
  const { unknownSettings } = await import('../core/config-check.js');
  for (const w of unknownSettings(process.env)) logger.warn('config_unknown_setting', `Configuration: ${w}`);
  const { startAgent } = await import('./agent.js');
  const ctl = new AbortController();
  let reconciler: { phase: string } | undefined;
  const phase = () => reconciler?.phase ?? 'idle';
  // An exchange already sent is answered within SAXO_HTTP_TIMEOUT_SECONDS; storing it takes a few
  // more (the secret gets ≤ 5 s). Past that, nothing this process does can still save anything.
  const hardStopMs = config.httpTimeoutMs + 15_000;
  const exitWhen = (ok: () => boolean, code: number, why: string) => {
    const poll = setInterval(() => {
      if (!ok()) return;
      logger.warn('forced_exit', why);
      process.exit(code);
    }, 50);
    poll.unref();
  };
  const stop = (sig: string) => {
    if (!ctl.signal.aborted) {
      logger.info('signal', `Received ${sig}, stopping`);
      ctl.abort();
      const t0 = Date.now();
      // Idle but stuck (a slow Secret Manager call): exit. An exchange in flight: wait for its answer
      // and writes, up to the hard bound — and even then never while Saxo's answer is being stored.
      const waited = () => Date.now() - t0;
      exitWhen(
        () => (waited() > IDLE_STOP_MS && phase() === 'idle') || (waited() > hardStopMs && phase() !== 'persisting'),
        0,
        'Stop took too long; exiting (no answer from Saxo is left unstored)',
      );
      return;
    }
    // A second signal forces the exit — but never between Saxo's answer and the disk.
    logger.warn('signal', `Received ${sig} again, exiting as soon as no answer from Saxo is unstored`, { phase: phase() });
    exitWhen(() => phase() !== 'persisting', 1, 'Forced exit on a second signal');
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const handle = await startAgent(config, logger, ctl.signal, (r) => (reconciler = r));
  // Started: the executable's start-up pages are no longer needed (agent/page-release.ts).
  (await import('./page-release.js')).releaseStartupPages(logger);
  await handle.done;
  // Everything durable is written and every client closed; a library handle that lingers (a gRPC
  // channel's timer) must not hold the process until the stop watchdog. stdout is synchronous on
  // Linux pipes and files, so no log line is lost.
  process.exit(0);
}

const CHAIN_HELP = 'one chain of token-keeper@.service: its env file /etc/token-keeper/NAME.env and data dir /var/lib/token-keeper/NAME';

/**
 * This command sees what the unit gives its agent: the main unit's env file, or `--chain NAME`'s
 * (agent/env-file.ts), and says which file it read (stderr: stdout stays the command's output).
 */
async function useChain(chain: string | undefined): Promise<void> {
  const { unitEnv, unitEnvLine } = await import('./env-file.js');
  const u = await unitEnv({ chain, env: process.env });
  Object.assign(process.env, u.env);
  const line = unitEnvLine(u);
  if (line) process.stderr.write(line + '\n');
  const { unknownSettings } = await import('../core/config-check.js');
  for (const w of unknownSettings(process.env)) process.stderr.write(`token-keeper: warning: ${w}\n`);
}

async function runStatus(opts: { json?: boolean; chain?: string }): Promise<number> {
  const config = loadConfig();
  const [{ collectStatus, formatStatus }, { deployment }] = await Promise.all([import('./status.js'), import('./deployment.js')]);
  const report = await collectStatus(config, Date.now(), deployment(opts.chain));
  process.stdout.write((opts.json ? JSON.stringify(report, null, 2) : formatStatus(report)) + '\n');
  return report.exitCode;
}

async function runRefresh(opts: { force?: boolean }): Promise<number> {
  const { config, logger } = setup(true);
  const [{ Reconciler }, { connectCloud, reconcilerDeps }] = await Promise.all([import('./reconciler.js'), import('./wiring.js')]);
  if (!existsSync(config.dataDir)) throw new ConfigError(`data dir ${config.dataDir} does not exist (TOKEN_KEEPER_DATA_DIR)`);
  const cloud = await connectCloud(config, logger);
  try {
    // The agent's clock (docs/DESIGN.md "Server time"): a manual refresh on a host whose clock is off decides on Saxo's time.
    const clockWatch = await (await import('./clock-watch.js')).startAgentClock(config, logger);
    const r = new Reconciler({ ...reconcilerDeps(config, logger, cloud, clockWatch.clock), clockWatch });
    await r.load();
    const out = await r.run({ kind: 'refresh', force: opts.force === true });
    logger.info('refresh_command', `refresh: ${out}`, { outcome: out });
    if (process.stdout.isTTY) process.stdout.write(await refreshSummary(config, out));
    return out === 'login_required' ? 2 : out === 'failed' || out === 'deferred' ? 1 : 0;
  } finally {
    await cloud?.close();
  }
}

/** On a terminal: what `refresh` did, the pair's expiry now, and the next step if any. */
async function refreshSummary(config: Config, out: string): Promise<string> {
  if (out === 'login_required') return `\nrefresh: login required (no token anywhere, or Saxo no longer accepts its refresh token).\nnext: npx token-keeper login\n`;
  if (out === 'failed' || out === 'deferred') return `\nrefresh: ${out}. next: npx token-keeper status (then doctor)\n`;
  const [{ createCacheFile }, { tokenSummary }] = await Promise.all([import('./cache-file.js'), import('./cli-human.js')]);
  const cache = await createCacheFile(config.cachePath).read();
  if (cache.kind !== 'ok') return `\nrefresh: ${out}\n`;
  return '\n' + tokenSummary(out === 'refreshed' ? 'Refreshed: new token stored.' : `refresh: ${out}; the token in the cache:`, cache.token);
}

export async function main(argv: string[]): Promise<number> {
  // The long-running agent skips the CLI parser (~2 MB it would keep resident for nothing).
  if (argv.length === 1 && argv[0] === 'agent') return guard(runAgent);
  const [{ Command, CommanderError }, { HELP_AFTER, VERSION_LINE }] = await Promise.all([import('commander'), import('./cli-human.js')]);
  let code = 0;
  const program = new Command('token-keeper')
    .description('Keeps a Saxo OpenAPI OAuth token alive for a fleet of trading bots')
    .version(VERSION_LINE(), '-V, --version', 'print the version (and the Node it runs on)')
    .addHelpText('after', HELP_AFTER())
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  program.command('agent').description('run the VM agent in the foreground (JSON logs on stdout)').action(async () => {
    code = await runAgent();
  });
  program
    .command('status')
    .description('token state from cache, agent state and secret; exit 0 healthy, 1 degraded/overdue, 2 expired/missing/login required')
    .option('--json', 'machine-readable output')
    .option('--chain <name>', CHAIN_HELP)
    .action(async (o: { json?: boolean; chain?: string }) => {
      await useChain(o.chain);
      code = await runStatus(o);
    });
  program
    .command('refresh')
    .description('one check now under the same locks; refreshes if due (--force: even if not due)')
    .option('--force', 'refresh even when the token is not yet due')
    .option('--chain <name>', CHAIN_HELP)
    .action(async (o: { force?: boolean; chain?: string }) => {
      await useChain(o.chain);
      code = await runRefresh(o);
    });
  program
    .command('login')
    .description('browser sign-in (authorization code + PKCE) on a loopback redirect; stores the new pair')
    .option('--force', 'overwrite even if a newer pair is stored')
    .option('--no-open', 'print the URL instead of opening a browser')
    .option('--timeout <seconds>', 'give up after this long', '300')
    .option('--target <where>', 'where to store: auto | secret | cache | both', 'auto')
    .option('--import <file>', 'store a pair a failed login saved to a file (no browser)')
    .option('--link', 'issue a one-time re-login link for a phone (needs RELOGIN_BASE_URL; no browser here)')
    .option('--chain <name>', CHAIN_HELP)
    .action(async (o: { force?: boolean; open: boolean; timeout: string; target: string; import?: string; link?: boolean; chain?: string }) => {
      await useChain(o.chain);
      if (o.link) {
        const { runLoginLink } = await import('./relogin-link.js');
        code = await runLoginLink();
        return;
      }
      const { runLogin } = await import('./login.js');
      code = await runLogin(o);
    });
  program
    .command('doctor')
    .description('checks the deployment (config, data dir, lock, token, IAM, Pub/Sub, clock, Saxo, agent, cloud path); exit 0 ok, 1 warnings, 2 failures')
    .option('--json', 'one JSON object with every check')
    .option('--bots-user <user>', "judge the data dir for this user (default: the unit's User=, else the current user)")
    .option('--chain <name>', CHAIN_HELP + ', unit token-keeper@.service')
    .option('--unit <path>', 'the installed systemd unit to read User=/Group=/ReadWritePaths=/StateDirectory= from (default /etc/systemd/system/token-keeper.service, or token-keeper@.service with --chain)')
    .action(async (o: { json?: boolean; botsUser?: string; unit?: string; chain?: string }) => {
      // doctor reads a chain's env file itself (and reports an unreadable one as a check).
      if (o.chain === undefined) await useChain(undefined);
      const { runDoctor } = await import('./doctor/command.js');
      code = await runDoctor(o);
    });
  program
    .command('demo')
    .description('the whole system on this machine against a Saxo stand-in (no GCP or Saxo account)')
    .option('--duration <seconds>', 'how long to run', '60')
    .action(async (o: { duration: string }) => {
      const { runDemo } = await import('../tools/demo/demo.js');
      code = await runDemo({ durationSec: Number(o.duration) });
    });
  return guard(
    async () => {
      await program.parseAsync(argv, { from: 'user' });
      return code;
    },
    (err) => (err instanceof CommanderError ? (err.exitCode === 0 ? 0 : 2) : undefined),
  );
}

/** Errors become a one-line message (never a stack with token material) and exit code 2. */
async function guard(fn: () => Promise<number>, special?: (err: unknown) => number | undefined): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    const sc = special?.(err);
    if (sc !== undefined) return sc;
    if (err instanceof ConfigError) {
      process.stderr.write(`token-keeper: configuration error: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`token-keeper: ${errorText(err)}\n`);
    return 2;
  }
}
