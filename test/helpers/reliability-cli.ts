/**
 * The real CLI (`node bin/token-keeper.js …`) as another user, for the reliability suites: the same
 * CliProcess as test/helpers/agent-process.ts (JSON log lines, waitFor on events, stop), plus
 * spawn's uid/gid. As root the tests run the agent as nobody (65534), so that file permissions bite
 * as they do for the bots' user; as a non-root user they fall back to chmod on the user's own files.
 */
import { chownSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { SaxoStandin } from '../../standins/saxo/server.js';
import { parseFlat } from '../../core/codec.js';
import type { TokenSet } from '../../core/token.js';
import { startCli, type CliProcess } from './agent-process.js';

export const NOBODY = 65534;
export const isRoot = (): boolean => process.getuid?.() === 0;

export interface RunAs {
  uid: number;
  gid: number;
}

/** Who the agent runs as in these tests: nobody when we are root, else ourselves (undefined). */
export function agentUser(): RunAs | undefined {
  return isRoot() ? { uid: NOBODY, gid: NOBODY } : undefined;
}

/** A fresh data dir owned by `as` (or by us). */
export function dataDirFor(as: RunAs | undefined, prefix = 'tk-rel-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (as) chownSync(dir, as.uid, as.gid);
  return dir;
}

/** GCP settings CI may export, cleared: a standalone process unless a test says otherwise. */
export const STANDALONE: Record<string, undefined> = {
  GOOGLE_CLOUD_PROJECT: undefined,
  GCLOUD_PROJECT: undefined,
  TOKEN_SECRET_ID: undefined,
  TOKEN_TOPIC_ID: undefined,
  TOKEN_SUBSCRIPTION_ID: undefined,
  SECRET_MANAGER_EMULATOR_HOST: undefined,
};

/** startCli with an optional uid/gid. */
export function startCliAs(args: string[], env: Record<string, string | undefined>, as?: RunAs): CliProcess {
  return startCli(args, env, { as });
}

/** Run to completion. */
export async function runCliAs(
  args: string[],
  env: Record<string, string | undefined>,
  as?: RunAs,
): Promise<{ code: number | null; stdout: string; stderr: string; p: CliProcess }> {
  const p = startCliAs(args, env, as);
  const { code } = await p.exited;
  return { code, stdout: p.raw.join('\n'), stderr: p.stderr(), p };
}

/** I5 for every test here: no token and no app secret in anything the processes printed. */
export function expectNoSecrets(outputs: (CliProcess | string)[], secrets: Iterable<string | undefined>): void {
  const all = outputs.map((o) => (typeof o === 'string' ? o : o.raw.join('\n') + '\n' + o.stderr())).join('\n');
  expect(all.length, 'no output collected: the secret check would prove nothing').toBeGreaterThan(0);
  for (const s of secrets) {
    if (!s) continue;
    expect(all.includes(s), 'a token or the app secret appeared in stdout/stderr').toBe(false);
  }
}

/** No stack trace in a one-line CLI error. */
export function expectNoStack(text: string): void {
  expect(text).not.toMatch(/^\s+at .+\(.*:\d+:\d+\)$/m);
  expect(text).not.toMatch(/node:internal|\.js:\d+:\d+/);
}

/**
 * A live pair the stand-in issued for `app.key`, as a TokenSet with `leftSec` of access left and
 * `refreshLeftSec` (default 3600) of refresh left. Issued `lifeSec − leftSec` seconds ago when
 * `lifeSec` is given (a pair that has lived part of its life), else now. Both tokens go into `seen`.
 */
export function issuedPair(
  saxo: SaxoStandin,
  app: { key: string; secret: string },
  o: { leftSec: number; lifeSec?: number; refreshLeftSec?: number; generation?: number; source?: string; seen?: Set<string> },
): TokenSet {
  const p = saxo.issue(app.key);
  o.seen?.add(p.access_token).add(p.refresh_token);
  const now = Date.now();
  return {
    accessToken: p.access_token,
    refreshToken: p.refresh_token,
    accessExpiresAt: now + o.leftSec * 1000,
    refreshExpiresAt: now + (o.refreshLeftSec ?? 3600) * 1000,
    issuedAt: o.lifeSec === undefined ? now : now - (o.lifeSec - o.leftSec) * 1000,
    generation: o.generation,
    source: o.source ?? 'cloud',
    appKey: app.key,
    appSecret: app.secret,
    extra: {},
  };
}

/** The pair in `dir`/saxo_token_cache.json, or undefined when the file is missing or unusable; both tokens go into `seen`. */
export function cachedPair(dir: string, seen?: Set<string>): TokenSet | undefined {
  try {
    const p = parseFlat(readFileSync(join(dir, 'saxo_token_cache.json'), 'utf8'));
    if (!p.ok) return undefined;
    seen?.add(p.token.accessToken).add(p.token.refreshToken);
    return p.token;
  } catch {
    return undefined;
  }
}
