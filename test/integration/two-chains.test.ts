/**
 * Two chains side by side on one machine, as token-keeper@sim and token-keeper@live run them: two
 * real agents (`node bin/token-keeper.js agent`, standalone), two data dirs, two Saxo stand-ins
 * (two apps). Each refreshes its own chain; neither opens, locks or writes the other's files - shown
 * by freezing one chain (a python3 bot holds its saxo_token.lock) while the other refreshes, by
 * /proc/locks and /proc/<pid>/fd at every step, and by the file sets at the end; `status --json`
 * with each chain's environment reads that chain. Synchronised on the agents' JSON log events only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { parseFlat } from '../../core/codec.js';
import type { StatusReport } from '../../agent/status.js';
import { spawnPythonBot, type PythonBot } from '../helpers/python.js';
import { REPO_ROOT, startCli, type CliProcess, type LogLine } from '../helpers/agent-process.js';

const ACCESS_LIFE = 10; // seconds; the agent refreshes at 5 s left, i.e. about every 4 s
type Name = 'sim' | 'live';
interface Chain { name: Name; dir: string; appKey: string; appSecret: string; holder: string; standin: SaxoStandin; agent?: CliProcess }

const root = mkdtempSync(join(tmpdir(), 'tk-two-chains-'));
const chains = {} as Record<Name, Chain>;
const holders: PythonBot[] = [];
const other = (c: Chain) => chains[c.name === 'sim' ? 'live' : 'sim'];

function env(c: Chain): Record<string, string> {
  return {
    TOKEN_KEEPER_DATA_DIR: c.dir,
    TOKEN_KEEPER_CREATE_DATA_DIR: 'true',
    TOKEN_KEEPER_HOLDER_ID: c.holder,
    SAXO_AUTH_BASE_URL: c.standin.url,
    SAXO_APP_KEY: c.appKey,
    SAXO_APP_SECRET: c.appSecret,
    CHECK_INTERVAL_SECONDS: '0.5',
    REFRESH_THRESHOLD_SECONDS: '5',
    BOT_REFRESH_THRESHOLD_SECONDS: '2',
    TOKEN_EXPIRY_MARGIN_SECONDS: '1',
    REFRESH_TOKEN_ALERT_SECONDS: '0',
  };
}

/** The next `event` logged after this call (not one already seen). */
function next(agent: CliProcess, event: string, timeoutMs = 20_000): Promise<LogLine> {
  const from = agent.logs.length;
  return agent.waitFor((l) => agent.logs.indexOf(l) >= from && l.event === event, timeoutMs, `${event} (next)`);
}

const refreshes = (c: Chain) => c.agent!.logs.filter((l) => l.event === 'token_refreshed').length;
const cacheOf = (c: Chain) => {
  const p = parseFlat(readFileSync(join(c.dir, 'saxo_token_cache.json'), 'utf8'));
  if (!p.ok) throw new Error(`${c.name} cache unreadable`);
  return p.token;
};
/** inode, mtime and bytes of the chain's cache and lock: any write by anyone changes one of them. */
const fingerprint = (c: Chain) =>
  ['saxo_token_cache.json', 'saxo_token.lock'].map((f) => {
    const s = statSync(join(c.dir, f));
    return `${f}:${s.ino}:${s.mtimeMs}:${s.size}:${readFileSync(join(c.dir, f), 'utf8')}`;
  });

/** Inodes of the files in `dir` now (a temp file of an atomic write may vanish between list and stat). */
function inodes(dir: string): Set<number> {
  const out = new Set<number>();
  for (const f of readdirSync(dir)) {
    try {
      out.add(statSync(join(dir, f)).ino);
    } catch {
      /* renamed away meanwhile */
    }
  }
  return out;
}

/** Neither agent holds a lock on, or has open, a file of the other chain; each holds its own agent lock. */
function assertSeparated(): void {
  const locks = readFileSync('/proc/locks', 'utf8').split('\n').filter(Boolean).map((l) => {
    const f = l.trim().split(/\s+/);
    return { pid: Number(f[4]), inode: Number(f[5]!.split(':')[2]) };
  });
  for (const c of Object.values(chains)) {
    const pid = c.agent!.proc.pid!;
    const mine = inodes(c.dir);
    const theirs = inodes(other(c).dir);
    expect(locks.filter((l) => l.pid === pid && theirs.has(l.inode)), `${c.name} locks a file of ${other(c).name}`).toEqual([]);
    expect(locks.some((l) => l.pid === pid && l.inode === statSync(join(c.dir, '.token-keeper-agent.lock')).ino && mine.has(l.inode))).toBe(true);
    const open = readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    expect(open.filter((p) => p.startsWith(other(c).dir)), `${c.name} has files of ${other(c).name} open`).toEqual([]);
  }
}

async function status(c: Chain): Promise<StatusReport> {
  const p = startCli(['status', '--json'], env(c));
  await p.exited;
  return JSON.parse(p.raw.join('\n')) as StatusReport;
}

beforeAll(async () => {
  expect(existsSync(join(REPO_ROOT, 'dist', 'agent')), 'run npm run build first').toBe(true);
  for (const name of ['sim', 'live'] as const) {
    const appKey = `${name}-app-key`;
    const appSecret = `${name}-app-secret-0123456789abcdef`;
    const standin = await startSaxoStandin({ accessLifetimeSec: ACCESS_LIFE, refreshLifetimeSec: 60, clients: { [appKey]: appSecret } });
    const dir = join(root, name); // /var/lib/token-keeper/<chain> in production
    mkdirSync(dir, { mode: 0o750 });
    const pair = standin.issue(appKey);
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write({
      accessToken: pair.access_token, refreshToken: pair.refresh_token, accessExpiresAt: Date.now() + (ACCESS_LIFE - 1) * 1000, appKey, appSecret, extra: {},
    });
    chains[name] = { name, dir, appKey, appSecret, holder: `agent:test:${name}`, standin };
  }
});

afterAll(async () => {
  for (const h of holders.splice(0)) h.kill('SIGKILL');
  for (const c of Object.values(chains)) {
    await c.agent?.stop('SIGKILL');
    await c.standin.close();
  }
  rmSync(root, { recursive: true, force: true });
});

describe('two chains on one machine', () => {
  it('each agent keeps its own chain, never touching the other chain’s files or locks', async () => {
    for (const c of Object.values(chains)) c.agent = startCli(['agent'], env(c));
    await Promise.all(Object.values(chains).map((c) => c.agent!.waitForEvent('agent_ready', 20_000)));
    await Promise.all(Object.values(chains).map((c) => next(c.agent!, 'token_refreshed')));
    assertSeparated();

    // Freeze one chain (a bot holds its lock), and let the other refresh meanwhile: the other agent
    // does not need that lock, and nothing of the frozen chain changes while it works.
    for (const frozen of [chains.live, chains.sim]) {
      const running = other(frozen);
      const bot = spawnPythonBot(['--mode', 'hold-lock', '--hold', '600', '--data-dir', frozen.dir]);
      holders.push(bot);
      await bot.waitForLine(/^LOCKED$/, 10_000);
      // Saxo exchanges happen under the lock: none of the frozen chain's can start from here.
      const before = fingerprint(frozen);
      const frozenExchanges = frozen.standin.stats().refreshes;
      await next(running.agent!, 'token_refreshed');
      assertSeparated();
      expect(fingerprint(frozen), `${running.name} refreshed while ${frozen.name} was untouched`).toEqual(before);
      expect(frozen.standin.stats().refreshes).toBe(frozenExchanges);
      // Released (the bot exits: the kernel drops its flock), the frozen chain catches up on its own.
      const caughtUp = next(frozen.agent!, 'token_refreshed');
      bot.kill('SIGTERM');
      await bot.exited;
      await caughtUp;
      assertSeparated();
    }

    for (const c of Object.values(chains)) {
      const token = cacheOf(c);
      // Each cache holds its own app's tokens, valid at its own Saxo and unknown to the other's.
      expect(token.appKey).toBe(c.appKey);
      expect(c.standin.isValidAccessToken(token.accessToken)).toBe(true);
      expect(other(c).standin.isValidAccessToken(token.accessToken)).toBe(false);
      expect(c.standin.stats().refreshes).toBe(refreshes(c));
      expect(c.standin.stats().reusedPresentations).toBe(0);
      expect(c.standin.stats().invalidGrants).toBe(0);
      const secrets = [token.accessToken, token.refreshToken, c.appSecret, other(c).appSecret];
      for (const s of secrets) expect(c.agent!.raw.join('\n').includes(s)).toBe(false);
    }
  }, 120_000);

  it('status --json with each chain’s environment reads that chain', async () => {
    for (const c of Object.values(chains)) {
      const report = await status(c);
      const token = cacheOf(c);
      expect(report.mode).toBe('standalone');
      expect(report.token?.source).toBe(c.holder);
      expect(report.agent.lastRefresh?.by).toBe(c.holder);
      expect(report.token?.generation).toBe(token.generation);
      expect(Date.parse(report.token!.accessExpiresAt)).toBe(token.accessExpiresAt);
      expect(report.cache.state).toBe('ok');
      expect(JSON.stringify(report)).not.toContain(other(c).holder);
    }
    // Both agents still run, each on its own dir.
    assertSeparated();
    for (const c of Object.values(chains)) {
      const stop = await c.agent!.stop('SIGTERM');
      expect(stop.code).toBe(0);
      // Stopped: only this chain's files are in its dir, and no temp file of an atomic write is left.
      expect(readdirSync(c.dir).sort()).toEqual(['.token-keeper-agent.lock', '.token-keeper-state.json', 'saxo_token.lock', 'saxo_token_cache.json', 'token-keeper.journal']);
    }
  }, 60_000);
});
