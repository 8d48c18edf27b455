/**
 * The simulated installation: Saxo, Secret Manager, Pub/Sub, the cache + flock, the agent (the
 * real Reconciler), the function (the real runCloudRefresh) and the bots (TS model of the Python
 * TokenCoordinator). Invariant checks that need to see writes as they happen live here too.
 */
import { Reconciler } from '../../agent/reconciler.js';
import { runCloudRefresh } from '../../functions/refresher.js';
import { parseFlat, serializeFlat } from '../../core/codec.js';
import { loadConfig } from '../../core/config.js';
import { SaxoError, SecretStoreError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { RawAnswer, RefreshOptions, TokenRotatedEvent } from '../../core/ports.js';
import { pairOf } from '../../core/grant.js';
import { agentSettings, cloudSettings, type AgentSettings, type CloudSettings } from '../../core/settings.js';
import { fromResponse, type TokenSet } from '../../core/token.js';
import { MemoryCache, MemoryEventBus, MemoryJournal, MemoryLock, MemorySecretStore, MemoryState, SaxoModel } from '../../standins/memory.js';
import { skewed, type VirtualClock } from '../../standins/virtual-clock.js';
import type { CrashStep } from './faults.js';
import { Ledger } from './ledger.js';
import { busPort, cachePort, journalPort, lockPort, Proc, saxoPort, SimCrash, statePort, storePort, type BreakMode, type Shared } from './procs.js';
import { Rng, TOKEN_RE } from './rng.js';

export const APP_KEY = 'soak-app-key';
export const APP_SECRET = 'soak-app-secret-Q7v2xL';
const SEC = 1000;
const MIN = 60 * SEC;

export class World implements Shared {
  readonly ledger: Ledger;
  readonly saxo: SaxoModel;
  readonly store = new MemorySecretStore('projects/soak/secrets/saxo-token');
  readonly bus = new MemoryEventBus();
  readonly cache = new MemoryCache();
  /** The agent's journal: survives the agent's deaths, as the file does (a VM reboot included). */
  readonly journal = new MemoryJournal();
  readonly lock: MemoryLock;
  readonly state = new MemoryState();
  readonly agentSettings: AgentSettings;
  readonly cloudSettings: CloudSettings;
  readonly cloudSkewMs: number;
  // Fault state (counters: outages overlap).
  functionDown = 0;
  smDown = 0;
  pubsubDown = 0;
  vmDown = 0;
  saxoDownUntil = 0;
  slowUntil = 0;
  /** Until when a VM cut off from Secret Manager may lack a valid token (see present()). */
  partitionUntil = 0;
  slowMaxMs = 0;
  agentPlan: { step: CrashStep; until: number; downMs: number } | undefined;
  cloudPlan: CrashStep | undefined;
  // The agent.
  agent: { proc: Proc; rec: Reconciler; since: number } | undefined;
  private agentN = 0;
  private cloudN = 0;
  pendingEvents: TokenRotatedEvent[] = [];
  // Observations.
  private writer = 'unknown';
  cacheHigh = 0;
  secretHigh = 0;
  pendingRepair: { at: number; what: string } | undefined;
  staleRefresh: string | undefined;
  repairs = 0;
  readonly events = new Map<string, number>();
  alerts = 0;
  loginRequiredAt: number | undefined;
  peakVersions = 0;
  eventsDropped = 0;
  eventsDuplicated = 0;
  crashes: string[] = [];
  readonly notes: string[] = [];

  constructor(
    readonly clock: VirtualClock,
    readonly rng: Rng,
    readonly breakMode: BreakMode | undefined,
    leaseTtlMs: number,
  ) {
    this.ledger = new Ledger(() => clock.now());
    this.saxo = new SaxoModel(clock);
    this.saxo.onIssue = (r) => this.ledger.record(r);
    this.saxo.mint = (n) => rng.token(n);
    this.lock = new MemoryLock(clock, 30 * SEC);
    this.bus.manual = true;
    this.cloudSkewMs = Math.round(rng.range(-30, 30) * SEC);
    // The production settings builders over the defaults, as a deployment gets them (README).
    const config = loadConfig({
      TOKEN_KEEPER_DATA_DIR: '/soak',
      GOOGLE_CLOUD_PROJECT: 'soak',
      TOKEN_SECRET_ID: 'saxo-token',
      LEASE_TTL_SECONDS: String(leaseTtlMs / SEC),
    });
    const backoff = new Rng(rng.int(1, 2 ** 30));
    this.agentSettings = agentSettings(config, { holderId: 'agent:vm-1', random: () => backoff.next() });
    this.cloudSettings = cloudSettings(config, { holderId: 'cloud:refreshToken', random: () => backoff.next() });
    this.cache.onChange = (raw) => this.onCacheChange(raw);
  }

  now(): number {
    return this.clock.now();
  }

  violate(kind: string, detail: string): void {
    this.ledger.violate(this.now(), kind, detail);
  }

  setWriter(w: string): void {
    this.writer = w;
  }

  /** Run an async action without awaiting it; a SimCrash is a dead process, anything else is I6. */
  fire(p: Promise<unknown>, who: string): void {
    p.catch((err: unknown) => {
      if (err instanceof SimCrash) return;
      this.violate('I6', `${who} threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
    });
  }

  loggerFor(proc: Proc): Logger {
    return createLogger({ minSeverity: 'INFO', write: (line) => !proc.dead && this.onLog(proc, line) });
  }

  private onLog(proc: Proc, line: string): void {
    if (TOKEN_RE.test(line) || line.includes(APP_SECRET)) this.violate('I5', `${proc.name} logged token material`);
    const rec = JSON.parse(line) as { event: string; severity: string };
    this.events.set(rec.event, (this.events.get(rec.event) ?? 0) + 1);
    if (rec.severity === 'ALERT') this.alerts++;
    if (rec.event === 'login_required') this.onLoginRequired(proc);
    if (rec.event === 'secret_write_lost') {
      // Saxo answered, then Secret Manager failed the function's every write: the function has no
      // other durable place. An injected outage makes that an injected loss; otherwise it is ours.
      if (this.smDown > 0) {
        this.ledger.lose(undefined, proc.received);
        this.notes.push(`${proc.name} could not store pair #${this.ledger.seqOf(proc.received)} (Secret Manager down after Saxo answered)`);
      } else this.violate('I3', `${proc.name} lost a pair Saxo issued although Secret Manager was up`);
    }
    if (rec.event === 'superseded_token') {
      // The agent knows the cache's pair was consumed by the cloud but cannot fetch the successor
      // (Secret Manager down); the bots, which do not know, may present it: the partition case.
      const e = this.ledger.byRefresh.get(this.cacheToken()?.refreshToken ?? '');
      if (e) e.partitioned = true;
      this.partitionUntil = Math.max(this.partitionUntil, this.now() + 30 * MIN);
    }
  }

  /** I4: "login required" is wrong while a source this component consults holds a live pair. */
  private onLoginRequired(proc: Proc): void {
    this.loginRequiredAt ??= this.now();
    const live = (rt: string | undefined) => {
      const e = rt ? this.ledger.byRefresh.get(rt) : undefined;
      return !!e && e.delivered && !e.consumed && e.refreshExpiresAt > this.now();
    };
    const secret = this.smDown ? undefined : this.latestSecretToken();
    const sources = proc.kind === 'cloud' ? [secret] : [secret, this.cacheToken()?.refreshToken, this.state.value?.token?.refreshToken];
    if (sources.some(live)) this.violate('I4', `${proc.name} said login required while a live pair was stored`);
  }

  latestSecretToken(): string | undefined {
    const v = [...this.store.versions()].reverse().find((x) => x.state === 'ENABLED');
    const p = v?.data !== undefined ? parseFlat(v.data) : undefined;
    return p?.ok ? p.token.refreshToken : undefined;
  }

  /** The latest enabled version's raw payload, as a bot's secret client reads it. */
  latestSecretVersion(): { version: number; payload: Record<string, unknown> } | undefined {
    const v = [...this.store.versions()].reverse().find((x) => x.state === 'ENABLED');
    if (v?.data === undefined) return undefined;
    try {
      return { version: v.version, payload: JSON.parse(v.data) as Record<string, unknown> };
    } catch {
      return undefined;
    }
  }

  latestSecretPayload(): Record<string, unknown> | undefined {
    return this.latestSecretVersion()?.payload;
  }

  /** A bot's AddSecretVersion (and, for the newer release, DestroySecretVersion of the one it read). */
  botSavedToSecret(proc: Proc, data: string, destroy: number | undefined): void {
    this.store.addRaw(data);
    const p = parseFlat(data);
    if (p.ok) this.secretAdded(proc, p.token);
    if (destroy !== undefined) this.store.destroy(destroy);
  }

  cacheToken(): TokenSet | undefined {
    const p = this.cache.raw === undefined ? undefined : parseFlat(this.cache.raw);
    return p?.ok ? p.token : undefined;
  }

  // ---- Saxo --------------------------------------------------------------------------------
  async present(proc: Proc, rt: string, opts: RefreshOptions): Promise<RawAnswer> {
    const start = this.now();
    const deadline = opts.deadline - proc.skewMs; // the caller's deadline, in true time
    if (start >= deadline) throw new SaxoError('retryable', 'deadline', 'No attempt: past the deadline');
    const delay = start < this.slowUntil ? this.rng.range(SEC, this.slowMaxMs) : this.rng.range(150, 900);
    // Bots use urlopen(timeout=10); our client gives up at the caller's deadline.
    const giveUp = Math.min(deadline, start + (proc.kind === 'bot' ? 10 * SEC : Infinity));
    if (start + delay > giveUp) {
      await this.clock.sleep(giveUp - start);
      proc.gate();
      throw new SaxoError('retryable', 'timeout', 'Saxo did not answer in time');
    }
    await this.clock.sleep(delay);
    proc.gate();
    if (this.now() < this.saxoDownUntil) throw new SaxoError('retryable', 'http_503', 'Saxo answered 503 (non-JSON body)', 503);
    this.saxo.accessLifetimeSec = this.rng.int(1070, 1200);
    const e = this.ledger.byRefresh.get(rt);
    // Classify a re-presentation only once Saxo processed it (a retryable fault answers first).
    const classify = () => {
      if (e?.consumed === 'lost') this.ledger.lostRepresentations++;
      else if (e?.consumed === 'ok') {
        if (proc.kind === 'bot' && rt === this.staleRefresh) this.ledger.botStaleRepresentations++;
        else if ((proc.kind === 'agent' && this.smDown > 0) || (proc.kind === 'bot' && e.partitioned)) {
          // The cloud consumed this pair, its event never reached the VM and Secret Manager is
          // down: the VM cannot know (it refreshes locally when the cloud looks down). Counted and
          // reported, not a defect of this system; the bots then re-present the same pair.
          e.partitioned = true;
          this.ledger.partitionRepresentations++;
          this.partitionUntil = Math.max(this.partitionUntil, this.now() + 30 * MIN);
        } else this.violate('I1', `${proc.name} presented refresh token #${e.seq} a second time`);
      }
    };
    const before = this.saxo.stats.refreshes;
    const presentedBefore = this.saxo.stats.presentations;
    let raw: RawAnswer;
    try {
      raw = await this.saxo.refresh(rt, { ...opts, deadline: Infinity }); // deadlines are judged above, in true time
    } catch (err) {
      if (this.saxo.stats.presentations > presentedBefore) classify();
      if (this.saxo.stats.refreshes > before) {
        this.ledger.lose(rt, this.ledger.list.at(-1)?.refreshToken);
        this.notes.push(`lost response: Saxo consumed #${e?.seq} presented by ${proc.name}`);
      }
      throw err;
    }
    classify();
    if (e) e.consumed = 'ok';
    const res = pairOf(raw);
    const got = this.ledger.byRefresh.get(res.refreshToken)!;
    got.parent = rt;
    if (proc.dead) {
      this.ledger.lose(rt, res.refreshToken);
      this.notes.push(`${proc.name} died with an answer in flight (#${got.seq} lost)`);
      throw new SimCrash(`${proc.name} was killed`);
    }
    got.delivered = true;
    proc.undo = [];
    if (proc.kind === 'agent' && this.agentPlan && this.agentPlan.until > this.now()) {
      proc.crashAt = this.agentPlan.step;
      proc.armed = true;
      this.agentPlan = undefined;
    } else if (proc.kind === 'cloud' && this.cloudPlan) {
      proc.crashAt = this.cloudPlan;
      proc.armed = true;
      this.cloudPlan = undefined;
    }
    if (proc.armed && proc.crashAt === 'after-saxo') {
      this.ledger.lose(rt, res.refreshToken);
      this.notes.push(`${proc.name} killed after Saxo answered (#${got.seq} lost, unavoidable window)`);
      proc.kill();
      throw new SimCrash(`${proc.name} killed after-saxo`);
    }
    proc.received = res.refreshToken;
    return raw;
  }

  // ---- sinks observed ------------------------------------------------------------------------
  published(proc: Proc, e: TokenRotatedEvent): void {
    const text = JSON.stringify(e);
    if (TOKEN_RE.test(text) || text.includes(APP_SECRET)) this.violate('I5', `${proc.name} published token material`);
    this.route(e);
  }

  secretAdded(proc: Proc, t: TokenSet): void {
    const seq = this.ledger.seqOf(t.refreshToken) ?? 0;
    if (seq < this.secretHigh) this.violate('I2', `${proc.name} added secret version with pair #${seq} after #${this.secretHigh}`);
    this.secretHigh = Math.max(this.secretHigh, seq);
    this.peakVersions = Math.max(this.peakVersions, this.store.versions().filter((v) => v.state !== 'DESTROYED').length);
  }

  /** Pub/Sub: at-least-once, unordered, dropped while down; waits for a subscriber that is away. */
  route(e: TokenRotatedEvent): void {
    if (this.pubsubDown || this.rng.chance(0.03)) {
      this.eventsDropped++;
      return;
    }
    const copies = this.rng.chance(0.05) ? 2 : 1;
    if (copies === 2) this.eventsDuplicated++;
    for (let i = 0; i < copies; i++) {
      const delay = this.rng.chance(0.1) ? this.rng.range(5 * SEC, 10 * MIN) : this.rng.range(100, 3 * SEC);
      this.clock.at(this.now() + delay, () => this.deliver(e));
    }
  }

  deliver(e: TokenRotatedEvent): void {
    const a = this.agent;
    if (!a || a.proc.dead) {
      this.pendingEvents.push(e);
      return;
    }
    // A nack (the handler failed, e.g. the process died) means redelivery later.
    this.fire(a.rec.run({ kind: 'event', event: e }).catch((err: unknown) => {
      this.pendingEvents.push(e);
      // A nack by design: the announced version cannot be read while Secret Manager is down.
      if (err instanceof SecretStoreError) return 'deferred';
      throw err;
    }), a.proc.name);
  }

  // ---- the cache: I2 / I6 as each write happens ------------------------------------------------
  private onCacheChange(raw: string | undefined): void {
    const w = this.writer;
    this.writer = 'unknown';
    const p = raw === undefined ? undefined : parseFlat(raw);
    if (!p?.ok) {
      // A corrupting script, or a bot's clear_cache after an auth failure: the agent restores it.
      if (w === 'corrupt-writer' || (w === 'bot-clear' && !this.botOverwroteLastCopy(0))) this.pendingRepair ??= { at: this.now(), what: 'corrupt' };
      else if (w === 'bot-clear') {
        /* the last copy is gone with the agent away: counted as a loss by botOverwroteLastCopy */
      }
      else this.violate('I6', `${w} left the cache unreadable`);
    } else {
      const seq = this.ledger.seqOf(p.token.refreshToken) ?? 0;
      if (seq < this.cacheHigh) {
        // A script, or a bot starting up with the secret's older pair (written without the lock
        // after 5 s): the agent must undo it, and the bots' use of it is their own race.
        if (w === 'stale-writer' || w === 'bot-startup') {
          if (w === 'bot-startup') this.staleRefresh = p.token.refreshToken;
          if (!this.botOverwroteLastCopy(seq)) this.pendingRepair ??= { at: this.now(), what: 'stale' };
        } else this.violate('I2', `${w} moved the cache back from pair #${this.cacheHigh} to #${seq}`);
      } else {
        this.cacheHigh = seq;
        if (this.pendingRepair) this.repairs++;
        this.pendingRepair = undefined;
      }
    }
    // The agent's chokidar watcher.
    const a = this.agent;
    if (a && !a.proc.dead) {
      this.clock.at(this.now() + 100, () => !a.proc.dead && this.fire(a.rec.run({ kind: 'cache-changed' }), a.proc.name));
    }
  }

  /**
   * A bot's start-up write (or its clear_cache) replaced the cache while the agent was down, and
   * the pair it replaced was held nowhere else (a bot's own refresh whose save to the secret failed,
   * a cache-only login): the fleet's unchanged code destroyed it, beyond any design's reach (the
   * known limit of a stopped agent, docs/DESIGN.md). Counted as an injected loss; the cache's
   * high-water mark drops to what is left.
   */
  private botOverwroteLastCopy(seqNow: number): boolean {
    if (this.agent && !this.agent.proc.dead) return false;
    const e = this.ledger.list[this.cacheHigh - 1];
    if (!e || e.consumed) return false;
    const held = [this.state.value?.token?.refreshToken, this.latestSecretToken()].includes(e.refreshToken);
    if (held) return false;
    // Its predecessor's successor is gone: re-presenting the predecessor is then forced, not a reuse.
    this.ledger.lose(e.parent, e.refreshToken);
    this.notes.push(`a bot overwrote the only copy of pair #${e.seq} while the agent was down`);
    this.cacheHigh = seqNow;
    return true;
  }

  // ---- the agent -------------------------------------------------------------------------------
  startAgent(): void {
    const proc = new Proc(`agent#${++this.agentN}`, 'agent');
    const rec = new Reconciler({
      clock: this.clock,
      cache: cachePort(this, proc),
      lock: lockPort(this, proc),
      state: statePort(this, proc),
      saxo: saxoPort(this, proc),
      store: storePort(this, proc),
      bus: busPort(this, proc),
      logger: this.loggerFor(proc),
      settings: this.agentSettings,
      journal: journalPort(this, proc),
    });
    proc.revertOnKill = this.breakMode === 'recovery';
    const a = { proc, rec, since: this.now() };
    this.agent = a;
    proc.onKill = () => this.agentDied(proc);
    const tick = () => {
      if (proc.dead) return;
      this.fire(rec.run({ kind: 'tick' }), proc.name);
      this.clock.at(this.now() + 60 * SEC, tick);
    };
    // As agent/agent.ts: retry a pending upstream push every 5 s.
    const pushRetry = () => {
      if (proc.dead) return;
      if (rec.hasPendingPush) this.fire(rec.run({ kind: 'push' }), proc.name);
      this.clock.at(this.now() + 5 * SEC, pushRetry);
    };
    this.clock.at(this.now() + 5 * SEC, pushRetry);
    this.fire(
      (async () => {
        await rec.load();
        await rec.run({ kind: 'startup' });
        for (const e of this.pendingEvents.splice(0)) this.deliver(e);
        this.clock.at(this.now() + 60 * SEC, tick);
      })(),
      proc.name,
    );
  }

  /** kill -9 from outside; systemd brings the agent back after `downMs` (unless the VM is down). */
  killAgent(downMs: number): void {
    const a = this.agent;
    if (!a) return;
    this.restartAfter = downMs;
    a.proc.kill();
  }

  private restartAfter = 10 * SEC;

  private agentDied(proc: Proc): void {
    if (this.agent?.proc !== proc) return;
    this.agent = undefined;
    this.crashes.push(proc.name);
    // I3: the newest pair this process received must be where startup looks (unless it moved on).
    const rt = proc.received;
    const e = rt ? this.ledger.byRefresh.get(rt) : undefined;
    if (e && !e.consumed) {
      const found = this.cacheToken()?.refreshToken === rt || this.state.value?.token?.refreshToken === rt || this.latestSecretToken() === rt;
      if (!found) this.violate('I3', `${proc.name} died holding pair #${e.seq}, which startup cannot find`);
    }
    const plan = proc.crashAt && proc.armed ? this.planDownMs : this.restartAfter;
    this.restartAfter = 10 * SEC;
    this.clock.at(this.now() + plan, () => {
      if (!this.vmDown && !this.agent) this.startAgent();
    });
  }

  planDownMs = 10 * SEC;

  // ---- the function ----------------------------------------------------------------------------
  runCloud(): void {
    const proc = new Proc(`cloud#${++this.cloudN}`, 'cloud');
    proc.skewMs = this.cloudSkewMs;
    const deps = {
      clock: skewed(this.clock, this.cloudSkewMs),
      store: storePort(this, proc),
      bus: busPort(this, proc),
      saxo: saxoPort(this, proc),
      logger: this.loggerFor(proc),
      settings: this.cloudSettings,
    };
    this.fire(runCloudRefresh(deps), proc.name);
  }

  // ---- the operator ----------------------------------------------------------------------------
  /** `token-keeper login` after the chain died: a fresh pair into the secret and the cache. */
  async login(): Promise<void> {
    const res = this.saxo.issue();
    this.ledger.byRefresh.get(res.refreshToken)!.delivered = true;
    const gens = [this.state.value?.token?.generation ?? 0, this.cacheToken()?.generation ?? 0];
    const pair: TokenSet = { ...fromResponse(res, this.now(), undefined, 'login'), appKey: APP_KEY, appSecret: APP_SECRET };
    if (!this.smDown) {
      const latest = await this.store.latest();
      pair.generation = Math.max(...gens, latest?.token?.generation ?? 0) + 1;
      const v = this.store.addRaw(serializeFlat(pair));
      this.secretAdded(new Proc('login', 'bot'), pair);
      this.route({
        type: 'TOKEN_ROTATED', version: v.name, generation: pair.generation, source: 'login',
        accessExpiresAt: new Date(pair.accessExpiresAt).toISOString(), publishedAt: new Date(this.now()).toISOString(),
      });
    } else pair.generation = Math.max(...gens) + 1;
    const held = await this.lock.acquire();
    this.setWriter('login');
    this.cache.raw = serializeFlat(pair);
    await held.release();
    this.loginRequiredAt = undefined;
  }
}
