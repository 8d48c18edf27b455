/**
 * Wires a Reconciler (agent) or CloudDeps (function) from the in-memory ports, with a logger that
 * captures every line and a Saxo model that remembers every token it issued, so a test can assert
 * that no token or app secret ever reached a log line or an event (I5).
 */
import { createLogger, type Logger } from '../../core/log.js';
import { serializeFlat } from '../../core/codec.js';
import { loadConfig } from '../../core/config.js';
import type { RawAnswer, RefreshOptions } from '../../core/ports.js';
import { pairOf } from '../../core/grant.js';
import { agentSettings, cloudSettings, type AgentSettings, type CloudSettings } from '../../core/settings.js';
import { fromResponse, type TokenResponse, type TokenSet } from '../../core/token.js';
import { Reconciler } from '../../agent/reconciler.js';
import type { CloudDeps } from '../../functions/refresher.js';
import {
  VirtualClock, MemoryCache, MemoryEventBus, MemoryLock, MemorySecretStore, MemoryState, SaxoModel,
} from '../../standins/memory.js';

export const APP_KEY = 'rig-app-key';
export const APP_SECRET = 'rig-app-secret-5bQ8zLx2';
export const SEC = 1000;
export const MIN = 60 * SEC;

/** One parsed log line. */
export interface LogRecord {
  severity: string;
  message: string;
  event: string;
  [k: string]: unknown;
}

export interface LogCapture {
  logger: Logger;
  lines: string[];
  records(): LogRecord[];
  /** Records with this `event` name. */
  events(name: string): LogRecord[];
  messages(): string[];
}

export function captureLogger(): LogCapture {
  const lines: string[] = [];
  const logger = createLogger({ write: (l) => lines.push(l), minSeverity: 'DEBUG' });
  const records = () => lines.map((l) => JSON.parse(l) as LogRecord);
  return {
    logger,
    lines,
    records,
    events: (name) => records().filter((r) => r.event === name),
    messages: () => records().map((r) => r.message),
  };
}

/** SaxoModel that records what it issued and what was presented, with an optional hook per call. */
export class RecordingSaxo extends SaxoModel {
  readonly issued: string[] = [];
  readonly presented: string[] = [];
  /** The options each presentation was made with (deadlines, credentials: test-only secrets). */
  readonly options: RefreshOptions[] = [];
  /** Runs at each presentation, before Saxo answers (lets a test change the world mid-call). */
  onPresent: ((refreshToken: string) => void | Promise<void>) | undefined;
  constructor(clock: VirtualClock) {
    super(clock);
    this.onIssue = (r: TokenResponse) => void this.issued.push(r.accessToken, r.refreshToken);
  }
  override async refresh(refreshToken: string, opts: RefreshOptions): Promise<RawAnswer> {
    if (this.onPresent) await this.onPresent(refreshToken);
    this.presented.push(refreshToken);
    this.options.push(opts);
    return super.refresh(refreshToken, opts);
  }
  resetStats(): void {
    Object.assign(this.stats, { presentations: 0, reusedPresentations: 0, refreshes: 0, invalidGrants: 0 });
    this.presented.length = 0;
  }
}

/** A Config as a deployment at default settings gets it, plus `env`; the rigs build settings from it. */
export function rigConfig(env: Record<string, string> = {}) {
  return loadConfig({ TOKEN_KEEPER_DATA_DIR: '/nonexistent/rig', ...env });
}

interface BaseRig {
  clock: VirtualClock;
  saxo: RecordingSaxo;
  log: LogCapture;
  /** A pair as `login` would store it (generation 1 unless `generation` is given). */
  login(generation?: number): TokenSet;
  /** Refresh `t` with Saxo outside the system under test (consumes t's refresh token). */
  successor(t: TokenSet): Promise<TokenSet>;
  /** The same pair in the bots' five-key shape: no generation, issue time or refresh expiry. */
  asBotPair(t: TokenSet): TokenSet;
  /** Log lines (and, with a bus, published events) that contain a token or the app secret. */
  leaks(): string[];
}

function base(clock: VirtualClock, shared?: RecordingSaxo): BaseRig & { bus?: MemoryEventBus } {
  const saxo = shared ?? new RecordingSaxo(clock);
  const log = captureLogger();
  const make = (res: TokenResponse, prev: TokenSet | undefined, source: string): TokenSet =>
    fromResponse(res, clock.now(), prev, source, 60 * SEC);
  const rig: BaseRig & { bus?: MemoryEventBus } = {
    clock,
    saxo,
    log,
    login: (generation = 1) => ({
      ...make(saxo.issue(), undefined, 'login'),
      generation,
      appKey: APP_KEY,
      appSecret: APP_SECRET,
    }),
    successor: async (t) =>
      make(pairOf(await saxo.refresh(t.refreshToken, { deadline: Infinity, appKey: APP_KEY, appSecret: APP_SECRET })), t, 'bot'),
    asBotPair: (t) => ({
      accessToken: t.accessToken,
      refreshToken: t.refreshToken,
      accessExpiresAt: t.accessExpiresAt,
      appKey: t.appKey,
      appSecret: t.appSecret,
      extra: {},
    }),
    leaks: () => {
      const secrets = [...saxo.issued, APP_SECRET];
      const texts = [...log.lines, ...(rig.bus?.published ?? []).map((e) => JSON.stringify(e))];
      return texts.filter((l) => secrets.some((s) => l.includes(s)));
    },
  };
  return rig;
}

/** Fixed jitter: a backoff sleep is half its bound, every run the same. */
const RANDOM = () => 0.5;
const CLOUD_ENV = { GOOGLE_CLOUD_PROJECT: 'demo', TOKEN_SECRET_ID: 'saxo-token' };

export interface AgentRig extends BaseRig {
  cache: MemoryCache;
  lock: MemoryLock;
  state: MemoryState;
  store?: MemorySecretStore | undefined;
  bus?: MemoryEventBus | undefined;
  settings: AgentSettings;
  reconciler: Reconciler;
  /** A new Reconciler over the same ports (a restart), loaded. */
  restart(): Promise<Reconciler>;
  /** The cache's pair, or undefined when missing/corrupt. */
  cached(): Promise<TokenSet | undefined>;
  plantCache(t: TokenSet): void;
}

export interface AgentRigOptions {
  cloud?: boolean;
  /** Environment on top of the defaults (what an operator would set). */
  env?: Record<string, string>;
  settings?: Partial<AgentSettings>;
  lockTimeoutMs?: number;
  clock?: VirtualClock;
  store?: MemorySecretStore;
  bus?: MemoryEventBus;
  /** One Saxo for several rigs on one clock (several VMs, an agent and the function). */
  saxo?: RecordingSaxo;
}

/** Build the ports and a Reconciler; call `reconciler.load()` (after planting state) before running. */
export function agentRig(o: AgentRigOptions = {}): AgentRig {
  const clock = o.clock ?? new VirtualClock();
  const b = base(clock, o.saxo);
  const cache = new MemoryCache();
  const lock = new MemoryLock(clock, o.lockTimeoutMs ?? 30 * SEC);
  const state = new MemoryState();
  const store = o.store ?? (o.cloud ? new MemorySecretStore() : undefined);
  const bus = o.bus ?? (o.cloud ? new MemoryEventBus() : undefined);
  b.bus = bus;
  const config = rigConfig({ TOKEN_KEEPER_HOLDER_ID: 'agent:test-vm', ...(store ? CLOUD_ENV : {}), ...o.env });
  const settings = { ...agentSettings(config, { random: RANDOM }), ...o.settings };
  const build = () =>
    new Reconciler({ clock, cache, lock: (signal) => lock.acquire(signal), state, saxo: b.saxo, store, bus, logger: b.log.logger, settings });
  const rig: AgentRig = {
    ...b,
    cache,
    lock,
    state,
    store,
    bus,
    settings,
    reconciler: build(),
    restart: async () => {
      rig.reconciler = build();
      await rig.reconciler.load();
      return rig.reconciler;
    },
    cached: async () => {
      const r = await cache.read();
      return r.kind === 'ok' ? r.token : undefined;
    },
    plantCache: (t) => {
      cache.raw = serializeFlat(t);
    },
  };
  return rig;
}


export interface CloudRig extends BaseRig {
  store: MemorySecretStore;
  bus: MemoryEventBus;
  deps: CloudDeps;
}

export function cloudRig(o: { env?: Record<string, string>; settings?: Partial<CloudSettings>; clock?: VirtualClock; store?: MemorySecretStore; saxo?: RecordingSaxo } = {}): CloudRig {
  const clock = o.clock ?? new VirtualClock();
  const b = base(clock, o.saxo);
  const store = o.store ?? new MemorySecretStore();
  const bus = new MemoryEventBus();
  b.bus = bus;
  const settings = { ...cloudSettings(rigConfig({ ...CLOUD_ENV, ...o.env }), { holderId: 'cloud:test-fn', random: RANDOM }), ...o.settings };
  const deps: CloudDeps = { clock, store, bus, saxo: b.saxo, logger: b.log.logger, settings };
  return { ...b, store, bus, deps };
}

/** Advance the fake clock in steps until `p` settles (for code that waits on clock sleeps). */
export async function settleWithClock<T>(p: Promise<T>, clock: VirtualClock, stepMs = 100, maxMs = 120 * SEC): Promise<T> {
  let done = false;
  const watched = p.finally(() => {
    done = true;
  });
  for (let waited = 0; !done && waited < maxMs; waited += stepMs) await clock.advance(stepMs);
  return watched;
}
