/**
 * One seeded soak run: draw the fault schedule, start the world from a fresh login, advance
 * virtual time through the days while checking the invariants each minute, and summarise.
 */
import { describeFault, drawFaults, fmtDur, ODD_ANSWERS, type Fault } from './faults.js';
import { VirtualClock } from '../../standins/virtual-clock.js';
import { Bot, BotStats } from './bots.js';
import type { Violation } from './ledger.js';
import type { BreakMode } from './procs.js';
import { Rng } from './rng.js';
import { World } from './world.js';

const SEC = 1000;
const MIN = 60 * SEC;
const DAY = 24 * 60 * MIN;
const START = Date.UTC(2026, 0, 5, 0, 0, 0);

export interface SoakOptions {
  seed: number;
  days: number;
  breakMode?: BreakMode | undefined;
  verbose?: boolean | undefined;
}

export interface SoakResult {
  seed: number;
  days: number;
  refreshes: number;
  violations: Violation[];
  /** Seconds without a valid token in the cache while at least one refresh path was up. */
  downtimeSec: number;
  lostToSaxo: number;
  /** Human-readable report; the last line is `soak: <days> days, <N> refreshes, <V> violations`. */
  lines: string[];
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const faultRng = new Rng(o.seed);
  const clock = new VirtualClock(START);
  const leaseTtlMs = faultRng.pick([60 * SEC, 60 * SEC, 20 * SEC]);
  const w = new World(clock, new Rng(o.seed ^ 0x5bd1e995), o.breakMode, leaseTtlMs);
  const faults = drawFaults(faultRng, START, o.days, new Rng(o.seed ^ 0x10c4), new Rng(o.seed ^ 0x5e9));
  const lines: string[] = [`soak: seed ${o.seed}${o.breakMode ? ` (broken build: ${o.breakMode})` : ''}`];
  if (o.verbose) {
    lines.push(`  lease ttl ${leaseTtlMs / SEC} s, cloud clock skew ${(w.cloudSkewMs / SEC).toFixed(1)} s; fault schedule:`);
    for (const f of faults) lines.push(`    ${describeFault(f, START)}`);
  }

  await w.login();
  w.startAgent();
  const botStats = new BotStats();
  const bots = Array.from({ length: w.rng.int(2, 3) }, (_, i) => new Bot(w, i + 1, botStats));
  for (const b of bots) b.start();
  let duplicates = 0;
  const cloudTick = () => {
    if (!w.functionDown) w.runCloud();
    if (!w.functionDown && duplicates > 0) {
      duplicates--;
      w.runCloud(); // Scheduler's at-least-once delivery: a second invocation at the same instant
    }
    clock.at(clock.now() + 5 * MIN, cloudTick);
  };
  clock.at(START + w.rng.range(0, 5 * MIN), cloudTick);
  for (const f of faults) clock.at(f.at, () => (f.kind === 'cloud-duplicate' ? (duplicates += 3) : apply(w, f, bots)));

  const m = { downtimeMs: 0, deadDowntimeMs: 0, episodes: 0, healthyMs: 0, healthyRefreshes: 0, saxoOutages: 0, chainDeaths: 0, silentDeaths: 0 };
  let lastValid = true;
  let deadSince: number | undefined;
  let lossesSeen = 0;
  let loginAt: number | undefined;
  let prevRefreshes = 0;
  let prevHealthy = false;
  const monitor = () => {
    const now = clock.now();
    const alive = w.ledger.chainAlive(now);
    if (!alive && deadSince === undefined) {
      deadSince = now;
      m.chainDeaths++;
      // Excused: a pair lost in flight, or the last live pair sat in Secret Manager for its whole
      // remaining life while Secret Manager was unreachable (nothing can fetch it).
      const stuckInSecret = w.smDown > 0 && w.ledger.list.at(-1)?.refreshToken === w.latestSecretToken();
      if (stuckInSecret) w.notes.push(`chain died while its last pair was unreachable in Secret Manager (+${Math.round((now - START) / MIN)} min)`);
      else if (w.ledger.lostToSaxo <= lossesSeen) w.violate('chain', 'the refresh chain died without an injected loss');
      lossesSeen = w.ledger.lostToSaxo;
    }
    if (deadSince !== undefined && loginAt === undefined) {
      // The operator reacts to "login required" after 10 minutes; silence for 90 minutes is a miss.
      if (w.loginRequiredAt !== undefined) loginAt = Math.max(now, w.loginRequiredAt + 10 * MIN);
      else if (now - deadSince > 90 * MIN) {
        w.violate('I4', 'the chain died and nothing said "login required" within 90 min');
        m.silentDeaths++;
        loginAt = now;
      }
      if (loginAt !== undefined) {
        const attempt = () => {
          // `login` checks its targets first (agent/login-store.ts preflight): with Secret Manager
          // down it refuses before the browser, and the operator tries again a little later.
          if (w.smDown) return clock.at(clock.now() + 5 * MIN, attempt);
          w.fire(w.login(), 'operator');
          deadSince = undefined;
          loginAt = undefined;
        };
        clock.at(loginAt, attempt);
      }
    }
    lossesSeen = Math.max(lossesSeen, alive ? w.ledger.lostToSaxo : lossesSeen);

    const t = w.cacheToken();
    const valid = !!t && w.saxo.isValidAccess(t.accessToken);
    const agentUp = !!w.agent && !w.agent.proc.dead && !w.vmDown;
    const pathUp = agentUp || (!w.functionDown && !w.smDown);
    // Saxo down or slower than the callers' deadlines: no path can refresh, by definition.
    const excused = !alive || deadSince !== undefined || now < Math.max(w.saxoDownUntil, w.slowUntil) + 10 * MIN || now < w.partitionUntil || w.pendingRepair !== undefined ||
      // The token ran out while the agent was down (and no bot refreshed): its first checks after the
      // restart, through any queued Saxo errors, are the recovery, not an outage it caused.
      (agentUp && now - w.agent!.since < 5 * MIN);
    if (!valid && pathUp && !excused) {
      m.downtimeMs += MIN;
      if (lastValid) {
        m.episodes++;
        w.violate('availability', `no valid token in the cache while ${agentUp ? 'the agent' : 'the cloud path'} was up`);
      }
    } else if (!valid && !alive) m.deadDowntimeMs += MIN;
    lastValid = valid || !pathUp || excused;

    const healthy =
      alive && !w.functionDown && !w.smDown && !w.pubsubDown && !w.vmDown && agentUp && now >= w.slowUntil && now >= w.saxoDownUntil;
    const r = w.saxo.stats.refreshes;
    if (healthy && prevHealthy) {
      m.healthyMs += MIN;
      m.healthyRefreshes += r - prevRefreshes;
    }
    prevHealthy = healthy;
    prevRefreshes = r;

    const pr = w.pendingRepair;
    if (pr && agentUp && now - Math.max(pr.at, w.agent!.since) > 65 * SEC) {
      w.violate(pr.what === 'stale' ? 'I2' : 'I6', `a ${pr.what} cache write was not undone within one agent check`);
      w.pendingRepair = undefined;
    }
    clock.at(now + MIN, monitor);
  };
  clock.at(START + MIN, monitor);
  for (let day = 1; day <= o.days; day++) await clock.runUntil(START + day * DAY);
  m.saxoOutages = faults.filter((f) => f.kind === 'saxo-outage').length;

  const v = w.ledger.violations;
  const stats = w.saxo.stats;
  const reuse = stats.reusedPresentations - w.ledger.lostRepresentations - w.ledger.botStaleRepresentations - w.ledger.partitionRepresentations;
  if (reuse !== v.filter((x) => x.kind === 'I1').length) w.violate('I1', `Saxo counted ${reuse} unexplained re-presentations`);
  const perLifetime = m.healthyMs ? m.healthyRefreshes / (m.healthyMs / (1200 * SEC)) : 0;
  const ev = (n: string) => w.events.get(n) ?? 0;
  if (o.verbose) {
    for (const n of w.notes) lines.push(`  note: ${n}`);
    lines.push(`  log events: ${[...w.events].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    for (const x of v) lines.push(`  VIOLATION ${x.kind} at +${fmtDur(x.at - START)}: ${x.detail}`);
  }
  lines.push(
    `  seconds without a valid token while a path was up: ${m.downtimeMs / SEC} (${m.episodes} episodes; ${m.deadDowntimeMs / SEC} s more while the chain was dead awaiting login)`,
    `  presentations ${stats.presentations}, refreshes ${stats.refreshes} (bots ${botStats.refreshes}); presentations beyond one: ${reuse}` +
      ` (+ lost to Saxo: ${w.ledger.lostToSaxo} pairs, ${w.ledger.lostRepresentations} forced re-presentations; bots on a stale-writer pair: ${w.ledger.botStaleRepresentations}; VM cut off from Secret Manager after a cloud refresh: ${w.ledger.partitionRepresentations})`,
    `  refreshes per token lifetime in healthy periods: ${perLifetime.toFixed(2)} (${fmtDur(m.healthyMs)} healthy)`,
    `  peak non-destroyed secret versions: ${w.peakVersions} (keep ${w.cloudSettings.keepSecretVersions})`,
    `  alerts raised: ${w.alerts} (refresh_alert ${ev('refresh_alert')}, chain_deadline ${ev('chain_deadline')}, secret_write_lost ${ev('secret_write_lost')});` +
      ` expected: ≥1 per Saxo outage (${m.saxoOutages}); login_required after ${m.chainDeaths - m.silentDeaths}/${m.chainDeaths} chain losses`,
    `  faults: ${faults.length} injected, ${w.crashes.length} agent deaths, ${w.repairs} stale/corrupt cache writes undone,` +
      ` events dropped ${w.eventsDropped} / duplicated ${w.eventsDuplicated}, bot uses ${botStats.uses} (rejected ${botStats.rejectedUses})`,
    `  bots as they are: ${botStats.secretSaves} saves to the secret, ${botStats.cacheClears} cache deletions after an auth failure,` +
      ` ${botStats.startupWrites} start-up writes (${botStats.locklessStartupWrites} without the lock)`,
  );
  lines.push(`soak: ${o.days} days, ${stats.refreshes} refreshes, ${v.length} violations`);
  return { seed: o.seed, days: o.days, refreshes: stats.refreshes, violations: v, downtimeSec: m.downtimeMs / SEC, lostToSaxo: w.ledger.lostToSaxo, lines };
}

function apply(w: World, f: Fault, bots: Bot[]): void {
  const later = (ms: number, fn: () => void) => w.clock.at(w.now() + ms, fn);
  const sm = (d: number) => {
    w.smDown += d;
    w.store.unavailable = w.smDown > 0;
  };
  switch (f.kind) {
    case 'cloud-outage':
      if (f.what !== 'secret') w.functionDown++;
      if (f.what !== 'function') sm(1);
      later(f.durMs, () => {
        if (f.what !== 'secret') w.functionDown--;
        if (f.what !== 'function') sm(-1);
      });
      break;
    case 'pubsub-outage':
      w.pubsubDown++;
      later(f.durMs, () => void w.pubsubDown--);
      break;
    case 'agent-kill':
      w.killAgent(f.downMs);
      break;
    case 'vm-reboot':
      w.vmDown++;
      w.killAgent(f.downMs);
      for (const b of bots) b.reboot();
      later(f.downMs, () => {
        w.vmDown--;
        if (!w.vmDown && !w.agent) w.startAgent();
      });
      break;
    case 'agent-crash-step':
      w.functionDown++;
      w.agentPlan = { step: f.step, until: f.at + f.durMs, downMs: f.downMs };
      w.planDownMs = f.downMs;
      later(f.durMs, () => void w.functionDown--);
      break;
    case 'cloud-crash-step':
      w.cloudPlan = f.step;
      break;
    case 'saxo-errors':
      for (let i = 0; i < f.n; i++) w.saxo.faults.push('retryable');
      break;
    case 'saxo-slow':
      w.slowUntil = Math.max(w.slowUntil, f.at + f.durMs);
      w.slowMaxMs = f.maxDelayMs;
      break;
    case 'saxo-outage':
      w.saxoDownUntil = Math.max(w.saxoDownUntil, f.at + f.durMs);
      break;
    case 'lost-response':
      w.saxo.faults.push('lost_response');
      break;
    case 'saxo-odd':
      w.saxo.odd.push(ODD_ANSWERS[f.variant % ODD_ANSWERS.length]!);
      break;
    case 'disk-full':
      w.journal.full = true;
      later(f.durMs, () => void (w.journal.full = false));
      break;
    case 'clock-step':
      // The agent's wall clock only: its ClockWatch sees the jump against the monotonic clock.
      w.agentClockStepMs = f.stepMs;
      later(f.durMs, () => void (w.agentClockStepMs = 0));
      break;
    case 'bot-fallback':
      // The function fails first; the agent dies 10 min later (after it has adopted the function's
      // last pair) and returns before the function does, so the bots carry the chain meanwhile.
      w.functionDown++;
      later(10 * MIN, () => w.killAgent(Math.max(MIN, f.durMs - 12 * MIN)));
      later(f.durMs, () => void w.functionDown--);
      break;
    case 'stale-write': {
      // With the agent down, the cache may hold the only copy of a bot's newest pair: overwriting it
      // destroys that pair beyond any design's reach (seed 1, 7 days, +2d13h). Scripts misbehave
      // while the agent runs; that is what the agent must undo.
      if (!w.agent || w.agent.proc.dead || w.vmDown) {
        w.notes.push(`stale write at +${Math.round((f.at - START) / MIN)} min skipped: agent down`);
        break;
      }
      const old = [...w.ledger.list].reverse().find((e) => e.delivered && e.issuedAt <= w.now() - f.ageMs);
      if (!old) break;
      w.staleRefresh = old.refreshToken;
      w.setWriter('stale-writer');
      w.cache.raw = JSON.stringify({
        access_token: old.accessToken,
        refresh_token: old.refreshToken,
        token_expiry: new Date(old.issuedAt + (old.expiresIn - 60) * SEC).toISOString(),
        app_key: 'soak-app-key',
        app_secret: 'stale-script-secret',
      });
      break;
    }
    case 'corrupt-write':
      if (!w.agent || w.agent.proc.dead || w.vmDown) {
        w.notes.push(`corrupt write at +${Math.round((f.at - START) / MIN)} min skipped: agent down`);
        break;
      }
      w.setWriter('corrupt-writer');
      w.cache.raw = ['', '{', 'not json at all', '{"access_token": 5}', '{"access_token":"a","refresh_token":"b","token_expiry":"soon"}'][f.variant];
      break;
    case 'cloud-duplicate':
      break; // handled by the cloud tick
    case 'lock-hog': {
      if (w.vmDown) break;
      w.fire(
        (async () => {
          const held = await w.lock.acquire(undefined, 60 * SEC).catch(() => undefined);
          if (!held) return;
          await w.clock.sleep(f.durMs);
          await held.release();
        })(),
        'lock-hog',
      );
      // A bot restarting meanwhile waits 5 s for the lock, then writes the cache without it.
      const b = bots[f.bot % bots.length];
      if (b) later(SEC, () => b.restart());
      break;
    }
  }
}
