/**
 * Cold start of the function, as Cloud Run pays it at min_instance_count = 0 for a Scheduler call
 * with nothing to do: process spawn → module load → the first request answered (the token is
 * fresh: one Secret Manager read, nothing published, nothing refreshed). Measured against a trivial
 * functions-framework function started the same way in the same run, median of several starts.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';

const SERVE = fileURLToPath(new URL('../../../tools/bench/serve-function.mjs', import.meta.url));
const TRIVIAL = fileURLToPath(new URL('../../../tools/bench/trivial-function.mjs', import.meta.url));
const OURS = fileURLToPath(new URL('../../functions/index.js', import.meta.url));

/** ms from spawn to the first answer of one cold process. */
async function oneStart(modulePath: string, target: string, env: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [SERVE, modulePath, target], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout! });
      rl.on('line', (l) => {
        const m = /^LISTENING (\d+)$/.exec(l);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`function process exited (${code}) before listening`)));
    });
    const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`cold start answered ${res.status}: ${body.slice(0, 200)}`);
    return performance.now() - t0;
  } finally {
    child.kill('SIGKILL');
  }
}

export interface ColdStart {
  oursMs: number[];
  trivialMs: number[];
}

/** Alternate the two so that machine noise hits both alike. */
export async function coldStarts(n: number, env: Record<string, string>): Promise<ColdStart> {
  const out: ColdStart = { oursMs: [], trivialMs: [] };
  for (let i = 0; i < n; i++) {
    out.trivialMs.push(await oneStart(TRIVIAL, 'trivial', {}));
    out.oursMs.push(await oneStart(OURS, 'refreshToken', env));
  }
  return out;
}
