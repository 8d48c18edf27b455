import { defineConfig } from 'vitest/config';
import LongestFirst from './test/helpers/sequencer.js';

/**
 * Tests in tiers, by what a test starts (docs/DESIGN.md, "Tests in tiers"); `npm test` runs them all,
 * `npm run test:<tier>` one. A new test file lands in unit/ or process by its directory; list it below
 * when it needs the Pub/Sub emulator or a browser, or is about infra/.
 */
const INFRA = ['test/unit/infra-*.test.ts', 'test/integration/infra-*.test.ts'];
const BROWSER = ['test/browser/**/*.test.ts', 'test/**/*.browser.test.ts', 'test/integration/relogin-browser.test.ts'];
/** Integration tests that need the Pub/Sub emulator (and the Secret Manager stand-in). */
const EMULATOR = [
  'cloud-crash',
  'cloud-e2e',
  'cloud-outage',
  'cloud-push-path',
  'cloud-race',
  'demo',
  'doctor-cloud',
  'doctor-credentials',
  'doctor-secret-manager-iam',
  'event-bus',
  'login',
  'reliability-announce-unreadable',
  'reliability-cloud',
  'reliability-config',
  'reliability-consumed',
  'reliability-events',
  'reliability-login',
  'reliability-slow-deps',
  'reliability-stop',
  'relogin-issue',
  'secret-store',
  'several-vms',
  'status-cli',
].map((name) => `test/integration/${name}.test.ts`);

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests spend most of their time waiting on processes, timers and loopback servers:
    // 4 workers on 2 cores keep the CPU at ≈ 120 % (docs/BENCHMARKS.md "Test tiers"). TEST_WORKERS overrides it.
    maxWorkers: Number(process.env.TEST_WORKERS ?? 4),
    // Longest files first, so the run does not end waiting on one (test/helpers/sequencer.ts).
    sequence: { sequencer: LongestFirst },
    // TOKEN_KEEPER_ENV_FILE=none: no test reads the host's /etc/token-keeper (agent/env-file.ts).
    env: { METADATA_SERVER_DETECTION: 'none', TOKEN_KEEPER_ENV_FILE: 'none' },
    // As root: stage the CLI once per run where the other users the tests run it as can read it.
    globalSetup: ['test/helpers/stage-setup.ts'],
    projects: [
      // Pure functions and in-process doubles: no child process, no server, no emulator.
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], exclude: [...INFRA, ...BROWSER] } },
      // Real processes on loopback: the CLI, python3 bots, the Saxo stand-in; no Pub/Sub.
      { extends: true, test: { name: 'process', include: ['test/integration/**/*.test.ts'], exclude: [...INFRA, ...BROWSER, ...EMULATOR] } },
      { extends: true, test: { name: 'emulator', include: EMULATOR, exclude: BROWSER } },
      { extends: true, test: { name: 'browser', include: BROWSER } },
      // Terraform (parsed offline), install.sh, the function package, the unit's sandbox.
      { extends: true, test: { name: 'infra', include: INFRA, exclude: BROWSER } },
    ],
  },
});
