/**
 * Saxo as the simulated processes see it: latency, timeouts, outages and odd answers around the
 * SaxoModel, and the I1 judgement of every presentation (a second presentation of a consumed
 * refresh token is a violation unless the fault injected makes it unavoidable). Crash plans that
 * fire right after Saxo answered are armed here.
 */
import { SaxoError } from '../../../core/errors.js';
import { pairOf } from '../../../core/grant.js';
import type { RawAnswer, RefreshOptions } from '../../../core/ports.js';
import { SimCrash, type Proc } from '../procs.js';
import type { World } from '../world.js';

const SEC = 1000;
const MIN = 60 * SEC;

export async function present(w: World, proc: Proc, rt: string, opts: RefreshOptions): Promise<RawAnswer> {
  const start = w.now();
  const deadline = opts.deadline - proc.skewMs; // the caller's deadline, in true time
  if (start >= deadline) throw new SaxoError('retryable', 'deadline', 'No attempt: past the deadline');
  const delay = start < w.slowUntil ? w.rng.range(SEC, w.slowMaxMs) : w.rng.range(150, 900);
  // Bots use urlopen(timeout=10); our client gives up at the caller's deadline.
  const giveUp = Math.min(deadline, start + (proc.kind === 'bot' ? 10 * SEC : Infinity));
  if (start + delay > giveUp) {
    await w.clock.sleep(giveUp - start);
    proc.gate();
    throw new SaxoError('retryable', 'timeout', 'Saxo did not answer in time');
  }
  await w.clock.sleep(delay);
  proc.gate();
  if (w.now() < w.saxoDownUntil) throw new SaxoError('retryable', 'http_503', 'Saxo answered 503 (non-JSON body)', 503);
  w.saxo.accessLifetimeSec = w.rng.int(1070, 1200);
  const e = w.ledger.byRefresh.get(rt);
  // Classify a re-presentation only once Saxo processed it (a retryable fault answers first).
  const classify = () => {
    if (e?.consumed === 'lost') w.ledger.lostRepresentations++;
    else if (e?.consumed === 'ok') {
      if (proc.kind === 'bot' && rt === w.staleRefresh) w.ledger.botStaleRepresentations++;
      else if ((proc.kind === 'agent' && w.smDown > 0) || (proc.kind === 'bot' && e.partitioned)) {
        // The cloud consumed this pair, its event never reached the VM and Secret Manager is
        // down: the VM cannot know (it refreshes locally when the cloud looks down). Counted and
        // reported, not a defect of this system; the bots then re-present the same pair.
        e.partitioned = true;
        w.ledger.partitionRepresentations++;
        w.partitionUntil = Math.max(w.partitionUntil, w.now() + 30 * MIN);
      } else w.violate('I1', `${proc.name} presented refresh token #${e.seq} a second time`);
    }
  };
  const before = w.saxo.stats.refreshes;
  const presentedBefore = w.saxo.stats.presentations;
  let raw: RawAnswer;
  try {
    raw = await w.saxo.refresh(rt, { ...opts, deadline: Infinity }); // deadlines are judged above, in true time
  } catch (err) {
    if (w.saxo.stats.presentations > presentedBefore) classify();
    if (w.saxo.stats.refreshes > before) {
      w.ledger.lose(rt, w.ledger.list.at(-1)?.refreshToken);
      w.notes.push(`lost response: Saxo consumed #${e?.seq} presented by ${proc.name}`);
    }
    throw err;
  }
  classify();
  if (e) e.consumed = 'ok';
  const res = pairOf(raw);
  const got = w.ledger.byRefresh.get(res.refreshToken)!;
  got.parent = rt;
  if (proc.dead) {
    w.ledger.lose(rt, res.refreshToken);
    w.notes.push(`${proc.name} died with an answer in flight (#${got.seq} lost)`);
    throw new SimCrash(`${proc.name} was killed`);
  }
  got.delivered = true;
  proc.undo = [];
  if (proc.kind === 'agent' && w.agentPlan && w.agentPlan.until > w.now()) {
    proc.crashAt = w.agentPlan.step;
    proc.armed = true;
    w.agentPlan = undefined;
  } else if (proc.kind === 'cloud' && w.cloudPlan) {
    proc.crashAt = w.cloudPlan;
    proc.armed = true;
    w.cloudPlan = undefined;
  }
  if (proc.armed && proc.crashAt === 'after-saxo') {
    w.ledger.lose(rt, res.refreshToken);
    w.notes.push(`${proc.name} killed after Saxo answered (#${got.seq} lost, unavoidable window)`);
    proc.kill();
    throw new SimCrash(`${proc.name} killed after-saxo`);
  }
  proc.received = res.refreshToken;
  return raw;
}
