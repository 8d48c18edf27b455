/**
 * vitest global setup: as root, stage the runnable project once per run for the processes the tests
 * start as another user (see test/helpers/stage.ts); removed at teardown.
 */
import { rmSync } from 'node:fs';
import type { TestProject } from 'vitest/node';
import { stageForOtherUsers } from './stage.js';

export default function setup(project: TestProject): () => void {
  if (process.getuid?.() !== 0) {
    project.provide('stagedRoot', '');
    return () => {};
  }
  const root = stageForOtherUsers();
  project.provide('stagedRoot', root);
  return () => rmSync(root, { recursive: true, force: true });
}
