/**
 * One environment everywhere (docs/DESIGN.md "One environment everywhere"): on the VM a command sees
 * the settings its agent runs with. The unit reads /etc/token-keeper/token-keeper.env (or a chain's
 * /etc/token-keeper/NAME.env, agent/deployment.ts); so do `status`, `refresh`, `login` and `doctor`,
 * and the file's values win over the shell's — the unit never sees the shell, and a command that
 * answers for the agent must look with the agent's settings. TOKEN_KEEPER_ENV_FILE names another
 * file, or `none` for this shell's settings only (tests set it: they never read the host's /etc).
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../core/errors.js';
import { deployment, deploymentEnv, INSTALLED, parseEnvFile, type DeploymentRoots } from './deployment.js';

type Env = Record<string, string | undefined>;

export interface UnitEnv {
  env: Env;
  /** The file read, if any. */
  read?: string | undefined;
  /** Settings this shell also set, to another value: the file's won. Names only (values may be secrets). */
  overridden: string[];
}

const NONE = new Set(['', 'none']);

/** The unit's environment for a command: the chain's, or the main unit's env file over `env`. */
export async function unitEnv(o: { chain?: string | undefined; env: Env; roots?: DeploymentRoots }): Promise<UnitEnv> {
  const roots = o.roots ?? INSTALLED;
  if (o.chain !== undefined) {
    const d = deployment(o.chain, undefined, roots);
    const merged = await deploymentEnv(d, o.env);
    return { env: merged, read: d.envFile, overridden: overriddenNames(o.env, merged, ['TOKEN_KEEPER_DATA_DIR']) };
  }
  const explicit = o.env.TOKEN_KEEPER_ENV_FILE;
  if (explicit !== undefined && NONE.has(explicit.trim().toLowerCase())) return { env: o.env, overridden: [] };
  const path = explicit ?? deployment(undefined, undefined, roots).envFile;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    // No env file at the default place: not a VM install (a workstation, a clone): this shell only.
    if (code === 'ENOENT' && explicit === undefined) return { env: o.env, overridden: [] };
    if (code === 'EACCES' || code === 'EPERM') {
      throw new ConfigError(
        `cannot read ${path} (${code}), the agent's settings: run as root or the bots' user (sudo -u <bots-user> npx token-keeper …), or TOKEN_KEEPER_ENV_FILE=none to use only this shell's settings`,
      );
    }
    throw new ConfigError(`cannot read ${path} (${code}; TOKEN_KEEPER_ENV_FILE): fix the path, or TOKEN_KEEPER_ENV_FILE=none to use only this shell's settings`);
  }
  const merged = { ...o.env, ...parseEnvFile(text) };
  return { env: merged, read: path, overridden: overriddenNames(o.env, merged) };
}

function overriddenNames(shell: Env, merged: Env, ignore: string[] = []): string[] {
  return Object.keys(merged)
    .filter((k) => !ignore.includes(k) && shell[k] !== undefined && shell[k] !== merged[k])
    .sort();
}

/** The one line a command prints (stderr) about where its settings came from. */
export function unitEnvLine(u: UnitEnv): string | undefined {
  if (!u.read) return undefined;
  const won = u.overridden.length ? `; they win over this shell's ${u.overridden.join(', ')}` : '';
  return `token-keeper: settings from ${u.read} (as the unit reads them${won})`;
}
