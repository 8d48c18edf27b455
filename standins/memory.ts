/**
 * In-memory implementations of every port, with the same semantics as the real adapters
 * (versions, etag compare-and-swap, single-use refresh tokens). Used by reconciler/function unit
 * tests and by the virtual-time soak, where thousands of hours must run in seconds.
 */
import { randomBytes } from 'node:crypto';
import { SaxoError, SecretStoreError, LockTimeoutError } from '../core/errors.js';
import { parseFlat, serializeFlat } from '../core/codec.js';
import type { Clock } from '../core/clock.js';
import type {
  CacheRead, EventBus, Held, RefreshOptions, SecretMeta, SecretRead, SecretStore, TokenCache, TokenEndpoint, TokenRotatedEvent,
} from '../core/ports.js';
import type { TokenResponse, TokenSet } from '../core/token.js';

/** A clock whose time only moves when told; sleeps resolve as time passes them. */
export class FakeClock implements Clock {
  private timers: { at: number; resolve: () => void; seq: number }[] = [];
  private seq = 0;
  constructor(public t = Date.UTC(2026, 0, 5, 9, 0, 0)) {}
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new Error('aborted'));
      const timer = { at: this.t + Math.max(0, ms), resolve, seq: this.seq++ };
      this.timers.push(timer);
      signal?.addEventListener('abort', () => {
        this.timers = this.timers.filter((x) => x !== timer);
        reject(new Error('aborted'));
      }, { once: true });
    });
  }
  /** Move time forward, resolving due sleeps in order and letting their continuations run. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = Math.max(this.t, next.at);
      next.resolve();
      await flush();
    }
    this.t = end;
    await flush();
  }
  pending(): number {
    return this.timers.length;
  }
}

export async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

const tok = (n = 24) => randomBytes(n).toString('base64url');

/** Saxo's token endpoint as a model: single-use rotating refresh tokens, presentations counted. */
export class SaxoModel implements TokenEndpoint {
  private live = new Map<string, { refreshExpiresAt: number }>();
  private consumed = new Set<string>();
  private accessValid = new Map<string, number>();
  readonly stats = { presentations: 0, reusedPresentations: 0, refreshes: 0, invalidGrants: 0 };
  /** Faults to apply to the next calls, consumed in order. */
  faults: ('retryable' | 'invalid_grant' | 'lost_response')[] = [];
  delayMs = 0;
  /** Token text generator; the soak swaps in a seeded one so a run is reproducible. */
  mint: (bytes: number) => string = tok;
  constructor(
    private readonly clock: Clock,
    public accessLifetimeSec = 1200,
    public refreshLifetimeSec = 3600,
  ) {}
  issue(): TokenResponse {
    const r = this.mint(32);
    const a = this.mint(48);
    this.live.set(r, { refreshExpiresAt: this.clock.now() + this.refreshLifetimeSec * 1000 });
    this.accessValid.set(a, this.clock.now() + this.accessLifetimeSec * 1000);
    return { accessToken: a, refreshToken: r, tokenType: 'Bearer', expiresIn: this.accessLifetimeSec, refreshExpiresIn: this.refreshLifetimeSec };
  }
  isValidAccess(a: string): boolean {
    return (this.accessValid.get(a) ?? 0) > this.clock.now();
  }
  async refresh(refreshToken: string, _opts: RefreshOptions): Promise<TokenResponse> {
    if (this.delayMs) await this.clock.sleep(this.delayMs);
    const fault = this.faults.shift();
    if (fault === 'retryable') throw new SaxoError('retryable', 'http_503', 'Saxo answered 503 (non-JSON body)', 503);
    this.stats.presentations++;
    if (this.consumed.has(refreshToken)) this.stats.reusedPresentations++;
    const entry = this.live.get(refreshToken);
    if (fault === 'invalid_grant' || !entry || entry.refreshExpiresAt <= this.clock.now()) {
      this.stats.invalidGrants++;
      throw new SaxoError('fatal', 'invalid_grant', 'Saxo rejected the refresh token (invalid_grant)', 400);
    }
    this.live.delete(refreshToken);
    this.consumed.add(refreshToken);
    this.stats.refreshes++;
    const out = this.issue();
    if (fault === 'lost_response') throw new SaxoError('retryable', 'timeout', 'Saxo did not answer in time');
    return out;
  }
  async exchangeCode(): Promise<TokenResponse> {
    return this.issue();
  }
}

interface MemVersion { n: number; state: 'ENABLED' | 'DISABLED' | 'DESTROYED'; data?: string }

export class MemorySecretStore implements SecretStore {
  versions: MemVersion[] = [];
  annotations: Record<string, string> = {};
  private etag = 1;
  unavailable = false;
  calls: string[] = [];
  constructor(readonly name = 'projects/demo/secrets/saxo-token') {}
  private gate(method: string) {
    this.calls.push(method);
    if (this.unavailable) throw new SecretStoreError('unavailable', `${method}: UNAVAILABLE`);
  }
  private readV(v: MemVersion | undefined): SecretRead | undefined {
    if (!v || v.state !== 'ENABLED' || v.data === undefined) return undefined;
    const p = parseFlat(v.data);
    return { name: `${this.name}/versions/${v.n}`, version: v.n, token: p.ok ? p.token : undefined, error: p.ok ? undefined : p.reason };
  }
  async latest() {
    this.gate('accessSecretVersion');
    return this.readV([...this.versions].reverse().find((v) => v.state === 'ENABLED'));
  }
  async version(ref: string | number) {
    this.gate('accessSecretVersion');
    const n = typeof ref === 'number' ? ref : Number(String(ref).split('/').pop());
    return this.readV(this.versions.find((v) => v.n === n));
  }
  async add(token: TokenSet) {
    this.gate('addSecretVersion');
    return this.addRaw(serializeFlat(token));
  }
  addRaw(data: string) {
    const n = (this.versions.at(-1)?.n ?? 0) + 1;
    this.versions.push({ n, state: 'ENABLED', data });
    return { name: `${this.name}/versions/${n}`, version: n };
  }
  async prune(keep: number) {
    this.gate('listSecretVersions');
    const alive = this.versions.filter((v) => v.state !== 'DESTROYED');
    const doomed = alive.slice(0, Math.max(0, alive.length - keep));
    for (const v of doomed) {
      this.gate('destroySecretVersion');
      v.state = 'DESTROYED';
      delete v.data;
    }
    return doomed.length;
  }
  async countVersions() {
    this.gate('listSecretVersions');
    return this.versions.filter((v) => v.state !== 'DESTROYED').length;
  }
  async meta(): Promise<SecretMeta> {
    this.gate('getSecret');
    const a = this.annotations;
    return {
      etag: String(this.etag),
      lease: a['tk-lease-holder'] ? { holder: a['tk-lease-holder'], expiresAt: Number(a['tk-lease-expires']) } : undefined,
      failures: Number(a['tk-failures'] ?? 0),
      lastRefresh: a['tk-last-refresh-at']
        ? { at: Number(a['tk-last-refresh-at']), by: a['tk-last-refresh-by'] ?? '', version: a['tk-last-refresh-version'] ?? '' }
        : undefined,
      annotations: { ...a },
    };
  }
  async acquireLease(holder: string, ttlMs: number, now: number) {
    const m = await this.meta();
    if (m.lease && m.lease.holder !== holder && m.lease.expiresAt > now) return false;
    this.gate('updateSecret');
    if (String(this.etag) !== m.etag) return false;
    this.annotations = { ...this.annotations, 'tk-lease-holder': holder, 'tk-lease-expires': String(now + ttlMs) };
    this.etag++;
    return true;
  }
  async releaseLease(holder: string, record?: Parameters<SecretStore['releaseLease']>[1]) {
    const m = await this.meta();
    this.gate('updateSecret');
    const a = { ...this.annotations };
    if (m.lease?.holder === holder) {
      delete a['tk-lease-holder'];
      delete a['tk-lease-expires'];
    }
    this.annotations = applyRecord(a, record);
    this.etag++;
  }
  async record(record: Parameters<SecretStore['record']>[0]) {
    this.gate('updateSecret');
    this.annotations = applyRecord({ ...this.annotations }, record);
    this.etag++;
  }
}

function applyRecord(a: Record<string, string>, r?: Parameters<SecretStore['record']>[0]) {
  if (r?.failures !== undefined) a['tk-failures'] = String(r.failures);
  if (r?.lastRefresh) {
    a['tk-last-refresh-at'] = String(r.lastRefresh.at);
    a['tk-last-refresh-by'] = r.lastRefresh.by;
    a['tk-last-refresh-version'] = r.lastRefresh.version ?? '';
  }
  return a;
}

/** At-least-once, possibly reordered delivery to every subscriber. */
export class MemoryEventBus implements EventBus {
  published: TokenRotatedEvent[] = [];
  private handlers: ((e: TokenRotatedEvent, m: { id: string }) => Promise<void>)[] = [];
  /** When set, publish() only queues; deliver() hands events over (lets tests reorder/duplicate). */
  manual = false;
  queue: TokenRotatedEvent[] = [];
  async publish(e: TokenRotatedEvent) {
    this.published.push(e);
    if (this.manual) this.queue.push(e);
    else {
      // Like Pub/Sub, publish does not wait for subscribers: an agent subscribed to the topic it
      // publishes to would otherwise wait on its own serialized run() and deadlock.
      const id = String(this.published.length);
      for (const h of this.handlers) setImmediate(() => void h(e, { id }).catch(() => undefined));
    }
    return String(this.published.length);
  }
  async deliver(e: TokenRotatedEvent) {
    for (const h of this.handlers) await h(e, { id: 'manual' }).catch(() => undefined);
  }
  async subscribe(h: (e: TokenRotatedEvent, m: { id: string }) => Promise<void>) {
    this.handlers.push(h);
    return async () => {
      this.handlers = this.handlers.filter((x) => x !== h);
    };
  }
}

/** The cache file in memory; `raw` lets tests plant stale or corrupt content. */
export class MemoryCache implements TokenCache {
  private rawText: string | undefined;
  /** Called on every change of `raw` (the soak's stand-in for the agent's file watcher). */
  onChange: ((raw: string | undefined) => void) | undefined;
  writes = 0;
  get raw(): string | undefined {
    return this.rawText;
  }
  set raw(v: string | undefined) {
    this.rawText = v;
    this.onChange?.(v);
  }
  constructor(readonly path = 'memory://saxo_token_cache.json') {}
  async read(): Promise<CacheRead> {
    if (this.raw === undefined) return { kind: 'missing' };
    const p = parseFlat(this.raw);
    return p.ok ? { kind: 'ok', token: p.token } : { kind: 'corrupt', reason: p.reason };
  }
  async write(t: TokenSet) {
    this.writes++;
    this.raw = serializeFlat(t);
  }
}

/** A non-reentrant mutex with the flock's timeout semantics. */
export class MemoryLock {
  private holder: symbol | undefined;
  private waiters: (() => void)[] = [];
  constructor(private readonly clock: Clock, private readonly timeoutMs = 30_000) {}
  get held(): boolean {
    return this.holder !== undefined;
  }
  async acquire(): Promise<Held> {
    const start = this.clock.now();
    while (this.holder) {
      if (this.clock.now() - start >= this.timeoutMs) throw new LockTimeoutError('memory-lock', this.clock.now() - start);
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), this.clock.sleep(100)]);
    }
    const me = Symbol('holder');
    this.holder = me;
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        if (this.holder === me) this.holder = undefined;
        this.waiters.splice(0).forEach((w) => w());
      },
    };
  }
}

export class MemoryState {
  value: import('../agent/reconciler.js').AgentState | undefined;
  async read() {
    return this.value;
  }
  async write(s: import('../agent/reconciler.js').AgentState) {
    this.value = structuredClone(s);
  }
}
