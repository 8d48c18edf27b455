/**
 * Start-up pages (agent/page-release.ts, native/page_release.c): a real node process gives back its
 * executable's clean read-only pages and keeps working; the RELRO mapping (relocated, so it holds
 * anonymous pages that the file does not) and every writable mapping stay resident — dropping them
 * would revert them to the file's bytes and crash the process. The running agent releases once it is
 * ready, and a refresh after that still succeeds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { startCli } from '../helpers/agent-process.js';
import type { PageReleaseResult } from '../../agent/page-release.js';
import { cachedPair, issuedPair } from '../helpers/reliability-cli.js';

const ADDON = fileURLToPath(new URL('../../native/build/Release/page_release.node', import.meta.url));

/**
 * A fresh node that releases when told, says so, then blocks in a read of stdin — no JavaScript runs,
 * so the parent reads its pages as the release left them — and then proves it still works.
 */
const CHILD = `
const { readSync, writeSync } = require('node:fs');
const wait = () => readSync(0, Buffer.alloc(16));
writeSync(1, 'ready\\n');
wait();
const result = require(process.argv[1]).releaseStartupPages();
writeSync(1, JSON.stringify(result) + '\\n');
wait();
const sha = require('node:crypto').createHash('sha256').update('abc').digest('hex');
writeSync(1, JSON.stringify({ sha, json: JSON.parse('{"a":[1,2]}') }) + '\\n');
`;

interface Mapping { start: string; perms: string; rss: number; anon: number }

/** The mappings of `pid`'s executable, from /proc/PID/smaps. */
function exeMappings(pid: number): Mapping[] {
  const exe = readlinkSync(`/proc/${pid}/exe`);
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const h = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (h) {
      cur = h[4] === exe ? { start: h[1]!, perms: h[3]!, rss: 0, anon: 0 } : undefined;
      if (cur) out.push(cur);
      continue;
    }
    const f = cur && /^(Rss|Anonymous):\s+(\d+) kB/.exec(line);
    if (cur && f) cur[f[1] === 'Rss' ? 'rss' : 'anon'] = Number(f[2]);
  }
  return out;
}

describe('the node executable’s start-up pages', () => {
  it('are released when clean and read-only; RELRO and writable mappings stay; the process keeps working', async () => {
    expect(existsSync(ADDON), `${ADDON} is built by npm ci (node-gyp in native/)`).toBe(true);
    const child = spawn(process.execPath, ['-e', CHILD, ADDON], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const next = async () => String((await lines.next()).value);

    expect(await next()).toBe('ready');
    const before = exeMappings(child.pid!);
    child.stdin.write('go\n');
    const result = JSON.parse(await next()) as PageReleaseResult;
    const after = exeMappings(child.pid!); // the child is blocked in read(2) meanwhile
    child.stdin.end('done\n');
    const sanity = JSON.parse(await next()) as { sha: string; json: unknown };
    expect(await exited, stderr).toBe(0);

    const eligible = (m: Mapping) => !m.perms.includes('w') && m.perms.endsWith('p') && m.anon === 0;
    const released = before.filter(eligible);
    const kept = before.filter((m) => !eligible(m));
    expect(result.error).toBe(0);
    expect(result.released).toBe(released.length);
    expect(result.mappings).toBe(before.length);
    // The executable's text and read-only data: several MB resident after start-up, on Node 20 and 24.
    expect(result.releasedKb).toBeGreaterThan(8 * 1024);
    const rssOf = (list: Mapping[], of: Mapping[]) => list.filter((m) => of.some((s) => s.start === m.start)).reduce((a, m) => a + m.rss, 0);
    // Read back in C at once: little of them is resident. Another thread's touch can bring back a whole
    // large folio: V8's 2 MB remapped builtins came back whole in one CI run (2,048 of 34,444 kB).
    expect(result.residentAfterKb).toBeLessThan(result.releasedKb / 8);
    // Read by this process once the child has written one line: only what that touched came back
    // (each fault maps its 64 KB neighbourhood, so a few hundred faults are several MB).
    expect(rssOf(after, released)).toBeLessThan(rssOf(before, released) / 2);
    // RELRO (read-only but relocated: anonymous pages) and .data/.bss keep every page.
    expect(kept.some((m) => m.perms === 'r--p' && m.anon > 0), 'a RELRO mapping to prove the rule on').toBe(true);
    for (const k of kept) {
      const a = after.find((m) => m.start === k.start)!;
      expect(a.anon, `mapping ${k.start} ${k.perms}`).toBeGreaterThanOrEqual(k.anon);
      expect(a.rss, `mapping ${k.start} ${k.perms}`).toBeGreaterThanOrEqual(k.anon);
    }
    expect(sanity.sha).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sanity.json).toEqual({ a: [1, 2] });
  });
});

describe('the agent', () => {
  const APP_KEY = 'pages-app-key';
  const APP_SECRET = 'pages-app-secret-0123456789abcdef';
  const seen = new Set<string>([APP_SECRET]);
  let standin: SaxoStandin;
  beforeAll(async () => {
    standin = await startSaxoStandin({ clients: { [APP_KEY]: APP_SECRET } });
  });
  afterAll(async () => {
    await standin.close();
  });

  it('releases its start-up pages once ready, then still refreshes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-pages-'));
    const cache = join(dir, 'saxo_token_cache.json');
    // Due 4 s after the start: the refresh comes after the release.
    const token = issuedPair(standin, { key: APP_KEY, secret: APP_SECRET }, { leftSec: 304, lifeSec: 364, refreshLeftSec: 3000, generation: 3, source: 'agent:vm1', seen });
    await createCacheFile(cache).write(token);
    const agent = startCli(['agent'], {
      TOKEN_KEEPER_DATA_DIR: dir,
      SAXO_AUTH_BASE_URL: standin.url,
      SAXO_APP_KEY: APP_KEY,
      SAXO_APP_SECRET: APP_SECRET,
      TOKEN_KEEPER_HOLDER_ID: 'agent:pages',
      REFRESH_THRESHOLD_SECONDS: '300',
      CHECK_INTERVAL_SECONDS: '1',
    });
    try {
      const released = await agent.waitForEvent('pages_released', 20_000);
      expect(released.severity).toBe('INFO');
      expect(released.releasedKb as number).toBeGreaterThan(8 * 1024);
      expect(released.error).toBe(0);
      await agent.waitForEvent('token_refreshed', 20_000);
      const events = agent.logs.map((l) => l.event);
      expect(events.indexOf('agent_ready')).toBeLessThan(events.indexOf('pages_released'));
      expect(events.indexOf('pages_released')).toBeLessThan(events.indexOf('token_refreshed'));
      expect(events.filter((e) => e === 'pages_released')).toHaveLength(1);
      const now = cachedPair(dir, seen);
      expect(now?.generation).toBe(4);
      expect(now?.refreshToken).not.toBe(token.refreshToken);
    } finally {
      const { code } = await agent.stop();
      expect(code).toBe(0);
    }
  });
});
