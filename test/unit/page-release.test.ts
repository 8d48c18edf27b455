/** agent/page-release.ts without the addon, with one that fails, and with one that answers. */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../core/log.js';
import { loadPageRelease, releaseStartupPages, type PageReleaseResult } from '../../agent/page-release.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ format: 'json', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>), component: 'agent' });
  return { logger, lines };
}

describe('releaseStartupPages', () => {
  it('without the addon: says so once, as a NOTICE naming the fix, and carries on', () => {
    const missing = loadPageRelease('./no-such-addon.node');
    expect(missing.ok).toBe(false);
    const { logger, lines } = capture();
    expect(releaseStartupPages(logger, missing)).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ severity: 'NOTICE', event: 'pages_not_released' });
    expect(String(lines[0]!.message)).toMatch(/Cannot find module.*npm ci/s);
  });

  it('an addon that throws is a NOTICE, not a crash', () => {
    const { logger, lines } = capture();
    const broken = { ok: true as const, addon: { releaseStartupPages: (): PageReleaseResult => { throw new Error('EPERM'); } } };
    expect(releaseStartupPages(logger, broken)).toBeUndefined();
    expect(lines).toMatchObject([{ severity: 'NOTICE', event: 'pages_not_released' }]);
  });

  it('logs what was released, in MB and with the counts', () => {
    const { logger, lines } = capture();
    const r: PageReleaseResult = { mappings: 8, released: 6, releasedKb: 36_152, residentAfterKb: 8, keptKb: 140, error: 0 };
    expect(releaseStartupPages(logger, { ok: true, addon: { releaseStartupPages: () => r } })).toEqual(r);
    expect(lines).toMatchObject([{ severity: 'INFO', event: 'pages_released', message: 'Released 35 MB of start-up pages of the node executable', releasedKb: 36_152, keptKb: 140 }]);
  });
});
