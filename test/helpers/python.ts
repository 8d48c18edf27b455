/**
 * Spawn helpers for test/helpers/python_bot.py (a model of the bots' TokenCoordinator).
 * Waiting is event-driven: waitForLine resolves on the stdout line itself.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { forOtherUsers } from './stage.js';

export const PYTHON_BOT = fileURLToPath(new URL('./python_bot.py', import.meta.url));
export const PYTHON = process.env.PYTHON ?? 'python3';
/** The bot model where another user can read it (the checkout may sit in a 0700 directory). */
export const pythonBotForOtherUsers = (): string => forOtherUsers('test/helpers/python_bot.py');

export interface PythonBot {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** stdout lines seen so far. */
  readonly lines: string[];
  stderr(): string;
  /** Resolves with the first stdout line (past or future) matching `pattern`. */
  waitForLine(pattern: string | RegExp, timeoutMs?: number): Promise<string>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
}

export function pythonAvailable(): boolean {
  return spawnSync(PYTHON, ['--version']).status === 0;
}

export function spawnPythonBot(args: string[], opts: SpawnOptions = {}): PythonBot {
  const proc = spawn(PYTHON, ['-u', PYTHON_BOT, ...args], {
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (proc.pid === undefined) throw new Error('python3 could not be spawned');
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let err = '';
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    // 'close' (not 'exit'): all stdout has been delivered by then.
    proc.on('close', (code, signal) => resolve({ code, signal })),
  );
  let done = false;
  void exited.then(() => (done = true));

  const waitForLine = (pattern: string | RegExp, timeoutMs = 10_000): Promise<string> => {
    const re = typeof pattern === 'string' ? new RegExp(`^${pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : pattern;
    const seen = lines.find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`python bot: no line matching ${re} within ${timeoutMs} ms; stdout=${JSON.stringify(lines)} stderr=${err}`));
      }, timeoutMs);
      const w = {
        re,
        resolve: (l: string) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      waiters.push(w);
      void exited.then(() => {
        if (!waiters.includes(w)) return;
        waiters.splice(waiters.indexOf(w), 1);
        clearTimeout(timer);
        reject(new Error(`python bot exited before a line matching ${re}; stdout=${JSON.stringify(lines)} stderr=${err}`));
      });
    });
  };

  return {
    proc,
    pid: proc.pid,
    lines,
    stderr: () => err,
    waitForLine,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (!done) proc.kill(signal);
    },
  };
}

/** Run the bot to completion; resolves with its exit code and output. */
export async function runPythonBot(
  args: string[],
  opts: SpawnOptions = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const bot = spawnPythonBot(args, opts);
  const { code } = await bot.exited;
  return { code, stdout: bot.lines.join('\n'), stderr: bot.stderr() };
}
