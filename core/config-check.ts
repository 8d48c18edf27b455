/**
 * The configuration checked as a whole (docs/DESIGN.md "Configuration checked as a whole"): what a
 * single variable's parser cannot see. Errors are ConfigError (one line with the fix; the CLI exits
 * 2); unknown names are warnings with the closest known name, since a typo'd setting is otherwise
 * silently ignored (CHECK_INTERVL_SECONDS=30 runs with 60).
 */
import { ConfigError } from './errors.js';
import { SETTING_NAMES } from './setting-names.js';

type Env = Record<string, string | undefined>;

/** Prefixes that are ours: any other name with them is a mistake. */
const PREFIXES = ['TOKEN_KEEPER_', 'SAXO_', 'CLOUD_'];
/** Names with our prefixes that others set (Cloud Shell, the Google Cloud SDK's images). */
const FOREIGN = new Set(['CLOUD_SHELL', 'CLOUD_SDK_VERSION']);

/** Levenshtein distance, bounded: stops counting past `max`. */
function distance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The known setting closest to `name` (within a few edits), if any. */
export function closestSetting(name: string, max = 3): string | undefined {
  let best: string | undefined;
  let bestD = max + 1;
  for (const known of SETTING_NAMES) {
    const d = distance(name, known, max);
    if (d < bestD) [best, bestD] = [known, d];
  }
  return best;
}

/**
 * Variables that look like settings but are none: our prefixes, or within two edits of a known
 * name (CHECK_INTERVL_SECONDS). One line each, with the closest known name.
 */
export function unknownSettings(env: Env): string[] {
  const out: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (env[name] === undefined || SETTING_NAMES.has(name) || FOREIGN.has(name)) continue;
    const ours = PREFIXES.some((p) => name.startsWith(p));
    const near = closestSetting(name, ours ? 3 : 2);
    if (!ours && (near === undefined || name.length < 8)) continue;
    out.push(`unknown setting ${name} is ignored${near ? `: did you mean ${near}?` : ' (npx token-keeper --help lists every setting)'}`);
  }
  return out;
}

const PROJECT = ['GOOGLE_CLOUD_PROJECT', 'GCLOUD_PROJECT'];
const CLOUD_ONLY = ['TOKEN_TOPIC_ID', 'TOKEN_SUBSCRIPTION_ID'];

/** Cloud-connected needs a project and the secret: half of it is a mistake, not standalone. */
export function checkGcpComplete(env: Env): void {
  const set = (k: string) => (env[k] ?? '') !== '';
  const hasProject = PROJECT.some(set);
  const hasSecret = set('TOKEN_SECRET_ID');
  if (hasProject && hasSecret) return;
  const given = [...PROJECT, 'TOKEN_SECRET_ID', ...CLOUD_ONLY].filter(set);
  if (given.length === 0) return; // standalone
  const missing = [...(hasProject ? [] : ['GOOGLE_CLOUD_PROJECT']), ...(hasSecret ? [] : ['TOKEN_SECRET_ID'])];
  throw new ConfigError(
    `${given.join(', ')} set, but cloud-connected mode also needs ${missing.join(' and ')}: ` +
      `set ${missing.length > 1 ? 'them' : 'it'} (terraform output agent_env has every line), or unset ${given.join(', ')} to run standalone`,
  );
}

/** localhost, ::1 or 127.x.y.z (brackets allowed): this machine. doctor uses the same rule. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Saxo over plain http only for a stand-in on this machine: anywhere else the app secret and tokens would travel in clear. */
export function checkAuthUrlScheme(u: URL): void {
  if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
    throw new ConfigError(
      `SAXO_AUTH_BASE_URL must be https (plain http only for a stand-in on this machine), got http://${u.host}: use https://${u.host}, or unset it for Saxo's own (SAXO_ENVIRONMENT)`,
    );
  }
}
