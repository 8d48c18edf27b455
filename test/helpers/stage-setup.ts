/**
 * vitest global setup, once per run (every project runs it; the first one does the work, the last
 * teardown removes it):
 * - as root, stage the runnable project for the processes the tests start as another user
 *   (test/helpers/stage.ts);
 * - run `npx token-keeper --help` once, so that npm's one-time setup of the project's own bin in
 *   its npx cache is done before tests start the agent through npx in parallel (two first runs
 *   race and can leave a cache entry without its package.json).
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { TestProject } from 'vitest/node';
import { REPO_ROOT, stageForOtherUsers } from './stage.js';

interface Shared {
  root: string;
  users: number;
}
const KEY = Symbol.for('token-keeper.test.stage');
const shared = globalThis as { [KEY]?: Shared };

export default function setup(project: TestProject): () => void {
  if (!shared[KEY]) {
    spawnSync('npx', ['token-keeper', '--help'], { cwd: REPO_ROOT, stdio: 'ignore', timeout: 60_000 });
    shared[KEY] = { root: process.getuid?.() === 0 ? stageForOtherUsers() : '', users: 0 };
  }
  const s = shared[KEY];
  s.users++;
  project.provide('stagedRoot', s.root);
  return () => {
    if (--s.users > 0) return;
    if (s.root) rmSync(s.root, { recursive: true, force: true });
    delete shared[KEY];
  };
}
