/**
 * The fault schedule: drawn up front from the seed (so `--verbose` can print it and a run replays
 * exactly), then applied by the simulator. Rates are per virtual day.
 */
import type { Rng } from './rng.js';

export type CrashStep = 'after-saxo' | 'after-cache' | 'after-state' | 'after-add' | 'after-publish';
export const CRASH_STEPS: readonly CrashStep[] = ['after-saxo', 'after-cache', 'after-state', 'after-add', 'after-publish'];

export type Fault =
  /** Scheduler/function not running, and/or Secret Manager answering UNAVAILABLE to everyone. */
  | { kind: 'cloud-outage'; at: number; durMs: number; what: 'function' | 'secret' | 'both' }
  | { kind: 'pubsub-outage'; at: number; durMs: number }
  /** kill -9 of the agent; systemd restarts it after `downMs`. */
  | { kind: 'agent-kill'; at: number; downMs: number }
  /** VM reboot: agent and bots gone for `downMs`. */
  | { kind: 'vm-reboot'; at: number; downMs: number }
  /** The function is off for `durMs` so the agent refreshes; it is killed at `step` of that refresh. */
  | { kind: 'agent-crash-step'; at: number; durMs: number; step: CrashStep; downMs: number }
  | { kind: 'cloud-crash-step'; at: number; step: CrashStep }
  | { kind: 'saxo-errors'; at: number; n: number }
  | { kind: 'saxo-slow'; at: number; durMs: number; maxDelayMs: number }
  | { kind: 'saxo-outage'; at: number; durMs: number }
  | { kind: 'lost-response'; at: number }
  /** Function and agent both down; the agent returns first (bots refresh meanwhile). */
  | { kind: 'bot-fallback'; at: number; durMs: number }
  | { kind: 'stale-write'; at: number; ageMs: number }
  | { kind: 'corrupt-write'; at: number; variant: number }
  | { kind: 'cloud-duplicate'; at: number }
  /** Something holds the bots' flock for `durMs` (a bot stuck mid-refresh) while bot `bot` restarts. */
  | { kind: 'lock-hog'; at: number; durMs: number; bot: number }
  /** Saxo's next grant answers a 2xx with an odd lifetime (ODD_ANSWERS[variant]); the refresh token is there. */
  | { kind: 'saxo-odd'; at: number; variant: number }
  /** The VM's data dir has no room for `durMs`: the agent must not present (the others carry the chain). */
  | { kind: 'disk-full'; at: number; durMs: number }
  /** The VM's wall clock steps by `stepMs` (±2 h: a VM resume, an NTP step at boot) for `durMs`, then back. */
  | { kind: 'clock-step'; at: number; durMs: number; stepMs: number };

/** Odd 2xx answers that still carry the successor (core/grant.ts must keep every one). */
export const ODD_ANSWERS = [
  { set: { expires_in: -5 } },
  { set: { expires_in: 0 } },
  { set: { expires_in: '1200 seconds' } },
  { omit: ['expires_in'] },
  { set: { refresh_token_expires_in: -1 } },
];

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/**
 * `extra` draws the faults added after the first release (so the original schedule of a seed, and
 * the numbers it produced, stay comparable).
 */
export function drawFaults(rng: Rng, start: number, days: number, extra?: Rng, steps?: Rng): Fault[] {
  const out: Fault[] = [];
  const count = (perDay: number) => {
    // Integer part always, fraction by chance: a 7-day run gets ~7× the daily rate.
    const whole = Math.floor(perDay);
    return whole + (rng.chance(perDay - whole) ? 1 : 0);
  };
  for (let d = 0; d < days; d++) {
    // Leave the first 30 min of the run alone: the system starts from a fresh login.
    const t0 = start + d * DAY + (d === 0 ? 30 * MIN : 0);
    const span = DAY - (d === 0 ? 30 * MIN : 0);
    const at = () => Math.round(t0 + rng.next() * span);
    for (let i = count(1.5); i > 0; i--) {
      out.push({ kind: 'cloud-outage', at: at(), durMs: Math.round(rng.logRange(2 * MIN, 3 * HOUR)), what: rng.pick(['function', 'secret', 'both'] as const) });
    }
    for (let i = count(0.7); i > 0; i--) out.push({ kind: 'pubsub-outage', at: at(), durMs: Math.round(rng.logRange(5 * MIN, HOUR)) });
    for (let i = count(2); i > 0; i--) out.push({ kind: 'agent-kill', at: at(), downMs: rng.int(5, 30) * 1000 });
    for (let i = count(0.5); i > 0; i--) out.push({ kind: 'vm-reboot', at: at(), downMs: rng.int(60, 240) * 1000 });
    for (let i = count(3); i > 0; i--) {
      out.push({ kind: 'agent-crash-step', at: at(), durMs: rng.int(30, 50) * MIN, step: rng.pick(CRASH_STEPS), downMs: rng.int(5, 30) * 1000 });
    }
    for (let i = count(0.7); i > 0; i--) out.push({ kind: 'cloud-crash-step', at: at(), step: rng.pick(['after-add', 'after-publish'] as const) });
    for (let i = count(6); i > 0; i--) out.push({ kind: 'saxo-errors', at: at(), n: rng.int(1, 3) });
    for (let i = count(2); i > 0; i--) out.push({ kind: 'saxo-slow', at: at(), durMs: rng.int(10, 40) * MIN, maxDelayMs: rng.int(5, 55) * 1000 });
    for (let i = count(0.4); i > 0; i--) out.push({ kind: 'saxo-outage', at: at(), durMs: rng.int(10, 30) * MIN });
    for (let i = count(0.2); i > 0; i--) out.push({ kind: 'lost-response', at: at() });
    for (let i = count(0.7); i > 0; i--) out.push({ kind: 'bot-fallback', at: at(), durMs: rng.int(20, 45) * MIN });
    for (let i = count(3); i > 0; i--) out.push({ kind: 'stale-write', at: at(), ageMs: rng.int(30, 180) * MIN });
    for (let i = count(2); i > 0; i--) out.push({ kind: 'corrupt-write', at: at(), variant: rng.int(0, 4) });
    for (let i = count(2); i > 0; i--) out.push({ kind: 'cloud-duplicate', at: at() });
    if (extra) {
      const at2 = () => Math.round(t0 + extra.next() * span);
      const n = Math.floor(0.7) + (extra.chance(0.7) ? 1 : 0);
      for (let i = n; i > 0; i--) out.push({ kind: 'lock-hog', at: at2(), durMs: extra.int(10, 90) * 1000, bot: extra.int(0, 2) });
    }
  }
  if (extra) {
    // Drawn after every day's other faults, so the earlier draws of a seed stay as they were.
    for (let d = 0; d < days; d++) {
      const t0 = start + d * DAY + (d === 0 ? 30 * MIN : 0);
      const span = DAY - (d === 0 ? 30 * MIN : 0);
      for (let i = 2 + (extra.chance(0.5) ? 1 : 0); i > 0; i--) {
        out.push({ kind: 'saxo-odd', at: Math.round(t0 + extra.next() * span), variant: extra.int(0, ODD_ANSWERS.length - 1) });
      }
      if (extra.chance(0.7)) out.push({ kind: 'disk-full', at: Math.round(t0 + extra.next() * span), durMs: extra.int(10, 90) * MIN });
    }
  }
  if (steps) {
    // Clock steps come from a stream of their own: the faults above keep their draws.
    for (let d = 0; d < days; d++) {
      const t0 = start + d * DAY + (d === 0 ? 30 * MIN : 0);
      const span = DAY - (d === 0 ? 30 * MIN : 0);
      if (steps.chance(0.7)) {
        out.push({ kind: 'clock-step', at: Math.round(t0 + steps.next() * span), durMs: steps.int(5, 60) * MIN, stepMs: (steps.chance(0.5) ? 1 : -1) * 2 * HOUR });
      }
    }
  }
  return out.sort((a, b) => a.at - b.at);
}

export function describeFault(f: Fault, start: number): string {
  const t = `+${fmtDur(f.at - start)}`;
  const { kind, at: _at, ...rest } = f;
  const args = Object.entries(rest)
    .map(([k, v]) => `${k}=${k.endsWith('Ms') ? fmtDur(v as number) : String(v)}`)
    .join(' ');
  return `${t.padEnd(12)} ${kind}${args ? ' ' + args : ''}`;
}

export function fmtDur(ms: number): string {
  if (ms < 0) return `-${fmtDur(-ms)}`;
  const s = Math.round(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d) return `${d}d${String(h).padStart(2, '0')}h${String(m).padStart(2, '0')}m`;
  if (h) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}
