/**
 * The invariant checks that must see writes as they happen: every log line (I5 no token material,
 * I4 "login required" only when nothing live is stored, I3 a pair the function could not store),
 * every published event (I5), every secret version (I2 never older) and every cache write (I2/I6,
 * and the repairs the agent owes after a script or a bot moved the cache back).
 */
import { parseFlat } from '../../../core/codec.js';
import type { TokenRotatedEvent } from '../../../core/ports.js';
import type { TokenSet } from '../../../core/token.js';
import type { Proc } from '../procs.js';
import { TOKEN_RE } from '../rng.js';
import { APP_SECRET, type World } from '../world.js';

const MIN = 60 * 1000;

export function onLog(w: World, proc: Proc, line: string): void {
  if (TOKEN_RE.test(line) || line.includes(APP_SECRET)) w.violate('I5', `${proc.name} logged token material`);
  const rec = JSON.parse(line) as { event: string; severity: string };
  w.events.set(rec.event, (w.events.get(rec.event) ?? 0) + 1);
  if (rec.severity === 'ALERT') w.alerts++;
  if (rec.event === 'login_required') onLoginRequired(w, proc);
  if (rec.event === 'secret_write_lost') {
    // Saxo answered, then Secret Manager failed the function's every write: the function has no
    // other durable place. An injected outage makes that an injected loss; otherwise it is ours.
    if (w.smDown > 0) {
      w.ledger.lose(undefined, proc.received);
      w.notes.push(`${proc.name} could not store pair #${w.ledger.seqOf(proc.received)} (Secret Manager down after Saxo answered)`);
    } else w.violate('I3', `${proc.name} lost a pair Saxo issued although Secret Manager was up`);
  }
  if (rec.event === 'superseded_token') {
    // The agent knows the cache's pair was consumed by the cloud but cannot fetch the successor
    // (Secret Manager down); the bots, which do not know, may present it: the partition case.
    const e = w.ledger.byRefresh.get(w.cacheToken()?.refreshToken ?? '');
    if (e) e.partitioned = true;
    w.partitionUntil = Math.max(w.partitionUntil, w.now() + 30 * MIN);
  }
}

/** I4: "login required" is wrong while a source this component consults holds a live pair. */
function onLoginRequired(w: World, proc: Proc): void {
  w.loginRequiredAt ??= w.now();
  const live = (rt: string | undefined) => {
    const e = rt ? w.ledger.byRefresh.get(rt) : undefined;
    return !!e && e.delivered && !e.consumed && e.refreshExpiresAt > w.now();
  };
  const secret = w.smDown ? undefined : w.latestSecretToken();
  const sources = proc.kind === 'cloud' ? [secret] : [secret, w.cacheToken()?.refreshToken, w.state.value?.token?.refreshToken];
  if (sources.some(live)) w.violate('I4', `${proc.name} said login required while a live pair was stored`);
}

/** I5 on what is published; then Pub/Sub carries it. */
export function published(w: World, proc: Proc, e: TokenRotatedEvent): void {
  const text = JSON.stringify(e);
  if (TOKEN_RE.test(text) || text.includes(APP_SECRET)) w.violate('I5', `${proc.name} published token material`);
  w.route(e);
}

/** I2: a secret version never holds an older pair than one added before it. */
export function secretAdded(w: World, proc: Proc, t: TokenSet): void {
  const seq = w.ledger.seqOf(t.refreshToken) ?? 0;
  if (seq < w.secretHigh) w.violate('I2', `${proc.name} added secret version with pair #${seq} after #${w.secretHigh}`);
  w.secretHigh = Math.max(w.secretHigh, seq);
  w.peakVersions = Math.max(w.peakVersions, w.store.versions().filter((v) => v.state !== 'DESTROYED').length);
}

/** The cache: I2 / I6 as each write happens, then the agent's watcher fires. */
export function onCacheChange(w: World, raw: string | undefined): void {
  const who = w.writer;
  w.writer = 'unknown';
  const p = raw === undefined ? undefined : parseFlat(raw);
  if (!p?.ok) {
    // A corrupting script, or a bot's clear_cache after an auth failure: the agent restores it.
    if (who === 'corrupt-writer' || (who === 'bot-clear' && !botOverwroteLastCopy(w, 0))) w.pendingRepair ??= { at: w.now(), what: 'corrupt' };
    else if (who === 'bot-clear') {
      /* the last copy is gone with the agent away: counted as a loss by botOverwroteLastCopy */
    }
    else w.violate('I6', `${who} left the cache unreadable`);
  } else {
    const seq = w.ledger.seqOf(p.token.refreshToken) ?? 0;
    if (seq < w.cacheHigh) {
      // A script, or a bot starting up with the secret's older pair (written without the lock
      // after 5 s): the agent must undo it, and the bots' use of it is their own race.
      if (who === 'stale-writer' || who === 'bot-startup') {
        if (who === 'bot-startup') w.staleRefresh = p.token.refreshToken;
        if (!botOverwroteLastCopy(w, seq)) w.pendingRepair ??= { at: w.now(), what: 'stale' };
      } else w.violate('I2', `${who} moved the cache back from pair #${w.cacheHigh} to #${seq}`);
    } else {
      w.cacheHigh = seq;
      if (w.pendingRepair) w.repairs++;
      w.pendingRepair = undefined;
    }
  }
  // The agent's chokidar watcher.
  const a = w.agent;
  if (a && !a.proc.dead) {
    w.clock.at(w.now() + 100, () => !a.proc.dead && w.fire(a.rec.run({ kind: 'cache-changed' }), a.proc.name));
  }
}

/**
 * A bot's start-up write (or its clear_cache) replaced the cache while the agent was down, and
 * the pair it replaced was held nowhere else (a bot's own refresh whose save to the secret failed,
 * a cache-only login): the fleet's unchanged code destroyed it, beyond any design's reach (the
 * known limit of a stopped agent, docs/DESIGN.md). Counted as an injected loss; the cache's
 * high-water mark drops to what is left.
 */
function botOverwroteLastCopy(w: World, seqNow: number): boolean {
  if (w.agent && !w.agent.proc.dead) return false;
  const e = w.ledger.list[w.cacheHigh - 1];
  if (!e || e.consumed) return false;
  const held = [w.state.value?.token?.refreshToken, w.latestSecretToken()].includes(e.refreshToken);
  if (held) return false;
  // Its predecessor's successor is gone: re-presenting the predecessor is then forced, not a reuse.
  w.ledger.lose(e.parent, e.refreshToken);
  w.notes.push(`a bot overwrote the only copy of pair #${e.seq} while the agent was down`);
  w.cacheHigh = seqNow;
  return true;
}
