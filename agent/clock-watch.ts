/**
 * The agent's clock (docs/DESIGN.md "Server time"): the wall clock, watched against the monotonic
 * clock, corrected by the skew to Saxo's clock once that skew matters (> 30 s).
 * - A wall-clock jump (the wall clock moved more or less than the monotonic one between two
 *   readings) is seen on the next reading — every `now()` is one, and a 1 s timer makes one when
 *   the agent is idle: WARNING `clock_jump` with its size, the known skew moves with it, Saxo's
 *   time is asked again (one unauthenticated request, no token) and the agent re-evaluates at once.
 * - A skew measured at an exchange (core/refresh.ts) or by that probe replaces the estimate; one
 *   guessed from a jump is asked again every 10 s until Saxo answers.
 * Every decision of the agent reads `clock.now()`: with the clock hours off, tiers, expiries and the
 * lease keep Saxo's time. The bots cannot be corrected; the WARNING says so.
 */
import { systemClock, type Clock } from '../core/clock.js';
import { errorText } from '../core/errors.js';
import { httpRequest } from '../core/saxo/http.js';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { describeSkew, parseServerDate, serverTimeNote, skewOf, SKEW_WARN_MS, type ClockSkew } from '../core/server-time.js';

/** A step smaller than this is left to NTP's slewing (and to timer jitter). */
export const JUMP_THRESHOLD_MS = 2000;

export interface ClockWatchOptions {
  logger: Logger;
  wallNow?: () => number;
  monoNow?: () => number;
  jumpThresholdMs?: number;
  /** Called (asynchronously) after a jump: re-evaluate now. */
  onJump?: (jumpMs: number) => void;
  /** Asks the server's time without any credential; undefined when it did not answer. */
  probe?: () => Promise<{ sentAt: number; receivedAt: number; date: string | null } | undefined>;
}

export class ClockWatch {
  private lastWall: number;
  private lastMono: number;
  private estimate: ClockSkew | undefined;
  private readonly wallNow: () => number;
  private readonly monoNow: () => number;
  private readonly threshold: number;
  private probing: Promise<void> | undefined;
  /** The agent's clock: the wall clock less the skew to Saxo once it matters. */
  readonly clock: Clock;

  constructor(private readonly o: ClockWatchOptions) {
    this.wallNow = o.wallNow ?? Date.now;
    // process.hrtime, not perf_hooks' performance.now(): the same monotonic clock without loading
    // perf_hooks (≈ 0.3 MB resident on Node 24; docs/BENCHMARKS.md "Agent memory on Node 24").
    this.monoNow = o.monoNow ?? (() => Number(process.hrtime.bigint()) / 1e6);
    this.threshold = o.jumpThresholdMs ?? JUMP_THRESHOLD_MS;
    this.lastWall = this.wallNow();
    this.lastMono = this.monoNow();
    this.clock = {
      now: () => {
        this.check();
        return this.wallNow() - this.appliedSkewMs();
      },
      sleep: (ms, signal) => systemClock.sleep(ms, signal),
      localSkewMs: () => this.appliedSkewMs(),
    };
  }

  /** The skew the agent's clock corrects for: the estimate once it is beyond SKEW_WARN_MS, else 0. */
  appliedSkewMs(): number {
    return this.estimate && Math.abs(this.estimate.ms) > SKEW_WARN_MS ? this.estimate.ms : 0;
  }

  /** The current estimate (for the state file, `status` and `doctor`). */
  get skew(): ClockSkew | undefined {
    return this.estimate;
  }

  /** A skew measured at an exchange with Saxo (the machine's own, local − server). */
  measured(s: ClockSkew): void {
    this.estimate = s;
  }

  /** Compare the wall clock's progress with the monotonic clock's since the last reading; the jump, if any. */
  check(): number | undefined {
    const wall = this.wallNow();
    const mono = this.monoNow();
    const jump = wall - this.lastWall - (mono - this.lastMono);
    this.lastWall = wall;
    this.lastMono = mono;
    if (Math.abs(jump) < this.threshold) return undefined;
    // The clock was taken to be right before (the agent was trusting it): it is `jump` off now.
    const before = this.estimate?.ms ?? 0;
    this.estimate = { ms: before + jump, at: wall, by: 'jump' };
    this.estimate.at = wall - this.appliedSkewMs();
    this.o.logger.warn('clock_jump', `Wall clock jumped ${jump > 0 ? '+' : ''}${Math.round(jump / 1000)} s against the monotonic clock; re-evaluating the token now`, {
      jumpSeconds: Math.round(jump / 1000),
      skewSeconds: Math.round(this.estimate.ms / 1000),
    });
    queueMicrotask(() => {
      this.probeNow();
      this.o.onJump?.(jump);
    });
    return jump;
  }

  /** Ask Saxo's time now (start-up, after a jump); one at a time. Resolves when done. */
  probeNow(): Promise<void> {
    if (!this.o.probe) return Promise.resolve();
    this.probing ??= this.o
      .probe()
      .then((r) => {
        const date = r ? parseServerDate(r.date) : undefined;
        if (!r || !date?.ok) return;
        const { estimateMs, minAbsMs } = skewOf({ dateMs: date.ms, sentAt: r.sentAt, receivedAt: r.receivedAt });
        const note = serverTimeNote({ issuedAt: date.ms, basis: 'server', skewMs: estimateMs, minAbsSkewMs: minAbsMs }, r.receivedAt - estimateMs);
        if (note.skew) this.estimate = note.skew;
        if (note.warning) this.o.logger.warn('clock_skew', note.warning, { skewSeconds: Math.round(estimateMs / 1000) });
        this.o.logger.debug('clock_probe', `Saxo's time read: ${describeSkew(estimateMs)}`);
      })
      .catch((err: unknown) => this.o.logger.debug('clock_probe_failed', `Could not read Saxo's time: ${errorText(err)}`))
      .finally(() => (this.probing = undefined));
    return this.probing;
  }

  /** Read the clocks every `everyMs` so a jump is seen while the agent idles; returns the stop. */
  start(everyMs = 1000, reprobeEvery = 10): () => void {
    let ticks = 0;
    const t = setInterval(() => {
      this.check();
      // A skew guessed from a jump is provisional (a host suspend also moves the wall clock past the
      // monotonic one, and then the wall clock is right): ask Saxo until it answers.
      if (this.estimate?.by === 'jump' && ++ticks % reprobeEvery === 0) void this.probeNow();
    }, everyMs);
    t.unref();
    return () => clearInterval(t);
  }
}

/**
 * Saxo's time without any credential: a HEAD of the auth server's base URL. Any answer (404, 405)
 * carries the server's Date header; nothing is sent but the request line.
 */
export function saxoTimeProbe(authBaseUrl: string, timeoutMs: number, wallNow: () => number = Date.now) {
  return async (): Promise<{ sentAt: number; receivedAt: number; date: string | null } | undefined> => {
    const sentAt = wallNow();
    const res = await httpRequest(authBaseUrl.replace(/\/+$/, '') + '/', { method: 'HEAD', signal: AbortSignal.timeout(timeoutMs) });
    const receivedAt = wallNow();
    return { sentAt, receivedAt, date: res.header('date') };
  };
}

/**
 * The clock the agent and the one-shot `refresh` decide by: watched for jumps, with Saxo's time
 * read first (at most 2 s), so a clock already wrong is corrected before the first decision.
 */
export async function startAgentClock(config: Pick<Config, 'authBaseUrl' | 'httpTimeoutMs'>, logger: Logger, onJump?: (jumpMs: number) => void): Promise<ClockWatch> {
  const watch = new ClockWatch({ logger, probe: saxoTimeProbe(config.authBaseUrl, Math.min(2000, config.httpTimeoutMs)), onJump });
  await watch.probeNow();
  return watch;
}
