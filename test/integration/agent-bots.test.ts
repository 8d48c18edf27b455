/**
 * The real agent process (`npx token-keeper agent`), the Saxo stand-in with short lifetimes, and
 * real python3 bots following the TokenCoordinator protocol (flock, buffer, fallback refresh).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { parseFlat } from '../../core/codec.js';
import type { TokenSet } from '../../core/token.js';
import { spawnPythonBot, type PythonBot } from '../helpers/python.js';
import { startCli, until, type CliProcess } from '../helpers/agent-process.js';

const APP_KEY = 'demo-app-key';
const APP_SECRET = 'demo-app-secret-value-0123456789';
// The timeline, in seconds. The agent dates a pair from Saxo's Date header less its 1 s resolution,
// so its token_expiry is ~8 − 1 − 1 = 6 s after the grant: it refreshes every ~2 s at ≤ 4 s left,
// 3 s before the bots' buffer (1 s) would make them refresh themselves.
const ACCESS_LIFE = 8;
const MARGIN = 1;
const THRESHOLD = 4;
const BOT_BUFFER = 1;

let standin: SaxoStandin;
let dir: string;
const procs: CliProcess[] = [];
const bots: PythonBot[] = [];
const seen = new Set<string>(); // every token that appeared anywhere, to prove none is logged

function agentEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    TOKEN_KEEPER_DATA_DIR: dir,
    SAXO_AUTH_BASE_URL: standin.url,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    CHECK_INTERVAL_SECONDS: '0.25',
    REFRESH_THRESHOLD_SECONDS: String(THRESHOLD),
    BOT_REFRESH_THRESHOLD_SECONDS: String(BOT_BUFFER),
    TOKEN_EXPIRY_MARGIN_SECONDS: String(MARGIN),
    REFRESH_TOKEN_ALERT_SECONDS: '0',
    LOCK_TIMEOUT_SECONDS: '30',
    TOKEN_KEEPER_HOLDER_ID: 'agent:test',
    ...extra,
  };
}

function cachePath() {
  return join(dir, 'saxo_token_cache.json');
}

function readCache(): TokenSet | undefined {
  try {
    const p = parseFlat(readFileSync(cachePath(), 'utf8'));
    if (p.ok) {
      seen.add(p.token.accessToken);
      seen.add(p.token.refreshToken);
      return p.token;
    }
  } catch {
    /* missing or mid-rename */
  }
  return undefined;
}

async function seed(leftSec = ACCESS_LIFE - MARGIN): Promise<TokenSet> {
  const pair = standin.issue(APP_KEY);
  seen.add(pair.access_token);
  seen.add(pair.refresh_token);
  const now = Date.now();
  const t: TokenSet = {
    accessToken: pair.access_token,
    refreshToken: pair.refresh_token,
    accessExpiresAt: now + leftSec * 1000,
    appKey: APP_KEY,
    appSecret: APP_SECRET,
    extra: {},
  };
  await createCacheFile(cachePath()).write(t);
  return t;
}

function startBot(name: string, durationSec: number): PythonBot {
  const bot = spawnPythonBot([
    '--mode', 'loop', '--data-dir', dir, '--buffer', String(BOT_BUFFER), '--margin', String(MARGIN),
    '--token-url', `${standin.url}/token`, '--check-url', `${standin.url}/openapi/port/v1/users/me`,
    '--duration', String(durationSec), '--interval', '0.1', '--report', join(dir, `report-${name}.jsonl`),
  ], { env: { SAXO_APP_KEY: APP_KEY, SAXO_APP_SECRET: APP_SECRET } });
  bots.push(bot);
  return bot;
}

interface BotRecord { t: number; expired: boolean; refreshed: boolean; valid?: boolean; error?: string }
/** One bot's records so far (a line still being written is left for the next read). */
function reportOf(n: string): BotRecord[] {
  const f = join(dir, `report-${n}.jsonl`);
  if (!existsSync(f)) return [];
  const text = readFileSync(f, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as BotRecord);
}
function reports(): BotRecord[] {
  return ['a', 'b', 'c'].flatMap(reportOf);
}

function assertNoSecretsLogged(p: CliProcess) {
  const all = p.raw.join('\n') + p.stderr();
  for (const s of [...seen, APP_SECRET]) expect(all.includes(s), 'a token or the app secret appeared in the agent output').toBe(false);
}

/** Wait for `cond`, sampling the cache meanwhile to learn every token that existed (for the log check). */
async function watchCacheUntil(cond: () => boolean, timeoutMs: number, what: string) {
  await until(() => (readCache(), cond()), timeoutMs, what, 100);
}

const refreshes = (p: CliProcess) => p.logs.filter((l) => l.event === 'token_refreshed').length;

/** The agent has the bots' lock file open: it is inside its flock wait (the holder keeps it busy). */
function opened(pid: number, path: string): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === path;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tk-agent-'));
  standin = await startSaxoStandin({ accessLifetimeSec: ACCESS_LIFE, refreshLifetimeSec: 30, clients: { [APP_KEY]: APP_SECRET } });
  seen.clear();
});

afterEach(async () => {
  for (const b of bots.splice(0)) b.kill('SIGKILL');
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
  await standin.close();
});

describe('agent + python bots over several token lifetimes', () => {
  it('keeps every bot on a valid token, does all refreshing, never presents a token twice; bots fall back when it stops; it adopts their token on restart', async () => {
    await seed(THRESHOLD + 1);
    const agent = startCli(['agent'], agentEnv(), { viaNpx: true });
    procs.push(agent);
    await agent.waitForEvent('agent_ready', 20_000);
    for (const n of ['a', 'b', 'c']) startBot(n, 120);

    // Phase 1: four rotations by the agent (four lifetimes of the pair in the cache).
    // And > 100 bot readings across them: on a busy machine the bots read less often per lifetime.
    await watchCacheUntil(() => refreshes(agent) >= 4 && reports().length > 100, 40_000, 'four refreshes by the agent and > 100 bot readings');
    const p1 = reports();
    const refreshed1 = refreshes(agent);
    expect(p1.length).toBeGreaterThan(100);
    expect(p1.filter((r) => r.expired || r.valid === false)).toEqual([]);
    expect(p1.filter((r) => r.refreshed)).toEqual([]); // the agent did all refreshing
    expect(refreshed1).toBeGreaterThanOrEqual(4);
    expect(standin.stats().reusedPresentations).toBe(0);
    expect(statSync(cachePath()).mode & 0o777).toBe(0o600);
    expect(agent.logs.some((l) => /^Token refreshed successfully \(expires in \d+ min\)$/.test(l.message))).toBe(true);

    // Phase 2: agent stopped; bots fall back to refreshing themselves.
    const stop = await agent.stop('SIGTERM');
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(5000);
    assertNoSecretsLogged(agent);
    const t2 = Date.now() / 1000;
    // Until a bot has refreshed and every bot has used the token after that refresh.
    const botRefreshAt = () => reports().find((r) => r.t >= t2 && r.refreshed)?.t;
    await watchCacheUntil(() => {
      const at = botRefreshAt();
      return at !== undefined && ['a', 'b', 'c'].every((n) => reportOf(n).some((r) => r.t > at));
    }, 20_000, 'a bot\'s fallback refresh, then every bot on its token');
    const p2 = reports().filter((r) => r.t >= t2);
    expect(p2.filter((r) => r.refreshed).length).toBeGreaterThanOrEqual(1);
    expect(p2.filter((r) => r.expired || r.valid === false)).toEqual([]);
    const botToken = readCache()!;
    expect(botToken.generation).toBeUndefined(); // written by a bot: five keys only

    // Phase 3: restart; the agent adopts the bots' pair (no login, no reuse) and takes over again.
    const again = startCli(['agent'], agentEnv());
    procs.push(again);
    await again.waitFor((l) => l.event === 'token_adopted' || l.event === 'token_refreshed', 15_000, 'adoption');
    const t3 = Date.now() / 1000;
    // Two rotations by the agent after the adoption: the bots live through a whole lifetime on its pairs.
    await watchCacheUntil(() => refreshes(again) >= 2 && Date.now() / 1000 >= t3 + 1, 20_000, 'two refreshes after the adoption');
    const p3 = reports().filter((r) => r.t >= t3 + 1);
    expect(p3.filter((r) => r.refreshed)).toEqual([]);
    expect(p3.filter((r) => r.expired || r.valid === false)).toEqual([]);
    expect(again.logs.filter((l) => l.event === 'token_refreshed').length).toBeGreaterThanOrEqual(1);
    expect(again.logs.filter((l) => l.event === 'login_required')).toEqual([]);
    expect(standin.stats().reusedPresentations).toBe(0);
    expect((await again.stop()).code).toBe(0);
    assertNoSecretsLogged(again);
  }, 90_000);
});

describe('agent repairs what others break', () => {
  it('undoes a stale pair written into the cache within a second and never presents it', async () => {
    const old = await seed();
    const agent = startCli(['agent'], agentEnv());
    procs.push(agent);
    // Let it rotate once so that `old` is a consumed pair.
    await agent.waitForEvent('token_refreshed', 15_000);
    const current = readCache()!;
    expect(current.refreshToken).not.toBe(old.refreshToken);
    const stalePath = join(dir, 'stale.json');
    writeFileSync(stalePath, JSON.stringify({
      access_token: old.accessToken, refresh_token: old.refreshToken,
      token_expiry: new Date(old.accessExpiresAt).toISOString(), app_key: APP_KEY, app_secret: APP_SECRET,
    }));
    const before = agent.logs.length;
    const t0 = Date.now();
    const w = spawnPythonBot(['--mode', 'write-stale', '--data-dir', dir, '--from', stalePath]);
    bots.push(w);
    await w.exited;
    await agent.waitFor((l) => agent.logs.indexOf(l) >= before && l.event === 'cache_written', 5000, 'cache repair');
    console.log(`stale pair undone ${Date.now() - t0} ms after the stale write`); // measured, not asserted: the wait's 5 s is the bound
    await until(() => readCache()?.refreshToken !== old.refreshToken, 2000, 'cache repaired');
    // Two more lifetimes (two more rotations): the stale refresh token is never presented.
    const rotated = refreshes(agent);
    await watchCacheUntil(() => refreshes(agent) >= rotated + 2, 15_000, 'two more refreshes');
    expect(standin.stats().reusedPresentations).toBe(0);
    expect(agent.logs.some((l) => l.event === 'input_problem' && /stale writer/.test(l.message))).toBe(true);
    await agent.stop();
    assertNoSecretsLogged(agent);
  }, 60_000);

  it('repairs a truncated cache', async () => {
    await seed();
    const agent = startCli(['agent'], agentEnv());
    procs.push(agent);
    await agent.waitForEvent('agent_ready', 10_000);
    await until(() => readCache() !== undefined, 5000, 'cache');
    const text = readFileSync(cachePath(), 'utf8');
    const before = agent.logs.length;
    writeFileSync(cachePath(), text.slice(0, Math.floor(text.length / 2)));
    await agent.waitFor((l) => agent.logs.indexOf(l) >= before && l.event === 'cache_written', 5000, 'cache repair');
    expect(readCache()).toBeDefined();
    expect(statSync(cachePath()).mode & 0o777).toBe(0o600);
    await agent.stop();
    assertNoSecretsLogged(agent);
  }, 30_000);
});

describe('agent and the bots\' lock', () => {
  it('waits for a Python lock holder without counting a failure, and refreshes right after', async () => {
    await seed(THRESHOLD - 1); // already due
    const holder = spawnPythonBot(['--mode', 'hold-lock', '--data-dir', dir, '--hold', '120']);
    bots.push(holder);
    await holder.waitForLine('LOCKED', 5000);
    const agent = startCli(['agent'], agentEnv());
    procs.push(agent);
    // The agent waits on the flock (it has the lock file open while the holder has it); then the holder lets go.
    await until(() => opened(agent.proc.pid!, join(dir, 'saxo_token.lock')), 15_000, 'the agent waiting for the flock');
    holder.kill('SIGUSR1');
    await holder.waitForLine('RELEASED', 10_000);
    const released = Date.now();
    const ev = await agent.waitForEvent('token_refreshed', 10_000);
    expect(Date.parse(ev.time as string)).toBeGreaterThanOrEqual(released - 200);
    expect(agent.logs.filter((l) => l.event === 'refresh_failed' || l.event === 'lock_timeout')).toEqual([]);
    await agent.stop();
  }, 30_000);

  it('gets the lock as soon as a holder is killed with SIGKILL', async () => {
    await seed(THRESHOLD - 1);
    const holder = spawnPythonBot(['--mode', 'hold-lock', '--data-dir', dir, '--hold', '120']);
    bots.push(holder);
    await holder.waitForLine('LOCKED', 5000);
    const agent = startCli(['agent'], agentEnv());
    procs.push(agent);
    await agent.waitForEvent('agent_starting', 10_000);
    holder.kill('SIGKILL');
    await holder.exited;
    const killed = Date.now();
    const ev = await agent.waitForEvent('token_refreshed', 10_000);
    // The agent's flock wait is 30 s: a refresh within 10 s of the kill is the kernel's release, not a timeout.
    expect(Date.parse(ev.time as string) - killed).toBeLessThan(10_000);
    await agent.stop();
  }, 30_000);

  it('refuses a second agent on the same data dir', async () => {
    await seed();
    const a = startCli(['agent'], agentEnv());
    procs.push(a);
    await a.waitForEvent('agent_starting', 10_000);
    const b = startCli(['agent'], agentEnv());
    procs.push(b);
    const r = await b.exited;
    expect(r.code).not.toBe(0);
    expect(b.stderr()).toMatch(/already runs/);
    await a.stop();
  }, 30_000);
});
