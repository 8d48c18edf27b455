/**
 * The standalone agent (no GCP settings: cache + flock + Saxo only): its steady resident memory
 * once it has released its start-up pages (agent/page-release.ts) and then done its work again — a
 * refresh at Saxo and checks every 2 s — so every page that work needs is back and counted. Nothing
 * cloud-shaped may be loaded in this mode (docs/BENCHMARKS.md).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serializeFlat } from '../../core/codec.js';
import type { TokenSet } from '../../core/token.js';
import { rssReading, spawnAgent } from './agent-proc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pair becomes due this long after it is written: after the release, within the first checks. */
const DUE_AFTER_MS = 8_000;
const THRESHOLD_S = 300;

export interface StandaloneRss {
  /** Median RSS (MB). */
  readonly mb: number;
  /** The agent released its start-up pages before the refresh (false: the addon is missing). */
  readonly pagesReleasedFirst: boolean;
}

/** `samples` readings a second apart, taken `settleMs` after the agent's first refresh. */
export async function standaloneRss(
  opts: { saxoUrl: string; appKey: string; appSecret: string; pair: TokenSet; settleMs: number; samples: number; nodeFlags?: string[] },
): Promise<StandaloneRss> {
  const dir = mkdtempSync(join(tmpdir(), 'tk-bench-s-'));
  const dueSoon = Date.now() + THRESHOLD_S * 1000 + DUE_AFTER_MS;
  writeFileSync(join(dir, 'saxo_token_cache.json'), serializeFlat({ ...opts.pair, accessExpiresAt: dueSoon }), { mode: 0o600 });
  const a = spawnAgent(
    {
      TOKEN_KEEPER_DATA_DIR: dir,
      SAXO_AUTH_BASE_URL: opts.saxoUrl,
      SAXO_APP_KEY: opts.appKey,
      SAXO_APP_SECRET: opts.appSecret,
      TOKEN_KEEPER_HOLDER_ID: 'agent:bench-standalone',
      REFRESH_THRESHOLD_SECONDS: String(THRESHOLD_S),
      CHECK_INTERVAL_SECONDS: '2',
    },
    opts.nodeFlags,
  );
  try {
    await a.waitForEvent('agent_ready', 60_000);
    await a.waitForEvent('token_refreshed', 60_000);
    const released = a.events.indexOf('pages_released');
    const pagesReleasedFirst = released >= 0 && released < a.events.indexOf('token_refreshed');
    await sleep(opts.settleMs);
    return { mb: (await rssReading(a.pid, opts.samples)).rss, pagesReleasedFirst };
  } finally {
    await a.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
