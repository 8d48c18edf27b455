/**
 * The real agent (`node bin/token-keeper.js agent`) as a child process, plus /proc readings of
 * its resident memory and CPU time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../../agent/runtime-flags.js';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/token-keeper.js', import.meta.url));

export interface AgentProc {
  readonly pid: number;
  readonly events: string[];
  waitForEvent(event: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** `nodeArgs` undefined: the production flags and environment (agent/runtime-flags.ts). */
export function spawnAgent(env: Record<string, string>, nodeArgs?: string[]): AgentProc {
  const prodEnv = nodeArgs === undefined ? AGENT_ENV : {};
  nodeArgs ??= [...AGENT_NODE_FLAGS];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, BIN, 'agent'], {
    cwd: REPO_ROOT,
    env: { ...process.env, METADATA_SERVER_DETECTION: 'none', LOG_FORMAT: 'json', ...prodEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: string[] = [];
  let waiters: { event: string; resolve: () => void }[] = [];
  let buf = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let ev: string | undefined;
      try {
        ev = (JSON.parse(line) as { event?: string }).event;
      } catch {
        continue;
      }
      if (!ev) continue;
      // Only the names are kept: a long accelerated run must not grow the bench's own memory.
      if (events.length < 10_000) events.push(ev);
      waiters = waiters.filter((w) => (w.event === ev ? (w.resolve(), false) : true));
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    if (stderr.length < 20_000) stderr += c;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    pid: child.pid!,
    events,
    waitForEvent: (event, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        if (events.includes(event)) return resolve();
        const t = setTimeout(() => reject(new Error(`agent: no ${event} within ${timeoutMs} ms; stderr: ${stderr.slice(-500)}`)), timeoutMs);
        waiters.push({ event, resolve: () => (clearTimeout(t), resolve()) });
      }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 6000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** VmRSS and its anonymous (heap, stacks, malloc) and file-backed (the executable, libraries) parts, MB, from one reading. */
export function memoryOf(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (k: string) => {
    const m = new RegExp(`${k}:\\s+(\\d+)\\s+kB`).exec(status);
    if (!m) throw new Error(`no ${k} for pid ${pid}`);
    return Number(m[1]) / 1024;
  };
  return { rss: mb('VmRSS'), anon: mb('RssAnon'), file: mb('RssFile') };
}

/** The median of `samples` readings a second apart (GC timing smoothed), with that reading's parts. */
export async function rssReading(pid: number, samples: number): Promise<{ rss: number; anon: number; file: number }> {
  const xs: { rss: number; anon: number; file: number }[] = [];
  for (let i = 0; i < samples; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 1000));
    xs.push(memoryOf(pid));
  }
  xs.sort((a, b) => a.rss - b.rss);
  return xs[Math.floor(xs.length / 2)]!;
}

/** utime+stime of a process, in clock ticks (USER_HZ, 100 on Linux). */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}

export const USER_HZ = 100;
