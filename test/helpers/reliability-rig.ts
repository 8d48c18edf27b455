/**
 * The stand-in setup the reliability suites share, written once: the Saxo stand-in for one app
 * (started before the file's tests, closed after them), the agent processes a test starts (killed
 * after each test, the stand-in's faults cleared), every token and the app secret seen (for the
 * no-secrets check), and the standalone agent environment over a data dir. Call at the top of a
 * test file (or of a describe); the hooks are registered there.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { TokenSet } from '../../core/token.js';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import type { CliProcess } from './agent-process.js';
import { cachedPair, issuedPair, STANDALONE, startCliAs, type RunAs } from './reliability-cli.js';

export interface StandinRigOptions {
  appKey: string;
  appSecret: string;
  /** The stand-in's lifetimes (its defaults when left out). */
  accessLifetimeSec?: number;
  refreshLifetimeSec?: number;
}

export interface StandinRig {
  /** The stand-in (set once the file's beforeAll has run). */
  readonly saxo: SaxoStandin;
  readonly app: { key: string; secret: string };
  /** Every token issued or read back, and the app secret: what no output may contain. */
  readonly seen: Set<string>;
  /** Processes started by a test; SIGKILLed after it (`stopAll` does it earlier). */
  readonly procs: CliProcess[];
  /** A standalone agent's environment: the data dir, the stand-in and the app's credentials, then `settings`. */
  env(dir: string, settings?: Record<string, string | undefined>): Record<string, string | undefined>;
  /** startCliAs, remembered for the after-each kill. */
  start(args: string[], env: Record<string, string | undefined>, as?: RunAs): CliProcess;
  /** A live pair the stand-in issued for this app (issuedPair), its tokens into `seen`. */
  pair(o: Omit<Parameters<typeof issuedPair>[2], 'seen'>): TokenSet;
  /** The pair in `dir`'s cache (cachedPair), its tokens into `seen`. */
  cached(dir: string): TokenSet | undefined;
  /** SIGKILL every process started so far (a file whose own after-each needs them gone first). */
  stopAll(): Promise<void>;
}

export function useStandinRig(o: StandinRigOptions): StandinRig {
  let saxo: SaxoStandin | undefined;
  const app = { key: o.appKey, secret: o.appSecret };
  const seen = new Set<string>([o.appSecret]);
  const procs: CliProcess[] = [];
  const stopAll = async () => {
    for (const p of procs.splice(0)) await p.stop('SIGKILL');
  };
  beforeAll(async () => {
    saxo = await startSaxoStandin({
      ...(o.accessLifetimeSec !== undefined ? { accessLifetimeSec: o.accessLifetimeSec } : {}),
      ...(o.refreshLifetimeSec !== undefined ? { refreshLifetimeSec: o.refreshLifetimeSec } : {}),
      clients: { [o.appKey]: o.appSecret },
    });
  });
  afterAll(async () => {
    await saxo?.close();
  });
  afterEach(async () => {
    saxo?.clearFaults();
    await stopAll();
  });
  const rig: StandinRig = {
    get saxo() {
      if (!saxo) throw new Error('the Saxo stand-in starts in beforeAll');
      return saxo;
    },
    app,
    seen,
    procs,
    env: (dir, settings = {}) => ({
      ...STANDALONE,
      TOKEN_KEEPER_DATA_DIR: dir,
      SAXO_AUTH_BASE_URL: rig.saxo.url,
      SAXO_APP_KEY: o.appKey,
      SAXO_APP_SECRET: o.appSecret,
      ...settings,
    }),
    start: (args, env, as) => {
      const p = startCliAs(args, env, as);
      procs.push(p);
      return p;
    },
    pair: (p) => issuedPair(rig.saxo, app, { ...p, seen }),
    cached: (dir) => cachedPair(dir, seen),
    stopAll,
  };
  return rig;
}
