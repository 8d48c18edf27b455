/**
 * Runs the real CLI (`npx token-keeper …` or `node bin/token-keeper.js …`) as a child process and
 * collects its JSON log lines, so tests can wait on events instead of sleeping.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootForOtherUsers } from './stage.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = fileURLToPath(new URL('../../bin/token-keeper.js', import.meta.url));

export interface LogLine {
  severity: string;
  message: string;
  event: string;
  [k: string]: unknown;
}

export interface CliProcess {
  readonly proc: ChildProcess;
  /** Every stdout line, raw. */
  readonly raw: string[];
  /** Parsed JSON log lines. */
  readonly logs: LogLine[];
  stderr(): string;
  waitFor(pred: (l: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  waitForEvent(event: string, timeoutMs?: number): Promise<LogLine>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM and wait; resolves with the exit code and how long the stop took. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; ms: number }>;
}

/**
 * `as`: run as another uid/gid (root only; libuv also drops the supplementary groups), from the copy
 * staged for other users (test/helpers/stage.ts): the checkout may sit in a 0700 directory.
 */
export function startCli(
  args: string[],
  env: Record<string, string | undefined>,
  opts: { viaNpx?: boolean; as?: { uid: number; gid: number } | undefined } = {},
): CliProcess {
  const cmd = opts.viaNpx ? 'npx' : process.execPath;
  const root = opts.as ? rootForOtherUsers() : REPO_ROOT;
  const argv = opts.viaNpx ? ['token-keeper', ...args] : [opts.as ? join(root, 'bin', 'token-keeper.js') : CLI, ...args];
  const proc = spawn(cmd, argv, {
    cwd: root,
    // STATUS_LOG_SECONDS=0: the status line on every check, the tests' marker of a check.
    env: { ...process.env, METADATA_SERVER_DETECTION: 'none', LOG_FORMAT: 'json', STATUS_LOG_SECONDS: '0', TOKEN_KEEPER_ENV_FILE: 'none', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.as ? { uid: opts.as.uid, gid: opts.as.gid } : {}),
  });
  const raw: string[] = [];
  const logs: LogLine[] = [];
  let err = '';
  let waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      raw.push(line);
      let parsed: LogLine | undefined;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        continue;
      }
      logs.push(parsed);
      waiters = waiters.filter((w) => {
        if (w.pred(parsed!)) {
          w.resolve(parsed!);
          return false;
        }
        return true;
      });
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  // 'close', not 'exit': every line of stdout has been delivered by then.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('close', (code, signal) => resolve({ code, signal })),
  );
  const waitFor = (pred: (l: LogLine) => boolean, timeoutMs = 30_000, what = 'log line') =>
    new Promise<LogLine>((resolve, reject) => {
      const hit = logs.find(pred);
      if (hit) return resolve(hit);
      const t = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${err.slice(-500)}`)), timeoutMs);
      waiters.push({ pred, resolve: (l) => { clearTimeout(t); resolve(l); } });
      void exited.then(() => {
        setTimeout(() => reject(new Error(`process exited while waiting for ${what}; stderr: ${err.slice(-800)}`)), 50);
      });
    });
  return {
    proc,
    raw,
    logs,
    stderr: () => err,
    waitFor,
    waitForEvent: (event, timeoutMs) => waitFor((l) => l.event === event, timeoutMs, `event ${event}`),
    exited,
    stop: async (signal = 'SIGTERM') => {
      const t0 = Date.now();
      // Through npx the agent is a grandchild: signal it (npm exec then exits with its code).
      const target = opts.viaNpx && proc.pid ? deepestDescendant(proc.pid) : proc.pid;
      if (proc.exitCode === null && proc.signalCode === null && target) process.kill(target, signal);
      const r = await exited;
      return { code: r.code, ms: Date.now() - t0 };
    },
  };
}

function deepestDescendant(pid: number): number {
  for (;;) {
    let children: string[] = [];
    try {
      children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      return pid;
    }
    if (children.length === 0) return pid;
    pid = Number(children[0]);
  }
}

/** Wait until `cond()` is true, polling; for state that has no event (files written by Python). */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
