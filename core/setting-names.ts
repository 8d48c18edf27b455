/**
 * Every setting the project reads (by name), with its default and what it does: the one list `--help` prints
 * and the configuration check (core/config-check.ts) compares the environment against. core/config.ts
 * parses them; docs/DESIGN.md "Environment" documents them.
 */
export interface Setting {
  name: string;
  dflt: string;
  what: string;
}

export const SETTINGS: readonly Setting[] = [
  { name: 'TOKEN_KEEPER_DATA_DIR', dflt: '/opt/calypso/data if it exists, else ./data', what: "the bots' data dir: cache, lock, agent state" },
  { name: 'TOKEN_KEEPER_CREATE_DATA_DIR', dflt: 'false', what: 'create a missing data dir instead of refusing to start' },
  { name: 'TOKEN_KEEPER_ENV_FILE', dflt: '/etc/token-keeper/token-keeper.env when it exists', what: "the unit's env file the commands read (none: only this shell)" },
  { name: 'SAXO_ENVIRONMENT', dflt: 'SIM', what: 'SIM or LIVE' },
  { name: 'SAXO_AUTH_BASE_URL', dflt: "Saxo's for SAXO_ENVIRONMENT", what: 'https; http only for a loopback stand-in' },
  { name: 'SAXO_APP_KEY', dflt: 'from the cache / secret payload', what: 'the Saxo app key' },
  { name: 'SAXO_APP_SECRET', dflt: 'from the cache / secret payload', what: 'the Saxo app secret (never logged)' },
  { name: 'SAXO_REDIRECT_URI', dflt: 'http://localhost:8080/callback', what: "login's redirect; must be one of the app's redirect URIs" },
  { name: 'SAXO_HTTP_TIMEOUT_SECONDS', dflt: '10', what: 'per request to Saxo' },
  { name: 'CHECK_INTERVAL_SECONDS', dflt: '60', what: "the agent's check period" },
  { name: 'REFRESH_THRESHOLD_SECONDS', dflt: '300', what: 'the agent refreshes when this much access-token life is left' },
  { name: 'CLOUD_REFRESH_THRESHOLD_SECONDS', dflt: '600', what: 'the function refreshes when this much is left' },
  { name: 'BOT_REFRESH_THRESHOLD_SECONDS', dflt: '120', what: "the bots' own fallback threshold" },
  { name: 'CLOUD_SCHEDULE_SECONDS', dflt: '300', what: "Cloud Scheduler's period" },
  { name: 'CLOUD_EXPIRED_GRACE_SECONDS', dflt: '2700', what: 'the function leaves an expired token this long to the agent' },
  { name: 'TOKEN_EXPIRY_MARGIN_SECONDS', dflt: '60', what: "subtracted from Saxo's expires_in, as the bots do" },
  { name: 'REFRESH_TOKEN_ALERT_SECONDS', dflt: '900', what: 'warn when the refresh token has less than this left' },
  { name: 'MAX_REFRESH_FAILURES', dflt: '5', what: 'consecutive failures before the ALERT' },
  { name: 'KEEP_SECRET_VERSIONS', dflt: '3', what: 'secret versions kept enabled' },
  { name: 'LOCK_TIMEOUT_SECONDS', dflt: '30', what: "wait for the bots' lock" },
  { name: 'LEASE_TTL_SECONDS', dflt: '60', what: 'cross-host lease; longer than SAXO_HTTP_TIMEOUT_SECONDS' },
  { name: 'TOKEN_KEEPER_PRIMARY', dflt: 'true', what: 'with several VMs: the one that may refresh without the lease' },
  { name: 'TOKEN_KEEPER_HOLDER_ID', dflt: 'agent:<host>:<pid>', what: 'who refreshed, in logs and the secret' },
  { name: 'GOOGLE_CLOUD_PROJECT', dflt: 'unset: standalone', what: 'with TOKEN_SECRET_ID: cloud-connected (also GCLOUD_PROJECT)' },
  { name: 'GCLOUD_PROJECT', dflt: 'unset: standalone', what: 'the older spelling of GOOGLE_CLOUD_PROJECT' },
  { name: 'TOKEN_SECRET_ID', dflt: 'unset: standalone', what: "the token's Secret Manager secret" },
  { name: 'TOKEN_TOPIC_ID', dflt: 'token-rotated', what: 'the Pub/Sub topic of TOKEN_ROTATED' },
  { name: 'TOKEN_SUBSCRIPTION_ID', dflt: '(none: no push)', what: "this VM's subscription" },
  { name: 'PUBSUB_EMULATOR_HOST', dflt: '', what: 'local Pub/Sub emulator (tests, demo)' },
  { name: 'SECRET_MANAGER_EMULATOR_HOST', dflt: '', what: 'local Secret Manager stand-in, gRPC (tests, demo)' },
  { name: 'SECRET_MANAGER_EMULATOR_REST_HOST', dflt: '', what: "the stand-in's REST front (the function)" },
  { name: 'LOG_FORMAT', dflt: 'json', what: 'json or pretty' },
  { name: 'STATUS_LOG_SECONDS', dflt: '900', what: "the agent's human status line when nothing changes (0: every check)" },
  { name: 'INVALID_GRANT_RECHECK_SECONDS', dflt: '5', what: 'after invalid_grant, look once more for a newer pair after this long' },
  { name: 'LOGIN_ALERT_REPEAT_SECONDS', dflt: '900', what: 'while login is required, repeat the ALERT this often' },
  { name: 'RELOGIN_BASE_URL', dflt: 'unset: no phone re-login links', what: "the phone re-login service's https origin" },
  { name: 'RELOGIN_LINK_SECRET_ID', dflt: '<TOKEN_SECRET_ID>-relogin', what: "the re-login links' state secret" },
  { name: 'SAXO_OPENAPI_BASE_URL', dflt: "Saxo's gateway for SAXO_ENVIRONMENT", what: 'users/me, for the identity check' },
];

export const SETTING_NAMES: ReadonlySet<string> = new Set(SETTINGS.map((s) => s.name));

/** `--help`'s settings block: one line each. */
export function settingsHelp(): string {
  const width = Math.max(...SETTINGS.map((s) => s.name.length));
  return SETTINGS.map((s) => `  ${s.name.padEnd(width)}  ${s.what}${s.dflt ? ` (default: ${s.dflt})` : ''}`).join('\n');
}
