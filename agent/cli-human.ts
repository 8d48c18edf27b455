/**
 * What the CLI says to a person: its version, `--help`'s examples and settings, and the summary
 * `login` and `refresh` print on a terminal (JSON log lines stay the output for pipes and journald).
 * Never token material: only expiries and generations.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { settingsHelp } from '../core/setting-names.js';
import type { TokenSet } from '../core/token.js';

/** package.json's version: from dist/agent/ (built) or agent/ (tsx). */
export function packageVersion(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(fileURLToPath(new URL(rel, import.meta.url)), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'token-keeper' && pkg.version) return pkg.version;
    } catch {
      // not this layout
    }
  }
  return 'unknown';
}

export const VERSION_LINE = (): string => `token-keeper ${packageVersion()} (Node ${process.version})`;

export const HELP_AFTER = (): string => `
Examples:
  npx token-keeper status                      is the token healthy? what to do next (exit 0/1/2)
  npx token-keeper status --json               the same, machine-readable
  npx token-keeper refresh                     refresh now if due (safe while the agent runs)
  npx token-keeper refresh --force             refresh now even if not due
  npx token-keeper login --no-open             sign in again; prints the URL to open elsewhere
  npx token-keeper doctor                      check the whole deployment, with a fix for each problem
  npx token-keeper status --chain live         one chain of token-keeper@.service
  npx token-keeper demo --duration 60          everything locally against a Saxo stand-in

On the VM, commands read the unit's env file (/etc/token-keeper/token-keeper.env, or the chain's)
as the unit does; its values win over this shell's (TOKEN_KEEPER_ENV_FILE=none: this shell only).

Settings (environment variables):
${settingsHelp()}

Docs: README.md, docs/OPERATIONS.md (daily commands, troubleshooting).`;

function inWords(seconds: number): string {
  const s = Math.abs(Math.round(seconds));
  const txt = s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : `${Math.floor(s / 60)}m ${s % 60}s`;
  return seconds < 0 ? `expired ${txt} ago` : `in ${txt}`;
}

/** The terminal summary after `login` or `refresh` stored a pair. */
export function tokenSummary(headline: string, t: Pick<TokenSet, 'accessExpiresAt' | 'refreshExpiresAt' | 'generation'>, now = Date.now()): string {
  const lines = [headline];
  lines.push(`  access token   expires ${new Date(t.accessExpiresAt).toISOString()} (${inWords((t.accessExpiresAt - now) / 1000)})`);
  if (t.refreshExpiresAt !== undefined) {
    lines.push(`  refresh token  expires ${new Date(t.refreshExpiresAt).toISOString()} (${inWords((t.refreshExpiresAt - now) / 1000)})`);
  }
  if (t.generation !== undefined) lines.push(`  generation     ${t.generation}`);
  lines.push('The agent picks it up at its next check: no restart needed.');
  return lines.join('\n') + '\n';
}
