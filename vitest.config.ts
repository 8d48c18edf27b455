import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests spawn processes and servers on loopback; keep parallelism modest on 2 cores.
    maxWorkers: 2,
    env: { METADATA_SERVER_DETECTION: 'none' },
    // As root: stage the CLI once per run where the other users the tests run it as can read it.
    globalSetup: ['test/helpers/stage-setup.ts'],
  },
});
