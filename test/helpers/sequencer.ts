/**
 * Longest test files first (vitest's default orders by project name, then by file size when no
 * cache exists — as in CI's fresh clone — which started the longest process-tier files last and
 * left the run's tail to them). The seconds are measured (docs/BENCHMARKS.md "Test tiers"); a stale
 * number only costs scheduling, never correctness. Files not listed follow: integration files
 * before unit files, larger first.
 */
import { statSync } from 'node:fs';
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Wall seconds per file on Node 24, 2-core CI machine (2026-12-07); files ≥ 9 s. */
const MEASURED_SECONDS: Record<string, number> = {
  'test/integration/agent-bots.test.ts': 25,
  'test/integration/reliability-clock.test.ts': 25,
  'test/integration/several-vms.test.ts': 23,
  'test/integration/reliability-consumed.test.ts': 22,
  'test/integration/reliability-journal.test.ts': 21,
  'test/integration/cloud-race.test.ts': 19,
  'test/integration/reliability-silent.test.ts': 19,
  'test/integration/reliability-login.test.ts': 19,
  'test/integration/reliability-cloud.test.ts': 19,
  'test/integration/reliability-slow-deps.test.ts': 17,
  'test/integration/cloud-push-path.test.ts': 17,
  'test/integration/reliability-announce-unreadable.test.ts': 16,
  'test/integration/cloud-outage.test.ts': 16,
  'test/integration/event-bus.test.ts': 16,
  'test/integration/secret-store.test.ts': 15,
  'test/integration/demo.test.ts': 15,
  'test/integration/infra-package-function.test.ts': 13,
  'test/integration/cloud-crash.test.ts': 11,
  'test/integration/infra-sandbox.test.ts': 11,
  'test/integration/two-chains.test.ts': 10,
  'test/integration/reliability-stop.test.ts': 10,
  'test/integration/reliability-disk-full.test.ts': 10,
  'test/integration/reliability-bots.test.ts': 10,
  'test/unit/infra-install.test.ts': 10,
  'test/unit/soak.test.ts': 9,
  'test/integration/status-cli.test.ts': 9,
  'test/integration/refresh-cli.test.ts': 9,
};

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const root = this.ctx.config.root;
    const cost = (f: TestSpecification): number => {
      const rel = relative(root, f.moduleId);
      const measured = MEASURED_SECONDS[rel];
      if (measured !== undefined) return measured * 1e9;
      // Unlisted: integration (seconds each) before unit (milliseconds), larger first.
      const size = statSync(f.moduleId).size;
      return (rel.startsWith('test/integration/') ? 1e8 : 0) + size;
    };
    return [...files].sort((a, b) => cost(b) - cost(a));
  }
}
