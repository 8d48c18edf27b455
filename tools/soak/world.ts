/**
 * The simulated installation: Saxo, Secret Manager, Pub/Sub, the cache + flock, the agent (the
 * real Reconciler), the function (the real runCloudRefresh) and the bots (TS model of the Python
 * TokenCoordinator). This class holds the world's state and what the other parts read; each
 * concern lives in its own room under world/: the Saxo model (saxo-model.ts), the invariants that
 * watch writes as they happen (invariants.ts), Pub/Sub (pubsub.ts), the agent's and the
 * function's lifecycles (agent-life.ts, cloud-life.ts) and the operator's login (login.ts).
 */
import { parseFlat } from '../../core/codec.js';
import { loadConfig } from '../../core/config.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { RawAnswer, RefreshOptions, TokenRotatedEvent } from '../../core/ports.js';
import type { Reconciler } from '../../agent/reconciler.js';
import { agentSettings, cloudSettings, type AgentSettings, type CloudSettings } from '../../core/settings.js';
import type { TokenSet } from '../../core/token.js';
import { MemoryCache, MemoryEventBus, MemoryJournal, MemoryLock, MemorySecretStore, MemoryState, SaxoModel } from '../../standins/memory.js';
import type { VirtualClock } from '../../standins/virtual-clock.js';
import type { CrashStep } from './faults.js';
import { Ledger } from './ledger.js';
import { SimCrash, type BreakMode, type Proc, type Shared } from './procs.js';
import { Rng } from './rng.js';
import { killAgent, startAgent } from './world/agent-life.js';
import { runCloud } from './world/cloud-life.js';
import { onCacheChange, onLog, published, secretAdded } from './world/invariants.js';
import { login } from './world/login.js';
import { deliver, route } from './world/pubsub.js';
import { present } from './world/saxo-model.js';

export const APP_KEY = 'soak-app-key';
export const APP_SECRET = 'soak-app-secret-Q7v2xL';
const SEC = 1000;

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
  /** The agent VM's wall clock minus true time (a clock step, docs/DESIGN.md "Server time"). */
  agentClockStepMs = 0;
  slowUntil = 0;
  /** Until when a VM cut off from Secret Manager may lack a valid token (see present()). */
  partitionUntil = 0;
  slowMaxMs = 0;
  agentPlan: { step: CrashStep; until: number; downMs: number } | undefined;
  cloudPlan: CrashStep | undefined;
  // The agent.
  agent: { proc: Proc; rec: Reconciler; since: number } | undefined;
  /** Process numbers (agent#n, cloud#n), for world/agent-life.ts and world/cloud-life.ts. */
  agentN = 0;
  cloudN = 0;
  /** How long systemd waits before the next start after a kill from outside; then a crash plan's. */
  restartAfter = 10 * SEC;
  planDownMs = 10 * SEC;
  pendingEvents: TokenRotatedEvent[] = [];
  // Observations.
  /** Who writes the cache next (world/invariants.ts judges the write by it). */
  writer = 'unknown';
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
    this.cache.onChange = (raw) => onCacheChange(this, raw);
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
    return createLogger({ minSeverity: 'INFO', write: (line) => !proc.dead && onLog(this, proc, line) });
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

  // ---- the rooms (world/) ---------------------------------------------------------------------
  present(proc: Proc, rt: string, opts: RefreshOptions): Promise<RawAnswer> {
    return present(this, proc, rt, opts);
  }

  published(proc: Proc, e: TokenRotatedEvent): void {
    published(this, proc, e);
  }

  secretAdded(proc: Proc, t: TokenSet): void {
    secretAdded(this, proc, t);
  }

  route(e: TokenRotatedEvent): void {
    route(this, e);
  }

  deliver(e: TokenRotatedEvent): void {
    deliver(this, e);
  }

  startAgent(): void {
    startAgent(this);
  }

  killAgent(downMs: number): void {
    killAgent(this, downMs);
  }

  runCloud(): void {
    runCloud(this);
  }

  login(): Promise<void> {
    return login(this);
  }
}
