/**
 * The environment contract (docs/DESIGN.md "Environment"), parsed once at the edge into a typed
 * Config and validated as a whole: a value that cannot work is refused here with one clear line
 * (the CLI exits 2), never discovered at 3 a.m. Seconds may be fractional (tests scale lifetimes down).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { hostname } from 'node:os';
import { ConfigError } from './errors.js';
import { checkAuthUrlScheme, checkGcpComplete } from './config-check.js';

export interface GcpConfig {
  projectId: string;
  secretId: string;
  topicId: string;
  subscriptionId?: string | undefined;
  pubsubEmulatorHost?: string | undefined;
  secretManagerEmulatorHost?: string | undefined;
  /** host:port of the stand-in's REST front (the function talks REST: docs/BENCHMARKS.md "Cold start"). */
  secretManagerEmulatorRestHost?: string | undefined;
}

export interface Config {
  dataDir: string;
  cachePath: string;
  lockPath: string;
  statePath: string;
  environment: 'SIM' | 'LIVE';
  authBaseUrl: string;
  appKey?: string | undefined;
  appSecret?: string | undefined;
  redirectUri: string;
  /** Phone re-login (functions/relogin/settings.ts validates them): the service's origin, the link-state secret, the OpenAPI gateway. */
  relogin: { baseUrl?: string | undefined; linkSecretId?: string | undefined; openapiBaseUrl?: string | undefined };
  checkIntervalMs: number;
  refreshThresholdMs: number;
  cloudRefreshThresholdMs: number;
  /** The function leaves an already-expired token this long to the VM agent (see functions/refresher.ts). */
  cloudExpiredGraceMs: number;
  /** Bots trust the cache while more than this remains (their 120 s buffer); used by status. */
  botThresholdMs: number;
  /** Subtracted from Saxo's expires_in when writing token_expiry, as the Python bots do (60 s). */
  expiryMarginMs: number;
  maxRefreshFailures: number;
  keepSecretVersions: number;
  /** Alert when the refresh token itself has less than this left. */
  refreshTokenAlertMs: number;
  /** The agent's human `token_status` line: on a change of health, else at most this often (0: every check). */
  statusLogMs: number;
  /** flock wait, as the bots: 30 s, retried every 100 ms. */
  lockTimeoutMs: number;
  lockRetryMs: number;
  /** Cross-host lease length. */
  leaseTtlMs: number;
  /** Saxo request timeout per attempt. */
  httpTimeoutMs: number;
  logFormat: 'json' | 'pretty';
  holderId: string;
  /**
   * With several VMs and Secret Manager unreachable, only the primary agent may present a refresh
   * token without the cross-host lease (docs/DESIGN.md "Several VMs"). Standalone: always primary.
   */
  primary: boolean;
  /** Create a missing data dir at startup instead of refusing to run (a typo must not run a keeper for nobody). */
  createDataDir: boolean;
  /** Cloud Scheduler's period: the function's last chance to save the chain is one period before the refresh token dies. */
  cloudSchedulePeriodMs: number;
  /** invalid_grant with no newer pair anywhere: look once more after this long (docs/DESIGN.md "Nothing dangerous is silent"). */
  invalidGrantRecheckMs: number;
  /** While login is required, the ALERT is repeated this often. */
  loginAlertRepeatMs: number;
  gcp?: GcpConfig | undefined;
}

type Env = Record<string, string | undefined>;

/** Node's timers hold at most 2^31 − 1 ms (~24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Seconds → ms. `positive`: an interval or timeout (0 would mean "never wait" or "spin"). */
function seconds(env: Env, key: string, dflt: number, positive = false): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return dflt * 1000;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || (positive && n === 0)) {
    throw new ConfigError(`${key} must be a ${positive ? 'positive' : 'non-negative'} number of seconds, got "${raw}"`);
  }
  if (n * 1000 > MAX_TIMER_MS) throw new ConfigError(`${key} must be at most ${Math.floor(MAX_TIMER_MS / 1000)} seconds (Node's timer limit), got "${raw}"`);
  return n * 1000;
}

/** The auth server URL: parseable, and never with credentials in it (they would reach logs). */
function authUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError('SAXO_AUTH_BASE_URL is not a URL');
  }
  if (u.username || u.password) throw new ConfigError('SAXO_AUTH_BASE_URL must not contain credentials (user:password@); set SAXO_APP_KEY / SAXO_APP_SECRET');
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new ConfigError(`SAXO_AUTH_BASE_URL must be an https URL, got ${u.protocol}`);
  checkAuthUrlScheme(u);
  return raw.replace(/\/+$/, '');
}

function bool(env: Env, key: string, dflt: boolean): boolean {
  const raw = env[key]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return dflt;
  if (['true', '1', 'yes'].includes(raw)) return true;
  if (['false', '0', 'no'].includes(raw)) return false;
  throw new ConfigError(`${key} must be true or false, got "${env[key]}"`);
}

function integer(env: Env, key: string, dflt: number, min = 1): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${key} must be an integer ≥ ${min}, got "${raw}"`);
  return n;
}

/** The bots' rule: /opt/calypso/data if it exists, else ./data. */
export function defaultDataDir(cwd = process.cwd()): string {
  return existsSync('/opt/calypso/data') ? '/opt/calypso/data' : resolve(cwd, 'data');
}

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const dataDir = env.TOKEN_KEEPER_DATA_DIR ? resolve(cwd, env.TOKEN_KEEPER_DATA_DIR) : defaultDataDir(cwd);
  const environment = (env.SAXO_ENVIRONMENT ?? 'SIM').toUpperCase();
  if (environment !== 'SIM' && environment !== 'LIVE') {
    throw new ConfigError(`SAXO_ENVIRONMENT must be SIM or LIVE, got "${env.SAXO_ENVIRONMENT}"`);
  }
  const authBaseUrl = authUrl(
    env.SAXO_AUTH_BASE_URL || (environment === 'LIVE' ? 'https://live.logonvalidation.net' : 'https://sim.logonvalidation.net'),
  );
  const logFormat = env.LOG_FORMAT === 'pretty' ? 'pretty' : 'json';
  if (env.LOG_FORMAT && env.LOG_FORMAT !== 'json' && env.LOG_FORMAT !== 'pretty') {
    throw new ConfigError(`LOG_FORMAT must be json or pretty, got "${env.LOG_FORMAT}"`);
  }

  checkGcpComplete(env);
  let gcp: GcpConfig | undefined;
  const projectId = env.GOOGLE_CLOUD_PROJECT || env.GCLOUD_PROJECT;
  if (projectId && env.TOKEN_SECRET_ID) {
    gcp = {
      projectId,
      secretId: env.TOKEN_SECRET_ID,
      topicId: env.TOKEN_TOPIC_ID || 'token-rotated',
      subscriptionId: env.TOKEN_SUBSCRIPTION_ID || undefined,
      pubsubEmulatorHost: env.PUBSUB_EMULATOR_HOST || undefined,
      secretManagerEmulatorHost: env.SECRET_MANAGER_EMULATOR_HOST || undefined,
      secretManagerEmulatorRestHost: env.SECRET_MANAGER_EMULATOR_REST_HOST || undefined,
    };
  }

  const checkIntervalMs = seconds(env, 'CHECK_INTERVAL_SECONDS', 60, true);
  const leaseTtlMs = seconds(env, 'LEASE_TTL_SECONDS', 60, true);
  const httpTimeoutMs = seconds(env, 'SAXO_HTTP_TIMEOUT_SECONDS', 10, true);
  // The lease must outlast one exchange with Saxo, or another refresher may take it mid-exchange.
  if (leaseTtlMs <= httpTimeoutMs) {
    throw new ConfigError(`LEASE_TTL_SECONDS (${leaseTtlMs / 1000}) must be longer than SAXO_HTTP_TIMEOUT_SECONDS (${httpTimeoutMs / 1000}): a refresh must finish inside the lease`);
  }

  return {
    dataDir,
    cachePath: join(dataDir, 'saxo_token_cache.json'),
    lockPath: join(dataDir, 'saxo_token.lock'),
    statePath: join(dataDir, '.token-keeper-state.json'),
    environment,
    authBaseUrl,
    appKey: env.SAXO_APP_KEY || undefined,
    appSecret: env.SAXO_APP_SECRET || undefined,
    redirectUri: env.SAXO_REDIRECT_URI || 'http://localhost:8080/callback',
    relogin: { baseUrl: env.RELOGIN_BASE_URL || undefined, linkSecretId: env.RELOGIN_LINK_SECRET_ID || undefined, openapiBaseUrl: env.SAXO_OPENAPI_BASE_URL || undefined },
    checkIntervalMs,
    refreshThresholdMs: seconds(env, 'REFRESH_THRESHOLD_SECONDS', 300),
    cloudRefreshThresholdMs: seconds(env, 'CLOUD_REFRESH_THRESHOLD_SECONDS', 600),
    cloudExpiredGraceMs: seconds(env, 'CLOUD_EXPIRED_GRACE_SECONDS', 2700),
    botThresholdMs: seconds(env, 'BOT_REFRESH_THRESHOLD_SECONDS', 120),
    expiryMarginMs: seconds(env, 'TOKEN_EXPIRY_MARGIN_SECONDS', 60),
    maxRefreshFailures: integer(env, 'MAX_REFRESH_FAILURES', 5),
    keepSecretVersions: integer(env, 'KEEP_SECRET_VERSIONS', 3),
    refreshTokenAlertMs: seconds(env, 'REFRESH_TOKEN_ALERT_SECONDS', 900),
    statusLogMs: seconds(env, 'STATUS_LOG_SECONDS', 900),
    lockTimeoutMs: seconds(env, 'LOCK_TIMEOUT_SECONDS', 30, true),
    lockRetryMs: 100,
    leaseTtlMs,
    httpTimeoutMs,
    logFormat,
    holderId: env.TOKEN_KEEPER_HOLDER_ID || `agent:${hostname()}:${process.pid}`,
    primary: gcp ? bool(env, 'TOKEN_KEEPER_PRIMARY', true) : true,
    createDataDir: bool(env, 'TOKEN_KEEPER_CREATE_DATA_DIR', false),
    cloudSchedulePeriodMs: seconds(env, 'CLOUD_SCHEDULE_SECONDS', 300, true),
    invalidGrantRecheckMs: seconds(env, 'INVALID_GRANT_RECHECK_SECONDS', 5),
    loginAlertRepeatMs: seconds(env, 'LOGIN_ALERT_REPEAT_SECONDS', 900, true),
    gcp,
  };
}
