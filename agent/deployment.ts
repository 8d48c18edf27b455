/**
 * Which installed agent a CLI command looks at: the main unit (token-keeper.service, settings in the
 * caller's environment), or one chain of the template unit (token-keeper@<chain>.service). A chain is
 * seen as its unit runs it: the settings of /etc/token-keeper/<chain>.env over the caller's
 * environment, and the data dir /var/lib/token-keeper/<chain> that the unit sets on its command line
 * (an env file copied from the main unit's may name another dir; the unit ignores it, so do we).
 * docs/OPERATIONS.md "A second chain".
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../core/errors.js';

export interface Deployment {
  /** systemd unit name, for the commands doctor prints: token-keeper or token-keeper@<chain>. */
  unit: string;
  /** The unit file doctor reads User=/Group=/ReadWritePaths=/StateDirectory= from. */
  unitPath: string;
  /** Drop-in directories, in systemd's order (the template's, then the instance's). */
  dropInDirs: string[];
  /** The template instance (%i), for a chain. */
  instance?: string | undefined;
  /** Where the operator puts this agent's settings. */
  envFile: string;
  /** systemd's StateDirectory= root (/var/lib). */
  stateDir: string;
  /** What to add to a printed `npx token-keeper …` command to look at the same deployment. */
  cliFlags: string;
}

/** Where install.sh and systemd put things; tests point these at temporary directories. */
export interface DeploymentRoots {
  unitDir: string;
  etcDir: string;
  stateDir: string;
}
export const INSTALLED: DeploymentRoots = { unitDir: '/etc/systemd/system', etcDir: '/etc/token-keeper', stateDir: '/var/lib' };

// The same rule as infra/systemd/install.sh's CHAINS.
const CHAIN_NAME = /^[a-z][a-z0-9-]{0,30}$/;

export function deployment(chain?: string, unitPath?: string, roots: DeploymentRoots = INSTALLED): Deployment {
  if (chain === undefined) {
    const path = unitPath ?? `${roots.unitDir}/token-keeper.service`;
    return { unit: 'token-keeper', unitPath: path, dropInDirs: [`${path}.d`], envFile: `${roots.etcDir}/token-keeper.env`, stateDir: roots.stateDir, cliFlags: '' };
  }
  if (!CHAIN_NAME.test(chain) || chain === 'token-keeper') {
    throw new ConfigError(`--chain must be a chain name as install.sh's CHAINS takes it (lowercase letters, digits, dashes), got "${chain}"`);
  }
  const path = unitPath ?? `${roots.unitDir}/token-keeper@.service`;
  return {
    unit: `token-keeper@${chain}`,
    unitPath: path,
    dropInDirs: [`${path}.d`, `${roots.unitDir}/token-keeper@${chain}.service.d`],
    instance: chain,
    envFile: `${roots.etcDir}/${chain}.env`,
    stateDir: roots.stateDir,
    cliFlags: ` --chain ${chain}`,
  };
}

/**
 * systemd's EnvironmentFile= syntax, as far as env files here use it: KEY=VALUE lines, `#`/`;`
 * comments, optional single or double quotes around the value.
 */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!;
    const q = value[0];
    if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) value = value.slice(1, -1);
    out[m[1]!] = value;
  }
  return out;
}

/** The environment the deployment's agent runs with (the caller's own for the main unit). */
export async function deploymentEnv(d: Deployment, env: Record<string, string | undefined>): Promise<Record<string, string | undefined>> {
  if (d.instance === undefined) return env;
  let text: string;
  try {
    text = await readFile(d.envFile, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`cannot read ${d.envFile} for chain ${d.instance} (${code}); run as root or the bots' user`);
  }
  return { ...env, ...parseEnvFile(text), TOKEN_KEEPER_DATA_DIR: `${d.stateDir}/token-keeper/${d.instance}` };
}
