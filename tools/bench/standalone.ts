/**
 * The standalone agent (no GCP settings: cache + flock + Saxo only) at default settings: its
 * steady resident memory. Nothing cloud-shaped may be loaded in this mode (docs/BENCHMARKS.md).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serializeFlat } from '../../core/codec.js';
import type { TokenSet } from '../../core/token.js';
import { rssMb, spawnAgent } from './agent-proc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Median RSS (MB) of `samples` readings a second apart, taken `settleMs` after agent_ready. */
export async function standaloneRss(
  opts: { saxoUrl: string; appKey: string; pair: TokenSet; settleMs: number; samples: number; nodeFlags?: string[] },
): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'tk-bench-s-'));
  writeFileSync(join(dir, 'saxo_token_cache.json'), serializeFlat(opts.pair), { mode: 0o600 });
  const a = spawnAgent(
    { TOKEN_KEEPER_DATA_DIR: dir, SAXO_AUTH_BASE_URL: opts.saxoUrl, SAXO_APP_KEY: opts.appKey, TOKEN_KEEPER_HOLDER_ID: 'agent:bench-standalone' },
    opts.nodeFlags,
  );
  try {
    await a.waitForEvent('agent_ready', 60_000);
    await sleep(opts.settleMs);
    const xs: number[] = [];
    for (let i = 0; i < opts.samples; i++) {
      if (i > 0) await sleep(1000);
      xs.push(rssMb(a.pid));
    }
    xs.sort((x, y) => x - y);
    return xs[Math.floor(xs.length / 2)]!;
  } finally {
    await a.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
