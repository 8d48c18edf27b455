/**
 * What runs as another user gets what it needs staged where that user can read it.
 *
 * As root the reliability suites run the CLI and the Python bot model as nobody (65534). A checkout in
 * a 0700 directory (root's home, `mktemp -d`) is unreachable for nobody, so the vitest global setup
 * (test/helpers/stage-setup.ts) copies bin/, dist/, native/ (the built addon), package.json, python_bot.py and node_modules
 * (hard links where the file system allows, a copy otherwise) into one 0755 directory per run.
 * Processes started as root keep using the checkout itself.
 */
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

declare module 'vitest' {
  export interface ProvidedContext {
    /** The staged copy of the runnable project (see stageForOtherUsers), or '' when none was made. */
    stagedRoot: string;
  }
}

/** What another user needs to run the CLI and the Python bot: paths relative to the project root. */
const STAGED = ['bin', 'dist', 'native', 'package.json', 'test/helpers/python_bot.py'] as const;

/** Make the 0755 copy under the system tmp dir; returns its root. Synchronous: runs once per run. */
export function stageForOtherUsers(from = REPO_ROOT): string {
  const root = mkdtempSync(join(tmpdir(), 'tk-stage-'));
  chmodSync(root, 0o755);
  for (const rel of STAGED) {
    if (!existsSync(join(from, rel))) continue; // dist/ before a build: the tests that need it say so
    mkdirSync(join(root, rel, '..'), { recursive: true, mode: 0o755 });
    cpSync(join(from, rel), join(root, rel), { recursive: true });
  }
  chmodSync(join(root, 'test'), 0o755);
  chmodSync(join(root, 'test', 'helpers'), 0o755);
  // node_modules is ~200 MB: hard links take a fraction of a second on the same file system.
  const linked = spawnSync('cp', ['-al', join(from, 'node_modules'), join(root, 'node_modules')]);
  if (linked.status !== 0) {
    rmSync(join(root, 'node_modules'), { recursive: true, force: true });
    cpSync(join(from, 'node_modules'), join(root, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  }
  return root;
}

/** The root another user runs the project from: the staged copy when the setup made one, else the checkout. */
export function rootForOtherUsers(): string {
  let staged = '';
  try {
    staged = inject('stagedRoot') ?? '';
  } catch {
    // Outside a vitest worker (no provide/inject): the checkout.
  }
  return staged || REPO_ROOT;
}

/** A project file, from where another user can read it. */
export function forOtherUsers(rel: string): string {
  return join(rootForOtherUsers(), rel);
}
